"""Live scrambling: a CW pair per crypto-period, ECMs for each period, the payload cipher.

Crypto-period ``cp`` covers multiplex time ``[(cp - first_cp)·P, (cp - first_cp + 1)·P)``;
its packets carry parity ``cp & 1`` (``10`` even, ``11`` odd, ETSI TS 100 289 / WIRE-FACTS
§4.4) and are scrambled with CW(cp).  ECM(cp) carries CW(cp) and CW(cp+1) (the rule of
:mod:`cas.headend.ecmgen`), so a box holds the next key before the parity switches.  ECMs come
from our generator (:class:`InternalEcms`, timestamped with the store's clock when the period
starts, so the card's entitlement windows follow the head-end's simulated "now") or from an
ECMG over SimulCrypt (:class:`cas.headend.simulcrypt.scs.EcmgServiceCrypto`).

Fetching a period's CWs and ECMs may take a database read or an ECMG round trip, so
:class:`CryptoSchedule` asks for period ``cp + 1`` on a worker thread as soon as ``cp``
starts; the playout thread only waits if the worker is a whole period late.

With ``ecm_source = "simulcrypt"`` the schedule holds :class:`HeadendCws` (CWs only): our own
ECMs then come from our ECMG through the same worker as the other CA systems'
(:mod:`cas.live.ecmgs`), so a failing ECMG stops our ECMs, never the scrambling.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cas.access import AccessCriteria, PpvEvent
from cas.crypto import Rng
from cas.errors import StreamError
from cas.headend.ecmgen import CwSchedule, EcmGenerator, criteria_at
from cas.headend.scrambler import Algorithm, PayloadCipher, ServiceCrypto, payload_cipher

__all__ = ["Algorithm", "CryptoSchedule", "CwLog", "HeadendCws", "InternalEcms", "PeriodKeys",
           "new_cipher"]


def new_cipher(algorithm: Algorithm) -> PayloadCipher:
    """One batch payload cipher (libdvbcsa for CSA2, AES-CBC for CISSA); one per service, so
    that a service's key contexts are set up once per period."""
    return payload_cipher(algorithm)


