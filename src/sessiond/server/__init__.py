"""Serving the app: one process, or a supervisor and N worker processes on one port
(``sessiond serve --workers N``; docs/design/workers.md)."""
