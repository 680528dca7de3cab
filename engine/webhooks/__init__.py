"""Signed webhooks for CRM sync (docs/security.md "Webhooks").

Events the engine accepts are tapped off the outbox lanes (``policy.webhook_event``), journalled
in the ``webhooks`` lane, stored in PostgreSQL with one delivery row per subscription
(``store``), and sent by ``service.Dispatcher``: HMAC-SHA256 signed (``signing``), retried
with exponential backoff and jitter (``policy.backoff``), dead-lettered after N failures, in
order per call.
"""
