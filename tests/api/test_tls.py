"""TLS 1.3 on the API and the WebSocket, with a self-signed certificate made here."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.app import Engine
from engine.config import parse_config
from scripts.fuzz_api import FuzzCarrier
from tests.harness import TOKEN, engine_config_text


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def client_context(cert: Path, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if max_version is not None:
        context.maximum_version = max_version
    return context


async def negotiated(port: int, context: ssl.SSLContext) -> str | None:
    """The TLS version a handshake with the API settles on."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        version: str | None = writer.get_extra_info("ssl_object").version()
        return version
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture(params=["1.3", "1.2"], ids=["min-1.3", "min-1.2"])
async def tls_engine(
    request: pytest.FixtureRequest, pg_dsn: str, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Engine, Path, str]]:
    cert, key = self_signed(tmp_path)
    async with FuzzCarrier() as ami:
        text = engine_config_text(
            pg_dsn=pg_dsn,
            redis_url=redis_url,
            prefix=f"tls:{uuid.uuid4().hex[:8]}:",
            data_dir=tmp_path / "data",
            ami_port=ami.port,
            agi_bind_port=0,
        ).replace(
            "[api]\n",
            f'[api]\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_min_version = "{request.param}"\n',
        )
        async with Engine(parse_config(text, "tls-engine.toml")) as engine:
            yield engine, cert, request.param


async def test_api_and_websocket_serve_tls_13_and_refuse_12_when_told(
    tls_engine: tuple[Engine, Path, str],
) -> None:
    engine, cert, minimum = tls_engine
    base = f"https://127.0.0.1:{engine.api_port}/v1"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/trunks", headers=headers, ssl=client_context(cert)) as r:
            assert r.status == 200
        assert await negotiated(engine.api_port, client_context(cert)) == "TLSv1.3"
        async with http.ws_connect(
            f"wss://127.0.0.1:{engine.api_port}/v1/events",
            protocols=("telephony-engine.v1", f"bearer.{TOKEN}"),
            ssl=client_context(cert),
        ) as ws:
            assert ws.protocol == "telephony-engine.v1"
        old = client_context(cert, max_version=ssl.TLSVersion.TLSv1_2)
        if minimum == "1.3":
            with pytest.raises(aiohttp.ClientConnectorError):
                async with http.get(f"{base}/trunks", headers=headers, ssl=old):
                    pass
        else:
            async with http.get(f"{base}/trunks", headers=headers, ssl=old) as r:
                assert r.status == 200
            assert await negotiated(engine.api_port, old) == "TLSv1.2"
        # Plain HTTP on a TLS port gets nowhere.
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{engine.api_port}/v1/trunks", headers=headers):
                pass


def test_tls_needs_both_files() -> None:
    text = engine_config_text(
        pg_dsn="", redis_url="", prefix="x:", data_dir=Path("/tmp/x")
    ).replace("[api]\n", '[api]\ntls_cert = "a.crt"\n')
    with pytest.raises(Exception, match="tls_cert and tls_key"):
        parse_config(text, "tls.toml")
