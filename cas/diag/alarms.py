"""Probe alarms, the way head-end probes raise them (ETSI TR 101 290 style).

Each alarm has a stable code, a severity and one line for people.  The TR 101 290 checks
this probe makes are named in the table; the CA checks (ECM gap, CW not changing, EMM
bitrate, scrambled without ECM) are the ones head-end CA monitors add on top (TR 101 290
§5.2.3 "CAT_error" covers only a missing CAT).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cas.i18n import Msg, Translator


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class AlarmCode(StrEnum):
    SYNC_LOSS = "SYNC_LOSS"  # TR 101 290 1.1 TS_sync_loss / 1.2 Sync_byte_error
    PAT_ERROR = "PAT_ERROR"  # 1.3 PAT_error: no PAT for more than 0.5 s
    CC_ERROR = "CC_ERROR"  # 1.4 Continuity_count_error
    PMT_ERROR = "PMT_ERROR"  # 1.5 PMT_error: a PMT not repeated within 0.5 s
    TRANSPORT_ERROR = "TRANSPORT_ERROR"  # 2.1 Transport_error (TEI set)
    CRC_ERROR = "CRC_ERROR"  # 2.2 CRC_error in PSI
    CAT_ERROR = "CAT_ERROR"  # 2.6 CAT_error: scrambled packets but no CAT
    ECM_MISSING = "ECM_MISSING"  # an ECM PID is signalled but carries no ECM
    ECM_GAP = "ECM_GAP"  # ECMs more than 500 ms apart
    ECM_STOPPED = "ECM_STOPPED"  # ECMs stopped before the end of the stream
    CW_NOT_CHANGING = "CW_NOT_CHANGING"  # scrambling parity unchanged for 25 s
    EMM_MISSING = "EMM_MISSING"  # no EMM PID for the CA system in the CAT
    EMM_BITRATE_LOW = "EMM_BITRATE_LOW"  # EMM PID under 1 kbit/s
    SCRAMBLED_NO_ECM = "SCRAMBLED_NO_ECM"  # scrambled packets, no ECM to descramble them


#: What each alarm means, for ``cas diag codes`` and the field guide.
ALARM_TEXT: dict[AlarmCode, tuple[Severity, str]] = {
    AlarmCode.SYNC_LOSS: (Severity.ERROR, "sync byte 0x47 missing: bytes skipped to resync"),
    AlarmCode.PAT_ERROR: (Severity.ERROR, "PAT missing or repeated less often than every 0.5 s"),
    AlarmCode.CC_ERROR: (Severity.ERROR, "continuity_counter errors: packets lost or reordered"),
    AlarmCode.PMT_ERROR: (Severity.ERROR, "a PMT repeated less often than every 0.5 s"),
    AlarmCode.TRANSPORT_ERROR: (Severity.ERROR, "packets with transport_error_indicator set"),
    AlarmCode.CRC_ERROR: (Severity.ERROR, "PSI sections with a wrong CRC_32"),
    AlarmCode.CAT_ERROR: (Severity.ERROR, "scrambled packets but no CAT on PID 0x0001"),
    AlarmCode.ECM_MISSING: (Severity.ERROR, "an ECM PID is signalled but carries no ECM"),
    AlarmCode.ECM_GAP: (Severity.ERROR, "ECMs more than 500 ms apart"),
    AlarmCode.ECM_STOPPED: (Severity.ERROR, "ECMs stopped before the end of the stream"),
    AlarmCode.CW_NOT_CHANGING: (Severity.ERROR,
                                "control word (scrambling parity) unchanged for 25 s or more"),
    AlarmCode.EMM_MISSING: (Severity.WARNING, "no EMM PID for the CA system in the CAT"),
    AlarmCode.EMM_BITRATE_LOW: (Severity.WARNING, "EMM PID carries less than 1 kbit/s"),
    AlarmCode.SCRAMBLED_NO_ECM: (Severity.ERROR,
                                 "scrambled packets on a PID with no ECM to descramble them"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Alarm limits; the defaults are the ones named in the issue and in TR 101 290."""

    ecm_gap_s: float = 0.5
    cw_change_s: float = 25.0
    emm_min_bps: int = 1000
    pat_gap_s: float = 0.5
    pmt_gap_s: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Alarm:
    """One alarm: what, where (PID / service), when first (s since the first packet), how
    often, and the worst value seen (e.g. the longest gap in seconds)."""

    code: AlarmCode
    message: str
    pid: int | None = None
    service_id: int | None = None
    at_s: float | None = None
    count: int = 1
    worst: float | None = None
    #: The message not yet in a language (``message`` is its English text).
    text: Msg | None = None

    def in_language(self, t: Translator) -> str:
        """The one line in ``t``'s language; English when the alarm came without a text."""
        return self.message if self.text is None else t(self.text)

    @property
    def severity(self) -> Severity:
        return ALARM_TEXT[self.code][0]

    def to_json(self, t: Translator | None = None) -> dict[str, Any]:
        """``message`` in ``t``'s language (English by default), ``message_en`` always."""
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "message": self.message if t is None else self.in_language(t),
            "message_en": self.message,
            "pid": self.pid,
            "service_id": self.service_id,
            "at_s": None if self.at_s is None else round(self.at_s, 3),
            "count": self.count,
            "worst": None if self.worst is None else round(self.worst, 3),
        }
