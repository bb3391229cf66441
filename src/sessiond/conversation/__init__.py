"""Messages on a branchable history (docs/design/conversation.md)."""
