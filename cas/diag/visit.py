"""``cas diag visit``: card + box + stream (+ the head-end's records) -> one verdict per channel.

The facts, gathered without changing anything the subscriber owns:

1. **stream** — :mod:`cas.diag.probe` (services, ECM/EMM timing, CW changes, alarms);
2. **card** — ``cas diag card``'s report (:mod:`cas.card.diag`), read before the scan;
3. **box** — :mod:`cas.diag.boxinfo` (Chip ID record, NVRAM);
4. **the box's own verdict** — the STB stub (:class:`firmware_stub.box.Box`) booted with that
   card on a *copy* of its NVRAM, scanning the stream: OPEN/LOCKED + reason per channel.
   Without a Chip ID record and vendor key, the card alone answers each channel's last ECM
   ("card-only": pairing cannot be checked).  A card image is loaded without write-back;
   a card in a PC/SC reader does take the stream's EMMs, as it would in the box;
5. **head-end** (``--db``) — :mod:`cas.diag.headend`: ``cas why`` per channel, account,
   balance, subscriptions, pairing, EMM sequence numbers.

Then :func:`diagnose` turns them into findings, most likely root cause first.  Causes come in
tiers (lower tier = more basic; a lower tier makes the higher ones moot or explains them):

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

The head-end and the box agree when the card has received its EMMs (both run
:func:`cas.access.decide`).  When they disagree the card is out of date, and that (tier 3),
not the box's reason, is the cause.  When they agree the head-end's explanation gives the
words: package names, dates, balance, what to pay.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cas import DEFAULT_CA_SYSTEM_ID
from cas.card.diag import CardReport, read_report
from cas.card.sw import SW_REASON
from cas.crypto import Key
from cas.diag.alarms import Alarm, AlarmCode, Thresholds
from cas.diag.boxinfo import BoxReport, read_box
from cas.diag.headend import HeadendFacts, day
from cas.diag.probe import ProbeReport, probe_file
from cas.errors import CardError, CasError, NoCardError, StatusWordError, UsageError
from cas.reasons import Reason, info
from firmware_stub.report import ChannelStatus, LockReport

DAY_S = 86_400


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

_STREAM_CAUSE = {
    AlarmCode.ECM_MISSING: Cause.ECM_MISSING,
    AlarmCode.ECM_STOPPED: Cause.ECM_STOPPED,
    AlarmCode.ECM_GAP: Cause.ECM_GAP,
    AlarmCode.SCRAMBLED_NO_ECM: Cause.SCRAMBLED_NO_ECM,
    AlarmCode.CW_NOT_CHANGING: Cause.CW_NOT_CHANGING,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One cause, in one line for people (``summary``), with its fix and the evidence."""

    cause: Cause
    summary: str
    fix: str
    evidence: tuple[str, ...] = ()
    scope: str = "channel"  # channel / card / box / account / stream
    reason: Reason | None = None  # the on-screen reason this cause shows as

    @property
    def tier(self) -> int:
        return TIER[self.cause]

    def key(self) -> tuple[Cause, str]:
        return (self.cause, self.summary)

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause.value, "tier": self.tier, "scope": self.scope,
                "summary": self.summary, "fix": self.fix, "evidence": list(self.evidence),
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

    def to_json(self) -> dict[str, Any]:
        i = info(self.box_reason)
        return {
            "channel": self.number, "box_channel": self.channel,
            "service_id": self.service_id, "name": self.name,
            "state": self.state, "at_risk": self.at_risk, "reason": self.box_reason.value,
            "screen_code": i.screen_code, "message": i.en, "message_ru": i.ru,
            "box_detail": self.box_detail,
            "headend_reason": None if self.headend_reason is None else self.headend_reason.value,
            "cause": self.cause.summary if self.cause else None,
            "fix": self.cause.fix if self.cause else None,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RootCause:
    finding: Finding
    channels: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.to_json(), "channels": list(self.channels)}


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitReport:
    at: datetime
    mode: str  # "box": the STB stub scanned; "card-only"; "stream-only"
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
    notes: tuple[str, ...] = ()

    def channel(self, number: int) -> ChannelVerdict:
        """By the subscriber's channel number, the box's number or the service id."""
        for v in self.channels:
            if number in (v.number, v.channel, v.service_id):
                return v
        raise KeyError(number)

    @property
    def serial(self) -> int | None:
        return self.card.info.serial if self.card is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "visit",
            "at": self.at.astimezone(UTC).isoformat(),
            "mode": self.mode,
            "verdicts": [v.to_json() for v in self.channels],
            "root_causes": [r.to_json() for r in self.roots],
            "card": (self.card.to_json() if self.card is not None
                     else {"error": self.card_error}),
            "card_emm_seq_after_scan": self.card_seq_after,
            "card_at_arrival": (None if self.card_at_arrival is None
                                else self.card_at_arrival.to_json()),
            "box": self.box.to_json() if self.box is not None else None,
            "box_scan": self.lock.to_json() if self.lock is not None else None,
            "headend": self.headend.to_json() if self.headend is not None else None,
            "stream": self.probe.to_json(),
            "notes": list(self.notes),
        }


