"""Sandboxes: a session's directory, its confinement, exec and hibernation
(docs/design/sandbox.md)."""
