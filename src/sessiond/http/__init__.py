"""HTTP edge: middleware, error rendering, request models, idempotency, pagination."""
