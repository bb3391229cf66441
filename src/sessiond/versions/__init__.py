"""Versions: what composes files, conversation, context and tasks (docs/design/layout.md)."""
