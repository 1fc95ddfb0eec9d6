"""The box's verdict on a channel: facts in, a reason out; no card, no stream, no clock.

:func:`verdict` reads one :class:`~firmware_stub.observations.ChannelFacts` and answers a
:class:`~firmware_stub.report.ChannelStatus` whose :class:`~cas.reasons.Reason` is what the
viewer's screen would show.  The rules, in order (the first that holds decides):

1. The service is in the SDT but not in the PAT: ``UNKNOWN_CHANNEL``, clear.
2. No valid PMT was received: ``UNKNOWN_CHANNEL``, clear.
3. No scrambled packet, and either packets were seen or the PMT signals no CA system at
   all: ``OPEN``, clear (free to air).
4. The PMT has no CA_descriptor for our CA system (only others', or none while packets are
   scrambled): ``NO_ECM``.
5. The slot is empty: ``NO_CARD``.
6. The card is there but does not answer: ``CARD_ERROR``.
7. The ECM PIDs of the scrambled streams (or, before any, all the service's), in PID order:
   one without a usable answer from the card is ``NO_ECM`` (nothing received, or the last
   ECM unreadable / rejected); one the card refused gives the card's reason.
8. Control words that do not descramble (the last PES start checked after descrambling did
   not begin 00 00 01): ``NO_ECM``.
9. Otherwise ``OPEN``: descrambled, or control words received with no PES start to check.
"""

from __future__ import annotations

from cas.reasons import Reason
from firmware_stub.descrambler import scrambling_name
from firmware_stub.observations import ChannelFacts
from firmware_stub.report import ChannelStatus


def verdict(facts: ChannelFacts) -> ChannelStatus:
    """The channel's state from what the box has seen (first rule that holds wins)."""
    svc = facts.service
    name = svc.name or f"service {svc.service_id}"
    mode_name = scrambling_name(svc.scrambling_mode)

    def status(reason: Reason, detail: str, *, scrambled: bool = True,
               ecm_pid: int | None = None) -> ChannelStatus:
        if ecm_pid is None and scrambled and svc.ecm_pids:
            ecm_pid = svc.ecm_pids[0]
        return ChannelStatus(channel=svc.channel, service_id=svc.service_id, name=name,
                             reason=reason, scrambled=scrambled,
                             scrambling=mode_name if scrambled else None,
                             ecm_pid=ecm_pid if scrambled else None, detail=detail)

    # 1, 2: the lineup
    if not svc.in_pat:
        return status(Reason.UNKNOWN_CHANNEL, "listed in the SDT but not in the PAT",
                      scrambled=False)
    if not svc.has_pmt:
        return status(Reason.UNKNOWN_CHANNEL, "no valid PMT received", scrambled=False)
    # 3: free to air
    seen = any(e.clear or e.scrambled for e in facts.streams)
    scrambled_es = [e for e in facts.streams if e.scrambled]
    if not scrambled_es and (seen or not svc.ca_signalled):
        return status(Reason.OPEN, "clear (free to air)" if seen else "clear; no packets seen",
                      scrambled=False)
    # 4: our CA system
    if not svc.ecm_pids:
        others = ", ".join(f"0x{s:04X}" for s in svc.other_ca_systems)
        return status(Reason.NO_ECM,
                      f"no CA_descriptor for CA system 0x{facts.ca_system_id:04X}"
                      + (f" (only for {others})" if others else ""))
    # 5, 6: the card
    if not facts.card_present:
        return status(Reason.NO_CARD, "no card in the slot")
    if facts.card_error is not None:
        return status(Reason.CARD_ERROR, facts.card_error)
    # 7: the card's answers, per ECM PID
    pids = sorted({e.ecm_pid for e in scrambled_es if e.ecm_pid is not None}
                  or set(svc.ecm_pids))
    for pid in pids:
        ecm = facts.ecm.get(pid)
        if ecm is None or ecm.reason is None:
            if ecm is None or not ecm.sections:
                detail = f"no ECM received on PID {pid}"
            else:
                detail = ecm.problem or f"no usable ECM on PID {pid}"
            return status(Reason.NO_ECM, detail, ecm_pid=pid)
        if ecm.reason is not Reason.OPEN:
            return status(ecm.reason, ecm.detail, ecm_pid=pid)
    # 8: the control words
    bad = [e for e in scrambled_es if e.last_check is False]
    if bad:
        return status(Reason.NO_ECM, f"control words do not descramble PID {bad[0].pid} "
                      "(no PES start code after descrambling)")
    # 9
    checked = sum(e.checks_ok for e in scrambled_es)
    return status(Reason.OPEN, f"descrambled ({mode_name}), {checked} PES starts checked"
                  if checked else f"control words received ({mode_name}); "
                  "no PES start to check")