class InternalEcms:
    """CWs and ECM sections of one channel from our ECM generator (``ServiceCrypto``).

    ECM(cp) is sealed again whenever ``timestamp_s()`` has moved on since it was last sealed
    (the store's clock, in whole seconds): the ECM on air always carries the time it is aired
    at, so the card's decision follows the store's "now" within a second.  Thread-safe (the
    crypto worker prepares a period ahead while the playout repeats the current one).
    """

    #: Tells :class:`CryptoSchedule` to ask for the ECM at every repetition (fresh timestamp).
    restamps = True

    def __init__(self, generator: EcmGenerator, criteria: AccessCriteria, *, cw_length: int,
                 timestamp_s: Callable[[], int], rng: Rng = os.urandom,
                 ppv_events: Sequence[PpvEvent] = ()) -> None:
        self.generator = generator
        self.criteria = criteria
        #: the channel's pay-per-view events: each rides in the ECMs of its time (docs/ppv.md)
        self.ppv_events = tuple(ppv_events)
        self.schedule = CwSchedule(cw_length=cw_length, rng=rng)
        self._timestamp_s = timestamp_s
        self._ecms: dict[int, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InternalEcms(channel_id={self.channel_id})"

    @property
    def channel_id(self) -> int:
        return self.criteria.channel_id

    def cw(self, cp: int) -> bytes:
        with self._lock:
            return self.schedule.cw(cp)

    def ecm_section(self, cp: int) -> bytes:
        stamp = self._timestamp_s()
        with self._lock:
            found = self._ecms.get(cp)
            if found is None or found[0] != stamp:
                even, odd = self.schedule.pair(cp)
                criteria = criteria_at(self.criteria, self.ppv_events, stamp)
                found = (stamp, self.generator.ecm(criteria, cp=cp, cw_even=even,
                                                   cw_odd=odd, timestamp_s=stamp))
                self._ecms[cp] = found
                for old in [c for c in self._ecms if c < cp - 1]:
                    del self._ecms[old]
            return found[1]


class HeadendCws:
    """The CWs of one channel drawn by the head-end, without ECMs (``ServiceCrypto``): the
    ECMs are an ECMG's, aired by its worker (:class:`cas.live.ecmgs.CaSystemEcmg`), so the
    payload stays scrambled whether or not the ECMG answers.  Thread-safe."""

    #: no ECM here: the playout does not air one for this channel
    has_ecms = False

    def __init__(self, channel_id: int, *, cw_length: int, rng: Rng = os.urandom) -> None:
        self._channel_id = channel_id
        self.schedule = CwSchedule(cw_length=cw_length, rng=rng, keep=8)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HeadendCws(channel_id={self._channel_id})"

    @property
    def channel_id(self) -> int:
        return self._channel_id

    def cw(self, cp: int) -> bytes:
        with self._lock:
            return self.schedule.cw(cp)

    def ecm_section(self, cp: int) -> bytes:
        return b""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodKeys:
    """One service's CW and ECM section for one crypto-period."""

    cp: int
    cw: bytes
    ecm: bytes

    def __repr__(self) -> str:  # never the CW
        return f"PeriodKeys(cp={self.cp}, ecm={len(self.ecm)} bytes)"


class CryptoSchedule:
    """Per-period keys of every scrambled service, fetched one period ahead on a worker."""

    def __init__(self, services: Mapping[int, ServiceCrypto], *, crypto_period_s: float,
                 first_cp: int, on_fetch: Callable[[int, float], None] | None = None) -> None:
        self.services = dict(services)
        self.crypto_period_s = crypto_period_s
        self.first_cp = first_cp
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crypto")
        self._futures: dict[int, Future[dict[int, PeriodKeys]]] = {}
        self._lock = threading.Lock()
        self._on_fetch = on_fetch

    def cp_at(self, t_s: float) -> int:
        return self.first_cp + int(t_s // self.crypto_period_s)

    def start_s(self, cp: int) -> float:
        return (cp - self.first_cp) * self.crypto_period_s

    def _fetch(self, cp: int) -> dict[int, PeriodKeys]:
        out = {}
        for sid, crypto in self.services.items():
            t0 = time.perf_counter()
            out[sid] = PeriodKeys(cp=cp, cw=crypto.cw(cp), ecm=crypto.ecm_section(cp))
            if self._on_fetch is not None:
                self._on_fetch(sid, time.perf_counter() - t0)
        return out

    def _future(self, cp: int) -> Future[dict[int, PeriodKeys]]:
        with self._lock:
            fut = self._futures.get(cp)
            if fut is None:
                fut = self._futures[cp] = self._pool.submit(self._fetch, cp)
                for old in [c for c in self._futures if c < cp - 2]:
                    del self._futures[old]
            return fut

    def keys(self, cp: int) -> dict[int, PeriodKeys]:
        """Keys of period ``cp`` (waits for them if needed); asks for ``cp + 1`` ahead."""
        fut = self._future(cp)
        self._future(cp + 1)
        try:
            return fut.result(timeout=max(5.0, 2 * self.crypto_period_s))
        except TimeoutError as exc:
            raise StreamError(f"no ECM for crypto-period {cp} in time").with_id(
                "live.no_ecm_crypto_period", cp=cp) from exc

    def ecm(self, cp: int, service_id: int) -> bytes:
        """The ECM section of ``service_id`` to air now in period ``cp``: the prepared one, or,
        for a generator that stamps the time of airing (:class:`InternalEcms`), a fresh one."""
        crypto = self.services[service_id]
        if getattr(crypto, "restamps", False):
            return crypto.ecm_section(cp)
        return self.keys(cp)[service_id].ecm

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class CwLog:
    """JSON lines, one per service and crypto-period: which CW scrambled it (test benches and
    the descrambling check; the file holds CWs in clear — never point it at a shared log)."""

    def __init__(self, path: Path) -> None:
        self._fh: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, *, service_id: int, channel_id: int, cp: int, cw: bytes,
              start_s: float) -> None:
        line = json.dumps({"service_id": service_id, "channel_id": channel_id, "cp": cp,
                           "parity": "odd" if cp & 1 else "even", "cw": cw.hex(),
                           "start_s": round(start_s, 6)}, sort_keys=True)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()
