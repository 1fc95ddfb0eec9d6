"""ECM generation: control words per channel per crypto-period, sealed into ECM sections.

DESIGN §3–§4 and ``docs/formats.md`` §6.  For every channel and crypto-period ``n``:

* CW(n) is fresh randomness (``cas.crypto.generate_cw``: 8 bytes with the CSA checksum bytes
  for DVB-CSA2, 16 bytes for DVB-CISSA), drawn once and kept for as long as it is needed;
* ECM(n) carries **CW(n) and CW(n+1)** in their even/odd slots (CW(n) is even when ``n`` is
  even), so a box that has read ECM(n) already holds the key of the next period when the
  scrambler switches parity; its table_id is ``0x80 | (n & 1)`` (TSDuck's tsecmg convention,
  WIRE-FACTS §1.2);
* the access criteria come from the catalog: the packages that carry the channel, its region
  list and maturity rating (``cas.billing.catalog.access_criteria``), so the card can decide
  with ``cas.access.decide``;
* the body is sealed with the current ECM key (``OperatorKeys.ecm_key(index)``, index in the
  clear header) by ``cas.messages.seal_ecm``; the timestamp is the start of the period.

Randomness (``rng``) and time (``clock``) are arguments, so tests are deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from cas.access import AccessCriteria, PpvEvent
from cas.crypto import CISSA_CW_LEN, CSA2_CW_LEN, OperatorKeys, Rng, generate_cw
from cas.errors import UsageError
from cas.formats.ecm import ECM_TABLE_EVEN, NONCE_SIZE, EcmBody, EcmHeader
from cas.messages import seal_ecm

#: Defaults of DESIGN §4: a 10 s crypto-period, an ECM every 100 ms.
DEFAULT_CRYPTO_PERIOD_MS = 10_000
DEFAULT_ECM_REPETITION_MS = 100

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmSettings:
    """Crypto-period timing and CW size (8: DVB-CSA2, 16: DVB-CISSA)."""

    crypto_period_ms: int = DEFAULT_CRYPTO_PERIOD_MS
    repetition_ms: int = DEFAULT_ECM_REPETITION_MS
    cw_length: int = CSA2_CW_LEN
    ecm_key_index: int = 0

    def __post_init__(self) -> None:
        if self.crypto_period_ms < 100 or self.crypto_period_ms % 100:
            # SimulCrypt carries CP durations in units of 100 ms (TS 103 197 CP_duration).
            raise UsageError("crypto-period must be a positive multiple of 100 ms").with_id(
                "headend.crypto_period_positive_multiple")
        if not 0 < self.repetition_ms <= self.crypto_period_ms:
            raise UsageError("ECM repetition must be positive and at most the crypto-period").with_id(
                "headend.ecm_repetition_positive_most")
        if self.cw_length not in (CSA2_CW_LEN, CISSA_CW_LEN):
            raise UsageError("control words are 8 (CSA2) or 16 (CISSA) bytes").with_id(
                "headend.control_words_csa2_cissa")
        if not 0 <= self.ecm_key_index <= 0xFF:
            raise UsageError("ECM key index is a byte (0..255)").with_id(
                "headend.ecm_key_index_byte")


def cw_slots(cp: int, current: bytes, following: bytes) -> tuple[bytes, bytes]:
    """(cw_even, cw_odd) of ECM(cp): the current CW in its parity's slot, the next in the other."""
    return (current, following) if cp % 2 == 0 else (following, current)


def current_cw(cp: int, cw_even: bytes, cw_odd: bytes) -> bytes:
    """The CW that scrambles crypto-period ``cp``, from an ECM's two slots."""
    return cw_odd if cp & 1 else cw_even


def criteria_at(criteria: AccessCriteria, ppv_events: Sequence[PpvEvent],
                at_s: int) -> AccessCriteria:
    """``criteria`` with the pay-per-view event on air at ``at_s`` (docs/ppv.md), if any."""
    for event in ppv_events:
        if event.on_air(at_s):
            return replace(criteria, ppv_event=event)
    return criteria


