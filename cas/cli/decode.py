"""``cas decode`` — the field engineer's knife.

Takes hex on the command line, a file, or stdin; detects what the bytes are (TS file or
packet, PSI section, ECM, EMM, a file of back-to-back sections, APDU, smart-card record or
batch, Chip ID record or batch, SimulCrypt message) or takes ``--as KIND``; prints a tree or
``--json``.  With ``--keys FILE`` it also authenticates and decrypts ECM/EMM bodies and shows
what is inside.  Bytes it cannot tell are refused ("cannot tell", exit 3), never guessed: a
response APDU is recognised alone only as a 2-byte status word it knows (``--as
response-apdu`` for one with data).
"""

from __future__ import annotations

import binascii
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.tree import Tree

from cas.cli.app import Application, pass_app
from cas.crypto import OperatorKeys
from cas.errors import AuthenticationError, CasError, FormatError, UsageError
from cas.formats import apdu, chipid, ecm, emm, ppv, psi, records, simulcrypt, ts
from cas.formats.records import CARD_BATCH_MAGIC, CARD_RECORD_MAGIC, CHIP_BATCH_MAGIC
from cas.formats.sections import section_total_length
from cas.messages import open_ecm_section, open_emm_section

KINDS = (
    "ts", "packet", "section", "ecm", "emm", "sections", "command-apdu", "response-apdu",
    "card-record", "card-batch", "chip-record", "chip-batch", "simulcrypt",
    "ppv-report", "ppv-file",
)
#: How many sections of a sections file are shown one by one (all are counted).
SECTIONS_SHOWN = 100
_HEX_RE = re.compile(r"^[0-9a-fA-F\s:.\-]+$")


def read_input(source: str | None) -> bytes:
    """Hex text, a file path, or stdin (hex text or raw bytes)."""
    if source is not None and source != "-":
        if not source.strip():
            raise UsageError("empty argument: give hex bytes, a file, or '-' for stdin").with_id(
                "cli.empty_argument_give_hex")
        path = Path(source)
        if _is_existing(path):
            if path.is_dir():
                raise UsageError(f"{source} is a directory").with_id("cli.directory", source=source)
            try:
                return path.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {source}: {exc.strerror or exc}").with_id(
                    "cli.cannot_read", source=source, value=exc.strerror or exc) from None
        return _from_hex(source)
    raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return raw
    if text.strip() and _HEX_RE.match(text.strip()):
        return _from_hex(text)
    return raw


