"""The sections of ``telephony-config/engine.toml`` that belong to no domain.

Switches, storage, the API, logging, TTS and the engine's own settings. The
whole file (these sections plus the domains', e.g. trunks) is assembled and
validated by :mod:`engine.config`, above the domains, so this bottom layer
never imports a domain.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


# The two cross-reference problems every list of named entries has, worded once for all of
# them (switches, trunks, trunk groups, agents, queues, campaigns): ``key.path: what is wrong``.
def duplicate_problem(section: str, index: int, key: str, value: str, first: int) -> str:
    """``section[index].key``'s ``value`` was already given by ``section[first]``."""
    return f"{section}[{index}].{key}: {value!r} is already used by {section}[{first}]"


def unknown_problem(where: str, kind: str, value: str, known: Iterable[str]) -> str:
    """``where`` names a ``kind`` (trunk, queue...) that is not configured; lists those that are."""
    names = ", ".join(sorted(known)) or "none defined"
    plural = kind + ("es" if kind.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{where}: unknown {kind} {value!r} ({plural}: {names})"


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `actoin_timeout_s` must not be
    # silently ignored in a telephony config.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _parse_bind(value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    port = int(port_text)
    if not 0 <= port < 65536:
        # 0 means "any free port" (tests); the bound port is logged at start.
        raise ValueError("port must be between 0 and 65535")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"expected an IP address or localhost as host, got {host!r}") from None
    return host, port


def _check_host(value: str) -> str:
    """A host name or IP address alone: the port is a key of its own."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", value) or ".." in value:
            raise ValueError(
                "expected a host name or IP address alone (the port is its own key), "
                "e.g. 10.0.0.5 or pbx1.example.com"
            ) from None
    return value


# A switch's host and where it reaches the engine back (agi_host): pasted into sockets and
# dial strings, so no port, path, space or empty value slips through.
Host = Annotated[str, AfterValidator(_check_host)]


class Bind(_Strict):
    bind: str

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _parse_bind(value)
        return value

    @property
    def host(self) -> str:
        return _parse_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return _parse_bind(self.bind)[1]


class ApiConfig(Bind):
    bind: str = "127.0.0.1:8080"
    # Bootstrap admin tokens (docs/security.md): always accepted, role admin, no expiry.
    tokens: list[SecretStr] = Field(min_length=1)
    idempotency_ttl_s: int = Field(default=86400, ge=60)
    # TLS for the API and the WebSocket (docs/security.md "TLS"): both files or neither.
    tls_cert: str = ""
    tls_key: str = ""
    # "1.3" refuses TLS 1.2 handshakes; "1.2" accepts them (TLS 1.3 is still preferred).
    tls_min_version: Literal["1.2", "1.3"] = "1.3"
    # How long an API token's lookup (role, expiry, revocation) is cached per engine: a
    # token revoked on another engine stops working within this many seconds.
    token_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    # Per-token rate limit of API-created tokens when the token names none (requests/s and
    # burst); bootstrap tokens have bootstrap_rate_per_s (0 = unlimited).
    rate_per_s: float = Field(default=50.0, gt=0, le=100_000)
    rate_burst: int = Field(default=100, ge=1, le=1_000_000)
    bootstrap_rate_per_s: float = Field(default=0.0, ge=0, le=100_000)
    # Lifetime of a WebSocket ticket (POST /v1/events/ticket); single use.
    ticket_ttl_s: int = Field(default=30, ge=5, le=600)
    # How often the QueueStats / CampaignStats / TrunkStats summary events are looked at
    # (published only when their figures changed; docs/events.md). 0 turns them off.
    live_feed_interval_s: float = Field(default=2.0, ge=0, le=60)
    # Several engines (docs/architecture.md "Any engine serves the API"): the HOST:PORT other
    # engines reach this API at, published in Redis; empty = the bind address (with the
    # bound port), or this host's name when bound to a wildcard address.
    advertise: str = ""
    # How long a command forwarded to the engine that owns its object may take.
    forward_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("advertise")
    @classmethod
    def _check_advertise(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected HOST:PORT other engines reach this API at")
            if any(c in host for c in "/@?# "):
                raise ValueError(f"expected a host name or address, got {host!r}")
        return value

    @field_validator("tokens")
    @classmethod
    def _check_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        for token in value:
            if len(token.get_secret_value()) < 16:
                raise ValueError("each API token must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key: give both (TLS on) or neither (plain HTTP)")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


class WebhooksConfig(_Strict):
    """Signed webhooks (docs/security.md "Webhooks")."""

    timeout_s: float = Field(default=10.0, gt=0, le=120)
    concurrency: int = Field(default=32, ge=1, le=1000)
    backoff_base_s: float = Field(default=1.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=600.0, gt=0, le=86400)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)


class FastAgiConfig(Bind):
    bind: str = "127.0.0.1:4573"


# asyncpg's values for ``target_session_attrs`` (libpq's, minus none).
_SESSION_ATTRS = ("any", "primary", "standby", "read-write", "read-only", "prefer-standby")


def _parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port``; the host may be a name (DNS) or an IP."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: expected [IPV6]:PORT")
    else:
        host, _, port_text = text.partition(":") if text.count(":") <= 1 else (text, "", "")
    if not host or any(c.isspace() or c in "/@?#," for c in host):
        raise ValueError(f"{value!r}: expected HOST:PORT, e.g. 10.0.0.5:26379")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r}: the port must be a number between 1 and 65535")
    return host, int(port_text)


def check_postgres_dsn(dsn: str) -> str:
    """A ``postgresql://`` URL, possibly naming several hosts (``h1:5432,h2:5433``).

    Only the parts the engine relies on are checked; asyncpg parses the rest
    and names what it refuses at start."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError(
            "expected a postgresql:// URL, e.g. postgresql://engine@db1:5432,db2:5432/engine"
        )
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    hosts = netloc.rpartition("@")[2]
    for item in hosts.split(",") if hosts else []:
        _parse_host_port(item, 5432)
    query = rest.partition("?")[2]
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        if key == "target_session_attrs" and value not in _SESSION_ATTRS:
            raise ValueError(
                f"target_session_attrs={value!r}: expected one of {', '.join(_SESSION_ATTRS)}"
            )
    return dsn


