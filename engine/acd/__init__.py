"""Skill-based queueing: queues and calls (model.py), config, and the pure router."""
