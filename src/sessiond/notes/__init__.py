"""Notes: session-scoped markdown notes, listable across a workspace."""
