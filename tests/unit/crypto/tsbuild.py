"""Tiny TS packet builder for the scrambling tests (independent of cas.formats)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass(frozen=True)
class Pkt:
    pid: int
    payload: bytes  # may be empty
    af_len: int | None = None  # adaptation_field_length; None = no adaptation field
    tsc: int = 0
    cc: int = 0

    def build(self) -> bytes:
        afc = (2 if self.af_len is not None else 0) | (1 if self.payload else 0)
        hdr = bytes([0x47, (self.pid >> 8) & 0x1F, self.pid & 0xFF,
                     (self.tsc << 6) | (afc << 4) | (self.cc & 0xF)])
        af = b""
        if self.af_len is not None:
            af = bytes([self.af_len]) + (bytes([0x00]) + b"\xff" * (self.af_len - 1)
                                         if self.af_len else b"")
        out = hdr + af + self.payload
        assert len(out) == 188, len(out)
        return out

    @property
    def payload_offset(self) -> int:
        return 4 + (1 + self.af_len if self.af_len is not None else 0)


def full(pid: int, payload: bytes, tsc: int = 0) -> Pkt:
    return Pkt(pid=pid, payload=payload, tsc=tsc)


def with_af(pid: int, af_len: int, fill: int = 0x5A) -> Pkt:
    """A packet with an adaptation field of ``af_len`` bytes and the rest payload."""
    n = 188 - 5 - af_len
    return Pkt(pid=pid, payload=bytes((fill + i) & 0xFF for i in range(n)), af_len=af_len)


@st.composite
def packets(draw: st.DrawFn) -> Pkt:
    pid = draw(st.sampled_from([0x100, 0x101, 0x200, 0x1FFF]))
    kind = draw(st.sampled_from(["full", "full", "af", "af_only"]))
    if kind == "full":
        return Pkt(pid=pid, payload=draw(st.binary(min_size=184, max_size=184)),
                   cc=draw(st.integers(0, 15)))
    if kind == "af_only":
        return Pkt(pid=pid, payload=b"", af_len=183)
    af_len = draw(st.integers(0, 182))
    return Pkt(pid=pid, payload=draw(st.binary(min_size=183 - af_len, max_size=183 - af_len)),
               af_len=af_len)


def join(pkts: list[Pkt]) -> bytearray:
    return bytearray(b"".join(p.build() for p in pkts))
