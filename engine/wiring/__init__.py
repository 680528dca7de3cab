"""The composition root's steps (``engine/app.py``), one module per concern.

``Engine.start`` is a short sequence of these steps. Each one takes what it needs
explicitly (the config, the ``AsyncExitStack``, what earlier steps built) and returns
a small dataclass of what it built (or the one object, when there is one). A step
that opens a resource enters it on the stack, or pushes its close there, at the
point where the old single ``start`` did: the stack's order is the shutdown order.
"""
