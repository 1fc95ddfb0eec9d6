"""Web settings and tenants.

A *tenant* is one operator: one subscriber store running one operator profile (a store runs
one profile at a time, ``cas.billing.setup.use_profile``).  One web process may serve several
stores — e.g. the five seed operators on one demo machine — and keeps them apart: an API key
belongs to one operator and only ever reaches that operator's store; the portal lives under
``/<operator>/`` with its own session cookie per operator.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from cas.billing.records import current_profile
from cas.errors import ConfigError, UsageError
from cas.store.engine import Store

#: Minimum length of the cookie-signing secret (bytes).
SECRET_MIN_BYTES = 32
SECRET_ENV = "CAS_WEB_SECRET"


#: Default request-body limit: 1 MiB, far above any API request or portal form.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: The highest body limit that may be configured (1 GiB).
MAX_BODY_LIMIT = 1 << 30
TRUSTED_PROXIES_ENV = "CAS_TRUSTED_PROXIES"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, or ``None`` for anything else (a forwarded header may hold garbage)."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.1, 192.168.0.0/24, ::1"`` -> networks (a bare address is a /32 or /128).
    Empty text: none."""
    nets: list[IPNetwork] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise UsageError(f"trusted proxy {item!r} is not an IP address or network "
                             "(e.g. 127.0.0.1 or 10.0.0.0/8)").with_id(
                "web.trusted_proxy_not_ip", item=f"{item!r}") from exc
    return tuple(nets)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """At most ``limit`` counted attempts per ``window_s`` (a fixed window per key)."""

    limit: int
    window_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    """Everything the app needs besides the tenants.  ``wall_clock`` (seconds since the epoch)
    drives sessions and rate limits; business rules use each store's simulation clock."""

    secret_key: bytes
    secure_cookies: bool = False
    session_idle_s: int = 30 * 60
    session_max_s: int = 12 * 3600
    #: Failed logins (password or SMS code) per account identifier, and per client address.
    login_per_account: RateLimit = RateLimit(limit=5, window_s=15 * 60)
    login_per_ip: RateLimit = RateLimit(limit=30, window_s=15 * 60)
    #: SMS codes sent per account, and per client address.
    sms_per_account: RateLimit = RateLimit(limit=3, window_s=15 * 60)
    sms_per_ip: RateLimit = RateLimit(limit=20, window_s=15 * 60)
    #: Public Chip ID + card lookups per client address (enumeration guard).
    lookup_per_ip: RateLimit = RateLimit(limit=20, window_s=15 * 60)
    wall_clock: Callable[[], float] = field(default=time.time)
    #: Proxies whose ``X-Forwarded-For`` names the client (rate limits and the audit log
    #: count per client address).  Empty: no forwarded header is believed, the peer of the
    #: TCP connection is the client (``cas serve --trusted-proxies``).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: Largest request body accepted (API JSON and portal forms); larger -> 413.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: The pid of this worker process when ``cas serve --workers N`` runs several: every
    #: answer names it (``X-Worker-Pid``), so a spread over the workers can be seen.
    worker_pid: int | None = None

    def __post_init__(self) -> None:
        if len(self.secret_key) < SECRET_MIN_BYTES:
            raise ConfigError(f"the web secret must be at least {SECRET_MIN_BYTES} bytes").with_id(
                "web.web_secret_least_bytes", secret_min_bytes=SECRET_MIN_BYTES)
        if isinstance(self.max_body_bytes, bool) or not 0 < self.max_body_bytes <= MAX_BODY_LIMIT:
            raise UsageError(f"the body limit must be 1 to {MAX_BODY_LIMIT} bytes").with_id(
                "web.body_limit_bytes", max_body_limit=MAX_BODY_LIMIT)

    def is_trusted_proxy(self, address: str) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in net for net in self.trusted_proxies)

    def now_s(self) -> int:
        return int(self.wall_clock())


def load_secret(path: Path | None) -> bytes:
    """The cookie-signing secret: ``$CAS_WEB_SECRET`` (hex), else the file at ``path``
    (created with 32 random bytes, mode 0600, on first use), else a fresh random one (sessions
    then end when the process does)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        try:
            raw = bytes.fromhex(env.strip())
        except ValueError as exc:
            raise ConfigError(f"${SECRET_ENV} must be hex").with_id(
                "web.hex", secret_env=SECRET_ENV) from exc
        if len(raw) < SECRET_MIN_BYTES:
            raise ConfigError(f"${SECRET_ENV} must hold at least {SECRET_MIN_BYTES} bytes").with_id(
                "web.hold_least_bytes", secret_env=SECRET_ENV, secret_min_bytes=SECRET_MIN_BYTES)
        return raw
    if path is None:
        return secrets.token_bytes(SECRET_MIN_BYTES)
    if path.exists():
        raw = path.read_bytes()
        if len(raw) < SECRET_MIN_BYTES:
            raise ConfigError(f"{path}: the web secret is shorter than {SECRET_MIN_BYTES} bytes").with_id(
                "web.web_secret_shorter_bytes", path=path, secret_min_bytes=SECRET_MIN_BYTES)
        return raw
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = secrets.token_bytes(SECRET_MIN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return raw


class _WriterQueue:
    """The queue of a SQLite store's writers: a lock between the threads of this process, then
    an ``flock`` on a file beside the database between processes (``cas serve --workers N``).

    SQLite admits one writer at a time anyway; waiting on a lock the kernel hands on in order
    is much kinder to the tail latency than every writer retrying the database lock in its
    busy handler (which sleeps up to 100 ms between tries).  The file is opened once per
    process: an ``flock`` belongs to an open file, so a descriptor inherited across ``fork``
    would not keep the workers apart."""

    def __init__(self) -> None:
        self._threads = threading.Lock()
        self._path: Path | None = None
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self, database: Path | None) -> Iterator[None]:
        """Hold the queue of the SQLite file ``database`` (``None``, in memory: this process
        only)."""
        with self._threads:
            if database is None:
                yield
                return
            fd = self._file(database)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self, database: Path) -> int:
        path = database.with_name(database.name + ".writers")
        if self._fd is None or self._pid != os.getpid() or self._path != path:
            self._path = path
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """One operator's store.  ``key`` is the profile key (``atvplus``, ``mts`` ...)."""

    key: str
    name: str
    store: Store
    writers: _WriterQueue = field(default_factory=_WriterQueue, compare=False, repr=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction on the store.  On SQLite the writers queue first, in this
        process and across the processes of ``cas serve --workers N``
        (:class:`_WriterQueue`); other programs writing the same file still meet the busy
        timeout.  PostgreSQL writers run concurrently, with row locks."""
        if self.store.dialect == "sqlite":
            with self.writers.held(self.store.sqlite_file), self.store.transaction() as session:
                yield session
        else:
            with self.store.transaction() as session:
                yield session


def tenant_of(store: Store) -> Tenant:
    """The tenant a store is: its operator profile names it (ConfigError if it has none)."""
    with store.reader() as session:
        profile = current_profile(session)
    return Tenant(key=profile.key, name=profile.name, store=store)


class Tenants:
    """The operators one process serves, by key."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self._by_key: dict[str, Tenant] = {}
        for t in tenants:
            if t.key in self._by_key:
                raise UsageError(f"two stores run the same operator profile {t.key!r}").with_id(
                    "web.two_stores_run_same", key=f"{t.key!r}")
            self._by_key[t.key] = t

    def get(self, key: str) -> Tenant | None:
        return self._by_key.get(key)

    def all(self) -> list[Tenant]:
        return list(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)
