"""What a visit concludes: the causes it can name and their tiers, one finding, a channel's
verdict, a root cause across channels, and the whole :class:`VisitReport`.

Causes come in tiers (lower tier = more basic; a lower tier makes the higher ones moot or
explains them):

====  ==========================================================================
tier  causes
====  ==========================================================================
0     the card itself: none, unreadable, killed
1     pairing: the card is paired with another box (or none)
2     the stream, for this channel: ECMs missing / stopped / gaps, scrambled
      without ECM, control word not changing
3     EMM delivery: the card does not hold what the head-end says it should
      (its EMMs are not in the stream, were never generated, or were refused)
4     the account: financial block, suspension, card not active
5     the channel's rights: package not connected, expired, not yet valid,
      region, maturity, PIN
6     other: unknown channel, stream defects that do not lock anything
====  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cas.card.diag import CardReport
from cas.diag.boxinfo import BoxReport
from cas.diag.headend import HeadendFacts
from cas.diag.probe import ProbeReport
from cas.i18n import Msg, Translator
from cas.reasons import Reason, info
from firmware_stub.report import LockReport


class VisitMode(StrEnum):
    """Who answered the stream's ECMs at the visit."""

    BOX = "box"  # the STB stub, booted with the card on a copy of the box's NVRAM
    CARD_ONLY = "card-only"  # the card alone, each channel's last ECM
    STREAM_ONLY = "stream-only"  # nobody: no card, or it did not answer


class Cause(StrEnum):
    """What the visit can name as the cause of a channel's state."""

    NO_CARD = "NO_CARD"
    CARD_ERROR = "CARD_ERROR"
    CARD_KILLED = "CARD_KILLED"
    PAIRING_MISMATCH = "PAIRING_MISMATCH"
    ECM_MISSING = "ECM_MISSING"
    ECM_STOPPED = "ECM_STOPPED"
    ECM_GAP = "ECM_GAP"
    SCRAMBLED_NO_ECM = "SCRAMBLED_NO_ECM"
    CW_NOT_CHANGING = "CW_NOT_CHANGING"
    NO_USABLE_ECM = "NO_USABLE_ECM"
    EMM_NOT_IN_STREAM = "EMM_NOT_IN_STREAM"
    EMM_NOT_GENERATED = "EMM_NOT_GENERATED"
    EMM_REFUSED = "EMM_REFUSED"
    RIGHTS_MISMATCH = "RIGHTS_MISMATCH"
    ECM_KEY_UNKNOWN = "ECM_KEY_UNKNOWN"
    FINANCIAL_BLOCK = "FINANCIAL_BLOCK"
    CARD_SUSPENDED = "CARD_SUSPENDED"
    CARD_NOT_ACTIVE = "CARD_NOT_ACTIVE"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    CHANNEL_NOT_IN_PACKAGE = "CHANNEL_NOT_IN_PACKAGE"
    ENTITLEMENT_EXPIRED = "ENTITLEMENT_EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REGION_BLACKOUT = "REGION_BLACKOUT"
    MATURITY_LOCKED = "MATURITY_LOCKED"
    PIN_BLOCKED = "PIN_BLOCKED"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    STREAM_DEFECT = "STREAM_DEFECT"
    EMM_PID_MISSING = "EMM_PID_MISSING"
    EMM_BITRATE_LOW = "EMM_BITRATE_LOW"


TIER: dict[Cause, int] = {
    Cause.NO_CARD: 0, Cause.CARD_ERROR: 0, Cause.CARD_KILLED: 0,
    Cause.PAIRING_MISMATCH: 1,
    Cause.ECM_MISSING: 2, Cause.ECM_STOPPED: 2, Cause.SCRAMBLED_NO_ECM: 2,
    Cause.CW_NOT_CHANGING: 2, Cause.ECM_GAP: 2, Cause.NO_USABLE_ECM: 2,
    Cause.EMM_NOT_IN_STREAM: 3, Cause.EMM_NOT_GENERATED: 3, Cause.EMM_REFUSED: 3,
    Cause.RIGHTS_MISMATCH: 3, Cause.ECM_KEY_UNKNOWN: 3, Cause.EMM_PID_MISSING: 3,
    Cause.FINANCIAL_BLOCK: 4, Cause.CARD_SUSPENDED: 4, Cause.CARD_NOT_ACTIVE: 4,
    Cause.NOT_SUBSCRIBED: 5, Cause.CHANNEL_NOT_IN_PACKAGE: 5, Cause.ENTITLEMENT_EXPIRED: 5,
    Cause.NOT_YET_VALID: 5, Cause.REGION_BLACKOUT: 5, Cause.MATURITY_LOCKED: 5,
    Cause.PIN_BLOCKED: 5,
    Cause.UNKNOWN_CHANNEL: 6, Cause.STREAM_DEFECT: 6, Cause.EMM_BITRATE_LOW: 6,
}

