"""Stage 2: the ledger, batching and retries, and the transports that deliver each message."""
