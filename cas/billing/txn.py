"""The frame of every domain function: the SAVEPOINT it runs in, the operator profile it
reads, and the account row it locks.

Nothing here commits; callers run inside one transaction (see ``cas.store.engine``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cas.billing.profile import OperatorProfile, parse_profile
from cas.errors import ConfigError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account
from cas.store.repo import get_setting
from cas.text import is_ascii_digits

DAY_S = 86_400
PROFILE_KEY = "operator.profile"
PROFILE_TOML_KEY = "operator.profile_toml"

P = ParamSpec("P")
R = TypeVar("R")


def atomic(fn: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
    """Run a domain function inside a SAVEPOINT: if it raises, none of its writes survive,
    even when the caller goes on to commit other work.  Integrity errors (a unique key
    raced by a concurrent writer) become :class:`RecordConflict`."""

    @functools.wraps(fn)
    def wrapper(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with session.begin_nested():
                return fn(session, *args, **kwargs)
        except IntegrityError as exc:
            text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            code = "DUPLICATE_PAYMENT" if "payment_id" in text else "CONFLICT"
            raise RecordConflict(f"conflicting change: {text}", code=code).with_id(
                "billing.conflicting_change", text=text) from exc

    return wrapper



# --- profile ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _parse_cached(text: str) -> OperatorProfile:
    return parse_profile(text, source="store profile")


def current_profile(session: Session) -> OperatorProfile:
    """The operator profile this store runs (set by :func:`cas.billing.setup.use_profile`).

    Read once per session (``session.info``): a transaction sees one profile throughout."""
    cached = session.info.get(_PROFILE_INFO)
    if isinstance(cached, OperatorProfile):
        return cached
    profile = profile_of_text(get_setting(session, PROFILE_TOML_KEY))
    session.info[_PROFILE_INFO] = profile
    return profile


def profile_of_text(text: str | None) -> OperatorProfile:
    """The profile from the text of its ``settings`` row (read by the caller, e.g. in the
    same statement as other data); parsed once per process and text."""
    if text is None:
        raise ConfigError("this store has no operator profile yet: run `cas operator use NAME`"
                          ).with_id("billing.store_no_operator_profile")
    return _parse_cached(text)


_PROFILE_INFO = "cas.billing.profile"


def forget_profile(session: Session) -> None:
    session.info.pop(_PROFILE_INFO, None)



# --- accounts ---------------------------------------------------------------------------------
def lock_account(session: Session, account_id: int) -> Account:
    """Load an account row with ``SELECT … FOR UPDATE`` (fresh values, row locked on PostgreSQL;
    SQLite write transactions are already exclusive)."""
    acc = session.execute(
        select(Account).where(Account.id == account_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if acc is None:
        raise RecordNotFound("unknown account", code="UNKNOWN_ACCOUNT").with_id(
            "billing.unknown_account")
    return acc


def account_by_number(session: Session, account_number: str) -> Account:
    text = str(account_number).strip()
    # Account numbers are ASCII digits: anything else cannot match (and a U+0000 would not
    # even reach PostgreSQL).
    acc = session.execute(
        select(Account).where(Account.account_number == text)
    ).scalar_one_or_none() if is_ascii_digits(text) else None
    if acc is None:
        raise RecordNotFound(f"unknown account {account_number!r}", code="UNKNOWN_ACCOUNT").with_id(
            "unknown_account", ref=account_number)
    return acc


__all__ = ["DAY_S", "PROFILE_KEY", "PROFILE_TOML_KEY", "account_by_number", "atomic",
           "current_profile", "forget_profile", "lock_account"]
