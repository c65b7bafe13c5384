"""Invalidation of the gateway's in-process caches (owned by the gateway hot path work)."""
