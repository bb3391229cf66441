"""Approvals: human-in-the-loop decisions (pending → granted | denied, once)."""
