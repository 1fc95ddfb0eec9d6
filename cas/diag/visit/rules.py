"""The visit's decision: frozen facts in (:class:`.facts.VisitFacts`), verdicts out.

Pure: no card, no files, no store, no clock; :mod:`.gather` reads the facts, this decides.
The rules, in the order the code applies them (``# rule N`` marks each):

Per channel, from what the box showed (``st``) and what the head-end says (its ``cas why``):

1. **The card itself** (tier 0): the box shows NO_CARD or CARD_ERROR; or the card is killed
   (the box says so, or the head-end's record does).
2. **Pairing** (tier 1): the box or the head-end says PAIRING_MISMATCH: name the box the card
   is paired with, from the card and the head-end.  Not when the head-end pairs the card with
   this box but the card does not know it (its PAIR EMM never arrived).
3. **The stream** (tier 2, tier 6): each alarm on the channel's PIDs once per cause (ECMs
   missing, stopped, pausing, scrambled without ECM, CW frozen); the box found no usable ECM
   and no alarm says why; continuity errors as a stream defect.
4. **Rights**, unless the box stopped before looking at them (no card, card error, pairing,
   no ECM, unknown channel):
   with the head-end's reason for the channel, a disagreement (the head-end's
   PAIRING_MISMATCH counts as OPEN) goes to rule 5, an agreement to rule 6; with the head-end
   but a card it does not know: CARD_NOT_ACTIVE; otherwise, when the box locked the channel
   (or does not know it): rule 6 on the box's reason.
5. **EMM delivery** (tier 3), when box and head-end disagree: the card is behind the
   head-end's EMM sequence and the stream has nothing newer for it -> EMMs not in the stream
   (since when); the stream has newer ones -> the card refused them; the card is up to date
   but the rights changed after the last EMM run -> EMMs not generated; else a plain
   mismatch.  Without a card read: a mismatch, "read the card".
6. **The locking reason** (tiers 4-5): in the head-end's words (packages, balance, dates)
   when it gives the same reason, else in the card's (entitlements, region, maturity).
7. **Unknown to the head-end**: it has no explanation for the channel, only an error.
8. **Order**: what explains the lock the box shows first, then the most basic tier, then
   the order of the rules above; one finding per (cause, summary).

Across channels:

9. **Stream-wide** alarms: the EMM PID missing, the EMM bitrate low (named as the cause of
   the missing EMMs when rule 5 found EMMs not in the stream), sync loss, transport errors,
   PAT / CAT / CRC errors.
10. **Root causes**, ranked: malfunctions (tiers 0-3) before the commercial state (4-6);
    within each, what explains a lock first; then the most basic tier; then the fault that
    hits the most channels.

The head-end and the box agree when the card has received its EMMs (both run
:func:`cas.access.decide`).  When they disagree the card is out of date, and that (rule 5,
tier 3), not the box's reason, is the cause.  When they agree the head-end's explanation
gives the words: package names, dates, balance, what to pay.
"""

from __future__ import annotations

from collections.abc import Callable

from cas.diag.alarms import Alarm, AlarmCode
from cas.diag.probe import ProbeReport
from cas.diag.visit.facts import VisitFacts
from cas.diag.visit.verdict import TIER, Cause, ChannelVerdict, Finding, RootCause, finding
from cas.i18n import Day, Msg
from cas.reasons import Reason, info
from firmware_stub.report import ChannelStatus, Detail

DAY_S = 86_400


_STREAM_CAUSE = {
    AlarmCode.ECM_MISSING: Cause.ECM_MISSING,
    AlarmCode.ECM_STOPPED: Cause.ECM_STOPPED,
    AlarmCode.ECM_GAP: Cause.ECM_GAP,
    AlarmCode.SCRAMBLED_NO_ECM: Cause.SCRAMBLED_NO_ECM,
    AlarmCode.CW_NOT_CHANGING: Cause.CW_NOT_CHANGING,
}



