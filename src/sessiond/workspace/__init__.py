"""Versioned workspace: files as git objects in the database (docs/design/workspace.md)."""
