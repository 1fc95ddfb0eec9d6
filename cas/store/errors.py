"""Store errors that carry a stable machine-readable ``code`` (like :class:`BillingError`).

They subclass the shared :class:`~cas.errors.NotFoundError` / :class:`~cas.errors.ConflictError`
so callers may catch either; the API layer answers with ``code``.
"""

from __future__ import annotations

from cas.errors import ConflictError, NotFoundError, StoreError


class RecordNotFound(NotFoundError):
    """A looked-up record does not exist (``code`` e.g. ``"UNKNOWN_CARD"``)."""

    def __init__(self, message: str, *, code: str = "NOT_FOUND") -> None:
        super().__init__(message, code=code)


class RecordConflict(ConflictError):
    """The change would break a uniqueness rule (``code`` e.g. ``"DUPLICATE_PAYMENT"``)."""

    def __init__(self, message: str, *, code: str = "CONFLICT") -> None:
        super().__init__(message, code=code)


class StoreMissing(StoreError):
    """The data dir (or database) holds no store, and the command only opens an existing one
    (``code`` ``"NO_STORE"``): a mistyped data dir must not become a new, empty store."""

    default_code = "NO_STORE"
