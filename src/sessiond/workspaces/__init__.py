"""Workspaces: named groups of sessions inside an account (``default`` always exists)."""