def _is_existing(path: Path) -> bool:
    """Whether ``path`` names something; a name no file system takes (too long, NUL) does not."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _from_hex(text: str) -> bytes:
    cleaned = re.sub(r"[\s:.\-]", "", text)
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned:
        raise UsageError("no input bytes").with_id("cli.no_input_bytes")
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        raise UsageError(
            f"{text[:40]!r} is neither an existing file nor hex bytes"
        ).with_id("cli.neither_existing_file_nor", text=f"{text[:40]!r}") from None


# --- detection ----------------------------------------------------------------------------
def detect(data: bytes) -> str:
    """Best guess of what ``data`` is (see KINDS).  FormatError if nothing fits."""
    if not data:
        raise FormatError("empty input").with_id("cli.empty_input")
    head = data[:4]
    if head == ppv.REPORT_MAGIC:
        return "ppv-report"
    if head == ppv.PPV_FILE_MAGIC:
        return "ppv-file"
    if head == CARD_RECORD_MAGIC:
        return "card-record"
    if head == CARD_BATCH_MAGIC:
        return "card-batch"
    if head == CHIP_BATCH_MAGIC:
        return "chip-batch"
    if head == chipid.CHIP_ID_MAGIC:
        return "chip-record"
    if data[0] == ts.SYNC_BYTE and len(data) >= ts.PACKET_SIZE:
        if len(data) == ts.PACKET_SIZE:
            return "packet"
        if data[ts.PACKET_SIZE] == ts.SYNC_BYTE or len(data) % ts.PACKET_SIZE == 0:
            return "ts"
    if _several_sections(data):
        return "sections"
    tid = data[0]
    if tid in (0x80, 0x81):
        return "ecm"
    if 0x82 <= tid <= 0x8F:
        return "emm"
    if tid in (0x00, 0x01, 0x02, 0x42, 0x46) and len(data) >= 3 and data[1] & 0x80:
        return "section"
    if 1 <= data[0] <= 5 and len(data) >= 5:
        try:
            simulcrypt.parse_message(data)
            return "simulcrypt"
        except FormatError:
            pass
    try:
        cmd = apdu.parse_command_apdu(data)
        if cmd.cla != 0xFF and len(data) >= 4:
            return "command-apdu"
    except FormatError:
        pass
    if len(data) == 2 and _known_status_word((data[0] << 8) | data[1]):
        return "response-apdu"
    # Any two bytes or more "parse" as data + SW1 SW2: that is no evidence, so no guess.
    raise FormatError(f"cannot tell what these {len(data)} bytes are; use --as KIND").with_id(
        "cli.cannot_tell_what_these", n=len(data))


def _known_status_word(sw: int) -> bool:
    try:
        apdu.parse_response_apdu(sw.to_bytes(2, "big"))
    except FormatError:
        return False
    return not apdu.describe_sw(sw).startswith("unknown")


_SECTION_TABLE_IDS = frozenset((0x00, 0x01, 0x02, 0x42, 0x46, *range(0x80, 0x90)))
#: The shortest section worth the name: a long section's 8 header bytes and its CRC_32.
_MIN_SECTION_BYTES = 12


def split_sections(data: bytes) -> list[bytes] | None:
    """``data`` as back-to-back sections of tables ``cas decode`` knows (0xFF stuffing may
    follow the last), or None when the lengths do not chain exactly to the end."""
    out: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n and data[pos] != 0xFF:
        if data[pos] not in _SECTION_TABLE_IDS or pos + 3 > n:
            return None
        total = section_total_length(data[pos : pos + 3])
        if pos + total > n or total < _MIN_SECTION_BYTES:
            return None
        if data[pos] < 0x80 and not data[pos + 1] & 0x80:  # PSI/SI: long sections only
            return None
        out.append(data[pos : pos + total])
        pos += total
    if not out or data[pos:].strip(b"\xff"):
        return None
    return out


def _several_sections(data: bytes) -> bool:
    sections = split_sections(data)
    return sections is not None and len(sections) > 1


# --- decoding -----------------------------------------------------------------------------
class Decoder:
    def __init__(self, keys: OperatorKeys | None) -> None:
        self.keys = keys

    def decode(self, kind: str, data: bytes) -> dict[str, Any]:
        handler: Callable[[bytes], dict[str, Any]] = getattr(self, "_" + kind.replace("-", "_"))
        out = handler(data)
        return {"kind": kind, "length": len(data), **out}

    def _ppv_report(self, data: bytes) -> dict[str, Any]:
        """A card's purchase report (docs/formats.md §8); with keys, whether it is authentic."""
        out = ppv.describe_report(ppv.parse_report(data))
        if self.keys is not None:
            from cas.crypto.ppv import report_key, verify_report_tag

            report = ppv.parse_report(data)
            try:
                verify_report_tag(report_key(self.keys.cuk(report.serial)),
                                  ppv.report_nonce(report.report_counter),
                                  ppv.report_clear_bytes(report), report.tag)
            except AuthenticationError:
                out["authenticated"] = False
            else:
                out["authenticated"] = True
        return out

    def _ppv_file(self, data: bytes) -> dict[str, Any]:
        """A card's PPV file (``<image>.ppv``, docs/formats.md §8)."""
        st = ppv.parse_ppv_file(data)
        return {"type": "ppv_file", "purse_tokens": st.purse_tokens,
                "credit_limit_tokens": st.credit_limit_tokens,
                "report_counter": st.report_counter, "next_purchase_seq": st.next_purchase_seq,
                "rights": [{"event_id": r.event_id, "channel_id": r.channel_id,
                            "start_s": r.start_s, "end_s": r.end_s, "bought": r.impulse}
                           for r in st.rights],
                "purchases": ppv.describe_report(ppv.PurchaseReport(
                    serial=0, report_counter=0, purse_tokens=0, credit_limit_tokens=0,
                    purchases=st.purchases))["purchases"]}

    def _card_record(self, data: bytes) -> dict[str, Any]:
        """A card record, or a card's EEPROM image: the record, then its state area when it
        has one (docs/formats.md §2.2)."""
        from cas.formats.cardstate import describe_card_state, parse_card_state

        size = records.CARD_RECORD_SIZE
        out = records.describe(records.parse_card_record(data[:size]))
        if len(data) > size:
            out["card_state"] = describe_card_state(parse_card_state(data[size:]))
        return out

    def _card_batch(self, data: bytes) -> dict[str, Any]:
        return records.describe(records.parse_card_batch(data))

    def _chip_record(self, data: bytes) -> dict[str, Any]:
        return chipid.describe(chipid.parse_chip_id_record(data))

    def _chip_batch(self, data: bytes) -> dict[str, Any]:
        return chipid.describe(chipid.parse_chip_batch(data))

    def _sections(self, data: bytes) -> dict[str, Any]:
        sections = split_sections(data)
        if sections is None:
            raise FormatError("not back-to-back sections (their lengths do not add up to the "
                              "input)", path="sections").with_id("cli.sections_not_back_back")
        counts: Counter[str] = Counter()
        shown: list[dict[str, Any]] = []
        offset = 0
        for section in sections:
            kind = _section_kind(section[0])
            counts[kind] += 1
            if len(shown) < SECTIONS_SHOWN:
                try:
                    shown.append({"offset": offset, **self.decode(kind, section)})
                except FormatError as exc:
                    shown.append({"offset": offset, "kind": kind, "length": len(section),
                                  "error": str(exc)})
            offset += len(section)
        if all("error" in one for one in shown):
            raise FormatError("cannot tell: none of the sections decodes", path="sections").with_id(
                "cli.sections_cannot_tell_none")
        return {"count": len(sections), "counts": dict(counts),
                "shown": len(shown), "sections": shown}

    def _section(self, data: bytes) -> dict[str, Any]:
        return psi.describe(psi.parse_psi(data))

    def _command_apdu(self, data: bytes) -> dict[str, Any]:
        return apdu.describe(apdu.parse_command_apdu(data))

    def _response_apdu(self, data: bytes) -> dict[str, Any]:
        return apdu.describe(apdu.parse_response_apdu(data))

    def _simulcrypt(self, data: bytes) -> dict[str, Any]:
        return simulcrypt.describe(data)

    def _packet(self, data: bytes) -> dict[str, Any]:
        return ts.describe(ts.parse_packet(data))

    def _ecm(self, data: bytes) -> dict[str, Any]:
        parsed = ecm.parse_ecm(data)
        out = ecm.describe(parsed)
        if self.keys is not None:
            try:
                body = open_ecm_section(self.keys.ecm_key(parsed.header.ecm_key_index), parsed, data)
            except AuthenticationError:
                out["authenticated"] = False
            else:
                out["authenticated"] = True
                out["body"] = ecm.describe(body)
        return out

    def _emm(self, data: bytes) -> dict[str, Any]:
        parsed = emm.parse_emm_section(data)
        out = emm.describe(parsed)
        if self.keys is not None and isinstance(parsed, emm.Emm):
            address = parsed.header.address
            if isinstance(address, emm.UniqueAddress):
                key = self.keys.cuk(address.serial)
            elif isinstance(address, emm.SharedAddress):
                key = self.keys.group_key(address.shared_address)
            else:
                key = self.keys.global_key()
            try:
                commands = open_emm_section(key, parsed, data)
            except AuthenticationError:
                out["authenticated"] = False
            else:
                out["authenticated"] = True
                out["commands"] = [emm.describe_command(c) for c in commands]
        return out

    def _ts(self, data: bytes) -> dict[str, Any]:
        pids: Counter[int] = Counter()
        scrambled: Counter[int] = Counter()
        packets = 0
        psi_pids = {0x0000, 0x0001, 0x0011}
        reassemblers: dict[int, ts.SectionReassembler] = {}
        tables: list[dict[str, Any]] = []
        seen_tables: set[tuple[int, int, int]] = set()
        ca_sections: list[dict[str, Any]] = []
        ca_counts: Counter[str] = Counter()
        for pkt in ts.iter_packets(data):
            packets += 1
            pid = ts.pid_of(pkt)
            pids[pid] += 1
            if ts.scrambling_of(pkt):
                scrambled[pid] += 1
                continue
            if pid not in psi_pids and pid not in reassemblers:
                continue
            r = reassemblers.get(pid)
            if r is None:
                r = reassemblers[pid] = ts.SectionReassembler(pid, check_crc=True)
            for section in r.feed(pkt):
                self._ts_section(pid, section, tables, seen_tables, ca_sections, ca_counts,
                                 psi_pids, reassemblers)
        if packets == 0:
            raise FormatError("no TS packets found", path="ts").with_id("cli.ts_no_ts_packets")
        return {
            "packets": packets,
            "pids": [
                {"pid": f"0x{pid:04X}", "packets": n, "scrambled": scrambled.get(pid, 0)}
                for pid, n in sorted(pids.items())
            ],
            "tables": tables,
            "ca_section_counts": dict(ca_counts),
            "ca_sections": ca_sections,
        }

    def _ts_section(self, pid: int, section: bytes, tables: list[dict[str, Any]],
                    seen: set[tuple[int, int, int]], ca_sections: list[dict[str, Any]],
                    ca_counts: Counter[str], psi_pids: set[int],
                    reassemblers: dict[int, ts.SectionReassembler]) -> None:
        tid = section[0]
        if 0x80 <= tid <= 0x8F:
            kind = "ecm" if tid < 0x82 else "emm"
            ca_counts[kind] += 1
            if len(ca_sections) < 20:
                try:
                    ca_sections.append({"pid": f"0x{pid:04X}", **self.decode(kind, section)})
                except FormatError as exc:
                    ca_sections.append({"pid": f"0x{pid:04X}", "kind": kind, "error": str(exc)})
            return
        try:
            table = psi.parse_psi(section)
        except FormatError:
            return
        key = (pid, tid, getattr(table, "section_number", 0))
        if key in seen:
            return
        seen.add(key)
        tables.append({"pid": f"0x{pid:04X}", **psi.describe(table)})
        new_pids: list[int] = []
        if isinstance(table, psi.Pat):
            new_pids = [p.pid for p in table.programs]
        elif isinstance(table, psi.Cat | psi.Pmt):
            new_pids = [ref.ca_pid for ref in psi.find_ca_descriptors(section)]
        for p in new_pids:
            if p not in reassemblers:
                psi_pids.add(p)
                reassemblers[p] = ts.SectionReassembler(p, check_crc=True)


