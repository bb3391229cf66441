"""sessiond: a self-hosted session server for AI agents."""
