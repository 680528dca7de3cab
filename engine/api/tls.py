"""TLS for the API and the WebSocket (docs/security.md "TLS")."""

from __future__ import annotations

import ssl
from pathlib import Path

from engine.core.errors import ConfigError


def server_context(cert: Path, key: Path, min_version: str = "1.3") -> ssl.SSLContext:
    """A server context with ``cert`` (PEM chain) and ``key``; TLS 1.3 preferred, TLS 1.2
    accepted only when ``min_version`` is "1.2". Unreadable or mismatched files are a
    configuration error naming the file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # No renegotiation, no compression, a fresh key per handshake (OpenSSL defaults on
    # TLS 1.3; set for 1.2 too).
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_SINGLE_ECDH_USE | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except FileNotFoundError as err:
        raise ConfigError(
            "engine.toml", [f"api.tls_cert/tls_key: {err.filename}: no such file"]
        ) from err
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(
            "engine.toml",
            [f"api.tls_cert/tls_key: cannot load {cert} with {key}: {err}"],
        ) from err
    return context
