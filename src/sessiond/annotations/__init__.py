"""Annotations: review notes on a file range or a message."""
