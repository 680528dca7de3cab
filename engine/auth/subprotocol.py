"""The WebSocket subprotocols of ``/v1/events``: ``telephony-engine.v1`` (what the server
selects) and ``bearer.<token>`` (how a browser, which cannot set headers on a handshake,
sends its token)."""

WS_PROTOCOL = "telephony-engine.v1"
WS_BEARER = "bearer."
