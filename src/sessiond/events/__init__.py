"""Events: the outbox table, the after-commit bus, polling and SSE streams."""
