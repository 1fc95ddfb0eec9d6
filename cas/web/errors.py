"""Errors of the web layer and the one mapping from our typed errors to HTTP answers.

Every API error is ``{"error": {"code": ..., "category": ..., "message": ...}}``
(``docs/web.md`` lists every code).  ``code`` is the most specific stable identifier we have:
the domain's own ``code`` (``UNKNOWN_CARD``, ``SWITCH_LOCKED``, ``NEGATIVE_AMOUNT`` ...) when
the billing or store layer refused, or one of the web layer's codes below.  ``category`` is
the coarse class a client can switch on without knowing every code.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from cas.i18n import Translator

# Categories (stable): the HTTP status each one is answered with.
CATEGORY_STATUS: dict[str, int] = {
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "RULE_REFUSED": 409,
    "INVALID_INPUT": 422,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "UNAVAILABLE": 503,
}

#: The web layer's own codes: code -> (category, meaning).  Domain codes come on top.
WEB_CODES: dict[str, tuple[str, str]] = {
    "BAD_REQUEST": ("BAD_REQUEST", "the body is not JSON, or not the media type expected"),
    "INVALID_REQUEST": ("INVALID_INPUT",
                        "a field is missing, of the wrong type, out of range, or unknown"),
    "IDEMPOTENCY_KEY_REQUIRED": ("INVALID_INPUT", "POST /payments without Idempotency-Key"),
    "API_KEY_REQUIRED": ("UNAUTHENTICATED", "no X-API-Key header"),
    "INVALID_API_KEY": ("UNAUTHENTICATED", "the API key is malformed, unknown or revoked"),
    "CSRF_FAILED": ("FORBIDDEN", "a portal form came without its CSRF token, or a wrong one"),
    "NOT_FOUND": ("NOT_FOUND", "no such route, or no such record"),
    "METHOD_NOT_ALLOWED": ("METHOD_NOT_ALLOWED", "the route exists but not for this method"),
    "IDEMPOTENCY_KEY_REUSED": ("CONFLICT",
                               "this Idempotency-Key was used before with a different body"),
    "CONFLICT": ("CONFLICT", "the change would break a uniqueness rule"),
    "RULE_VIOLATION": ("RULE_REFUSED", "a subscriber rule refused the operation"),
    "PAYLOAD_TOO_LARGE": ("PAYLOAD_TOO_LARGE",
                          "the request body is larger than the server's limit"),
    "RATE_LIMITED": ("RATE_LIMITED", "too many attempts; retry after Retry-After seconds"),
    "NOT_CONFIGURED": ("UNAVAILABLE", "the store has no operator profile yet"),
    "STORE_UNAVAILABLE": ("UNAVAILABLE", "the database could not be reached or failed"),
    "INTERNAL_ERROR": ("INTERNAL_ERROR", "a bug: reported with a request id in the log"),
}


class WebError(CasError):
    """An error the web layer raises itself; carries its HTTP category and stable code."""

    def __init__(self, message: str, *, code: str, category: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.code = code
        self.category = category or WEB_CODES.get(code, ("BAD_REQUEST", ""))[0]
        self.headers = headers or {}
        super().__init__(message)


class Unauthenticated(WebError):
    def __init__(self, message: str, *, code: str = "INVALID_API_KEY") -> None:
        super().__init__(message, code=code, category="UNAUTHENTICATED",
                         headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


class Forbidden(WebError):
    def __init__(self, message: str, *, code: str = "CSRF_FAILED") -> None:
        super().__init__(message, code=code, category="FORBIDDEN")


class RateLimited(WebError):
    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = max(int(retry_after_s), 1)
        super().__init__("too many attempts; try again later", code="RATE_LIMITED",
                         category="RATE_LIMITED",
                         headers={"Retry-After": str(self.retry_after_s)})


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorAnswer:
    status: int
    code: str
    category: str
    message: str
    headers: dict[str, str]
    #: The message in Russian, when the error names its catalogue message (``with_id``).
    message_ru: str | None = None

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "category": self.category,
                                    "message": self.message}
        if self.message_ru is not None:
            error["message_ru"] = self.message_ru
        return {"error": error}


def _in_russian(exc: BaseException) -> str | None:
    """The error's line from the Russian catalogue, or ``None`` when it names no message."""
    if not isinstance(exc, CasError) or exc.message_id is None:
        return None
    text = Translator("ru").error(exc.message_id, exc.message_params)
    return None if text is None else text.splitlines()[0][:500]


def classify(exc: BaseException) -> ErrorAnswer:
    """Our typed error -> status, code, category (first match wins: most specific first)."""
    code = getattr(exc, "code", None)
    message = str(exc) or type(exc).__name__
    message_ru = _in_russian(exc)
    if isinstance(exc, WebError):
        category, headers = exc.category, exc.headers
    elif isinstance(exc, ValidationError):
        category, headers = "INVALID_INPUT", {}
    elif isinstance(exc, NotFoundError):
        category, headers = "NOT_FOUND", {}
        code = code or "NOT_FOUND"
    elif isinstance(exc, ConflictError):
        category, headers = "CONFLICT", {}
        code = code or "CONFLICT"
    elif isinstance(exc, BillingError):
        category, headers = "RULE_REFUSED", {}
    elif isinstance(exc, UsageError):
        category, headers = "INVALID_INPUT", {}
        code = code or "INVALID_REQUEST"
    elif isinstance(exc, ConfigError):
        category, headers = "UNAVAILABLE", {}
        code, message = "NOT_CONFIGURED", message
    elif isinstance(exc, StoreError):
        # Database messages may name tables and values: say only that the store failed.
        category, headers = "UNAVAILABLE", {}
        code, message, message_ru = ("STORE_UNAVAILABLE",
                                     "the subscriber store failed; try again", None)
    else:
        category, headers = "INTERNAL_ERROR", {}
        code, message, message_ru = "INTERNAL_ERROR", "internal error", None
    return ErrorAnswer(status=CATEGORY_STATUS[category], code=str(code or category),
                       category=category, message=message.splitlines()[0][:500],
                       headers=dict(headers), message_ru=message_ru)
