"""`qwentui batch`: JSONL in and out, the concurrent runner, the job around it (engine,
cache, ledger) and its progress line."""
