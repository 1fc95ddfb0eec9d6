"""DVB-CSA2 through libdvbcsa: stored libdvbcsa vectors, batch API, TS packet handling."""

from __future__ import annotations

import ctypes
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.crypto import Csa2
from cas.crypto.csa2 import batch_size, descramble_packets, scramble_packets
from cas.errors import CryptoError, FormatError
from tests.unit.crypto.tsbuild import Pkt, full, join, packets, with_af
from tests.unit.crypto.vectors import h, load

VECTORS = load("csa2.json")["vectors"]
CW_E = h("07e01b02c9e045ee")
CW_O = h("0706050403020100")


def reference_encrypt(cw: bytes, payload: bytes) -> bytes:
    """libdvbcsa's single-packet API, called directly (not through cas.crypto)."""
    lib = ctypes.CDLL("libdvbcsa.so.1")
    lib.dvbcsa_key_alloc.restype = ctypes.c_void_p
    key = ctypes.c_void_p(lib.dvbcsa_key_alloc())
    lib.dvbcsa_key_set(cw, key)
    buf = ctypes.create_string_buffer(payload, len(payload))
    lib.dvbcsa_encrypt(key, buf, len(payload))
    lib.dvbcsa_key_free(key)
    return buf.raw


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_single_packet_api_vectors(v: dict[str, str]) -> None:
    csa = Csa2(h(v["cw"]), h(v["cw"]))
    data = bytearray(h(v["clear"]))
    csa.encrypt_payload(0, data)
    assert bytes(data) == h(v["scrambled"])
    csa.decrypt_payload(1, data)
    assert bytes(data) == h(v["clear"])


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_batch_api_vectors_in_ts_packets(v: dict[str, str]) -> None:
    count = 3 * batch_size() + 5  # several full batches and a partial one
    clear = join([full(0x100, h(v["clear"]))] * count)
    buf = bytearray(clear)
    assert Csa2(h(v["cw"]), None).scramble(buf, 0) == count
    for i in range(count):
        pkt = buf[188 * i : 188 * (i + 1)]
        assert pkt[:3] == clear[:3]
        assert pkt[3] == clear[3] | 0x80  # scrambling control 10 (even)
        assert pkt[4:] == h(v["scrambled"])
    assert Csa2(h(v["cw"]), None).descramble(buf) == count
    assert buf == clear


def test_scrambling_is_libdvbcsa_single_packet_result() -> None:
    rnd = random.Random(1)
    pkts = [full(0x100, rnd.randbytes(184)) for _ in range(300)]
    buf = join(pkts)
    parity = bytes(rnd.choice([0, 1, 0xFF]) for _ in pkts)
    Csa2(CW_E, CW_O).scramble(buf, parity)
    for i, (p, par) in enumerate(zip(pkts, parity, strict=True)):
        out = buf[188 * i : 188 * (i + 1)]
        if par == 0xFF:
            assert out == p.build()
        else:
            assert out[3] >> 6 == 2 + par
            assert out[4:] == reference_encrypt(CW_O if par else CW_E, p.payload)


def test_adaptation_field_and_short_payloads() -> None:
    pkts = [
        with_af(0x100, 0),  # 183-byte payload
        with_af(0x100, 100),  # 83 bytes: residue 3 scrambled too
        with_af(0x100, 175),  # 8 bytes: scrambled
        with_af(0x100, 176),  # 7 bytes: left clear, not flagged
        Pkt(pid=0x100, payload=b"", af_len=183),  # no payload
    ]
    buf = join(pkts)
    clear = bytes(buf)
    assert Csa2(CW_E, CW_O).scramble(buf, 1) == 3
    for i, p in enumerate(pkts):
        out = buf[188 * i : 188 * (i + 1)]
        off = p.payload_offset
        assert out[4:off] == clear[188 * i + 4 : 188 * i + off]  # adaptation field clear
        if i < 3:
            assert out[3] == clear[188 * i + 3] | 0xC0
            assert out[off:] == reference_encrypt(CW_O, p.payload)
        else:
            assert out == clear[188 * i : 188 * (i + 1)]
    assert Csa2(CW_E, CW_O).descramble(buf) == 3
    assert bytes(buf) == clear