class CwSchedule:
    """Fresh random CWs of one channel, one per crypto-period, drawn on first use."""

    def __init__(self, *, cw_length: int = CSA2_CW_LEN, rng: Rng = os.urandom,
                 keep: int = 4) -> None:
        self._rng = rng
        self._length = cw_length
        self._keep = keep
        self._cws: dict[int, bytes] = {}

    def __repr__(self) -> str:  # never the CWs
        return f"CwSchedule(cw_length={self._length}, cached={len(self._cws)})"

    def cw(self, cp: int) -> bytes:
        if cp < 0:
            raise UsageError("crypto-period numbers start at 0").with_id(
                "headend.crypto_period_numbers_start")
        found = self._cws.get(cp)
        if found is None:
            found = self._cws[cp] = generate_cw(self._rng, self._length)
            if len(self._cws) > self._keep * 2:
                # Periods long past are never asked for again; keep memory flat on long runs.
                for old in sorted(self._cws)[: -self._keep]:
                    if old < cp - 1:
                        del self._cws[old]
        return found

    def pair(self, cp: int) -> tuple[bytes, bytes]:
        """(cw_even, cw_odd) for ECM(cp): current and next."""
        return cw_slots(cp, self.cw(cp), self.cw(cp + 1))


class EcmGenerator:
    """Seals ECM sections with the operator's ECM key."""

    def __init__(self, keys: OperatorKeys, *, ecm_key_index: int = 0,
                 rng: Rng = os.urandom) -> None:
        if not 0 <= ecm_key_index <= 0xFF:
            raise UsageError("ECM key index is a byte (0..255)").with_id(
                "headend.ecm_key_index_byte")
        self._key = keys.ecm_key(ecm_key_index)
        self.ecm_key_index = ecm_key_index
        self._rng = rng

    def __repr__(self) -> str:
        return f"EcmGenerator(ecm_key_index={self.ecm_key_index})"

    def ecm(self, criteria: AccessCriteria, *, cp: int, cw_even: bytes, cw_odd: bytes,
            timestamp_s: int) -> bytes:
        """One ECM section for ``criteria.channel_id`` in crypto-period ``cp``."""
        nonce = self._rng(NONCE_SIZE)
        header = EcmHeader(channel_id=criteria.channel_id, ecm_key_index=self.ecm_key_index,
                           timestamp_s=timestamp_s, table_id=ECM_TABLE_EVEN | (cp & 1),
                           nonce=nonce)
        body = EcmBody(crypto_period=cp, cw_even=cw_even, cw_odd=cw_odd,
                       package_ids=tuple(criteria.package_ids), regions=tuple(criteria.regions),
                       maturity_rating=criteria.maturity_rating, ppv_event=criteria.ppv_event)
        return seal_ecm(self._key, header, body, nonce)


class ChannelEcms:
    """CWs and ECMs of one channel over a run (the scrambler's ``ServiceCrypto``).

    Crypto-period ``cp`` starts at ``start_s + cp * crypto_period`` (whole seconds on the
    wire); its ECM is sealed once and repeated unchanged every repetition period.
    """

    def __init__(self, generator: EcmGenerator, criteria: AccessCriteria, *,
                 settings: EcmSettings, start_s: int, rng: Rng = os.urandom,
                 ppv_events: Sequence[PpvEvent] = ()) -> None:
        self.generator = generator
        self.criteria = criteria
        #: the channel's pay-per-view events: an ECM whose time falls in one carries it
        self.ppv_events = tuple(ppv_events)
        self.settings = settings
        self.start_s = start_s
        self.schedule = CwSchedule(cw_length=settings.cw_length, rng=rng)
        self._ecm_cache: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"ChannelEcms(channel_id={self.channel_id}, start_s={self.start_s})"

    @property
    def channel_id(self) -> int:
        return self.criteria.channel_id

    def cw(self, cp: int) -> bytes:
        return self.schedule.cw(cp)

    def criteria_at(self, at_s: int) -> AccessCriteria:
        """The criteria with the PPV event on air at ``at_s``, if any (docs/ppv.md)."""
        return criteria_at(self.criteria, self.ppv_events, at_s)

    def timestamp_s(self, cp: int) -> int:
        return self.start_s + cp * self.settings.crypto_period_ms // 1000

    def ecm_section(self, cp: int) -> bytes:
        found = self._ecm_cache.get(cp)
        if found is None:
            even, odd = self.schedule.pair(cp)
            found = self.generator.ecm(self.criteria_at(self.timestamp_s(cp)), cp=cp,
                                       cw_even=even, cw_odd=odd,
                                       timestamp_s=self.timestamp_s(cp))
            self._ecm_cache = {cp: found}  # only the current period's ECM is repeated
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedEcm:
    """One ECM of :func:`generate_ecms` with the CW it protects (for test-bench logs)."""

    channel_id: int
    cp: int
    section: bytes
    cw_even: bytes
    cw_odd: bytes
    timestamp_s: int

    @property
    def current_cw(self) -> bytes:
        return current_cw(self.cp, self.cw_even, self.cw_odd)

    def log_json(self) -> dict[str, object]:
        """A ``--cw-log`` line (same keys as the scrambler's, without packet ranges)."""
        return {"channel_id": self.channel_id, "service_id": self.channel_id, "cp": self.cp,
                "parity": "odd" if self.cp & 1 else "even", "cw": self.current_cw.hex(),
                "cw_even": self.cw_even.hex(), "cw_odd": self.cw_odd.hex(),
                "timestamp_s": self.timestamp_s}


