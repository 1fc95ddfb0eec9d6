"""The lock report: every channel of the lineup, OPEN or LOCKED, and why (DESIGN §5).

One :class:`ChannelStatus` per service in the stream's PAT/PMT/SDT, with the reason code
(:class:`cas.reasons.Reason`), the on-screen code and message a real box would show
(:func:`cas.reasons.info`) and a one-line technical detail for field engineers.  The
report also carries what the box saw on the way: card identity, EMM filter counts and the
stream defects it survived.  ``to_json`` is the ``--json`` form; :func:`render` the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from cas.i18n import Translator
from cas.reasons import Reason, info, message


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStatus:
    """One channel's verdict."""

    channel: int  # the number the viewer tunes: LCN when the stream has one, else service_id
    service_id: int
    name: str
    reason: Reason
    scrambled: bool
    scrambling: str | None = None  # "CSA2" / "CISSA" / other mode text, None when clear
    ecm_pid: int | None = None
    detail: str = ""

    @property
    def open(self) -> bool:
        return self.reason is Reason.OPEN

    @property
    def state(self) -> str:
        return "OPEN" if self.open else "LOCKED"

    @property
    def screen_code(self) -> str:
        return info(self.reason).screen_code

    @property
    def message(self) -> str:
        return info(self.reason).en

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "service_id": self.service_id,
            "name": self.name,
            "state": self.state,
            "reason": self.reason.value,
            "screen_code": self.screen_code,
            "message": self.message,
            "message_ru": info(self.reason).ru,
            "scrambled": self.scrambled,
            "scrambling": self.scrambling,
            "ecm_pid": self.ecm_pid,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CardSummary:
    """What the box knows about its card after boot (``None`` fields: no card / unreadable)."""

    present: bool
    reader: str | None = None
    serial: int | None = None
    shared_address: int | None = None
    status: str | None = None
    paired_chip_id: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "reader": self.reader,
            "serial": None if self.serial is None else f"{self.serial:010d}",
            "shared_address": self.shared_address,
            "status": self.status,
            "paired_chip_id": (None if self.paired_chip_id is None
                               else f"{self.paired_chip_id:08X}"),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LockReport:
    """The box's answer for one stream."""

    chip_id: int
    card: CardSummary
    channels: tuple[ChannelStatus, ...]
    emm: Mapping[str, int] = field(default_factory=dict)
    stream: Mapping[str, Any] = field(default_factory=dict)
    pin: str | None = None  # outcome of VERIFY PIN when --pin was given
    #: the on-screen messages of the pass (firmware_stub.osd), None when there were none
    osd: Mapping[str, Any] | None = None

    def channel(self, number: int) -> ChannelStatus:
        for status in self.channels:
            if status.channel == number:
                return status
        raise KeyError(number)

    def reasons(self) -> dict[int, Reason]:
        """channel number -> reason: the form tests and the demo compare."""
        return {c.channel: c.reason for c in self.channels}

    @property
    def all_open(self) -> bool:
        return all(c.open for c in self.channels)

    def to_json(self) -> dict[str, Any]:
        return {
            "chip_id": f"{self.chip_id:08X}",
            "card": self.card.to_json(),
            "pin": self.pin,
            "channels": [c.to_json() for c in self.channels],
            "emm": dict(self.emm),
            "stream": dict(self.stream),
            **({"osd": dict(self.osd)} if self.osd is not None else {}),
        }


