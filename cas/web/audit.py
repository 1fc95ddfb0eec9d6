"""The audit log: every change made through the API or the portal, with who and when.

A row is written in the same transaction as the change it describes, so a change that rolled
back leaves no audit row and a committed change always has one.  ``detail`` is JSON of the
request's business fields; secrets (passwords, codes, keys) are never passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cas.store.fastsql import HotStatement
from cas.store.repo import to_s
from cas.web.models import WebAuditEntry

#: Keys never written to ``detail``, whatever a caller passes.
_SECRET_KEYS = frozenset({"password", "new_password", "current_password", "code", "token",
                          "verification", "api_key", "secret", "csrf_token"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who acts: an API key (``kind="api_key"``, ``name`` = key id), a logged-in subscriber
    (``"subscriber"``, account number) or an anonymous visitor (``"public"``)."""

    kind: str
    name: str
    client_ip: str = ""


def _values(actor: Actor, action: str, target: str, *, wall_s: int, sim_at: datetime,
            detail: Mapping[str, Any] | None) -> dict[str, Any]:
    clean = {k: v for k, v in (detail or {}).items() if k not in _SECRET_KEYS}
    return {"at_s": wall_s, "sim_at_s": to_s(sim_at), "actor_kind": actor.kind,
            "actor": actor.name[:64], "client_ip": actor.client_ip[:64], "action": action[:48],
            "target": str(target)[:64],
            "detail": json.dumps(clean, sort_keys=True, default=str, ensure_ascii=False)}


def record(session: Session, actor: Actor, action: str, target: str, *, wall_s: int,
           sim_at: datetime, detail: Mapping[str, Any] | None = None) -> None:
    session.add(WebAuditEntry(**_values(actor, action, target, wall_s=wall_s, sim_at=sim_at,
                                        detail=detail)))


_AUDIT_COLUMNS = ("at_s", "sim_at_s", "actor_kind", "actor", "client_ip", "action", "target",
                  "detail")
_INSERT = HotStatement(insert(WebAuditEntry).values({c: bindparam(c) for c in _AUDIT_COLUMNS}),
                       _AUDIT_COLUMNS)


def record_core(conn: Connection, actor: Actor, action: str, target: str, *, wall_s: int,
                sim_at: datetime, detail: Mapping[str, Any] | None = None) -> None:
    """:func:`record` as one Core ``INSERT`` on the transaction's connection (the payment's
    hot path, which writes no ORM objects)."""
    _INSERT.run(conn, _values(actor, action, target, wall_s=wall_s, sim_at=sim_at,
                                  detail=detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditView:
    id: int
    at_s: int
    sim_at_s: int
    actor_kind: str
    actor: str
    client_ip: str
    action: str
    target: str
    detail: dict[str, Any]


def entries(session: Session, *, target: str | None = None, after_id: int = 0,
            limit: int = 100) -> list[AuditView]:
    stmt = select(WebAuditEntry).where(WebAuditEntry.id > after_id)
    if target is not None:
        stmt = stmt.where(WebAuditEntry.target == target)
    rows = session.execute(stmt.order_by(WebAuditEntry.id).limit(limit)).scalars()
    return [AuditView(id=r.id, at_s=r.at_s, sim_at_s=r.sim_at_s, actor_kind=r.actor_kind,
                      actor=r.actor, client_ip=r.client_ip, action=r.action, target=r.target,
                      detail=json.loads(r.detail or "{}")) for r in rows]