# --- diagnosis (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class _Ctx:
    at_s: int
    probe: ProbeReport
    card: CardReport | None
    card_seq: int | None
    box: BoxReport | None
    lock: LockReport | None
    headend: HeadendFacts | None
    chip_id: int | None
    numbers: dict[int, int]


def _ago(seconds: int) -> str:
    if seconds >= DAY_S:
        n = seconds // DAY_S
        return f"{n} day{'s' if n != 1 else ''}"
    if seconds >= 3600:
        n = seconds // 3600
        return f"{n} hour{'s' if n != 1 else ''}"
    n = max(seconds // 60, 0)
    return f"{n} minute{'s' if n != 1 else ''}"


def _serial_text(serial: int) -> str:
    return f"{serial:010d}"


def _device_findings(ctx: _Ctx, st: ChannelStatus) -> list[Finding]:
    r = st.reason
    if r is Reason.NO_CARD:
        return [Finding(cause=Cause.NO_CARD, scope="card", reason=r,
                        summary="no smart card in the box (or it is not seen)",
                        fix=info(r).fix_en, evidence=(st.detail,) if st.detail else ())]
    if r is Reason.CARD_ERROR:
        return [Finding(cause=Cause.CARD_ERROR, scope="card", reason=r,
                        summary=f"the card does not answer properly: {st.detail or 'error'}",
                        fix=info(r).fix_en)]
    he = ctx.headend
    if r is Reason.CARD_KILLED or (he is not None and he.card_status == "killed"):
        serial = ctx.card.info.serial if ctx.card else (he.serial if he else 0)
        return [Finding(cause=Cause.CARD_KILLED, scope="card", reason=Reason.CARD_KILLED,
                        summary=f"card {_serial_text(serial)} is killed (withdrawn)",
                        fix=info(Reason.CARD_KILLED).fix_en)]
    return []


def _pairing_finding(ctx: _Ctx, st: ChannelStatus, he_reason: Reason | None) -> list[Finding]:
    if st.reason is not Reason.PAIRING_MISMATCH and he_reason is not Reason.PAIRING_MISMATCH:
        return []
    card = ctx.card
    serial = card.info.serial if card else (ctx.headend.serial if ctx.headend else 0)
    here = ctx.chip_id
    evidence: list[str] = []
    card_chip = card.pairing.chip_id if card is not None and card.pairing is not None else None
    he = ctx.headend
    he_chip = he.paired_chip_id if he is not None else None
    if card_chip is not None:
        evidence.append(f"card: paired with chip {card_chip:08X}")
    elif card is not None:
        evidence.append("card: not paired with any box")
    if he is not None:
        evidence.append("head-end: card paired with "
                        + (f"box {he_chip:08X}" if he_chip is not None else "no box")
                        + (f" (account {he.paired_box['account']})"
                           if he.paired_box and he.paired_box.get("account") else ""))
    if st.detail:
        evidence.append(f"box: {st.detail}")
    if he is not None and here is not None and he_chip == here and card_chip != here:
        # The head-end pairs them, the card does not know: its PAIR EMM never arrived.
        return []
    other = card_chip if card_chip is not None else he_chip
    if other is not None and other != here:
        where = "another box" + (f" (chip {other:08X})" if other is not None else "")
        summary = f"card {_serial_text(serial)} is paired with {where}"
        if here is not None:
            summary += f", not this box ({here:08X})"
        fix = (f"put the card back in box {other:08X}, or re-pair at the head-end "
               f"(cas card pair {_serial_text(serial)} {here:08X})" if here is not None
               else info(Reason.PAIRING_MISMATCH).fix_en)
    else:
        summary = f"card {_serial_text(serial)} is not paired with this box"
        fix = (f"pair them at the head-end (cas card pair {_serial_text(serial)} {here:08X})"
               if here is not None else info(Reason.PAIRING_MISMATCH).fix_en)
    return [Finding(cause=Cause.PAIRING_MISMATCH, scope="card", reason=Reason.PAIRING_MISMATCH,
                    summary=summary, fix=fix, evidence=tuple(evidence))]


def _stream_findings(ctx: _Ctx, st: ChannelStatus) -> list[Finding]:
    out: list[Finding] = []
    alarms = ctx.probe.alarms_for_service(st.service_id)
    seen: set[Cause] = set()
    for a in alarms:
        cause = _STREAM_CAUSE.get(a.code)
        if cause is None or cause in seen:
            continue
        seen.add(cause)
        out.append(_stream_finding(cause, a, st))
    if st.reason is Reason.NO_ECM and not out:
        out.append(Finding(cause=Cause.NO_USABLE_ECM, scope="stream", reason=Reason.NO_ECM,
                           summary=f"no usable ECM for this channel: {st.detail or 'none'}",
                           fix=info(Reason.NO_ECM).fix_en))
    defects = [a for a in alarms if a.code is AlarmCode.CC_ERROR]
    if defects:
        n = sum(a.count for a in defects)
        out.append(Finding(cause=Cause.STREAM_DEFECT, scope="stream",
                           summary=f"{n} continuity error(s) on this channel's PIDs: "
                                   "picture and sound glitches",
                           fix="check the reception / the multiplexer's output",
                           evidence=tuple(a.message for a in defects)))
    return out


def _stream_finding(cause: Cause, a: Alarm, st: ChannelStatus) -> Finding:
    # The summary names no PID, so one fault of the head-end groups all its channels.
    if cause is Cause.ECM_STOPPED:
        summary = (f"ECMs for this channel stopped at {a.at_s or 0:.1f} s into the stream: "
                   "boxes lose the picture at the next control-word change")
        fix = "restart the ECM generator / check the scrambler's ECMG connection for this service"
    elif cause is Cause.ECM_MISSING:
        summary = "no ECM at all for this channel"
        fix = "check that the ECM generator feeds this service's ECM PID"
    elif cause is Cause.ECM_GAP:
        summary = (f"ECMs for this channel pause for up to {(a.worst or 0) * 1000:.0f} ms: "
                   "black screens on channel change")
        fix = "check the ECM generator's load and the ECM repetition rate (≤ 500 ms)"
    elif cause is Cause.SCRAMBLED_NO_ECM:
        summary = "the channel is scrambled but its PMT names no ECM PID"
        fix = "add the CA_descriptor to the PMT (scrambler / multiplexer configuration)"
    else:
        summary = (f"control word not changing for {a.worst or 0:.0f} s: the crypto-period "
                   "is frozen")
        fix = "check the scrambler's crypto-period and its ECMG CW_provision for this service"
    return Finding(cause=cause, scope="stream", reason=Reason.NO_ECM, summary=summary, fix=fix,
                   evidence=(a.message,))


def _emm_finding(ctx: _Ctx, st: ChannelStatus, he_reason: Reason) -> Finding | None:
    """Box and head-end disagree on a rights reason: why does the card not hold its rights?"""
    he = ctx.headend
    assert he is not None
    box_r = st.reason
    evidence = [f"box: {box_r.value} ({info(box_r).screen_code or 'open'})"
                + (f" — {st.detail}" if st.detail else ""),
                f"head-end: {he_reason.value}"]
    card = ctx.card
    if card is None:
        return Finding(cause=Cause.RIGHTS_MISMATCH, scope="card", reason=box_r,
                       summary="the box and the head-end disagree on this channel",
                       fix="read the card to compare its rights", evidence=tuple(evidence))
    serial = card.info.serial
    card_seq = ctx.card_seq if ctx.card_seq is not None else card.info.emm_seq_unique
    issued = he.emm_issued_seq or 0
    emms = ctx.probe.emms_for_card(serial, card.info.shared_address, card.info.member_position)
    evidence.append(f"card EMM sequence {card_seq}, head-end issued up to {issued}")
    evidence.append(f"stream: {emms.unique} unique EMM(s) for card {_serial_text(serial)}, "
                    f"{emms.shared} for its group, {emms.global_} global")
    if card_seq < issued:
        since = he.missing_since_s(card_seq)
        newest = emms.last_unique_seq
        if newest is not None and newest <= card_seq:
            evidence.append(f"the stream only repeats old EMMs for this card (sequence "
                            f"{newest} or lower)")
        if newest is None or newest <= card_seq:
            if since is not None:
                summary = (f"EMMs for this card not in the stream for "
                           f"{_ago(max(ctx.at_s - since, 0))} (since {day(since)})")
            else:
                summary = "EMMs for this card are not in the stream"
            if ctx.probe.emms and not any(e.ours for e in ctx.probe.emms):
                evidence.append("the stream has no EMM PID for our CA system")
            return Finding(cause=Cause.EMM_NOT_IN_STREAM, scope="card", reason=box_r,
                           summary=summary,
                           fix="check the EMM feed to the multiplexer (EMMG connection, EMM PID "
                               "in the CAT, the incremental EMM run); the card catches up with "
                               "the next EMM it receives",
                           evidence=tuple(evidence))
        return Finding(cause=Cause.EMM_REFUSED, scope="card", reason=box_r,
                       summary=(f"the stream carries {emms.unique} EMM(s) for this card but it "
                                f"is still at sequence {card_seq} (head-end: {issued})"),
                       fix="check the card's keys (personalised for this operator?) and the "
                           "box's EMM results in its NVRAM",
                       evidence=tuple(evidence))
    if (he.rights_version or 0) > (he.sent_rights_version or 0):
        changed = he.rights_changed_at_s
        return Finding(cause=Cause.EMM_NOT_GENERATED, scope="card", reason=box_r,
                       summary=("the head-end has not generated EMMs since this card's rights "
                                f"changed on {day(changed)}"),
                       fix="run the EMM generation (cas emm generate --incremental)",
                       evidence=tuple(evidence))
    return Finding(cause=Cause.RIGHTS_MISMATCH, scope="card", reason=box_r,
                   summary=(f"the card says {box_r.value}, the head-end says {he_reason.value}"),
                   fix="compare the card's entitlements (cas diag card) with cas card show",
                   evidence=tuple(evidence))


_RIGHTS_CAUSE = {
    Reason.FINANCIAL_BLOCK: Cause.FINANCIAL_BLOCK, Reason.CARD_SUSPENDED: Cause.CARD_SUSPENDED,
    Reason.CARD_NOT_ACTIVE: Cause.CARD_NOT_ACTIVE, Reason.NOT_SUBSCRIBED: Cause.NOT_SUBSCRIBED,
    Reason.CHANNEL_NOT_IN_PACKAGE: Cause.CHANNEL_NOT_IN_PACKAGE,
    Reason.ENTITLEMENT_EXPIRED: Cause.ENTITLEMENT_EXPIRED,
    Reason.NOT_YET_VALID: Cause.NOT_YET_VALID, Reason.REGION_BLACKOUT: Cause.REGION_BLACKOUT,
    Reason.MATURITY_LOCKED: Cause.MATURITY_LOCKED, Reason.PIN_BLOCKED: Cause.PIN_BLOCKED,
    Reason.ECM_KEY_UNKNOWN: Cause.ECM_KEY_UNKNOWN, Reason.UNKNOWN_CHANNEL: Cause.UNKNOWN_CHANNEL,
}


def _rights_finding(ctx: _Ctx, st: ChannelStatus, reason: Reason) -> Finding | None:
    cause = _RIGHTS_CAUSE.get(reason)
    if cause is None:
        return None
    scope = "account" if TIER[cause] == 4 else "channel"
    he = ctx.headend
    view = he.channel(st.service_id) if he is not None else None
    ex = view.explanation if view is not None else None
    if ex is not None and ex.reason is reason:
        d = ex.details
        evidence = [f"box: {st.reason.value}" + (f" — {st.detail}" if st.detail else "")]
        if d.get("channel_packages"):
            evidence.append("channel in: " + ", ".join(d["channel_packages"]))
        if he is not None and he.balance is not None:
            evidence.append(f"balance {he.balance}")
        if reason is Reason.CHANNEL_NOT_IN_PACKAGE:
            names = ", ".join(f"'{n}'" for n in d.get("channel_packages", [])) or "no package"
            summary = f"package {names} not connected: subscribe"
            fix = f"subscribe to {names}"
        elif reason is Reason.FINANCIAL_BLOCK:
            summary = f"{ex.cause}, {ex.fix}"
            fix = ex.fix
        else:
            summary = ex.cause
            fix = ex.fix
        return Finding(cause=cause, scope=scope, reason=reason, summary=summary, fix=fix,
                       evidence=tuple(evidence))
    # Without the head-end: what the card itself shows.
    evidence = [f"box: {st.reason.value} ({info(reason).screen_code})"
                + (f" — {st.detail}" if st.detail else "")]
    summary = info(reason).en
    card = ctx.card
    if card is not None:
        rows = card.entitlement_rows()
        if reason is Reason.ENTITLEMENT_EXPIRED:
            ended = [r for r in rows if r["expired"]]
            if ended:
                last = max(ended, key=lambda r: r["end_s"])
                summary = (f"subscription (package {last['package_id']}) ended on "
                           f"{last['end'][:10]}")
        elif reason is Reason.REGION_BLACKOUT:
            summary = f"card region {card.info.region} is outside this channel's regions"
        elif reason is Reason.MATURITY_LOCKED:
            summary = f"rated above the card's maturity limit {card.info.maturity_limit}"
        elif reason in (Reason.FINANCIAL_BLOCK, Reason.CARD_SUSPENDED):
            summary = f"{info(reason).en} (card status {card.info.status.name})"
        evidence.append("card entitlements: " + (", ".join(
            f"{r['package_id']} {r['start'][:10]}..{r['end'][:10]} {r['state']}"
            for r in rows) or "none"))
    return Finding(cause=cause, scope=scope, reason=reason, summary=summary,
                   fix=info(reason).fix_en, evidence=tuple(evidence))


def _explains(f: Finding, box_reason: Reason) -> bool:
    """Does ``f`` account for the lock the box shows?  (Nothing "explains" OPEN.)"""
    return box_reason is not Reason.OPEN and f.reason is box_reason


def diagnose_channel(ctx: _Ctx, st: ChannelStatus) -> ChannelVerdict:
    he = ctx.headend
    view = he.channel(st.service_id) if he is not None else None
    he_reason = view.reason if view is not None else None
    findings: list[Finding] = []
    findings += _device_findings(ctx, st)
    findings += _pairing_finding(ctx, st, he_reason)
    findings += _stream_findings(ctx, st)
    box_r = st.reason
    device = {Reason.NO_CARD, Reason.CARD_ERROR, Reason.PAIRING_MISMATCH, Reason.NO_ECM,
              Reason.UNKNOWN_CHANNEL}
    if he is not None and he_reason is not None and box_r not in device:
        he_rights = he_reason if he_reason is not Reason.PAIRING_MISMATCH else Reason.OPEN
        if he_rights != box_r:
            f = _emm_finding(ctx, st, he_reason)
            if f is not None:
                findings.append(f)
        else:
            f = _rights_finding(ctx, st, box_r)
            if f is not None:
                findings.append(f)
    elif he is not None and not he.registered and box_r not in device:
        findings.append(Finding(
            cause=Cause.CARD_NOT_ACTIVE, scope="account", reason=Reason.CARD_NOT_ACTIVE,
            summary=f"card {_serial_text(he.serial)} is not registered with this head-end",
            fix="register the card (cas card add) and link it to the account"))
    elif box_r not in (Reason.OPEN, *device) or box_r is Reason.UNKNOWN_CHANNEL:
        f = _rights_finding(ctx, st, box_r)
        if f is not None:
            findings.append(f)
    if he is not None and view is not None and view.explanation is None and view.error:
        findings.append(Finding(cause=Cause.UNKNOWN_CHANNEL, scope="channel",
                                summary=f"the head-end does not know this channel: {view.error}",
                                fix="check the head-end's lineup (cas catalog)"))
    # What explains the lock the box shows comes first (a stream fault that did not cause
    # this lock, e.g. a frozen CW on a channel the card is not entitled to, comes after it);
    # then the most basic tier; equal tiers keep the order above (observed before inferred).
    order = sorted(range(len(findings)),
                   key=lambda i: (not _explains(findings[i], box_r), findings[i].tier, i))
    unique: dict[tuple[Cause, str], Finding] = {}
    for i in order:
        unique.setdefault(findings[i].key(), findings[i])
    ex = view.explanation if view is not None else None
    return ChannelVerdict(channel=st.channel, service_id=st.service_id, name=st.name,
                          box_reason=box_r, box_detail=st.detail, headend_reason=he_reason,
                          findings=tuple(unique.values()),
                          headend_number=(ex.channel_number if ex is not None
                                          else ctx.numbers.get(st.service_id)))


def stream_wide_findings(probe: ProbeReport) -> list[Finding]:
    out: list[Finding] = []
    for a in probe.alarms:
        if a.code is AlarmCode.EMM_MISSING:
            out.append(Finding(cause=Cause.EMM_PID_MISSING, scope="stream", summary=a.message,
                               fix="announce the EMM PID in the CAT and feed EMMs to it",
                               evidence=(a.message,)))
        elif a.code is AlarmCode.EMM_BITRATE_LOW:
            out.append(Finding(cause=Cause.EMM_BITRATE_LOW, scope="stream", summary=a.message,
                               fix="raise the EMM bandwidth at the multiplexer",
                               evidence=(a.message,)))
        elif a.code in (AlarmCode.SYNC_LOSS, AlarmCode.TRANSPORT_ERROR, AlarmCode.PAT_ERROR,
                        AlarmCode.CAT_ERROR, AlarmCode.CRC_ERROR):
            out.append(Finding(cause=Cause.STREAM_DEFECT, scope="stream", summary=a.message,
                               fix="check the reception and the multiplexer's output",
                               evidence=(a.message,)))
    return out


def diagnose(*, at_s: int, probe: ProbeReport, statuses: Sequence[ChannelStatus],
             card: CardReport | None, card_seq: int | None, box: BoxReport | None,
             lock: LockReport | None, headend: HeadendFacts | None,
             chip_id: int | None, numbers: dict[int, int] | None = None,
             ) -> tuple[tuple[ChannelVerdict, ...], tuple[RootCause, ...]]:
    """Verdict per channel and the root causes across channels, most likely first.
    ``numbers``: service id -> the head-end's channel number, when known without a card."""
    ctx = _Ctx(at_s=at_s, probe=probe, card=card, card_seq=card_seq, box=box, lock=lock,
               headend=headend, chip_id=chip_id, numbers=dict(numbers or {}))
    verdicts = tuple(diagnose_channel(ctx, st) for st in statuses)
    stream = stream_wide_findings(probe)
    emm_trouble = any(f.cause is Cause.EMM_NOT_IN_STREAM for v in verdicts for f in v.findings)
    roots: dict[tuple[Cause, str], tuple[Finding, list[int]]] = {}
    locks: set[tuple[Cause, str]] = set()  # findings that explain a lock somewhere
    for v in verdicts:
        for f in v.findings:
            roots.setdefault(f.key(), (f, []))[1].append(v.number)
            if _explains(f, v.box_reason):
                locks.add(f.key())
    for f in stream:
        if f.cause is Cause.EMM_BITRATE_LOW and emm_trouble:
            f = Finding(cause=Cause.EMM_PID_MISSING, scope=f.scope, summary=f.summary,
                        fix=f.fix, evidence=f.evidence)  # it explains the missing EMMs
        roots.setdefault(f.key(), (f, []))
    # Malfunctions (tiers 0-3: card, pairing, stream, EMM delivery) before the account's and
    # the channels' commercial state; within each, what explains a lock first; then the most
    # basic tier; then the fault that hits the most channels.
    ranked = sorted(roots.values(), key=lambda fc: (fc[0].tier > 3, fc[0].key() not in locks,
                                                    fc[0].tier, -len(fc[1])))
    return verdicts, tuple(RootCause(finding=f, channels=tuple(ch)) for f, ch in ranked)


# --- gathering the facts -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class VisitInput:
    stream: Path
    reader: str | None = None
    card_image: Path | None = None
    rom_key: Key | None = None
    chip_record: Path | None = None
    chip_id: int | None = None
    nvram: Path | None = None
    vendor_key: Key | None = None
    at: datetime | None = None
    pin: str | None = None
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    thresholds: Thresholds | None = None
    nominal_bitrate_bps: int | None = None
    notes: tuple[str, ...] = field(default=())


def _card_only(probe: ProbeReport, client: Any) -> list[ChannelStatus]:
    """Without a box: each scrambled service's last ECM straight to the card."""
    out = []
    by_pid = {e.pid: e for e in probe.ecms}
    for svc in probe.services:
        if not svc.in_pat or not svc.has_pmt:
            continue
        name = svc.name or f"service {svc.service_id}"
        if not svc.scrambled_packets:
            out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id,
                                     name=name, reason=Reason.OPEN, scrambled=False,
                                     detail="clear (free to air)"))
            continue
        ecms = [by_pid[p] for p in svc.ecm_pids if p in by_pid and by_pid[p].last_section]
        ours = [e for e in ecms if e.ca_system_id == probe.ca_system_id]
        if not ours:
            out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id,
                                     name=name, reason=Reason.NO_ECM, scrambled=True,
                                     detail="no ECM of our CA system in the stream"))
            continue
        ecm = ours[0]
        reason, detail = Reason.OPEN, "the card returned control words (pairing not checked)"
        try:
            client.process_ecm(ecm.last_section)
        except StatusWordError as exc:
            reason = SW_REASON.get(exc.sw, Reason.NO_ECM)
            detail = f"card answered {exc.sw:04X}"
        except CardError as exc:
            reason, detail = Reason.CARD_ERROR, str(exc)
        out.append(ChannelStatus(channel=svc.service_id, service_id=svc.service_id, name=name,
                                 reason=reason, scrambled=True, ecm_pid=ecm.pid, detail=detail))
    return out