def _section_kind(table_id: int) -> str:
    if table_id in (0x80, 0x81):
        return "ecm"
    if 0x82 <= table_id <= 0x8F:
        return "emm"
    return "section"


# --- rendering ------------------------------------------------------------------------------
def _tree(label: str, value: Any) -> Tree:
    node = Tree(f"[bold]{label}[/bold]")
    _fill(node, value)
    return node


def _fill(node: Tree, value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list):
                _fill(node.add(f"[cyan]{k}[/cyan]"), v)
            else:
                node.add(f"[cyan]{k}[/cyan]: {v}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, dict | list):
                _fill(node.add(f"[dim][{i}][/dim]"), v)
            else:
                node.add(f"[dim][{i}][/dim] {v}")
    else:
        node.add(str(value))


@click.command("decode")
@click.argument("source", required=False)
@click.option("--as", "kind", type=click.Choice(KINDS), help="Decode as this kind (no detection).")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Operator key file: also authenticate and decrypt ECM/EMM bodies.")
@pass_app
def decode_cmd(app: Application, source: str | None, kind: str | None,
               keys_path: Path | None) -> None:
    """Decode SOURCE: hex bytes, a file path, or '-' / nothing for stdin."""
    data = read_input(source)
    keys = OperatorKeys.load(keys_path) if keys_path else None
    chosen = kind or detect(data)
    try:
        result = Decoder(keys).decode(chosen, data)
    except CasError:
        raise
    except Exception as exc:  # a parser bug must still be one line, never a traceback
        raise FormatError(f"cannot decode as {chosen}: {exc.__class__.__name__}").with_id(
            "cli.cannot_decode", chosen=chosen, name__=exc.__class__.__name__) from exc
    app.output(result, lambda: app.console.print(_tree(chosen, result)))


def register(cli: click.Group) -> None:
    cli.add_command(decode_cmd)
