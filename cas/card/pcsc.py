"""PC/SC access to a card through pcscd, using pyscard's ``smartcard.scard`` layer.

This is the only module that imports pyscard.  It offers the :class:`~cas.card.transport.
CardTransport` contract over a real reader (:class:`PcscTransport`, T=1, shared mode) plus
:func:`list_readers` and :func:`wait_for_card`.  PC/SC return codes (PC/SC Workgroup
specification part 5, ``SCARD_E_*``/``SCARD_W_*``) become our :class:`~cas.errors.CardError`
subclasses here, where they enter our code; status words are judged by
:class:`~cas.card.client.CardClient`, exactly as for the in-process transport.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from smartcard import scard

from cas.card.transport import ObservableTransport
from cas.errors import CardTransportError, NoCardError

_U32 = 0xFFFFFFFF


def _code(name: str) -> int:
    return int(getattr(scard, name)) & _U32


_SUCCESS = _code("SCARD_S_SUCCESS")
_TIMEOUT = _code("SCARD_E_TIMEOUT")
_NO_CARD_CODES = frozenset(
    _code(n) for n in (
        "SCARD_E_NO_SMARTCARD", "SCARD_W_REMOVED_CARD", "SCARD_W_UNPOWERED_CARD",
        "SCARD_W_UNRESPONSIVE_CARD", "SCARD_E_NO_READERS_AVAILABLE", "SCARD_E_UNKNOWN_READER",
        "SCARD_E_READER_UNAVAILABLE",
    )
)
_NO_SERVICE_CODES = frozenset(_code(n) for n in ("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED"))
_STATE_PRESENT = int(scard.SCARD_STATE_PRESENT)
_STATE_MUTE = int(scard.SCARD_STATE_MUTE)
_STATE_UNAWARE = int(scard.SCARD_STATE_UNAWARE)


class PcscError(CardTransportError):
    """A PC/SC call failed; ``code`` is the ``SCARD_*`` return code (unsigned)."""

    def __init__(self, message: str, *, code: int) -> None:
        self.code = code
        super().__init__(message)


class PcscNoCardError(NoCardError):
    """No card (or no such reader) — the PC/SC flavour of :class:`NoCardError`."""

    def __init__(self, message: str, *, code: int) -> None:
        self.code = code
        super().__init__(message)


def _message(code: int) -> str:
    try:
        text = str(scard.SCardGetErrorMessage(code)).strip().rstrip(".")
    except Exception:  # pyscard's message table is best effort
        text = "PC/SC error"
    return f"{text} (0x{code:08X})"


def _check(rc: Any, what: str) -> None:
    code = int(rc) & _U32
    if code == _SUCCESS:
        return
    if code in _NO_CARD_CODES:
        raise PcscNoCardError(f"{what}: {_message(code)}", code=code).with_id(
            "card.error", what=what, code=_message(code))
    if code in _NO_SERVICE_CODES:
        raise PcscError(f"{what}: PC/SC service (pcscd) not available: {_message(code)}",
                        code=code).with_id(
            "card.pc_sc_service_pcscd", what=what, code=_message(code))
    raise PcscError(f"{what}: {_message(code)}", code=code).with_id(
        "card.error", what=what, code=_message(code))


class PcscContext:
    """An ``SCardEstablishContext`` handle; released on :meth:`close` / context exit."""

    def __init__(self) -> None:
        rc, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(rc, "establishing a PC/SC context")
        self.handle: Any = handle

    def readers(self) -> list[str]:
        rc, names = scard.SCardListReaders(self.handle, [])
        if int(rc) & _U32 == _code("SCARD_E_NO_READERS_AVAILABLE"):
            return []
        _check(rc, "listing readers")
        return [str(n) for n in names]

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def list_readers() -> list[str]:
    """Names of the PC/SC readers pcscd offers (empty list if none)."""
    with PcscContext() as ctx:
        return ctx.readers()


def card_states() -> dict[str, bytes | None]:
    """Each reader's ATR if a card is present in it, else ``None``."""
    with PcscContext() as ctx:
        names = ctx.readers()
        if not names:
            return {}
        rc, states = scard.SCardGetStatusChange(ctx.handle, 0,
                                                [(n, _STATE_UNAWARE) for n in names])
        _check(rc, "reading reader states")
        out: dict[str, bytes | None] = {}
        for name, event_state, atr in states:
            present = event_state & _STATE_PRESENT and not event_state & _STATE_MUTE
            out[str(name)] = bytes(atr) if present else None
        return out


