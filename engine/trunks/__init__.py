"""SIP trunk groups: config, health, circuit breaker, limits, selection and the
per-call attempt planner (all pure; the service carries out their decisions).

See docs/trunks.md.
"""