def generate_ecms(keys: OperatorKeys, criteria: Iterable[AccessCriteria], *,
                  periods: int, settings: EcmSettings | None = None, first_cp: int = 0,
                  clock: Clock = utc_now, rng: Rng = os.urandom) -> Iterator[GeneratedEcm]:
    """ECMs for every channel over ``periods`` crypto-periods, period by period (test benches)."""
    settings = settings or EcmSettings()
    if periods <= 0:
        raise UsageError("need at least one crypto-period").with_id("headend.need_least_one_crypto")
    gen = EcmGenerator(keys, ecm_key_index=settings.ecm_key_index, rng=rng)
    start_s = int(clock().timestamp()) - first_cp * settings.crypto_period_ms // 1000
    channels = [ChannelEcms(gen, c, settings=settings, start_s=start_s, rng=rng)
                for c in criteria]
    for cp in range(first_cp, first_cp + periods):
        for ch in channels:
            section = ch.ecm_section(cp)
            even, odd = ch.schedule.pair(cp)
            yield GeneratedEcm(channel_id=ch.channel_id, cp=cp, section=section, cw_even=even,
                               cw_odd=odd, timestamp_s=ch.timestamp_s(cp))


def criteria_from_lineup(lineup: object) -> dict[int, AccessCriteria]:
    """Access criteria per service id from a parsed lineup (``cas.billing.catalog.Lineup``),
    for tools that run without a store: the same rule as ``catalog.access_criteria``."""
    from cas.billing.catalog import Lineup

    if not isinstance(lineup, Lineup):
        raise UsageError("expected a cas.billing.catalog.Lineup").with_id(
            "headend.expected_cas_billing_catalog")
    packages_of: dict[int, list[int]] = {}
    for pkg in lineup.packages:
        for number in pkg.channel_numbers:
            packages_of.setdefault(number, []).append(pkg.id)
    return {ch.service_id: AccessCriteria(channel_id=ch.service_id,
                                          package_ids=tuple(sorted(packages_of.get(ch.number, []))),
                                          regions=tuple(sorted(ch.regions)),
                                          maturity_rating=ch.maturity_rating)
            for ch in lineup.channels}


def channel_ecms_for(keys: OperatorKeys, criteria: Mapping[int, AccessCriteria], *,
                     settings: EcmSettings, start_s: int, rng: Rng = os.urandom,
                     ppv_events: Mapping[int, Sequence[PpvEvent]] | None = None
                     ) -> dict[int, ChannelEcms]:
    """One :class:`ChannelEcms` per service id (what the scrambler takes); ``ppv_events``
    per service id puts each event into the ECMs of its time."""
    gen = EcmGenerator(keys, ecm_key_index=settings.ecm_key_index, rng=rng)
    events = ppv_events or {}
    return {sid: ChannelEcms(gen, c, settings=settings, start_s=start_s, rng=rng,
                             ppv_events=events.get(sid, ()))
            for sid, c in criteria.items()}
