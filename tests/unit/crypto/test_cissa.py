"""DVB-CISSA v1 (ETSI TS 103 127): checked against plain AES-CBC computed here."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from cas.crypto import Cissa
from cas.crypto.cissa import IV, cbc_decrypt, cbc_encrypt, descramble_packets, scramble_packets
from cas.errors import CryptoError, FormatError
from tests.unit.crypto.tsbuild import Pkt, full, join, packets, with_af
from tests.unit.crypto.vectors import h, load

CW_E = h("2b7e151628aed2a6abf7158809cf4f3c")
CW_O = h("000102030405060708090a0b0c0d0e0f")


def reference(cw: bytes, payload: bytes) -> bytes:
    """TS 103 127 §6.3 by hand: AES-128-CBC from the fixed IV, residue < 16 bytes clear."""
    n = len(payload) - len(payload) % 16
    enc = Cipher(algorithms.AES(cw), modes.CBC(b"DVBTMCPTAESCISSA")).encryptor()
    return enc.update(payload[:n]) + enc.finalize() + payload[n:]


def test_iv_is_the_dvb_constant() -> None:
    assert bytes.fromhex("445642544D4350544145534349535341") == IV


@pytest.mark.parametrize("v", load("cissa.json")["vectors"], ids=lambda v: str(len(v["clear"]) // 2))
def test_stored_vectors(v: dict[str, str]) -> None:
    cw, clear, scrambled = h(v["cw"]), h(v["clear"]), h(v["scrambled"])
    assert reference(cw, clear) == scrambled
    assert cbc_encrypt(cw, clear) == scrambled
    assert cbc_decrypt(cw, scrambled) == clear
    payload = bytearray(clear)
    Cissa(cw).encrypt_payload(0, payload)
    assert payload == scrambled
    Cissa(None, cw).decrypt_payload(1, payload)
    assert payload == clear


def test_packets_match_reference_with_mixed_parity() -> None:
    rnd = random.Random(5)
    # many packets of both parities interleaved: exercises the restart-from-IV chaining
    pkts = [full(0x100, rnd.randbytes(184)) for _ in range(20000)]
    pkts[7] = with_af(0x100, 50)
    buf = join(pkts)
    clear = bytes(buf)
    parity = bytes(rnd.choice([0, 1, 0xFF]) for _ in pkts)
    cissa = Cissa(CW_E, CW_O)
    n = cissa.scramble(buf, parity)
    assert n == sum(1 for p in parity if p != 0xFF)
    for i in [*range(0, len(pkts), 97), 7]:
        p, par = pkts[i], parity[i]
        out = buf[188 * i : 188 * (i + 1)]
        if par == 0xFF:
            assert out == p.build()
            continue
        off = p.payload_offset
        assert out[:3] == clear[188 * i : 188 * i + 3]
        assert out[3] == clear[188 * i + 3] | (0x80 if par == 0 else 0xC0)
        assert out[4:off] == clear[188 * i + 4 : 188 * i + off]
        assert out[off:] == reference(CW_O if par else CW_E, p.payload)
        assert out[-(len(p.payload) % 16) or 188 :] == p.payload[len(p.payload) // 16 * 16 :]
    assert cissa.descramble(buf) == n
    assert bytes(buf) == clear


def test_short_payloads_stay_clear_and_unflagged() -> None:
    pkts = [with_af(0x100, 167), with_af(0x100, 168), Pkt(pid=0x100, payload=b"", af_len=183)]
    # 16-byte payload: one block encrypted; 15 bytes (TS 103 127 example): all clear
    buf = join(pkts)
    clear = bytes(buf)
    assert scramble_packets(buf, CW_E, None) == 1
    assert buf[3] >> 6 == 2
    assert buf[188 + 4 + 1 + 168 :] == clear[188 + 4 + 1 + 168 :]
    assert buf[188:] == clear[188:]
    assert bytes(buf[188 - 16 : 188]) == reference(CW_E, pkts[0].payload)
    assert descramble_packets(buf, CW_E, None) == 1
    assert bytes(buf) == clear


@given(st.lists(packets(), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_roundtrip_any_stream(pkts: list[Pkt], rnd: random.Random) -> None:
    buf = join(pkts)
    clear = bytes(buf)
    parity = bytes(rnd.choice([0, 1, 0xFF]) for _ in pkts)
    cissa = Cissa(CW_E, CW_O)
    n = cissa.scramble(buf, parity, pids={0x100, 0x101, 0x200})
    for i, p in enumerate(pkts):
        out = buf[188 * i : 188 * (i + 1)]
        if p.pid == 0x1FFF or parity[i] == 0xFF or len(p.payload) < 16:
            assert out == p.build()
    assert cissa.descramble(buf) == n
    assert bytes(buf) == clear


def test_errors() -> None:
    with pytest.raises(CryptoError, match="16 bytes"):
        Cissa(bytes(8))
    buf = join([full(0x100, bytes(184))])
    with pytest.raises(CryptoError, match="even"):
        Cissa(None, CW_O).scramble(buf, 0)
    assert buf == join([full(0x100, bytes(184))])
    with pytest.raises(FormatError):
        Cissa(CW_E).scramble(bytearray(100))
    with pytest.raises(FormatError, match="PID"):
        Cissa(CW_E).scramble(buf, pids={0x2000})