def _open_card(inp: VisitInput, stack: ExitStack) -> tuple[Any, str | None, str | None]:
    """(client or None, reader name, error text)."""
    from cas.card.applet import Applet
    from cas.card.client import CardClient
    from cas.card.eeprom import Eeprom, load_image
    from cas.card.transport import InProcessTransport
    from firmware_stub.cardslot import insert_card

    if inp.reader is not None and inp.card_image is not None:
        raise UsageError("use --reader or --card-image, not both")
    if inp.card_image is not None:
        if inp.rom_key is None:
            raise UsageError("--card-image needs --rom-key-file")
        # No path: the image on disk is not changed by what the diagnosis sends the card.
        applet = Applet(Eeprom(load_image(inp.card_image)), rom_key=inp.rom_key)
        return CardClient(InProcessTransport(applet)), f"image:{inp.card_image.name}", None
    if inp.reader is not None:
        inserted = insert_card(reader=inp.reader, stack=stack)
        return inserted.client, inserted.reader, inserted.error or inserted.note
    return None, None, None


def run_visit(inp: VisitInput, *, store: Any = None, card: Any = None,
              card_name: str | None = None,
              progress: Callable[[int], None] | None = None) -> VisitReport:
    """Gather every fact and diagnose.  ``store``: a :class:`cas.store.engine.Store` (the
    head-end's records); ``card``: a ready :class:`cas.card.client.CardClient` (tests)."""
    from firmware_stub.box import Box
    from firmware_stub.chipset import load_chip_record

    notes = list(inp.notes)
    probe = probe_file(inp.stream, ca_system_id=inp.ca_system_id,
                       nominal_bitrate_bps=inp.nominal_bitrate_bps, thresholds=inp.thresholds,
                       progress=progress)
    with ExitStack() as stack:
        client, reader, card_error = (card, card_name, None) if card is not None else \
            _open_card(inp, stack)
        card_report: CardReport | None = None
        if client is not None and card_error is None:
            try:
                card_report = read_report(client, reader=reader, now_s=0)
            except NoCardError as exc:
                client, card_error = None, str(exc)
            except CasError as exc:
                card_error = f"card unreadable: {exc}"
        at = inp.at
        if at is None and store is not None:
            from cas.billing.clock import clock_now

            with store.reader() as s:
                at = clock_now(s)
        if at is None:
            at = datetime.now(UTC).replace(microsecond=0)
        at_s = int(at.timestamp())
        if card_report is not None:
            card_report = _with_now(card_report, at_s)
        box_report = None
        chip_id = inp.chip_id
        if inp.chip_record is not None:
            box_report = read_box(inp.chip_record, chip_id=inp.chip_id, nvram=inp.nvram,
                                  vendor_key=inp.vendor_key)
            chip_id = box_report.chip_id
        lock: LockReport | None = None
        if inp.chip_record is not None and inp.vendor_key is not None:
            mode = "box"
            record = load_chip_record(inp.chip_record, inp.chip_id)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cas-visit-")))
            nv_copy = tmp / "nvram.json"
            if inp.nvram is not None and inp.nvram.is_file():
                shutil.copyfile(inp.nvram, nv_copy)  # the box's own NVRAM stays untouched
            box = Box.boot(record, nv_copy, vendor_key=inp.vendor_key,
                           card=client if card_error is None else None, reader=reader,
                           card_error=card_error if client is not None else None,
                           ca_system_id=inp.ca_system_id, clock=lambda: float(at_s))
            lock = box.scan(inp.stream, pin=inp.pin)
            statuses: list[ChannelStatus] = list(lock.channels)
        elif client is not None and card_error is None:
            mode = "card-only"
            notes.append("no Chip ID record and vendor key: the card answered each channel's "
                         "last ECM by itself; pairing and descrambling were not checked")
            statuses = _card_only(probe, client)
        else:
            mode = "stream-only"
            reason = Reason.CARD_ERROR if card_error and client is not None else Reason.NO_CARD
            statuses = [ChannelStatus(channel=s.service_id, service_id=s.service_id,
                                      name=s.name or f"service {s.service_id}",
                                      reason=reason if s.scrambled_packets else Reason.OPEN,
                                      scrambled=bool(s.scrambled_packets),
                                      detail=card_error or "no card given")
                        for s in probe.services if s.in_pat and s.has_pmt]
        card_seq_after: int | None = None
        card_at_arrival = card_report
        if client is not None and card_report is not None and mode == "box":
            # Diagnose on what the card holds after the stream's EMMs: that is what answered
            # the ECMs.  (A card that spent the day in the box had them already.)
            try:
                card_report = _with_now(read_report(client, reader=reader, now_s=0), at_s)
            except CasError as exc:
                notes.append(f"the card could not be read again after the scan: {exc}")
        if card_report is not None:
            card_seq_after = card_report.info.emm_seq_unique
        headend: HeadendFacts | None = None
        numbers: dict[int, int] = {}
        if store is not None:
            from cas.diag.headend import channel_numbers, collect

            sids = [st.service_id for st in statuses]
            with store.reader() as s:
                numbers = channel_numbers(s, sids)
                if card_report is not None:
                    headend = collect(s, card_report.info.serial, at, chip_id=chip_id,
                                      service_ids=sids, pin_ok=False)
            if card_report is None:
                notes.append("no card read: only the head-end's lineup was consulted")
    verdicts, roots = diagnose(at_s=at_s, probe=probe, statuses=statuses, card=card_report,
                               card_seq=card_seq_after, box=box_report, lock=lock,
                               headend=headend, chip_id=chip_id, numbers=numbers)
    return VisitReport(at=at, mode=mode, probe=probe, card=card_report, card_error=card_error,
                       card_at_arrival=card_at_arrival,
                       card_seq_after=card_seq_after, box=box_report, lock=lock,
                       headend=headend, channels=verdicts, roots=roots, notes=tuple(notes))


def _with_now(report: CardReport, now_s: int) -> CardReport:
    """The card report with the visit's time (expired / valid flags)."""
    from dataclasses import replace

    return replace(report, now_s=now_s)
