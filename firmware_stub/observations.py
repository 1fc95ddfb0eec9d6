"""What the box has seen of one channel: frozen facts, the only input of the verdict.

The pass over a stream (:class:`firmware_stub.run.Run`) gathers them from three places and
hands them to :func:`firmware_stub.verdict.verdict`, which decides from nothing else:

* the lineup: the demux's :class:`~firmware_stub.demux.ServiceInfo` (PAT, PMT, SDT, the
  CA_descriptors for our CA system and for others);
* the packets: per elementary stream, clear and scrambled packets counted and the PES-start
  checks after descrambling (:class:`EsFacts`);
* the card dialog: per ECM PID, what came in and the card's last usable answer
  (:class:`EcmFacts`), and whether there is a card that answers at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cas.reasons import Reason
from firmware_stub.demux import ServiceInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmFacts:
    """One ECM PID: the sections that came in and the card's last usable answer."""

    pid: int
    #: ECM sections received, repetitions included
    sections: int
    #: the last unreadable or rejected ECM, "" when there was none
    problem: str
    #: the card's last usable answer (OPEN: control words installed); None: none yet
    reason: Reason | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EsFacts:
    """One elementary stream of the channel: its packets and the descrambling checks."""

    pid: int
    ecm_pid: int | None
    clear: int
    scrambled: int
    #: PES starts that began 00 00 01 after descrambling
    checks_ok: int
    #: the last such check (None: none yet)
    last_check: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelFacts:
    """Everything the verdict on one channel may use."""

    service: ServiceInfo
    #: the service's streams the box has counted, in PMT order
    streams: tuple[EsFacts, ...]
    #: the ECM PIDs the box has had a section on (a PID without one is absent)
    ecm: Mapping[int, EcmFacts]
    #: the CA_system_ID the box looks for in the PMT
    ca_system_id: int
    card_present: bool
    #: the card is there but cannot be talked to (None: it answers, or there is none)
    card_error: str | None
