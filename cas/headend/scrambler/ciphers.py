"""Payload ciphers: the batch scramblers behind :class:`~cas.headend.scrambler.Scrambler`
(libdvbcsa's bitslice batch API for DVB-CSA2, keyed with the reduced CW; column-wise
AES-CBC for DVB-CISSA).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Protocol

from cas.crypto.cw import reduce_cw


class Algorithm(StrEnum):
    CSA2 = "csa2"
    CISSA = "cissa"

    @property
    def cw_length(self) -> int:
        return 8 if self is Algorithm.CSA2 else 16


class PayloadCipher(Protocol):
    """Scrambles, in place, the clear payloads of the packets of ``pids`` in a run of TS
    packets with one control word, setting their transport_scrambling_control to ``parity``
    (0 even ``10``, 1 odd ``11``); returns how many packets it scrambled."""

    def scramble(self, view: memoryview, *, parity: int, pids: Collection[int],
                 cw: bytes) -> int: ...


class _EngineCipher:
    """:class:`PayloadCipher` over a :mod:`cas.crypto` scrambler (``Csa2``/``Cissa``), which
    holds an even and an odd CW and scrambles a buffer of packets per call."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    def scramble(self, view: memoryview, *, parity: int, pids: Collection[int],
                 cw: bytes) -> int:
        self._engine.set_cw(parity, cw)
        return self._engine.scramble(view, parity, pids=pids)


class _Engine(Protocol):
    def set_cw(self, parity: int, cw: bytes) -> None: ...

    def scramble(self, buf: memoryview, parity: int, *, pids: Collection[int] | None) -> int: ...


class _ReducedCsa2:
    """libdvbcsa keyed with the entropy-reduced CW (:func:`cas.crypto.reduce_cw`).

    A DVB-CSA2 receiver reduces the CW it gets from the ECM before descrambling, so whatever
    CW a service's ECMs carry (full 64 bits from another vendor's SCS, or already reduced
    from ours), scrambling with its reduction is what every box can open.
    """

    def __init__(self) -> None:
        from cas.crypto.csa2 import Csa2

        self._csa2 = Csa2()

    def set_cw(self, parity: int, cw: bytes) -> None:
        self._csa2.set_cw(parity, reduce_cw(cw))

    def scramble(self, buf: memoryview, parity: int, *, pids: Collection[int] | None) -> int:
        return self._csa2.scramble(buf, parity, pids=pids)


def payload_cipher(algorithm: Algorithm) -> PayloadCipher:
    """The batch payload cipher for ``algorithm`` (libdvbcsa for CSA2, keyed with the
    reduced CW; AES-CBC for CISSA)."""
    if algorithm is Algorithm.CSA2:
        return _EngineCipher(_ReducedCsa2())
    from cas.crypto.cissa import Cissa

    return _EngineCipher(Cissa())
