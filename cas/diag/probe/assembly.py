"""Report assembly: the scan state -> a :class:`.report.ProbeReport` (times, bitrates,
alarms)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import pairwise
from statistics import median
from typing import Any

from cas.diag.alarms import Alarm, AlarmCode
from cas.diag.probe.columns import NULL_PID
from cas.diag.probe.report import (
    STREAM_TYPES,
    AddressStats,
    CaSystemReport,
    EcmReport,
    EmmReport,
    EsReport,
    PidReport,
    ProbeReport,
    ScramblingReport,
    ServiceReport,
)
from cas.diag.probe.state import CaKind, CaPidState, PidState, ProgramState, ScanState
from cas.diag.timebase import DEFAULT_NOMINAL_BITRATE_BPS, PACKET_BITS, TimeBase
from cas.i18n import Msg, Translator


class Finisher:
    """Turns the scan state into a :class:`ProbeReport` (times, bitrates, alarms)."""

    def __init__(self, probe: ScanState) -> None:
        self.p = probe
        self.th = probe.thresholds
        self.total = probe.packets
        nominal = probe.nominal_bitrate_bps or DEFAULT_NOMINAL_BITRATE_BPS
        self.bases: dict[int, TimeBase] = {}
        for st in probe.pids.values():
            if len(st.pcr_idx) >= 2:
                self.bases[st.pid] = TimeBase(st.pcr_idx, st.pcr_ticks, nominal_bitrate_bps=nominal,
                                              source=f"PCR on PID {st.pid} (0x{st.pid:04X})")
        if self.bases:
            ref_pid = max(self.bases, key=lambda pid: (len(probe.pids[pid].pcr_idx), -pid))
            self.ref = self.bases[ref_pid]
        elif probe.nominal_bitrate_bps:
            self.ref = TimeBase.nominal(probe.nominal_bitrate_bps)
        else:
            self.ref = TimeBase.nominal(DEFAULT_NOMINAL_BITRATE_BPS)
        self.duration = max(self.ref.at(self.total), 1e-9)
        # ES / ECM PID -> programs
        self.es_programs: dict[int, list[int]] = {}
        self.ecm_programs: dict[int, list[int]] = {}
        for prog in sorted(probe.programs.values(), key=lambda x: x.number):
            for pid, _ in prog.streams:
                self.es_programs.setdefault(pid, []).append(prog.number)
            for ca in prog.ca:
                self.ecm_programs.setdefault(ca.ca_pid, [])
                if prog.number not in self.ecm_programs[ca.ca_pid]:
                    self.ecm_programs[ca.ca_pid].append(prog.number)
        self.alarms: list[Alarm] = []

    def base_for_program(self, number: int | None) -> TimeBase:
        prog = self.p.programs.get(number) if number is not None else None
        if prog is not None and prog.pcr_pid is not None and prog.pcr_pid in self.bases:
            return self.bases[prog.pcr_pid]
        return self.ref

    def base_for_pid(self, pid: int) -> TimeBase:
        programs = self.es_programs.get(pid) or self.ecm_programs.get(pid)
        return self.base_for_program(programs[0] if programs else None)

    def rate(self, packets: int) -> float:
        return packets * PACKET_BITS / self.duration

    def alarm(self, code: AlarmCode, text: Msg, **kw: Any) -> None:
        # ``message`` stays English (JSON, logs); ``text`` renders in the reader's language.
        self.alarms.append(Alarm(code=code, message=Translator("en")(text), text=text, **kw))

    def report(self) -> ProbeReport:
        p = self.p
        pids = self.pid_reports()
        services = self.service_reports()
        ecms = self.ecm_reports()
        emms = self.emm_reports()
        scrambling = self.scrambling_reports()
        ca_systems = self.ca_system_reports()
        self.stream_alarms(services, emms)
        periods = [s.crypto_period_s for s in scrambling if s.crypto_period_s] + [
            e.crypto_period_s for e in ecms if e.crypto_period_s]
        cc_events = sorted((st.pid, i, e, g) for st in p.pids.values()
                           for i, e, g in st.cc_events)
        order = {AlarmCode(c): n for n, c in enumerate(AlarmCode)}
        alarms = sorted(self.alarms, key=lambda a: (a.severity != "error", order[a.code],
                                                    a.pid if a.pid is not None else -1))
        return ProbeReport(
            source=p.source, ca_system_id=p.ca_system_id, size_bytes=p.size_bytes,
            packets=self.total, duration_s=self.duration, bitrate_bps=self.rate(self.total),
            time_base=self.ref.source, pcr_discontinuities=sum(
                b.discontinuities for b in self.bases.values()),
            sync_losses=p.sync_losses, skipped_bytes=p.skipped_bytes,
            transport_errors=p.transport_errors, transport_stream_id=p.transport_stream_id,
            services=services, pids=pids, cat=tuple(p.cat), ecms=ecms, emms=emms,
            scrambling=scrambling, alarms=tuple(alarms),
            crypto_period_s=median(periods) if periods else None, cc_events=tuple(cc_events),
            ca_systems=ca_systems)

    # --- PIDs and services ---------------------------------------------------------------------
    def pid_kind(self, pid: int) -> str:
        p = self.p
        if pid == 0x0000:
            return "PAT"
        if pid == 0x0001:
            return "CAT"
        if pid == 0x0011:
            return "SDT"
        if pid == NULL_PID:
            return "null"
        ca = p.ca_pids.get(pid)
        if ca is not None:
            return f"{ca.kind} (CA 0x{ca.ca_system_id:04X})"
        if pid in p.pmt_pids:
            return "PMT"
        for prog in p.programs.values():
            for es_pid, stype in prog.streams:
                if es_pid == pid:
                    return STREAM_TYPES.get(stype, f"stream_type 0x{stype:02X}")
            if prog.pcr_pid == pid:
                return "PCR"
        return "unreferenced"

    def pid_reports(self) -> tuple[PidReport, ...]:
        out = []
        for pid in sorted(self.p.pids):
            st = self.p.pids[pid]
            services = set(self.es_programs.get(pid, ())) | set(self.ecm_programs.get(pid, ()))
            services |= self.p.pmt_pids.get(pid, set())
            out.append(PidReport(
                pid=pid, kind=self.pid_kind(pid), service_ids=tuple(sorted(services)),
                packets=st.packets, bitrate_bps=self.rate(st.packets), clear=st.clear,
                scrambled_even=st.even, scrambled_odd=st.odd, scrambled_reserved=st.reserved,
                cc_errors=st.cc_errors, duplicates=st.duplicates, pcrs=len(st.pcr_idx),
                no_payload=st.no_payload))
            if st.cc_errors:
                first = st.cc_events[0][0] if st.cc_events else None
                self.alarm(AlarmCode.CC_ERROR,
                           Msg("alarm.cc_error", {"pid": pid, "hex": f"0x{pid:04X}",
                                                  "n": st.cc_errors}),
                           pid=pid, count=st.cc_errors,
                           at_s=None if first is None else self.base_for_pid(pid).at(first))
        if self.p.overflow:
            out.append(PidReport(
                pid=-1, kind="(PIDs beyond the 254th)", service_ids=(), packets=0,
                bitrate_bps=0.0, clear=0, scrambled_even=0, scrambled_odd=0,
                scrambled_reserved=0, cc_errors=0, duplicates=0, pcrs=0))
        return tuple(out)

    def service_reports(self) -> tuple[ServiceReport, ...]:
        p = self.p
        out = []
        for number in sorted(p.programs):
            prog = p.programs[number]
            es_ca: dict[int, list[int]] = {}
            prog_ecm = [c.ca_pid for c in prog.ca if c.es_pid is None]
            for c in prog.ca:
                if c.es_pid is not None:
                    es_ca.setdefault(c.es_pid, []).append(c.ca_pid)
            streams = tuple(EsReport(pid=pid, stream_type=stype,
                                     ecm_pids=tuple(es_ca.get(pid, prog_ecm)))
                            for pid, stype in prog.streams)
            packets = scrambled = 0
            for s in streams:
                st = p.pids.get(s.pid)
                if st is not None:
                    packets += st.packets
                    scrambled += st.even + st.odd + st.reserved
            base = self.base_for_program(number)
            out.append(ServiceReport(
                service_id=number, name=prog.name, provider=prog.provider,
                service_type=prog.service_type, pmt_pid=prog.pmt_pid, pcr_pid=prog.pcr_pid,
                in_pat=prog.in_pat, in_sdt=prog.in_sdt, has_pmt=prog.has_pmt,
                free_ca_mode=prog.free_ca_mode, scrambling_mode=prog.scrambling_mode,
                streams=streams, ca=tuple(prog.ca), packets=packets,
                scrambled_packets=scrambled, bitrate_bps=self.rate(packets),
                time_base=base.source))
            if prog.in_pat:
                self.pmt_alarm(prog, base)
        return tuple(out)

    def gaps(self, times: Iterable[int], base: TimeBase, *, end: bool = True) -> list[
            tuple[float, float]]:
        """(start, length) of every interval between consecutive events, the stream start
        and (``end``) the stream end."""
        ts = [base.at(i) for i in times]
        edges = [0.0, *ts, base.at(self.total)] if end else [0.0, *ts]
        return [(a, b - a) for a, b in pairwise(edges)]

    def pmt_alarm(self, prog: ProgramState, base: TimeBase) -> None:
        name = Msg("alarm.service", {"sid": prog.number})
        if not prog.pmt_times:
            self.alarm(AlarmCode.PMT_ERROR,
                       Msg("alarm.no_pmt", {"name": name, "pid": prog.pmt_pid}),
                       pid=prog.pmt_pid, service_id=prog.number)
            return
        late = [(a, g) for a, g in self.gaps(prog.pmt_times, base) if g > self.th.pmt_gap_s]
        if late:
            worst = max(g for _, g in late)
            self.alarm(AlarmCode.PMT_ERROR,
                       Msg("alarm.pmt_gap", {"name": name, "worst_ms": f"{worst * 1000:.0f}",
                                             "limit_ms": f"{self.th.pmt_gap_s * 1000:.0f}",
                                             "n": len(late)}),
                       pid=prog.pmt_pid, service_id=prog.number, at_s=late[0][0],
                       count=len(late), worst=worst)

    # --- ECM / EMM -----------------------------------------------------------------------------
    def ca_pids_of(self, kind: CaKind) -> list[tuple[int, CaPidState]]:
        """The ECM (or EMM) PIDs, in PID order."""
        return [(pid, ca) for pid, ca in sorted(self.p.ca_pids.items()) if ca.kind is kind]

    def ecm_reports(self) -> tuple[EcmReport, ...]:
        p = self.p
        out = []
        for pid, ca in self.ca_pids_of(CaKind.ECM):
            programs = self.ecm_programs.get(pid, [])
            base = self.base_for_pid(pid)
            times = [base.at(i) for i in ca.times]
            intervals = [b - a for a, b in pairwise(times)]
            changes = [base.at(i) for i in ca.parity_changes]
            periods = [b - a for a, b in pairwise(changes)]
            same = ([(b - a, a) for a, b in zip([times[0], *changes], [*changes, times[-1]],
                                                strict=True)] if times else [])
            st = p.pids.get(pid)
            out.append(EcmReport(
                pid=pid, ca_system_id=ca.ca_system_id, service_ids=tuple(programs),
                sections=len(ca.times), distinct_sections=ca.distinct,
                bitrate_bps=self.rate(st.packets if st else 0),
                first_at_s=times[0] if times else None, last_at_s=times[-1] if times else None,
                mean_interval_ms=(sum(intervals) / len(intervals) * 1000 if intervals else None),
                max_gap_ms=max(intervals) * 1000 if intervals else None,
                parity_changes=len(changes),
                crypto_period_s=median(periods) if periods else None,
                longest_same_parity_s=max(same)[0] if same else None,
                table_ids=dict(ca.tables), channel_ids=tuple(sorted(ca.channel_ids)),
                ecm_key_indexes=tuple(sorted(ca.key_indexes)), last_section=ca.last_section))
            self.ecm_alarms(ca, programs, base, times, same)
        return tuple(out)

    def service_active_until(self, programs: list[int], base: TimeBase) -> float | None:
        """Time of the last scrambled packet of these services (None: nothing scrambled)."""
        last: int | None = None
        for number in programs:
            prog = self.p.programs.get(number)
            for pid, _ in prog.streams if prog else ():
                st = self.p.pids.get(pid)
                if st is not None and st.last_scrambled is not None:
                    last = max(last or 0, st.last_scrambled)
        return None if last is None else base.at(last)

    def ecm_alarms(self, ca: CaPidState, programs: list[int], base: TimeBase, times: list[float],
                   same: list[tuple[float, float]]) -> None:
        th = self.th
        sid = programs[0] if programs else None
        label = Msg("alarm.ecm_label_service" if programs else "alarm.ecm_label",
                    {"pid": ca.pid, "hex": f"0x{ca.pid:04X}",
                     "sids": ", ".join(map(str, programs))})
        if not times:
            self.alarm(AlarmCode.ECM_MISSING, Msg("alarm.ecm_missing", {"label": label}),
                       pid=ca.pid, service_id=sid)
            return
        end = base.at(self.total)
        inner = [(a, b - a) for a, b in pairwise([0.0, *times]) if b - a > th.ecm_gap_s]
        if inner:
            worst = max(g for _, g in inner)
            self.alarm(AlarmCode.ECM_GAP,
                       Msg("alarm.ecm_gap", {"label": label, "n": len(inner),
                                             "limit_ms": f"{th.ecm_gap_s * 1000:.0f}",
                                             "worst_ms": f"{worst * 1000:.0f}",
                                             "at": f"{inner[0][0]:.1f}"}),
                       pid=ca.pid, service_id=sid, at_s=inner[0][0], count=len(inner),
                       worst=worst)
        tail = end - times[-1]
        if tail > th.ecm_gap_s:
            active = self.service_active_until(programs, base)
            still: Msg | str = "" if active is None else Msg(
                "alarm.scrambled_go_on", {"at": f"{active:.1f}"})
            self.alarm(AlarmCode.ECM_STOPPED,
                       Msg("alarm.ecm_stopped", {"label": label, "last": f"{times[-1]:.1f}",
                                                 "tail": f"{tail:.1f}", "still": still}),
                       pid=ca.pid, service_id=sid, at_s=times[-1], worst=tail)
        longest, since = max(same) if same else (0.0, 0.0)
        if longest >= th.cw_change_s:
            self.alarm(AlarmCode.CW_NOT_CHANGING,
                       Msg("alarm.ecm_parity", {"label": label, "longest": f"{longest:.1f}",
                                                "limit": f"{th.cw_change_s:.0f}"}),
                       pid=ca.pid, service_id=sid, worst=longest, at_s=since)

    def ca_system_reports(self) -> tuple[CaSystemReport, ...]:
        """Per CA system: ECM PIDs and rates, ECM parity per payload crypto-period, the
        alignment of ECM parity changes with the payload's switches, EMM PIDs and rates."""
        p = self.p
        ids = sorted({ca.ca_system_id for ca in p.ca_pids.values()})
        out = []
        for cas_id in ids:
            ecm = [(pid, ca) for pid, ca in self.ca_pids_of(CaKind.ECM)
                   if ca.ca_system_id == cas_id]
            emm = [(pid, ca) for pid, ca in self.ca_pids_of(CaKind.EMM)
                   if ca.ca_system_id == cas_id]
            a = _Alignment()
            intervals: list[float] = []
            for pid, ca in ecm:
                base = self.base_for_pid(pid)
                times = [base.at(i) for i in ca.times]
                if len(times) >= 2:
                    intervals.append((times[-1] - times[0]) / (len(times) - 1))
                es = self._payload_of(pid)
                if es is not None and es.parity is not None:
                    a.add(times, bytes(ca.tids), [base.at(i) for i in ca.parity_changes],
                          [base.at(i) for i in es.parity_changes], es.parity & 1)
            sections = sum(len(ca.times) for _, ca in ecm)
            out.append(CaSystemReport(
                ca_system_id=cas_id, ours=cas_id == p.ca_system_id,
                ecm_pids=tuple(pid for pid, _ in ecm), ecm_sections=sections,
                ecm_sections_per_s=sections / self.duration,
                ecm_interval_ms=sum(intervals) / len(intervals) * 1000 if intervals else None,
                periods=a.periods, periods_matching=a.matching,
                periods_both_parities=a.both, periods_without_ecm=a.without,
                switches=a.switches, switches_aligned=len(a.leads),
                lead_ms=(min(a.leads) * 1000, median(a.leads) * 1000, max(a.leads) * 1000)
                if a.leads else None,
                emm_pids=tuple(pid for pid, _ in emm),
                emm_sections=sum(len(ca.times) for _, ca in emm),
                emm_bitrate_bps=sum(self.rate(st.packets) for pid, _ in emm
                                    if (st := p.pids.get(pid)) is not None)))
        return tuple(out)

    def _payload_of(self, ecm_pid: int) -> PidState | None:
        """The first scrambled elementary stream of the ECM PID's first service."""
        for number in self.ecm_programs.get(ecm_pid, []):
            prog = self.p.programs.get(number)
            for pid, _ in prog.streams if prog else ():
                st = self.p.pids.get(pid)
                if st is not None and st.first_scrambled is not None:
                    return st
        return None

    def emm_reports(self) -> tuple[EmmReport, ...]:
        p = self.p
        out = []
        for pid, ca in self.ca_pids_of(CaKind.EMM):
            base = self.ref
            times = [base.at(i) for i in ca.times]
            gaps = [g for _, g in self.gaps(ca.times, base)] if ca.times else []
            st = p.pids.get(pid)
            ours = ca.ca_system_id == p.ca_system_id
            bitrate = self.rate(st.packets if st else 0)
            out.append(EmmReport(
                pid=pid, ca_system_id=ca.ca_system_id, ours=ours, sections=len(ca.times),
                bitrate_bps=bitrate, first_at_s=times[0] if times else None,
                last_at_s=times[-1] if times else None, max_gap_s=max(gaps) if gaps else None,
                table_ids=dict(ca.tables), by_address=dict(ca.address_counts),
                unique={s: AddressStats(sections=v[0], last_seq=v[1], last_at_s=base.at(v[2]))
                        for s, v in ca.unique.items()},
                shared={a: AddressStats(sections=v[0], last_seq=v[1], last_at_s=base.at(v[2]),
                                        members=v[3]) for a, v in ca.shared.items()},
                global_last_seq=ca.global_last_seq))
            if ours and bitrate < self.th.emm_min_bps:
                self.alarm(AlarmCode.EMM_BITRATE_LOW,
                           Msg("alarm.emm_bitrate", {"pid": pid, "hex": f"0x{pid:04X}",
                                                     "bps": f"{bitrate:.0f}",
                                                     "limit": self.th.emm_min_bps}),
                           pid=pid, worst=bitrate)
        return tuple(out)

    def scrambling_reports(self) -> tuple[ScramblingReport, ...]:
        out = []
        for pid in sorted(self.p.pids):
            st = self.p.pids[pid]
            if st.first_scrambled is None or st.last_scrambled is None:
                continue
            base = self.base_for_pid(pid)
            first = base.at(st.first_scrambled)
            last = base.at(st.last_scrambled)
            changes = [base.at(i) for i in st.parity_changes]
            periods = [b - a for a, b in pairwise(changes)]
            spans = [(b - a, a) for a, b in zip([first, *changes], [*changes, last],
                                                 strict=True)]
            programs = self.es_programs.get(pid)
            longest, since = max(spans)
            out.append(ScramblingReport(
                pid=pid, service_id=programs[0] if programs else None, even=st.even, odd=st.odd,
                first_at_s=first, last_at_s=last, parity_changes=len(changes),
                crypto_period_s=median(periods) if periods else None,
                longest_same_parity_s=longest))
            sid = programs[0] if programs else None
            label = Msg("alarm.pid_label" if sid is None else "alarm.pid_label_service",
                        {"pid": pid, "hex": f"0x{pid:04X}", "sids": sid})
            if longest >= self.th.cw_change_s:
                self.alarm(AlarmCode.CW_NOT_CHANGING,
                           Msg("alarm.cw_not_changing", {
                               "label": label, "longest": f"{longest:.1f}",
                               "limit": f"{self.th.cw_change_s:.0f}"}),
                           pid=pid, service_id=sid, worst=longest, at_s=since)
            self.no_ecm_alarm(st, programs, label, first)
        return tuple(out)

    def no_ecm_alarm(self, st: PidState, programs: list[int] | None, label: Msg,
                     first: float) -> None:
        p = self.p
        scrambled = st.even + st.odd + st.reserved
        if not programs:
            self.alarm(AlarmCode.SCRAMBLED_NO_ECM,
                       Msg("alarm.scrambled_unlisted", {"label": label, "n": scrambled}),
                       pid=st.pid, at_s=first, count=scrambled)
            return
        prog = p.programs[programs[0]]
        ecm_pids = [c.ca_pid for c in prog.ca if c.es_pid in (None, st.pid)]
        if not ecm_pids:
            self.alarm(AlarmCode.SCRAMBLED_NO_ECM,
                       Msg("alarm.scrambled_no_ca", {"label": label, "n": scrambled}),
                       pid=st.pid, service_id=prog.number,
                       at_s=first, count=scrambled)

    def stream_alarms(self, services: tuple[ServiceReport, ...],
                      emms: tuple[EmmReport, ...]) -> None:
        p = self.p
        th = self.th
        if p.sync_losses:
            self.alarm(AlarmCode.SYNC_LOSS,
                       Msg("alarm.sync_loss", {"n": p.sync_losses,
                                               "skipped": p.skipped_bytes}),
                       count=p.sync_losses, at_s=self.ref.at(p.sync_loss_at[0]))
        if p.transport_errors:
            self.alarm(AlarmCode.TRANSPORT_ERROR,
                       Msg("alarm.tei", {"n": p.transport_errors}),
                       count=p.transport_errors,
                       at_s=None if p.first_tei is None else self.ref.at(p.first_tei))
        if not p.pat_times:
            self.alarm(AlarmCode.PAT_ERROR, Msg("alarm.no_pat"), pid=0)
        else:
            late = [(a, g) for a, g in self.gaps(p.pat_times, self.ref) if g > th.pat_gap_s]
            if late:
                worst = max(g for _, g in late)
                self.alarm(AlarmCode.PAT_ERROR,
                           Msg("alarm.pat_gap", {"worst_ms": f"{worst * 1000:.0f}",
                                                 "limit_ms": f"{th.pat_gap_s * 1000:.0f}",
                                                 "n": len(late)}), pid=0, at_s=late[0][0],
                           count=len(late), worst=worst)
        crc = {pid: r.counts["crc"] for pid, r in p.reasm.items() if r.counts["crc"]}
        if crc:
            self.alarm(AlarmCode.CRC_ERROR,
                       Msg("alarm.crc", {"pids": ", ".join(f"PID {pid} ×{n}"
                                                           for pid, n in sorted(crc.items()))}),
                       count=sum(crc.values()), pid=min(crc))
        scrambled_any = any(s.scrambled_packets for s in services) or any(
            st.even + st.odd for st in p.pids.values())
        if scrambled_any and not p.cat_times:
            self.alarm(AlarmCode.CAT_ERROR, Msg("alarm.no_cat"),
                       pid=1)
        ours = [e for e in emms if e.ours]
        if scrambled_any and p.cat_times and not ours:
            self.alarm(AlarmCode.EMM_MISSING,
                       Msg("alarm.emm_missing", {"ca": f"0x{p.ca_system_id:04X}"}), pid=1)


