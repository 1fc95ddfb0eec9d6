"""The card's Answer-To-Reset (ISO/IEC 7816-3 §8.2) and a decoder for any ATR.

Our ATR::

    3B 9B 13 81 31 FE 45  80 56 43 41 53 53 49 4D 62 HH LL  TCK
    TS T0 TA1 TD1 TD2 TA3 TB3 |-------- historical bytes ---------|

* TS ``3B``: direct convention.
* T0 ``9B``: TA1 and TD1 follow; K = 11 historical bytes.
* TA1 ``13``: Fi = 372, Di = 4 (what vsmartcard's default ATR offers too).
* TD1 ``81``: TD2 follows; protocol T=1.  TD2 ``31``: TA3 and TB3 follow; T=1.
* TA3 ``FE``: IFSC 254 bytes.  TB3 ``45``: BWI 4, CWI 5.
* Historical bytes (ISO/IEC 7816-4 §8.1.1): category indicator ``80`` (compact-TLV objects
  follow), card issuer's data ``5`` len 6 = ASCII ``CASSIM`` (names the card), pre-issuing
  data ``6`` len 2 = card OS version (u16).
* TCK: XOR of T0 .. the last historical byte (present because T=1 is offered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cas.errors import FormatError

CARD_NAME = b"CASSIM"
ATR_INTERFACE = bytes.fromhex("3B 9B 13 81 31 FE 45")

_FI = {0: 372, 1: 372, 2: 558, 3: 744, 4: 1116, 5: 1488, 6: 1860, 9: 512, 10: 768, 11: 1024,
       12: 1536, 13: 2048}
_DI = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16, 6: 32, 7: 64, 8: 12, 9: 20}
_COMPACT_TAGS = {
    0x1: "country_code", 0x2: "issuer_id", 0x3: "card_service_data",
    0x4: "initial_access_data", 0x5: "card_issuer_data", 0x6: "pre_issuing_data",
    0x7: "card_capabilities", 0x8: "status_indicator", 0xF: "application_identifier",
}


def historical_bytes(card_os_version: int) -> bytes:
    return (b"\x80" + bytes([0x50 | len(CARD_NAME)]) + CARD_NAME
            + b"\x62" + (card_os_version & 0xFFFF).to_bytes(2, "big"))


def build_atr(card_os_version: int = 0x0100) -> bytes:
    """The ATR of a card whose OS version is ``card_os_version`` (see module docstring)."""
    hist = historical_bytes(card_os_version)
    body = bytearray(ATR_INTERFACE)
    body[1] = 0x90 | len(hist)  # TA1 + TD1 present, K historical bytes
    body += hist
    tck = 0
    for b in body[1:]:
        tck ^= b
    return bytes(body) + bytes([tck])


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedAtr:
    """What an ATR says, for ``cas diag card``."""

    raw: bytes
    convention: str
    protocols: tuple[int, ...]
    interface: dict[str, int] = field(default_factory=dict)
    fi: int | None = None
    di: int | None = None
    ifsc: int | None = None
    historical: bytes = b""
    compact_tlv: dict[str, bytes] = field(default_factory=dict)
    tck_ok: bool | None = None
    card_name: str | None = None
    card_os_version: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "hex": self.raw.hex(" ").upper(),
            "convention": self.convention,
            "protocols": [f"T={t}" for t in self.protocols],
            "fi": self.fi, "di": self.di, "ifsc": self.ifsc,
            "historical_bytes": self.historical.hex(" ").upper(),
            "compact_tlv": {k: v.hex(" ").upper() for k, v in self.compact_tlv.items()},
            "tck_ok": self.tck_ok,
            "card_name": self.card_name,
            "card_os_version": (f"{self.card_os_version >> 8}.{self.card_os_version & 0xFF}"
                                if self.card_os_version is not None else None),
        }


def decode_atr(atr: bytes) -> DecodedAtr:
    """Decode any ATR (ISO/IEC 7816-3 §8.2); :class:`FormatError` if it is malformed."""
    if len(atr) < 2 or len(atr) > 33:
        raise FormatError(f"an ATR is 2..33 bytes, got {len(atr)}", path="atr").with_id(
            "card.atr_atr_bytes", n=len(atr))
    ts = atr[0]
    if ts == 0x3B:
        convention = "direct"
    elif ts == 0x3F:
        convention = "inverse"
    else:
        raise FormatError(f"TS must be 3B or 3F, got {ts:02X}", path="atr.ts").with_id(
            "card.atr_ts_ts_b", ts=f"{ts:02X}")
    t0 = atr[1]
    k = t0 & 0x0F
    pos = 2
    y = t0 >> 4
    level = 1
    interface: dict[str, int] = {}
    protocols: list[int] = []
    while True:
        for bit, name in ((1, "TA"), (2, "TB"), (4, "TC"), (8, "TD")):
            if y & bit:
                if pos >= len(atr):
                    raise FormatError(f"truncated at {name}{level}", path="atr").with_id(
                        "card.atr_truncated", name=name, level=level)
                interface[f"{name}{level}"] = atr[pos]
                pos += 1
        td = interface.get(f"TD{level}")
        if td is None:
            break
        protocols.append(td & 0x0F)
        y = td >> 4
        level += 1
    if not protocols:
        protocols.append(0)
    if pos + k > len(atr):
        raise FormatError(f"T0 announces {k} historical bytes, only {len(atr) - pos} left",
                          path="atr.historical").with_id(
            "card.atr_historical_t0_announces", k=k, value=len(atr) - pos)
    hist = atr[pos : pos + k]
    pos += k
    tck_ok: bool | None = None
    if any(p != 0 for p in protocols):
        if pos != len(atr) - 1:
            raise FormatError("TCK missing or trailing bytes", path="atr.tck").with_id(
                "card.atr_tck_tck_missing")
        x = 0
        for b in atr[1:]:
            x ^= b
        tck_ok = x == 0
    elif pos != len(atr):
        raise FormatError("trailing bytes after the historical bytes", path="atr").with_id(
            "card.atr_trailing_bytes_after")
    fi = di = None
    if "TA1" in interface:
        fi = _FI.get(interface["TA1"] >> 4)
        di = _DI.get(interface["TA1"] & 0x0F)
    ifsc = None
    for lvl in range(3, level + 1):  # first TA for T=1 at level >= 3 is IFSC
        if f"TA{lvl}" in interface and protocols[lvl - 2] == 1:
            ifsc = interface[f"TA{lvl}"]
            break
    compact = _compact_tlv(hist)
    card_name: str | None = None
    version: int | None = None
    issuer = compact.get("card_issuer_data")
    if issuer is not None:
        card_name = issuer.decode("ascii", errors="replace")
    pre = compact.get("pre_issuing_data")
    if pre is not None and len(pre) == 2:
        version = int.from_bytes(pre, "big")
    offered = tuple(dict.fromkeys(protocols))
    return DecodedAtr(raw=bytes(atr), convention=convention, protocols=offered,
                      interface=interface, fi=fi, di=di, ifsc=ifsc, historical=bytes(hist),
                      compact_tlv=compact, tck_ok=tck_ok, card_name=card_name,
                      card_os_version=version)


def _compact_tlv(hist: bytes) -> dict[str, bytes]:
    """ISO/IEC 7816-4 §8.1.1: category 0x80 then compact-TLV (tag nibble, length nibble)."""
    if not hist or hist[0] != 0x80:
        return {}
    out: dict[str, bytes] = {}
    pos = 1
    while pos < len(hist):
        tag, length = hist[pos] >> 4, hist[pos] & 0x0F
        value = hist[pos + 1 : pos + 1 + length]
        if len(value) != length:
            break  # malformed: keep what parsed
        out[_COMPACT_TAGS.get(tag, f"tag_{tag:X}")] = value
        pos += 1 + length
    return out


def is_our_card(atr: bytes) -> bool:
    try:
        return decode_atr(atr).card_name == CARD_NAME.decode()
    except FormatError:
        return False
