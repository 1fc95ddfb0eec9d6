"""The card's own sharing check (docs/sharing.md, "On the card"): pure, state in, state out.

The card keeps, in its EEPROM state area (:mod:`cas.formats.cardstate`), the last
``ECM_RECORD_SLOTS`` ECMs it answered (channel, ECM time) and judges the window of each new
one by the head-end's rule (:mod:`cas.sharing`), with its own limits (tuners, rate
tolerance, window: set by EMM ``SET_SHARING`` or at personalisation).  The ECM's own time
is used, never the host's clock, as the head-end does with the card's ECM log, so both flag
the same windows.

:func:`judge` is asked for every ECM that passed every other check (authentic, fresh, the
access decision, paired), before the card answers:

* policy ``OFF``: nothing is kept, the ECM is answered;
* the window with this ECM breaks no rule: the ECM is recorded and answered;
* it breaks a rule: the flag is raised (or updated: the newest window that broke a rule,
  its counts, and how many windows did), and then
  * ``FLAG``: the ECM is recorded and answered;
  * ``REFUSE``: the ECM is refused (``9840``, ``SHARING_DETECTED``) and not recorded — the
    card answers no more services and no more requests per window than one box asks, so a
    sharing server gets at most the channels of one box, and a box that zapped faster than
    the tolerance gets its channel back in the next window.

The flag stays until the head-end clears it (EMM ``CLEAR_SHARING``, or a card taken from
KILLED back to a working status: :func:`clear`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from cas.card.data import SharingInfo
from cas.formats.cardstate import (
    ECM_RECORD_SLOTS,
    CardState,
    EcmSeen,
    SharingFlag,
    SharingSettings,
)
from cas.formats.emm import ClearSharing, EmmCommand, SetSharing
from cas.sharing import SharingLimits, SharingPolicy, rules_broken

__all__ = ["Judgement", "apply_sharing_commands", "clear", "judge", "limits_of", "sharing_info"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """The state after the ECM, and whether the card answers it."""

    state: CardState
    answer: bool
    #: the flag was raised, or tripped in a new window or by a new rule: written at once
    flag_changed: bool = False


@functools.lru_cache(maxsize=64)
def limits_of(settings: SharingSettings) -> SharingLimits:
    return SharingLimits(tuners=settings.tuners, window_s=settings.window_s,
                         rate_tolerance=settings.rate_tolerance)


def _window_counts(ecms: tuple[EcmSeen, ...], window: int, window_s: int) -> tuple[int, int]:
    """(distinct channels, requests) of the ECMs in window number ``window``."""
    channels = set()
    requests = 0
    for e in ecms:
        if e.time_s // window_s == window:
            channels.add(e.channel_id)
            requests += 1
    return len(channels), requests


def _with(state: CardState, *, ecms: tuple[EcmSeen, ...], flag: SharingFlag | None) -> CardState:
    # the hot path of every ECM: a plain constructor call, not dataclasses.replace
    return CardState(sharing=state.sharing, flag=flag, ecms=ecms, mails=state.mails,
                     acked=state.acked, fingerprint=state.fingerprint)


def judge(state: CardState, channel_id: int, time_s: int) -> Judgement:
    """May the card answer this ECM (channel, ECM time)? See the module doc."""
    settings = state.sharing
    if settings.policy is SharingPolicy.OFF:
        return Judgement(state=state, answer=True)
    limits = limits_of(settings)
    ecms = (*state.ecms[1 - ECM_RECORD_SLOTS:], EcmSeen(channel_id=channel_id, time_s=time_s))
    window = time_s // settings.window_s
    services, requests = _window_counts(ecms, window, settings.window_s)
    rules = rules_broken(services, requests, limits)
    old = state.flag
    if not rules:
        return Judgement(state=_with(state, ecms=ecms, flag=old), answer=True)
    start_s = window * settings.window_s
    if old is None:
        flag = SharingFlag(rules=rules, window_s=start_s, services=services, requests=requests)
    elif old.window_s == start_s:
        flag = dataclasses.replace(old, rules=tuple(dict.fromkeys(old.rules + rules)),
                                   services=max(old.services, services),
                                   requests=max(old.requests, requests))
    else:
        flag = SharingFlag(rules=rules, window_s=start_s, services=services, requests=requests,
                           trips=min(old.trips + 1, 0xFFFF))
    # raised, a new window, or a new rule: written at once; a count growing within the
    # window that already tripped is kept with the record (at most one write per window)
    changed = old is None or old.window_s != flag.window_s or old.rules != flag.rules
    if settings.policy is SharingPolicy.REFUSE:
        # not answered, so not recorded: the window keeps the requests that were answered
        return Judgement(state=_with(state, ecms=state.ecms, flag=flag), answer=False,
                         flag_changed=changed)
    return Judgement(state=_with(state, ecms=ecms, flag=flag), answer=True,
                     flag_changed=changed)


def clear(state: CardState) -> CardState:
    """The state with no flag and no ECM record (the settings are kept)."""
    return dataclasses.replace(state, flag=None, ecms=())


def apply_sharing_commands(state: CardState, commands: list[EmmCommand]) -> CardState:
    """The state after the ``SET_SHARING`` / ``CLEAR_SHARING`` commands of an applied EMM.
    New limits start a fresh record (the old one was judged by other limits)."""
    for c in commands:
        if isinstance(c, SetSharing):
            settings = SharingSettings(policy=c.policy, tuners=c.tuners,
                                       rate_tolerance=c.rate_tolerance, window_s=c.window_s)
            if settings != state.sharing:
                state = dataclasses.replace(state, sharing=settings, ecms=())
        elif isinstance(c, ClearSharing):
            state = clear(state)
    return state


def sharing_info(state: CardState) -> SharingInfo:
    """GET DATA 30: settings, flag, and the counts of the newest ECM's window."""
    s, flag = state.sharing, state.flag
    services = requests = 0
    if state.ecms:
        services, requests = _window_counts(state.ecms, state.ecms[-1].time_s // s.window_s,
                                            s.window_s)
    return SharingInfo(
        policy=s.policy, tuners=s.tuners, rate_tolerance=s.rate_tolerance,
        window_s=s.window_s, rules=flag.rules if flag else (),
        flag_window_s=flag.window_s if flag else 0, flag_services=flag.services if flag else 0,
        flag_requests=flag.requests if flag else 0, flag_trips=flag.trips if flag else 0,
        window_services=services, window_requests=requests)