def test_pid_filter_and_already_scrambled_packets() -> None:
    pkts = [full(0x100, bytes(184)), full(0x101, bytes(184)), full(0x100, bytes(184), tsc=3)]
    buf = join(pkts)
    clear = bytes(buf)
    assert scramble_packets(buf, CW_E, None, 0, pids={0x100}) == 1
    assert buf[188:] == clear[188:]  # other PID and the already-scrambled packet untouched
    assert buf[3] == clear[3] | 0x80
    assert descramble_packets(buf, CW_E, None, pids={0x101}) == 0
    assert buf[3] == clear[3] | 0x80


@given(st.lists(packets(), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_roundtrip_any_stream(pkts: list[Pkt], rnd: random.Random) -> None:
    buf = join(pkts)
    clear = bytes(buf)
    parity = bytes(rnd.choice([0, 1, 0xFF]) for _ in pkts)
    csa = Csa2(CW_E, CW_O)
    scrambled = csa.scramble(buf, parity)
    flagged = sum(1 for i in range(len(pkts)) if buf[188 * i + 3] >> 6)
    assert flagged == scrambled
    for i in range(len(pkts)):  # headers other than the scrambling bits never change
        assert buf[188 * i : 188 * i + 3] == clear[188 * i : 188 * i + 3]
        assert buf[188 * i + 3] & 0x3F == clear[188 * i + 3] & 0x3F
    assert csa.descramble(buf) == scrambled
    assert bytes(buf) == clear


def test_missing_cw_changes_nothing() -> None:
    buf = join([full(0x100, bytes(184))] * 4)
    before = bytes(buf)
    with pytest.raises(CryptoError, match="odd"):
        Csa2(CW_E).scramble(buf, bytes([0, 1, 0, 1]))
    assert bytes(buf) == before
    Csa2(CW_E, CW_O).scramble(buf, 1)
    scrambled = bytes(buf)
    with pytest.raises(CryptoError, match="odd"):
        Csa2(CW_E).descramble(buf)
    assert bytes(buf) == scrambled


def test_bad_buffers() -> None:
    with pytest.raises(CryptoError, match="bytearray"):
        Csa2(CW_E).scramble(bytes(join([full(0x100, bytes(184))])))  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="multiple of 188"):
        Csa2(CW_E).scramble(bytearray(187))
    bad = join([full(0x100, bytes(184))] * 3)
    bad[188] = 0x00
    with pytest.raises(FormatError, match="packet 1"):
        Csa2(CW_E).scramble(bad)
    with pytest.raises(CryptoError, match=r"per-packet|parity"):
        Csa2(CW_E).scramble(join([full(0x100, bytes(184))]), bytes(2))
    with pytest.raises(CryptoError, match="8 bytes"):
        Csa2(bytes(16))
    with pytest.raises(CryptoError):
        Csa2().set_cw(2, CW_E)
    assert Csa2(CW_E).scramble(bytearray()) == 0


def test_set_cw_changes_key() -> None:
    payload = bytes(range(184))
    csa = Csa2(CW_E)
    a = bytearray(payload)
    csa.encrypt_payload(0, a)
    csa.set_cw(0, CW_O)
    b = bytearray(payload)
    csa.encrypt_payload(0, b)
    assert bytes(a) == reference_encrypt(CW_E, payload)
    assert bytes(b) == reference_encrypt(CW_O, payload)
    assert "07e0" not in repr(csa).lower()


def test_memoryview_of_larger_buffer() -> None:
    backing = bytearray(10) + join([full(0x100, bytes(184))] * 2) + bytearray(10)
    view = memoryview(backing)[10:-10]
    assert Csa2(CW_E).scramble(view) == 2
    assert backing[:10] == bytes(10) and backing[-10:] == bytes(10)
    assert bytes(backing[14:198]) == reference_encrypt(CW_E, bytes(184))
