"""A minimal OpenAI-speaking upstream for the pipeline benchmark: a raw ASGI app on uvicorn.

It answers every ``POST /v1/chat/completions`` after a fixed latency with the same small
``chat.completion``. Run: ``python bench/upstream_app.py PORT LATENCY_MS`` (no Django here).
"""

import asyncio
import json
import sys

import uvicorn

BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello from the bench upstream"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 6, "total_tokens": 26},
    }
).encode()
LATENCY = 0.0


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    if LATENCY:
        await asyncio.sleep(LATENCY)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    port, LATENCY = int(sys.argv[1]), float(sys.argv[2]) / 1000
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
