"""Webhooks: subscriptions, and signed deliveries from the event store (docs/webhooks.md)."""
