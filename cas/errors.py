"""One exception tree for the whole project, rooted at :class:`CasError`.

Every layer has its own branch; third-party exceptions are wrapped where they enter our code
(``raise OurError(...) from exc``).  Messages are one line, safe to show to a user, and never
contain key bytes.
"""

from __future__ import annotations

from typing import Self


class CasError(Exception):
    """Root of every error cas-sim raises on purpose.

    ``str(exc)`` is the English line.  A raiser that also names the message in the command
    lines' catalogue (``raise NotFound(f"unknown card {n}").with_id("unknown_card",
    card=n)``: the key ``errors.unknown_card`` of ``cas/i18n/locales``) gets it printed in
    the reader's language; without an id a Russian reader is told the line is untranslated.
    """

    #: Process exit code the CLIs use for this kind of error.
    exit_code: int = 1
    #: The message's id in the catalogue (``errors.<id>``) and its parameters, if given.
    message_id: str | None = None
    message_params: dict[str, object] = {}  # noqa: RUF012 - replaced, never mutated

    def with_id(self, message_id: str, /, **params: object) -> Self:
        """Name this error's message in the catalogue; returns the error for ``raise``."""
        self.message_id = message_id
        self.message_params = params
        return self

    def with_message_of(self, other: BaseException, /) -> Self:
        """Say ``other``'s catalogue message, when it names one: for an error that wraps
        another and carries its line (``raise PeerError(str(exc)) ... from exc``)."""
        if isinstance(other, CasError) and other.message_id is not None:
            self.message_id = other.message_id
            self.message_params = other.message_params
        return self


# --- usage / configuration ------------------------------------------------------------------
class UsageError(CasError):
    """Bad command-line arguments or bad configuration values."""

    exit_code = 2


class TimeRangeError(UsageError):
    """A time or duration the wire formats cannot carry (``cas.wiretime``): refused before
    anything is written.  ``code`` is ``"TIME_OUT_OF_RANGE"`` for the API."""

    code = "TIME_OUT_OF_RANGE"


class ConfigError(CasError):
    """A configuration or lineup file is missing or invalid."""

    exit_code = 2


# --- formats ---------------------------------------------------------------------------------
class FormatError(CasError):
    """Bytes that do not parse as the format they claim to be.

    ``path`` names the field where parsing failed (e.g. ``"card_record.entitlements[3].end"``).
    """

    exit_code = 3

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ChecksumError(FormatError):
    """A CRC or integrity check did not match."""


# --- crypto ----------------------------------------------------------------------------------
class CryptoError(CasError):
    """Key handling failed (bad key file, wrong key length, ...)."""

    exit_code = 4


class AuthenticationError(CryptoError):
    """A MAC/tag or key-wrap integrity check failed.  Says nothing about which check."""


# --- card --------------------------------------------------------------------------------------
class CardError(CasError):
    """Anything that goes wrong talking to a smart card."""

    exit_code = 5


class CardTransportError(CardError):
    """The reader or transport failed (PC/SC error, vpcd socket closed, no reader)."""


class NoCardError(CardTransportError):
    """No card in the reader (or no reader at all)."""


class StatusWordError(CardError):
    """The card answered with a status word other than 9000.

    Carries ``sw`` (int, e.g. 0x6982), ``sw1``, ``sw2`` and the response ``data``.
    """

    def __init__(self, sw: int, data: bytes = b"", message: str | None = None) -> None:
        self.sw = sw
        self.sw1 = sw >> 8
        self.sw2 = sw & 0xFF
        self.data = data
        super().__init__(message or f"card returned status word {sw:04X}")


# --- store / billing -------------------------------------------------------------------------
class StoreError(CasError):
    """Database-level failure (connection, migration, integrity).

    ``code`` is a stable machine-readable identifier (the API answers with it).
    """

    exit_code = 6
    default_code = "STORE_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code or self.default_code
        super().__init__(message)


class NotFoundError(StoreError):
    """A looked-up account, card, box, package or payment does not exist."""

    default_code = "NOT_FOUND"


class ConflictError(StoreError):
    """Would violate uniqueness (duplicate payment id, account number, ...)."""

    default_code = "CONFLICT"


class BillingError(CasError):
    """A subscriber rule refused the operation (insufficient balance, switch lock, ...).

    ``code`` is a stable machine-readable identifier such as ``"SWITCH_LOCKED"``.
    """

    exit_code = 7

    def __init__(self, message: str, *, code: str = "RULE_VIOLATION") -> None:
        self.code = code
        super().__init__(message)


class ValidationError(BillingError):
    """Input that is well-typed but not acceptable (negative amount, malformed SMS, ...)."""

    def __init__(self, message: str, *, code: str = "INVALID_INPUT") -> None:
        super().__init__(message, code=code)


# --- transport streams / STB ------------------------------------------------------------------
class StreamError(CasError):
    """A transport stream cannot be read at all (not TS, unreadable file)."""

    exit_code = 8


# --- SimulCrypt ------------------------------------------------------------------------------
class ProtocolError(CasError):
    """SimulCrypt protocol violation.  ``error_status`` is the TS 103 197 code to answer with."""

    exit_code = 9

    def __init__(self, message: str, *, error_status: int = 0x7000) -> None:
        self.error_status = error_status
        super().__init__(message)


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""
