"""A batch's results as a JSON Lines download (the page's and the API's)."""

import json

from django.http import StreamingHttpResponse

from . import selectors
from .models import BatchRun

CONTENT_TYPE = "application/jsonl; charset=utf-8"


def results_response(batch: BatchRun) -> StreamingHttpResponse:
    """One JSON object per row, in dataset order, streamed as the rows are read."""
    response = StreamingHttpResponse(
        (json.dumps(row, ensure_ascii=False) + "\n" for row in selectors.batch_results(batch)),
        content_type=CONTENT_TYPE,
    )
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.jsonl"'
    return response