class _Alignment:
    """ECM parity against the payload's crypto-periods, summed over a CA system's PIDs."""

    def __init__(self) -> None:
        self.periods = self.matching = self.both = self.without = self.switches = 0
        self.leads: list[float] = []

    def add(self, times: list[float], tids: bytes, ecm_changes: list[float],
            switches: list[float], last_parity: int) -> None:
        self.switches += len(switches)
        period = median([b - a for a, b in pairwise(switches)]) if len(switches) >= 2 else None
        n = len(switches)
        for k, (a, b) in enumerate(pairwise(switches)):  # whole periods only
            parity = last_parity ^ ((n - 1 - k) & 1)  # the payload's parity after switch k
            lo, hi = bisect_left(times, a), bisect_left(times, b)
            seen = [tids[j] & 1 for j in range(lo, hi)]
            self.periods += 1
            if not seen:
                self.without += 1
                continue
            if len(set(seen)) > 1:
                self.both += 1
            if 2 * seen.count(parity) > len(seen):
                self.matching += 1
        if period is None or not ecm_changes:
            return
        for s in switches:
            j = bisect_left(ecm_changes, s)
            near = min((ecm_changes[i] for i in (j - 1, j) if 0 <= i < len(ecm_changes)),
                       key=lambda c: abs(s - c))
            if abs(s - near) <= period / 2:
                self.leads.append(s - near)


def assemble(scan: ScanState) -> ProbeReport:
    """The report of a finished scan."""
    return Finisher(scan).report()
