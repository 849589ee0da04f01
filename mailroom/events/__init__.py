"""Delivery events in (webhook, import), suppressions, and the report out."""
