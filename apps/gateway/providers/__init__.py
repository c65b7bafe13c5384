"""Provider adapters: one module per provider kind, each speaking OpenAI's chat shape."""
