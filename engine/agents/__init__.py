"""Agents: who they are (model.py) and the pure state machine of their availability (fsm.py)."""
