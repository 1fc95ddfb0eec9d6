"""What every operator-API handler shares, declared once: the authenticated caller
(``Ctx``: the ``X-API-Key`` check, its operator's store, the audit actor), one read or one
audited write transaction on that store, and the path and query parameter types.

Thin by design: a handler takes ``ctx: Ctx``, calls one domain function through
:meth:`ApiContext.read` or :meth:`ApiContext.write` (the write records one audit row in the
same transaction), and turns the result into a response model.  Refusals are our typed
errors; the app's exception handlers answer them (:func:`cas.web.errors.classify`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cas.billing.clock import CLOCK_KEY, clock_now
from cas.billing.txn import PROFILE_TOML_KEY
from cas.store.fastsql import HotStatement
from cas.store.models import Setting
from cas.web import audit
from cas.web.errors import Unauthenticated
from cas.web.models import WebApiKey
from cas.web.schemas import AccountNumber, ChipIdHex
from cas.web.security import parse_api_key, same_digest
from cas.web.settings import Tenant
from cas.web.state import WebState, client_ip, web_state

T = TypeVar("T")
R = TypeVar("R")

API_PREFIX = "/api/v1"
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="cas.<operator>.<key id>.<secret> "
                                          "(`cas serve apikey create`)")
#: u32 wire times (docs/architecture.md): bounds for ``at_s`` query parameters.
MAX_TIME_S = 0xFFFF_FFFF
#: Refresh ``web_api_keys.last_used_at_s`` at most this often (one write, not one per call).
_LAST_USED_EVERY_S = 60


#: The settings every request reads (the store's clock; the operator profile), fetched with
#: one statement into the session's identity map, where :func:`clock_now` and
#: :func:`cas.billing.txn.current_profile` find them without another round trip.
_REQUEST_SETTINGS = select(Setting).where(Setting.key.in_([CLOCK_KEY, PROFILE_TOML_KEY]))
#: The key check reads four columns: a Core statement run on the driver's cursor (no ORM
#: session, no SQLAlchemy result), on an autocommit connection on PostgreSQL.
_KEY_ROW = HotStatement(
    select(WebApiKey.operator, WebApiKey.secret_sha256, WebApiKey.revoked_at_s,
           WebApiKey.last_used_at_s).where(WebApiKey.key_id == bindparam("key_id")),
    ("key_id",))


def _request_clock(session: Session) -> datetime:
    # The identity map holds objects weakly: the rows stay referenced for the session's life.
    session.info["cas.web.request_settings"] = session.execute(_REQUEST_SETTINGS).scalars().all()
    return clock_now(session)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """The authenticated caller: its operator's store and the audit actor."""

    tenant: Tenant
    key_id: str
    actor: audit.Actor
    wall_s: int

    def read(self, fn: Callable[[Session, datetime], T]) -> T:
        """``fn(session, store clock)`` in one read-only session."""
        with self.tenant.store.reader() as s:
            return fn(s, _request_clock(s))

    def read_core(self, fn: Callable[[Connection], T]) -> T:
        """``fn(connection)`` with SQLAlchemy Core on a read connection, for hot paths that
        need neither the ORM nor the store clock and read with ONE statement (e.g. the
        balance): on PostgreSQL the connection is in autocommit
        (:attr:`cas.store.engine.Store.statement_engine`)."""
        with self.tenant.store.statement_engine.connect() as conn:
            return fn(conn)

    def write(self, action: str, target: str | Callable[[T], str],
              fn: Callable[[Session, datetime], T], detail: dict[str, Any] | None = None,
              *, replay: Callable[[Session], R | None] | None = None) -> T | R:
        """One transaction: the domain call and its audit row commit together or not at all.
        ``target`` is the record changed, or a function of the result that names it.

        ``replay`` is asked first, in the same transaction: an answer from it (a repeated
        idempotent request) is returned as it is, and nothing is written."""
        with self.tenant.transaction() as s:
            if replay is not None:
                earlier = replay(s)
                if earlier is not None:
                    return earlier
            at = _request_clock(s)
            result = fn(s, at)
            name = target(result) if callable(target) else target
            audit.record(s, self.actor, action, name, wall_s=self.wall_s, sim_at=at,
                         detail=detail)
        return result


def check_api_key(state: WebState, api_key: str | None) -> tuple[Tenant, str, int]:
    """Authenticate ``X-API-Key``: the operator named in the key must be served here, the key
    id known in that operator's store, not revoked, and the secret's digest equal.  The
    key's tenant, its key id and the wall clock's second; :class:`Unauthenticated` if not.

    One indexed statement (and, at most once a minute per key, the ``last_used_at_s``
    update); shared by :func:`api_context` and the balance read's fast lane
    (:mod:`cas.web.fastlane`)."""
    if not api_key:
        raise Unauthenticated("an X-API-Key header is required", code="API_KEY_REQUIRED").with_id(
            "web.x_api_key_header")
    presented = parse_api_key(api_key)
    tenant = state.tenants.get(presented.operator) if presented is not None else None
    if presented is None or tenant is None:
        raise Unauthenticated("invalid API key").with_id("web.invalid_api_key")
    now_s = state.settings.now_s()
    with tenant.store.statement_engine.connect() as conn:
        row = _KEY_ROW.first(conn, {"key_id": presented.key_id})
    if row is None:
        raise Unauthenticated("invalid API key").with_id("web.invalid_api_key")
    operator, secret_sha256, revoked_at_s, last_used_at_s = row
    if not (operator == presented.operator and revoked_at_s is None
            and same_digest(secret_sha256, presented.secret_sha256)):
        raise Unauthenticated("invalid API key").with_id("web.invalid_api_key")
    if last_used_at_s is None or now_s - last_used_at_s >= _LAST_USED_EVERY_S:
        with tenant.transaction() as s:
            s.execute(update(WebApiKey).where(WebApiKey.key_id == presented.key_id)
                      .values(last_used_at_s=now_s))
    return tenant, presented.key_id, now_s


async def api_context(request: Request, api_key: Annotated[str | None, Security(API_KEY_HEADER)]
                      = None) -> ApiContext:
    """The caller of ``X-API-Key`` (:func:`check_api_key`).

    A coroutine on purpose: the check is one indexed statement, and running it in the event
    loop saves the two thread hops a plain function costs (one to the thread pool, one back)
    on every API call.  Each worker process serves one request at a time either way."""
    tenant, key_id, now_s = check_api_key(web_state(request), api_key)
    return ApiContext(tenant=tenant, key_id=key_id,
                      actor=audit.Actor(kind="api_key", name=key_id,
                                        client_ip=client_ip(request)),
                      wall_s=now_s)


Ctx = Annotated[ApiContext, Depends(api_context)]


def at_or_now(at_s: int | None, now: datetime) -> datetime:
    return datetime.fromtimestamp(at_s, UTC) if at_s is not None else now


def serial_text(serial: int) -> str:
    return f"{serial:010d}"


AccountPath = Annotated[AccountNumber, Path(description="Personal account number.")]
SerialPath = Annotated[int, Path(ge=1, le=0xFFFF_FFFF, description="Smart-card number.")]
ChipPath = Annotated[ChipIdHex, Path(description="Chip ID, 8 hex digits.")]
PackagePath = Annotated[str, Path(min_length=1, max_length=64, description="Package code or id.")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
AtS = Annotated[int | None, Query(ge=0, le=MAX_TIME_S, description="Moment (default: the "
                                  "store's clock).")]
