"""Who may call the API: roles, tokens, the route x role table, rate limits, the audit trail.

``matrix.RULES`` is the one source of truth for access: the API middleware enforces it, the
OpenAPI document is checked against it (and says, per operation, which roles may call it), and
docs/security.md prints it (``python -m engine auth matrix``).
"""
