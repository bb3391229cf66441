"""``/api/acp``: sessiond as an ACP agent for HTTP clients (docs/acp.md)."""