def _ago(seconds: int) -> Msg:
    if seconds >= DAY_S:
        return Msg("visit.ago.days", {"n": seconds // DAY_S})
    if seconds >= 3600:
        return Msg("visit.ago.hours", {"n": seconds // 3600})
    return Msg("visit.ago.minutes", {"n": max(seconds // 60, 0)})


def _fix(reason: Reason) -> Msg:
    return Msg(f"reason.{reason.value}.fix")


def _serial_text(serial: int) -> str:
    return f"{serial:010d}"


def _device_findings(facts: VisitFacts, st: ChannelStatus) -> list[Finding]:
    """Rule 1."""
    r = st.reason
    if r is Reason.NO_CARD:
        return [finding(cause=Cause.NO_CARD, scope="card", reason=r,
                        summary=Msg("visit.rule.no_card"),
                        fix=_fix(r), evidence=(st.detail,) if st.detail else ())]
    if r is Reason.CARD_ERROR:
        return [finding(cause=Cause.CARD_ERROR, scope="card", reason=r,
                        summary=Msg("visit.rule.card_error", {"detail": st.detail or "error"}),
                        fix=_fix(r))]
    he = facts.headend
    if r is Reason.CARD_KILLED or (he is not None and he.card_status in ("killed", "blocked")):
        serial = facts.card.info.serial if facts.card else (he.serial if he else 0)
        return [finding(cause=Cause.CARD_KILLED, scope="card", reason=Reason.CARD_KILLED,
                        summary=Msg("visit.rule.card_killed", {"card": _serial_text(serial)}),
                        fix=_fix(Reason.CARD_KILLED))]
    return []


def _pairing_finding(facts: VisitFacts, st: ChannelStatus,
                     he_reason: Reason | None) -> list[Finding]:
    """Rule 2."""
    if st.reason is not Reason.PAIRING_MISMATCH and he_reason is not Reason.PAIRING_MISMATCH:
        return []
    card = facts.card
    serial = card.info.serial if card else (facts.headend.serial if facts.headend else 0)
    here = facts.chip_id
    evidence: list[Msg] = []
    card_chip = card.pairing.chip_id if card is not None and card.pairing is not None else None
    he = facts.headend
    he_chip = he.paired_chip_id if he is not None else None
    if card_chip is not None:
        evidence.append(Msg("evidence.card_paired", {"chip": f"{card_chip:08X}"}))
    elif card is not None:
        evidence.append(Msg("evidence.card_unpaired"))
    if he is not None:
        account = he.paired_box.get("account") if he.paired_box else None
        if he_chip is None:
            evidence.append(Msg("evidence.headend_unpaired"))
        else:
            evidence.append(Msg("evidence.headend_paired_account" if account else
                                "evidence.headend_paired",
                                {"chip": f"{he_chip:08X}", "account": account}))
    if st.detail:
        evidence.append(Msg("evidence.box", {"detail": Detail(st.detail)}))
    if he is not None and here is not None and he_chip == here and card_chip != here:
        # The head-end pairs them, the card does not know: its PAIR EMM never arrived.
        return []
    other = card_chip if card_chip is not None else he_chip
    card_text = _serial_text(serial)
    if other is not None and other != here:
        summary = (Msg("visit.rule.paired_elsewhere_here", {"card": card_text,
                                                            "other": f"{other:08X}",
                                                            "here": f"{here:08X}"})
                   if here is not None else
                   Msg("visit.rule.paired_elsewhere", {"card": card_text,
                                                       "other": f"{other:08X}"}))
        fix = (Msg("visit.rule.fix_back_or_repair", {"other": f"{other:08X}", "card": card_text,
                                                     "here": f"{here:08X}"})
               if here is not None else _fix(Reason.PAIRING_MISMATCH))
    else:
        summary = Msg("visit.rule.not_paired_here", {"card": card_text})
        fix = (Msg("visit.rule.fix_pair", {"card": card_text, "here": f"{here:08X}"})
               if here is not None else _fix(Reason.PAIRING_MISMATCH))
    return [finding(cause=Cause.PAIRING_MISMATCH, scope="card", reason=Reason.PAIRING_MISMATCH,
                    summary=summary, fix=fix, evidence=tuple(evidence))]


def _stream_findings(facts: VisitFacts, st: ChannelStatus) -> list[Finding]:
    """Rule 3."""
    out: list[Finding] = []
    alarms = facts.probe.alarms_for_service(st.service_id)
    seen: set[Cause] = set()
    for a in alarms:
        cause = _STREAM_CAUSE.get(a.code)
        if cause is None or cause in seen:
            continue
        seen.add(cause)
        out.append(_stream_finding(cause, a))
    if st.reason is Reason.NO_ECM and not out:
        out.append(finding(cause=Cause.NO_USABLE_ECM, scope="stream", reason=Reason.NO_ECM,
                           summary=Msg("visit.rule.no_usable_ecm",
                                       {"detail": Detail(st.detail) if st.detail
                                                  else Msg("evidence.none")}),
                           fix=_fix(Reason.NO_ECM)))
    defects = [a for a in alarms if a.code is AlarmCode.CC_ERROR]
    if defects:
        n = sum(a.count for a in defects)
        out.append(finding(cause=Cause.STREAM_DEFECT, scope="stream",
                           summary=Msg("visit.rule.cc_errors", {"n": n}),
                           fix=Msg("visit.rule.fix_reception"),
                           evidence=tuple(_alarm_line(a) for a in defects)))
    return out


#: Rule 3's words for a stream cause: (the summary, from the alarm; the fix).  The summary
#: names no PID, so one fault of the head-end groups all its channels.
_STREAM_WORDS: dict[Cause, tuple[Callable[[Alarm], Msg], Msg]] = {
    Cause.ECM_STOPPED: (
        lambda a: Msg("visit.rule.ecm_stopped", {"at": f"{a.at_s or 0:.1f}"}),
        Msg("visit.rule.fix_ecm_stopped")),
    Cause.ECM_MISSING: (
        lambda a: Msg("visit.rule.ecm_missing"), Msg("visit.rule.fix_ecm_missing")),
    Cause.ECM_GAP: (
        lambda a: Msg("visit.rule.ecm_gap", {"ms": f"{(a.worst or 0) * 1000:.0f}"}),
        Msg("visit.rule.fix_ecm_gap")),
    Cause.SCRAMBLED_NO_ECM: (
        lambda a: Msg("visit.rule.scrambled_no_ecm"), Msg("visit.rule.fix_scrambled_no_ecm")),
    Cause.CW_NOT_CHANGING: (
        lambda a: Msg("visit.rule.cw_frozen", {"s": f"{a.worst or 0:.0f}"}),
        Msg("visit.rule.fix_cw_frozen")),
}


def _stream_finding(cause: Cause, a: Alarm) -> Finding:
    summary, fix = _STREAM_WORDS[cause]
    return finding(cause=cause, scope="stream", reason=Reason.NO_ECM, summary=summary(a),
                   fix=fix, evidence=(_alarm_line(a),))


def _alarm_line(a: Alarm) -> Msg | str:
    """An alarm as an evidence line: its message, rendered in the reader's language."""
    return a.text if a.text is not None else a.message


def _box_line(st: ChannelStatus, *, code: bool) -> Msg:
    """``box: REASON (E16B) — detail``: the reason and on-screen codes as they are, the
    detail the box's own."""
    params = {"reason": st.reason.value, "code": info(st.reason).screen_code
              or Msg("evidence.open"), "detail": Detail(st.detail)}
    key = ("evidence.box_code" if code else "evidence.box_reason") + (
        "_detail" if st.detail else "")
    return Msg(key, params)


def _emm_finding(facts: VisitFacts, st: ChannelStatus, he_reason: Reason) -> Finding | None:
    """Rule 5: box and head-end disagree on a rights reason: why does the card not hold its
    rights?"""
    he = facts.headend
    assert he is not None
    box_r = st.reason
    evidence: list[Msg] = [_box_line(st, code=True),
                           Msg("evidence.headend", {"reason": he_reason.value})]
    card = facts.card
    if card is None:
        return finding(cause=Cause.RIGHTS_MISMATCH, scope="card", reason=box_r,
                       summary=Msg("visit.rule.disagree"),
                       fix=Msg("visit.rule.fix_read_card"), evidence=tuple(evidence))
    serial = card.info.serial
    card_seq = facts.card_seq if facts.card_seq is not None else card.info.emm_seq_unique
    issued = he.emm_issued_seq or 0
    emms = facts.probe.emms_for_card(serial, card.info.shared_address, card.info.member_position)
    evidence.append(Msg("evidence.card_seq", {"seq": card_seq, "issued": issued}))
    evidence.append(Msg("evidence.stream_emms", {"n": emms.unique, "card": _serial_text(serial),
                                                 "shared": emms.shared,
                                                 "global": emms.global_}))
    if card_seq < issued:
        since = he.missing_since_s(card_seq)
        newest = emms.last_unique_seq
        if newest is not None and newest <= card_seq:
            evidence.append(Msg("evidence.repeats_old", {"seq": newest}))
        if newest is None or newest <= card_seq:
            if since is not None:
                summary = Msg("visit.rule.emm_missing_for",
                              {"ago": _ago(max(facts.at_s - since, 0)), "day": Day(since)})
            else:
                summary = Msg("visit.rule.emm_missing")
            if facts.probe.emms and not any(e.ours for e in facts.probe.emms):
                evidence.append(Msg("evidence.no_emm_pid"))
            return finding(cause=Cause.EMM_NOT_IN_STREAM, scope="card", reason=box_r,
                           summary=summary, fix=Msg("visit.rule.fix_emm_feed"),
                           evidence=tuple(evidence))
        return finding(cause=Cause.EMM_REFUSED, scope="card", reason=box_r,
                       summary=Msg("visit.rule.emm_refused", {"n": emms.unique, "seq": card_seq,
                                                              "issued": issued}),
                       fix=Msg("visit.rule.fix_card_keys"),
                       evidence=tuple(evidence))
    if (he.rights_version or 0) > (he.sent_rights_version or 0):
        changed = he.rights_changed_at_s
        return finding(cause=Cause.EMM_NOT_GENERATED, scope="card", reason=box_r,
                       summary=Msg("visit.rule.emm_not_generated", {"day": Day(changed)}),
                       fix=Msg("visit.rule.fix_emm_generate"),
                       evidence=tuple(evidence))
    return finding(cause=Cause.RIGHTS_MISMATCH, scope="card", reason=box_r,
                   summary=Msg("visit.rule.card_says", {"card": box_r.value,
                                                        "headend": he_reason.value}),
                   fix=Msg("visit.rule.fix_compare"),
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


def _rights_finding(facts: VisitFacts, st: ChannelStatus, reason: Reason) -> Finding | None:
    """Rule 6: the locking reason in the head-end's words, else in the card's."""
    cause = _RIGHTS_CAUSE.get(reason)
    if cause is None:
        return None
    scope = "account" if TIER[cause] == 4 else "channel"
    he = facts.headend
    view = he.channel(st.service_id) if he is not None else None
    ex = view.explanation if view is not None else None
    if ex is not None and ex.reason is reason:
        d = ex.details
        evidence: list[Msg] = [_box_line(st, code=False)]
        if d.get("channel_packages"):
            evidence.append(Msg("evidence.channel_in",
                                {"names": ", ".join(d["channel_packages"])}))
        if he is not None and he.balance is not None:
            evidence.append(Msg("evidence.balance", {"balance": he.balance_money or he.balance}))
        if reason is Reason.CHANNEL_NOT_IN_PACKAGE:
            names: Msg | str = (", ".join(f"'{n}'" for n in d.get("channel_packages", []))
                                or Msg("why.no_package"))
            summary = Msg("visit.rule.not_connected", {"names": names})
            fix = Msg("why.fix.subscribe", {"names": names})
        elif reason is Reason.FINANCIAL_BLOCK:
            summary = Msg("visit.rule.cause_fix", {"cause": ex.cause_msg, "fix": ex.fix_msg})
            fix = ex.fix_msg
        else:
            summary = ex.cause_msg
            fix = ex.fix_msg
        return finding(cause=cause, scope=scope, reason=reason, summary=summary, fix=fix,
                       evidence=tuple(evidence))
    # Without the head-end: what the card itself shows.
    evidence = [_box_line(st, code=True)]
    summary = Msg(f"reason.{reason.value}.message")
    card = facts.card
    if card is not None:
        rows = card.entitlement_rows()
        if reason is Reason.ENTITLEMENT_EXPIRED:
            ended = [r for r in rows if r["expired"]]
            if ended:
                last = max(ended, key=lambda r: r["end_s"])
                summary = Msg("visit.rule.package_ended", {"package": last["package_id"],
                                                           "day": Day(int(last["end_s"]))})
        elif reason is Reason.REGION_BLACKOUT:
            summary = Msg("visit.rule.region", {"region": card.info.region})
        elif reason is Reason.MATURITY_LOCKED:
            summary = Msg("visit.rule.maturity", {"limit": card.info.maturity_limit})
        elif reason in (Reason.FINANCIAL_BLOCK, Reason.CARD_SUSPENDED):
            summary = Msg("visit.rule.card_status", {"message": summary,
                                                     "status": card.info.status.name})
        evidence.append(Msg("evidence.entitlements", {"rows": ", ".join(
            f"{r['package_id']} {r['start'][:10]}..{r['end'][:10]} {r['state']}"
            for r in rows) or Msg("evidence.none")}))
    return finding(cause=cause, scope=scope, reason=reason, summary=summary,
                   fix=_fix(reason), evidence=tuple(evidence))


#: What the box shows when the card, the pairing or the stream stopped it before any rights
#: were looked at (rule 4 does not apply to them).
_DEVICE_REASONS = frozenset({Reason.NO_CARD, Reason.CARD_ERROR, Reason.PAIRING_MISMATCH,
                             Reason.NO_ECM, Reason.UNKNOWN_CHANNEL})


def _explains(f: Finding, box_reason: Reason) -> bool:
    """Does ``f`` account for the lock the box shows?  (Nothing "explains" OPEN.)"""
    return box_reason is not Reason.OPEN and f.reason is box_reason


def diagnose_channel(facts: VisitFacts, st: ChannelStatus) -> ChannelVerdict:
    he = facts.headend
    view = he.channel(st.service_id) if he is not None else None
    he_reason = view.reason if view is not None else None
    findings: list[Finding] = []
    findings += _device_findings(facts, st)  # rule 1
    findings += _pairing_finding(facts, st, he_reason)  # rule 2
    findings += _stream_findings(facts, st)  # rule 3
    box_r = st.reason
    # rule 4
    if he is not None and he_reason is not None and box_r not in _DEVICE_REASONS:
        he_rights = he_reason if he_reason is not Reason.PAIRING_MISMATCH else Reason.OPEN
        if he_rights != box_r:
            f = _emm_finding(facts, st, he_reason)
            if f is not None:
                findings.append(f)
        else:
            f = _rights_finding(facts, st, box_r)
            if f is not None:
                findings.append(f)
    elif he is not None and not he.registered and box_r not in _DEVICE_REASONS:
        findings.append(finding(
            cause=Cause.CARD_NOT_ACTIVE, scope="account", reason=Reason.CARD_NOT_ACTIVE,
            summary=Msg("visit.rule.not_registered", {"card": _serial_text(he.serial)}),
            fix=Msg("visit.rule.fix_register")))
    elif box_r not in (Reason.OPEN, *_DEVICE_REASONS) or box_r is Reason.UNKNOWN_CHANNEL:
        f = _rights_finding(facts, st, box_r)
        if f is not None:
            findings.append(f)
    # rule 7
    if he is not None and view is not None and view.explanation is None and view.error:
        findings.append(finding(cause=Cause.UNKNOWN_CHANNEL, scope="channel",
                                summary=Msg("visit.rule.unknown_channel", {"error": view.error}),
                                fix=Msg("visit.rule.fix_lineup")))
    # rule 8.  What explains the lock the box shows comes first (a stream fault that did not
    # cause this lock, e.g. a frozen CW on a channel the card is not entitled to, comes after
    # it); then the most basic tier; equal tiers keep the order above (observed before
    # inferred).
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
                                          else facts.numbers.get(st.service_id)))


def stream_wide_findings(probe: ProbeReport) -> list[Finding]:
    """Rule 9 (the findings; the renaming of a low EMM bitrate is in :func:`diagnose`)."""
    out: list[Finding] = []
    for a in probe.alarms:
        if a.code is AlarmCode.EMM_MISSING:
            out.append(Finding(cause=Cause.EMM_PID_MISSING, scope="stream", summary=a.message, summary_msg=a.text,
                               fix="announce the EMM PID in the CAT and feed EMMs to it",
                               fix_msg=Msg("visit.rule.fix_emm_pid"), evidence=(_alarm_line(a),)))
        elif a.code is AlarmCode.EMM_BITRATE_LOW:
            out.append(Finding(cause=Cause.EMM_BITRATE_LOW, scope="stream", summary=a.message, summary_msg=a.text,
                               fix="raise the EMM bandwidth at the multiplexer",
                               fix_msg=Msg("visit.rule.fix_emm_bandwidth"),
                               evidence=(_alarm_line(a),)))
        elif a.code in (AlarmCode.SYNC_LOSS, AlarmCode.TRANSPORT_ERROR, AlarmCode.PAT_ERROR,
                        AlarmCode.CAT_ERROR, AlarmCode.CRC_ERROR):
            out.append(Finding(cause=Cause.STREAM_DEFECT, scope="stream", summary=a.message, summary_msg=a.text,
                               fix="check the reception and the multiplexer's output",
                               fix_msg=Msg("visit.rule.fix_reception_and"),
                               evidence=(_alarm_line(a),)))
    return out


def diagnose(facts: VisitFacts) -> tuple[tuple[ChannelVerdict, ...], tuple[RootCause, ...]]:
    """Verdict per channel and the root causes across channels, most likely first."""
    verdicts = tuple(diagnose_channel(facts, st) for st in facts.statuses)
    stream = stream_wide_findings(facts.probe)
    # rule 9
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
                        fix=f.fix, evidence=f.evidence_msg or f.evidence,
                        summary_msg=f.summary_msg, fix_msg=f.fix_msg)  # it explains the missing EMMs
        roots.setdefault(f.key(), (f, []))
    # rule 10.  Malfunctions (tiers 0-3: card, pairing, stream, EMM delivery) before the
    # account's and the channels' commercial state; within each, what explains a lock first;
    # then the most basic tier; then the fault that hits the most channels.
    ranked = sorted(roots.values(), key=lambda fc: (fc[0].tier > 3, fc[0].key() not in locks,
                                                    fc[0].tier, -len(fc[1])))
    return verdicts, tuple(RootCause(finding=f, channels=tuple(ch)) for f, ch in ranked)


