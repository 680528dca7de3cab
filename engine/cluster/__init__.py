"""Several engines, one call centre: who is live (membership) and who owns what (ownership).

``policy`` is the pure decision core (rendezvous hashing over live engines, with
hysteresis); ``membership`` and ``ownership`` are its Redis shell. docs/architecture.md
"Several engines" gives the policy and why.
"""