def _match_reader(names: list[str], wanted: str | None) -> list[str]:
    if wanted is None:
        return names
    if wanted in names:
        return [wanted]
    # A prefix or substring is enough on the command line ("Virtual PCD 00 01", "00 01").
    return [n for n in names if wanted in n]


def wait_for_card(reader: str | None = None, *, timeout_s: float = 10.0,
                  poll_s: float = 0.05) -> str:
    """Block until a card is present in ``reader`` (or any reader); return the reader name.

    Raises :class:`NoCardError` after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last_names: list[str] = []
    while True:
        try:
            states = card_states()
        except PcscNoCardError:
            states = {}
        last_names = list(states)
        for name in _match_reader(list(states), reader):
            if states[name]:
                return name
        if time.monotonic() >= deadline:
            where = f"reader {reader!r}" if reader else "any reader"
            raise NoCardError(f"no card in {where} after {timeout_s:g}s "
                              f"(readers: {', '.join(last_names) or 'none'})").with_id(
                                  "no_card_in_reader" if reader else "no_card_any_reader",
                                  reader=reader, s=f"{timeout_s:g}",
                                  readers=', '.join(last_names) or '-')
        time.sleep(poll_s)


class PcscTransport(ObservableTransport):
    """A card in a PC/SC reader, connected with T=1 in shared mode.

    ``reader`` may be a full name, a substring of one, or ``None`` for the first reader that
    holds a card.  ``wait_s`` > 0 waits that long for a card to appear.
    """

    def __init__(self, reader: str | None = None, *, wait_s: float = 0.0) -> None:
        super().__init__()
        if wait_s > 0:
            reader = wait_for_card(reader, timeout_s=wait_s)
        self._ctx = PcscContext()
        try:
            names = _match_reader(self._ctx.readers(), reader)
            if not names:
                raise NoCardError(f"no PC/SC reader matches {reader!r}" if reader
                                  else "no PC/SC reader found").with_id(
                                      "no_reader_matches" if reader else "no_reader",
                                      reader=reader)
            self.reader = self._connect_first(names)
        except BaseException:
            self._ctx.close()
            raise
        self._atr = self._read_atr()

    def _connect_first(self, names: list[str]) -> str:
        last: Exception | None = None
        for name in names:
            rc, hcard, protocol = scard.SCardConnect(
                self._ctx.handle, name, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1)
            try:
                _check(rc, f"connecting to {name!r}")
            except PcscNoCardError as exc:
                last = exc
                continue
            self._hcard: Any = hcard
            self._pci: Any = scard.SCARD_PCI_T1
            self.protocol = int(protocol)
            return name
        raise last if last is not None else NoCardError("no card").with_id("card.no_card")

    def _read_atr(self) -> bytes:
        rc, _reader, _state, _protocol, atr = scard.SCardStatus(self._hcard)
        _check(rc, f"reading the ATR in {self.reader!r}")
        return bytes(atr)

    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        start = time.perf_counter()
        rc, response = scard.SCardTransmit(self._hcard, self._pci, list(apdu))
        if int(rc) & _U32 != _SUCCESS:
            if self._observers:
                self._notify(apdu, None, time.perf_counter() - start)
            _check(rc, f"transmitting to {self.reader!r}")
        data = bytes(response)
        if self._observers:
            self._notify(apdu, data, time.perf_counter() - start)
        if len(data) < 2:
            # vpcd reports a vanished virtual card as an empty answer, not as an error
            raise CardTransportError(f"no answer from the card in {self.reader!r} "
                                     "(card removed?)").with_id(
                "card.no_answer_card_card", reader=f"{self.reader!r}")
        return data

    def reconnect(self, *, reset: bool = True) -> None:
        """Reconnect; ``reset`` makes the reader warm-reset the card (new card session)."""
        init = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        rc, protocol = scard.SCardReconnect(self._hcard, scard.SCARD_SHARE_SHARED,
                                            scard.SCARD_PROTOCOL_T1, init)
        _check(rc, f"reconnecting to {self.reader!r}")
        self.protocol = int(protocol)
        self._atr = self._read_atr()

    def close(self, *, reset: bool = False) -> None:
        hcard = getattr(self, "_hcard", None)
        if hcard is not None:
            scard.SCardDisconnect(hcard, scard.SCARD_RESET_CARD if reset
                                  else scard.SCARD_LEAVE_CARD)
            self._hcard = None
        self._ctx.close()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
