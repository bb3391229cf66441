"""Cache entries: per-session key/value with TTL and compare-and-set."""