#: The box's one-line details (firmware_stub/verdict.py, cardslot.py, dialog.py) as
#: catalogue messages; the JSON keeps the English line (testers grep for it), people read
#: it in their language.  A line no pattern knows is shown as it came.
_DETAILS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), key) for pattern, key in (
        (r"no valid PMT received", "no_pmt"),
        (r"clear \(free to air\)", "free_to_air"),
        (r"clear; no packets seen", "clear_no_packets"),
        (r"no CA_descriptor for CA system (?P<ca>0x[0-9A-F]+) \(only for (?P<others>.+)\)",
         "no_ca_descriptor_others"),
        (r"no CA_descriptor for CA system (?P<ca>0x[0-9A-F]+)", "no_ca_descriptor"),
        (r"no card in the slot", "no_card_in_slot"),
        (r"no card", "no_card"),
        (r"no ECM received on PID (?P<pid>\d+)", "no_ecm"),
        (r"no usable ECM on PID (?P<pid>\d+)", "no_usable_ecm"),
        (r"unreadable ECM: (?P<error>.+)", "unreadable_ecm"),
        (r"control words do not descramble PID (?P<pid>\d+) \(no PES start code after "
         r"descrambling\)", "cw_wrong"),
        (r"descrambled \((?P<mode>[^)]+)\), (?P<n>\d+) PES starts checked", "descrambled"),
        (r"control words received \((?P<mode>[^)]+)\); no PES start to check", "cw_received"),
        (r"card: SW (?P<sw>[0-9A-F]{4})", "card_sw"),
        (r"card rejected the ECM: (?P<sw>.+)", "card_rejected"),
        (r"unexpected status word (?P<sw>.+)", "unexpected_sw"),
        (r"card removed: (?P<error>.+)", "card_removed"),
        (r"card failed: (?P<error>.+)", "card_failed"),
        (r"card answered (?P<n>\d+) bytes instead of wrapped CWs", "card_short"),
        (r"card info unreadable: (?P<error>.+)", "card_unreadable"),
        (r"card does not answer SELECT: (?P<error>.+)", "card_no_select"),
    ))


def detail_text(detail: str, t: Translator) -> str:
    """The box's technical detail in ``t``'s language (codes, PIDs, status words as they
    are)."""
    for pattern, key in _DETAILS:
        if m := pattern.fullmatch(detail):
            params: dict[str, Any] = dict(m.groupdict())
            if "n" in params:
                params["n"] = int(params["n"])
            return t(f"stb.detail.{key}", **params)
    return detail


@dataclass(frozen=True, slots=True)
class Detail:
    """A box detail as a message parameter (:class:`cas.i18n.Localised`)."""

    text: str

    def in_language(self, t: Translator) -> str:
        return detail_text(self.text, t)


def render(report: LockReport, console: Console, lang: str = "en") -> None:
    """Print the report as a rich table (what an integration tester reads), in ``lang``:
    headings, states, the on-screen messages and the technical detail; reason codes and
    screen codes stay as they are (testers grep for them)."""
    t = Translator(lang)
    card = report.card
    chip = f"{report.chip_id:08X}"
    if card.present and card.serial is not None:
        head = t("stb.head_card", chip=chip, card=f"{card.serial:010d}",
                 status=card.status or t("stb.status_unknown"))
    elif card.present:
        head = t("stb.head_card_error", chip=chip, error=card.error or t("stb.unreadable"))
    else:
        head = t("stb.head_no_card", chip=chip)
    table = Table(title=head, title_justify="left")
    # Codes never wrap (testers grep for them); the free text does.
    table.add_column(t("stb.col.ch"), justify="right", no_wrap=True)
    for key in ("name", "state", "reason", "code"):
        table.add_column(t(f"stb.col.{key}"), no_wrap=True)
    table.add_column(t("stb.col.message"), ratio=1, overflow="fold")
    table.add_column(t("stb.col.detail"), ratio=2, overflow="fold")
    for c in report.channels:
        state = Text(t(f"state.{c.state}"), style="green" if c.open else "red")
        table.add_row(str(c.channel), c.name, state, c.reason.value, c.screen_code,
                      message(c.reason, t.lang), detail_text(c.detail, t))
    parts: list[Any] = [table]
    emm = {k: v for k, v in report.emm.items() if v}
    if emm:
        parts.append(Text(t("stb.emms", counts=", ".join(f"{k} {v}"
                                                          for k, v in sorted(emm.items()))),
                          style="dim"))
    issues = int(report.stream.get("issue_count", 0) or 0)
    if issues:
        parts.append(Text(t("stb.defects", n=issues), style="yellow"))
    if report.pin:
        parts.append(Text(t("stb.pin", pin=report.pin), style="dim"))
    for event in (report.osd or {}).get("events", ()):
        if event["event"] == "osd_acknowledged":
            parts.append(Text(t("stb.osd_message", id=event["message_id"],
                                priority=event["priority"], text=event["text"])))
        elif event["event"] == "osd_preempted":
            parts.append(Text(t("stb.osd_preempted", id=event["message_id"]), style="dim"))
    console.print(Group(*parts))
