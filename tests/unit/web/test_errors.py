"""One mapping from our typed errors to HTTP status, stable code and category."""

from __future__ import annotations

import pytest

from cas.errors import (
    BillingError,
    CasError,
    ConfigError,
    ConflictError,
    NotFoundError,
    StoreError,
    UsageError,
    ValidationError,
)
from cas.store.errors import RecordConflict, RecordNotFound
from cas.web.errors import (
    CATEGORY_STATUS,
    WEB_CODES,
    Forbidden,
    RateLimited,
    Unauthenticated,
    classify,
)


@pytest.mark.parametrize(("exc", "status", "code", "category"), [
    (ValidationError("amount is negative", code="NEGATIVE_AMOUNT"), 422, "NEGATIVE_AMOUNT",
     "INVALID_INPUT"),
    (RecordNotFound("unknown card 1", code="UNKNOWN_CARD"), 404, "UNKNOWN_CARD", "NOT_FOUND"),
    (NotFoundError("gone"), 404, "NOT_FOUND", "NOT_FOUND"),
    (RecordConflict("dup", code="DUPLICATE_PAYMENT"), 409, "DUPLICATE_PAYMENT", "CONFLICT"),
    (ConflictError("dup"), 409, "CONFLICT", "CONFLICT"),
    (BillingError("30-day rule", code="SWITCH_LOCKED"), 409, "SWITCH_LOCKED", "RULE_REFUSED"),
    (BillingError("no"), 409, "RULE_VIOLATION", "RULE_REFUSED"),
    (UsageError("bad"), 422, "INVALID_REQUEST", "INVALID_INPUT"),
    (ConfigError("no profile"), 503, "NOT_CONFIGURED", "UNAVAILABLE"),
    (StoreError("database error: relation accounts ... SELECT secret"), 503,
     "STORE_UNAVAILABLE", "UNAVAILABLE"),
    (Unauthenticated("no key", code="API_KEY_REQUIRED"), 401, "API_KEY_REQUIRED",
     "UNAUTHENTICATED"),
    (Forbidden("csrf"), 403, "CSRF_FAILED", "FORBIDDEN"),
    (RateLimited(42), 429, "RATE_LIMITED", "RATE_LIMITED"),
    (RuntimeError("boom at 0xdeadbeef"), 500, "INTERNAL_ERROR", "INTERNAL_ERROR"),
])
def test_classify(exc: BaseException, status: int, code: str, category: str) -> None:
    ans = classify(exc)
    assert (ans.status, ans.code, ans.category) == (status, code, category)
    assert ans.body() == {"error": {"code": code, "category": category, "message": ans.message}}


def test_store_and_internal_errors_hide_their_text() -> None:
    assert "SELECT" not in classify(StoreError("SELECT * FROM accounts")).message
    assert "deadbeef" not in classify(RuntimeError("at 0xdeadbeef")).message


def test_headers_and_retry_after() -> None:
    assert classify(RateLimited(0)).headers == {"Retry-After": "1"}
    assert "WWW-Authenticate" in classify(Unauthenticated("x")).headers


def test_messages_are_one_line() -> None:
    assert classify(ValidationError("one\ntwo", code="X")).message == "one"


def test_every_category_has_a_status_and_every_code_a_category() -> None:
    assert all(cat in CATEGORY_STATUS for cat, _ in WEB_CODES.values())
    assert issubclass(Unauthenticated, CasError)


def test_an_error_that_names_its_message_answers_in_russian_too() -> None:
    """``message_ru`` beside ``message`` when the error names its catalogue message; absent
    when it does not, and never for the store's or an internal error (their text is hidden)."""
    named = RecordNotFound("unknown card 0000000099", code="UNKNOWN_CARD").with_id(
        "unknown_card", card="0000000099")
    assert classify(named).body() == {"error": {
        "code": "UNKNOWN_CARD", "category": "NOT_FOUND", "message": "unknown card 0000000099",
        "message_ru": "карта 0000000099 не найдена"}}
    hidden = StoreError("SELECT secret").with_id("billing.unknown_account")
    for unnamed in (RecordNotFound("gone"), hidden):
        error = classify(unnamed).body()["error"]
        assert isinstance(error, dict) and "message_ru" not in error