#: Lock reasons that come from the card's rights (EMM-delivered state) or its account.
RIGHTS_REASONS = frozenset({
    Reason.NOT_SUBSCRIBED, Reason.CHANNEL_NOT_IN_PACKAGE, Reason.ENTITLEMENT_EXPIRED,
    Reason.NOT_YET_VALID, Reason.REGION_BLACKOUT, Reason.MATURITY_LOCKED,
    Reason.FINANCIAL_BLOCK, Reason.CARD_SUSPENDED, Reason.CARD_NOT_ACTIVE, Reason.CARD_KILLED,
})


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One cause, in one line for people (``summary``), with its fix and the evidence."""

    cause: Cause
    summary: str
    fix: str
    #: what the card, the box, the head-end and the stream said, in English; given as
    #: catalogue messages, they are kept in ``evidence_msg`` for the other languages
    evidence: tuple[str | Msg, ...] = ()
    scope: str = "channel"  # channel / card / box / account / stream
    reason: Reason | None = None  # the on-screen reason this cause shows as
    #: ``summary`` and ``fix`` as catalogue messages (:mod:`cas.i18n`), when the rule wrote
    #: them so; ``None``: the text is the probe's own (an alarm message).
    summary_msg: Msg | None = None
    fix_msg: Msg | None = None
    evidence_msg: tuple[str | Msg, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(e, str) for e in self.evidence):
            en = Translator("en")
            object.__setattr__(self, "evidence_msg", self.evidence)
            object.__setattr__(self, "evidence", tuple(str(en.value(e)) for e in self.evidence))

    def evidence_in(self, t: Translator) -> list[str]:
        return ([str(t.value(e)) for e in self.evidence_msg] if self.evidence_msg
                else [str(e) for e in self.evidence])

    @property
    def tier(self) -> int:
        return TIER[self.cause]

    def key(self) -> tuple[Cause, str]:
        return (self.cause, self.summary)

    def summary_in(self, t: Translator) -> str:
        return t(self.summary_msg) if self.summary_msg is not None else self.summary

    def fix_in(self, t: Translator) -> str:
        return t(self.fix_msg) if self.fix_msg is not None else self.fix

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        t = Translator(lang)
        return {"cause": self.cause.value, "tier": self.tier, "scope": self.scope,
                "summary": self.summary_in(t), "fix": self.fix_in(t),
                "evidence": self.evidence_in(t),
                "reason": None if self.reason is None else self.reason.value,
                "screen_code": None if self.reason is None else info(self.reason).screen_code}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelVerdict:
    channel: int
    service_id: int
    name: str
    box_reason: Reason
    box_detail: str
    headend_reason: Reason | None
    findings: tuple[Finding, ...]
    #: the channel number in the head-end's lineup (what the subscriber dials), if known
    headend_number: int | None = None

    @property
    def number(self) -> int:
        return self.headend_number if self.headend_number is not None else self.channel

    @property
    def state(self) -> str:
        return "OPEN" if self.box_reason is Reason.OPEN else "LOCKED"

    @property
    def at_risk(self) -> bool:
        """Open now, but a fault will lock it (ECMs stopped, CW frozen, ...)."""
        return self.state == "OPEN" and any(f.tier <= 3 for f in self.findings)

    @property
    def cause(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        i = info(self.box_reason)
        t = Translator(lang)
        return {
            "channel": self.number, "box_channel": self.channel,
            "service_id": self.service_id, "name": self.name,
            "state": self.state, "at_risk": self.at_risk, "reason": self.box_reason.value,
            "screen_code": i.screen_code, "message": i.en, "message_ru": i.ru,
            "box_detail": self.box_detail,
            "headend_reason": None if self.headend_reason is None else self.headend_reason.value,
            "cause": self.cause.summary_in(t) if self.cause else None,
            "fix": self.cause.fix_in(t) if self.cause else None,
            "findings": [f.to_json(lang) for f in self.findings],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RootCause:
    finding: Finding
    channels: tuple[int, ...]

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        return {**self.finding.to_json(lang), "channels": list(self.channels)}


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitReport:
    at: datetime
    mode: VisitMode
    probe: ProbeReport
    card: CardReport | None  # after the scan (the stream's EMMs applied)
    card_error: str | None
    card_at_arrival: CardReport | None  # as found, before the scan
    card_seq_after: int | None  # the card's unique EMM sequence after the stream's EMMs
    box: BoxReport | None
    lock: LockReport | None
    headend: HeadendFacts | None
    channels: tuple[ChannelVerdict, ...]
    roots: tuple[RootCause, ...]
    notes: tuple[str | Msg, ...] = ()

    def channel(self, number: int) -> ChannelVerdict:
        """By the subscriber's channel number, the box's number or the service id."""
        for v in self.channels:
            if number in (v.number, v.channel, v.service_id):
                return v
        raise KeyError(number)

    @property
    def serial(self) -> int | None:
        return self.card.info.serial if self.card is not None else None

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        """The ``--json`` form; causes and fixes in ``lang`` (the lock reasons' messages
        always in both, ``message`` and ``message_ru``)."""
        return {
            "kind": "visit",
            "lang": lang,
            "at": self.at.astimezone(UTC).isoformat(),
            "mode": self.mode.value,
            "verdicts": [v.to_json(lang) for v in self.channels],
            "root_causes": [r.to_json(lang) for r in self.roots],
            "card": (self.card.to_json() if self.card is not None
                     else {"error": self.card_error}),
            "card_emm_seq_after_scan": self.card_seq_after,
            "card_at_arrival": (None if self.card_at_arrival is None
                                else self.card_at_arrival.to_json()),
            "box": self.box.to_json() if self.box is not None else None,
            "box_scan": self.lock.to_json() if self.lock is not None else None,
            "headend": self.headend.to_json(lang) if self.headend is not None else None,
            "stream": self.probe.to_json(lang),
            "notes": [str(Translator(lang).value(n)) for n in self.notes],
        }




_EN = Translator("en")


def finding(*, cause: Cause, summary: Msg, fix: Msg, evidence: tuple[str | Msg, ...] = (),
            scope: str = "channel", reason: Reason | None = None) -> Finding:
    """A finding whose words are catalogue messages (English in ``summary``/``fix``)."""
    return Finding(cause=cause, summary=_EN(summary), fix=_EN(fix), summary_msg=summary,
                   fix_msg=fix, evidence=evidence, scope=scope, reason=reason)