def check_redis_url(url: str) -> str:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL; the host and port are checked, redis-py
    parses the rest."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "expected a redis:// (or rediss://, unix://) URL, e.g. redis://cache1:6379/0"
        )
    if scheme != "unix":
        netloc = rest.split("/", 1)[0].split("?", 1)[0]
        _parse_host_port(netloc.rpartition("@")[2], 6379)
    return url


class StorageConfig(_Strict):
    # Empty means "start the embedded server under engine.data_dir".
    postgres_dsn: SecretStr = SecretStr("")
    redis_url: SecretStr = SecretStr("")
    # Redis Sentinel (docs/storage.md "Redis Sentinel"): the sentinels' HOST:PORT and the
    # master's name. Set instead of redis_url; the passwords are the master's and replicas'
    # (requirepass) and the sentinels' own (sentinel requirepass), empty for none.
    redis_sentinels: list[str] = []
    redis_sentinel_master: str = ""
    redis_password: SecretStr = SecretStr("")
    redis_sentinel_password: SecretStr = SecretStr("")
    redis_db: int = Field(default=0, ge=0, le=15)
    # Event publishes wait for this many replicas (Redis WAIT) before the outbox lets them go;
    # unset: 1 with sentinels, 0 with one server (docs/storage.md "Redis Sentinel").
    redis_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=500, ge=10, le=10_000)
    redis_prefix: str = "engine:"
    event_stream_maxlen: int = Field(default=100_000, ge=1000)
    # Under load, at most one background write round per this interval: event
    # publishes, registry writes and their fsyncs (docs/bench-cpu.md). Longer
    # costs less CPU per call and delays events by up to about twice as much.
    write_round_s: float = Field(default=0.1, ge=0.0, le=1.0)

    @field_validator("postgres_dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            check_postgres_dsn(value.get_secret_value())
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            check_redis_url(value.get_secret_value())
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _check_sentinels(cls, value: list[str]) -> list[str]:
        for item in value:
            _parse_host_port(item, 26379)
        if len(set(value)) != len(value):
            raise ValueError("each sentinel once")
        return value

    @model_validator(mode="after")
    def _sentinel_or_url(self) -> StorageConfig:
        if self.redis_sentinels:
            if self.redis_url.get_secret_value():
                raise ValueError(
                    "redis_url and redis_sentinels: give one (a URL for one server, "
                    "sentinels for a monitored master)"
                )
            if not re.fullmatch(NAME_PATTERN, self.redis_sentinel_master):
                raise ValueError(
                    "redis_sentinel_master: expected the master's name as the sentinels "
                    'monitor it (sentinel monitor <name> ...), e.g. "mymaster"'
                )
        elif self.redis_sentinel_master:
            raise ValueError("redis_sentinel_master without redis_sentinels: list the sentinels")
        return self

    @property
    def wait_replicas(self) -> int:
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [_parse_host_port(item, 26379) for item in self.redis_sentinels]


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class AsteriskSwitch(_Strict):
    kind: Literal["asterisk"]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: Host = "127.0.0.1"
    port: int = Field(default=5038, gt=0, lt=65536)
    username: str
    secret: SecretStr
    action_timeout_s: float = Field(default=5.0, gt=0, le=120)
    ping_interval_s: float = Field(default=10.0, gt=0, le=300)
    # Where Asterisk reaches the engine's FastAGI server (set as channel vars).
    agi_host: Host = "127.0.0.1"
    agi_port: int = Field(default=4573, gt=0, lt=65536)


class FreeSwitchSwitch(_Strict):
    kind: Literal["freeswitch"]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    host: Host = "127.0.0.1"
    port: int = Field(default=8021, gt=0, lt=65536)
    password: SecretStr
    action_timeout_s: float = Field(default=5.0, gt=0, le=120)
    heartbeat_timeout_s: float = Field(default=45.0, gt=0, le=600)
    # Where FreeSWITCH reaches the engine's outbound-socket server for IVR.
    outbound_bind: str = "127.0.0.1:8084"
    # AMD (docs/amd.md): the engine's UDP socket for every unicast media tap (FreeSWITCH sends
    # to it; 0 = any free port), and the local-ports FreeSWITCH binds on its own address
    # (`host` when it is an IP, else 127.0.0.1), one per call being analysed.
    amd_tap_bind: str = "127.0.0.1:0"
    amd_tap_ports: str = "31000-31999"
    # Hold music (docs/freeswitch.md "The ACD on FreeSWITCH"): class (a queue's `moh`) ->
    # what `uuid_broadcast` plays. A class not listed plays local_stream://<class>, which
    # ends at once with FILE NOT FOUND on a switch without music files.
    moh_streams: dict[Annotated[str, Field(pattern=NAME_PATTERN)], str] = Field(
        default_factory=dict
    )

    @field_validator("moh_streams")
    @classmethod
    def _check_moh_streams(cls, value: dict[str, str]) -> dict[str, str]:
        for moh_class, stream in value.items():
            # Pasted into one api command line: whitespace, quotes or braces would split it.
            if not stream or any(c.isspace() or c in "'\"{}" or ord(c) < 0x20 for c in stream):
                raise ValueError(
                    f"class {moh_class!r}: expected a stream without spaces, quotes or braces "
                    "(local_stream://moh, a file path, tone_stream://...)"
                )
        return value

    @field_validator("outbound_bind", "amd_tap_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        _parse_bind(value)
        return value

    @field_validator("amd_tap_bind")
    @classmethod
    def _check_tap_host(cls, value: str) -> str:
        # The host is also what the sendmsg tells FreeSWITCH to send to (remote-ip).
        if _parse_bind(value)[0] in ("0.0.0.0", "::"):
            raise ValueError("give the address FreeSWITCH reaches the engine on, not 0.0.0.0/::")
        return value

    @field_validator("amd_tap_ports")
    @classmethod
    def _check_ports(cls, value: str) -> str:
        low, sep, high = value.partition("-")
        if not (sep and low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536):
            raise ValueError("expected FIRST-LAST, e.g. 31000-31999")
        return value


Switch = Annotated[AsteriskSwitch | FreeSwitchSwitch, Field(discriminator="kind")]


class TtsConfig(_Strict):
    """Where IVR `say` prompts are rendered and how the switch names them.

    ``dir`` is the directory the engine writes into; ``prefix`` is how the
    switch names that directory in a prompt (relative to its sounds dir, or
    an absolute path in its own view of the file system). Empty ``dir`` means
    ENGINE_TTS_DIR or /var/lib/asterisk/sounds/engine-tts.
    """

    dir: str = ""
    prefix: str = ""
    espeak_binary: str = "espeak-ng"
    timeout_s: float = Field(default=15.0, gt=0, le=120)


class SpeechConfig(Bind):
    """[speech]: live speech input for IVR ``menu``/``gather`` steps (docs/speech.md).

    ``bind`` is the engine's AudioSocket server (Asterisk connects to it; port 0 = any
    free port); ``advertise_host`` is the address Asterisk dials when it differs from the
    bind host. ``workers`` warm ASR processes per plugin serve that many recognitions at
    once (more queue). ``default_plugin`` serves steps and flows without ``asr:``.
    """

    bind: str = "127.0.0.1:0"
    enabled: bool = True
    advertise_host: str = ""
    workers: int = Field(default=2, ge=1, le=32)
    default_plugin: Literal["pocketsphinx", "vosk"] = "pocketsphinx"


class EngineSection(_Strict):
    instance: Annotated[str, Field(pattern=NAME_PATTERN)] = "engine-1"
    data_dir: str = "var"
    ivr_dir: str = "ivr"
    # Seconds between checks of ivr_dir for changed files (0 = only on SIGHUP
    # or POST /v1/admin/reload).
    ivr_watch_interval_s: float = Field(default=2.0, ge=0, le=3600)
    # Where the switch writes the IVR `record` step's messages, as the switch sees it.
    # Empty: ENGINE_IVR_RECORDINGS_DIR, else the switch_dir of the only
    # [recordings.switches.*] entry (so messages are indexed as recordings), else
    # /var/spool/asterisk/engine-ivr (docs/recordings.md "Voicemail").
    ivr_recordings_dir: Annotated[str, Field(pattern=r"^(/[A-Za-z0-9_./-]*)?$")] = ""

    @field_validator("ivr_recordings_dir")
    @classmethod
    def _no_dot_dot(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("must not contain '..'")
        return value

    # SIGTERM: new originates get 503 "draining"; live calls go on for up to
    # this long, then the engine stops (SIGINT stops at once).
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=86400)


class ClusterConfig(_Strict):
    """``[cluster]``: several engines on one PostgreSQL and Redis (docs/architecture.md
    "Several engines"). Each engine needs its own ``[engine] instance``.

    ``enabled``: off (the default), the engine is alone and owns everything, as before
    leases: it goes on serving through a Redis outage (its outbox holds what Redis has not
    taken). On, every switch link, queue and campaign is owned through a Redis lease, and an
    engine that cannot renew its leases (Redis away, frozen) stops acting for them.
    ``lease_ttl_s``: switch, queue and campaign leases live this long in Redis without a
    renewal (renewed every third of it); a dead engine's leases are taken over within it.
    ``placement``: lease name -> placement key; leases with one key go to one engine. A
    ``switch:<name>`` lease's key is the switch's name; with one switch, every queue and
    campaign lease follows it (only the switch's owner can place their calls).
    """

    enabled: bool = False
    lease_ttl_s: float = Field(default=5.0, ge=1.0, le=60.0)
    placement: dict[str, str] = Field(default_factory=dict)


class CallsConfig(_Strict):
    """``[calls]``: live-call durability and maximum durations (docs/durability.md)."""

    # Registry entries of live calls expire unless refreshed; they must outlive
    # an engine restart, or a restarted engine cannot adopt its calls.
    registry_ttl_s: int = Field(default=3600, ge=60, le=7 * 86400)
    registry_refresh_s: float = Field(default=30.0, ge=1, le=3600)
    # An originate whose reply was lost: how long the engine keeps asking the
    # switch for that exact channel before it decides the call never existed.
    unknown_outcome_window_s: float = Field(default=45.0, ge=1, le=600)
    # The sweeper: calls that overstay are hung up (then ended as interrupted
    # if the switch never confirms). 0 disables a limit.
    max_setup_s: float = Field(default=120.0, ge=0)
    max_ring_s: float = Field(default=300.0, ge=0)
    max_call_s: float = Field(default=14400.0, ge=0)
    sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Storage timeouts: every PostgreSQL and Redis call is bounded.
    storage_timeout_s: float = Field(default=5.0, gt=0, le=120)


class TrunkHealthConfig(_Strict):
    """``[trunk_health]``: how the engine refreshes trunk reachability.

    Asterisk sends PJSIP ContactStatus only when a contact *changes*, so a trunk
    that was already unreachable when the engine connected (or a change lost
    while the link was down) would never be reported. The engine therefore
    also polls (AMI ``PJSIPShowEndpoints``) at link-up and every
    ``poll_interval_s``. FreeSWITCH reports gateways at every resync.
    """

    poll_interval_s: float = Field(default=15.0, ge=0.5, le=3600)
