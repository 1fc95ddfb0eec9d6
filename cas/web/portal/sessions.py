"""Portal sessions: a random token signed in a per-operator cookie, stored as SHA-256
(``web_sessions``), ended on logout, after ``session_max_s`` or ``session_idle_s``; a fresh
token on every login (no fixation)."""

from __future__ import annotations

import contextlib

from sqlalchemy.orm import Session

from cas.billing import accounts as acc_mod
from cas.billing.clock import clock_now
from cas.errors import CasError
from cas.store.models import Account
from cas.web.models import WebSession
from cas.web.portal.visit import PortalUser, Visit, session_cookie_name
from cas.web.security import new_token, sha256_hex

#: Refresh a session's ``last_seen_at_s`` at most this often.
_TOUCH_EVERY_S = 60


def load_user(v: Visit) -> PortalUser | None:
    """The holder of the visit's session cookie, if the session is live (an expired one is
    ended here)."""
    raw = v.request.cookies.get(session_cookie_name(v.op))
    token = v.state.signer.unsign_session(raw)
    if token is None:
        return None
    sha = sha256_hex(token)
    now_s = v.now_s
    settings = v.state.settings
    with v.tenant.store.reader() as s:
        row = s.get(WebSession, sha)
        if row is None or row.ended_at_s is not None:
            return None
        live = now_s < row.expires_at_s and now_s < row.last_seen_at_s + settings.session_idle_s
        number = None
        if row.account_id is not None:
            acc = s.get(Account, row.account_id)
            number = acc.account_number if acc is not None else None
        user = PortalUser(token_sha256=sha, account_id=row.account_id, account_number=number,
                          stage=row.stage, method=row.method,
                          verification_token=row.verification_token)
        touch = live and now_s - row.last_seen_at_s >= _TOUCH_EVERY_S
    if not live:
        end_session(v, sha)
        return None
    if touch:
        with v.tenant.transaction() as s:
            fresh = s.get(WebSession, sha)
            if fresh is not None:
                fresh.last_seen_at_s = now_s
    return user


def end_session(v: Visit, sha: str) -> None:
    """End a portal session and the SMS verification it holds (the code was valid "until the
    end of the session", Uzonline seed)."""
    with v.tenant.transaction() as s:
        row = s.get(WebSession, sha)
        if row is None or row.ended_at_s is not None:
            return
        row.ended_at_s = v.now_s
        if row.verification_token:
            with contextlib.suppress(CasError):  # already gone: nothing left to end
                acc_mod.end_verification(s, token=row.verification_token, at=clock_now(s))


def new_session(s: Session, v: Visit, *, account_id: int | None, stage: str, method: str,
                verification_token: str | None) -> str:
    token = new_token()
    now_s = v.now_s
    s.add(WebSession(token_sha256=sha256_hex(token), account_id=account_id, stage=stage,
                     method=method, verification_token=verification_token,
                     client_ip=v.ip[:64], created_at_s=now_s, last_seen_at_s=now_s,
                     expires_at_s=now_s + v.state.settings.session_max_s))
    return token


def set_session_cookie(v: Visit, token: str) -> None:
    v.set_cookies.append((session_cookie_name(v.op), v.state.signer.sign_session(token),
                          v.state.settings.session_max_s, f"/{v.op}"))


def session_verification_token(v: Visit, token_sha256: str) -> str | None:
    """The SMS verification the session holds now (it may have changed since the visit
    began)."""
    with v.tenant.store.reader() as s:
        row = s.get(WebSession, token_sha256)
        return row.verification_token if row is not None else None
