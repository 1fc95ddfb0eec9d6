"""`cas decode`: detection, trees, --json, --keys, and one-line errors on garbage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cas.cli.decode import detect
from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.formats import chipid, records, ts
from cas.formats.ecm import EcmBody, EcmHeader
from cas.formats.emm import AddEntitlement, EmmHeader, SetRegion, UniqueAddress
from cas.formats.psi import CaDescriptor, Cat, build_cat
from cas.messages import seal_ecm, seal_emm
from tests.unit.formats.record_strategies import card_records, chip_id_records


def _rng(n: int) -> bytes:
    return bytes(range(n))


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[OperatorKeys, Path]:
    k = OperatorKeys.generate(_rng)
    path = tmp_path / "operator.keys"
    k.save(path)
    return k, path


def _run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def _emm(k: OperatorKeys) -> bytes:
    header = EmmHeader(address=UniqueAddress(serial=2256884759), seq=7, not_after_s=2_000_000_000)
    cmds = [AddEntitlement(package_id=12, start_s=100, end_s=200), SetRegion(region=3)]
    return seal_emm(k.cuk(2256884759), header, cmds, b"\x01" * 12)


def _ecm(k: OperatorKeys) -> bytes:
    header = EcmHeader(channel_id=5, ecm_key_index=1, timestamp_s=1_800_000_000)
    body = EcmBody(crypto_period=3, cw_even=bytes(range(8)), cw_odd=bytes(range(8, 16)),
                   package_ids=(1, 2), regions=(7,), maturity_rating=18)
    return seal_ecm(k.ecm_key(1), header, body, b"\x02" * 12)


def test_emm_with_keys_shows_commands(keys: tuple[OperatorKeys, Path]) -> None:
    k, path = keys
    code, out, _ = _run("--json", "decode", _emm(k).hex(), "--keys", str(path))
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "emm"
    assert doc["authenticated"] is True
    assert [c["command"] for c in doc["commands"]] == ["ADD_ENTITLEMENT", "SET_REGION"]
    assert doc["commands"][0]["package_id"] == 12
    assert "2256884759" in out


def test_emm_with_wrong_keys_is_not_authenticated(tmp_path: Path,
                                                  keys: tuple[OperatorKeys, Path]) -> None:
    k, _ = keys
    other = OperatorKeys.generate(lambda n: b"\x55" * n)
    other_path = tmp_path / "other.keys"
    other.save(other_path)
    code, out, _ = _run("--json", "decode", _emm(k).hex(), "--keys", str(other_path))
    assert code == 0
    doc = json.loads(out)
    assert doc["authenticated"] is False
    assert "commands" not in doc


def test_ecm_without_keys_shows_header_only(keys: tuple[OperatorKeys, Path]) -> None:
    k, path = keys
    section = _ecm(k)
    code, out, _ = _run("--json", "decode", section.hex())
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "ecm" and "body" not in doc
    code, out, _ = _run("--json", "decode", section.hex(), "--keys", str(path))
    doc = json.loads(out)
    assert doc["authenticated"] is True
    assert doc["body"]["package_ids"] == [1, 2] and doc["body"]["maturity_rating"] == 18
    # the CWs are in the body; the tree is printed for people as well
    code, out, _ = _run("decode", section.hex(), "--keys", str(path))
    assert code == 0 and "ecm" in out


@given(card_records())
def test_card_record_detected(record: records.CardRecord) -> None:
    data = records.build_card_record(record)
    assert detect(data) == "card-record"


@given(chip_id_records)
def test_chip_record_detected(record: chipid.ChipIdRecord) -> None:
    assert detect(chipid.build_chip_id_record(record)) == "chip-record"


def test_ts_file_from_stdin(tmp_path: Path) -> None:
    cat = build_cat(Cat(version_number=1, descriptors=(
        CaDescriptor(ca_system_id=0xDEAD, ca_pid=0x0100, private_data=b""),)))
    packets = ts.Packetizer(0x0001).packetize(cat) + [ts.null_packet()] * 3
    data = b"".join(packets)
    path = tmp_path / "x.ts"
    path.write_bytes(data)
    code, out, _ = _run("--json", "decode", str(path))
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "ts" and doc["packets"] == 4
    assert any(t.get("table") == "CAT" or "CAT" in json.dumps(t) for t in doc["tables"])
    code, out2, _ = _run("--json", "decode", input=data)
    assert code == 0 and json.loads(out2)["packets"] == 4


def test_garbage_is_one_line_and_nonzero() -> None:
    code, _out, err = _run("decode", "7c7c7c")
    assert code != 0
    assert err.strip().count("\n") == 0 and err.startswith("error:")
    code, _, err = _run("decode", "not-hex-and-not-a-file")
    assert code == 2 and err.startswith("error:")


@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_never_traceback(data: bytes) -> None:
    result = CliRunner().invoke(cli, ["--json", "decode", data.hex()])
    assert result.exit_code in (0, 3), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# --- issue 12 item 11: sequences, any length, "" and what it cannot tell ----------------------

def _emms(k: OperatorKeys, count: int) -> list[bytes]:
    return [seal_emm(k.cuk(1000 + i), EmmHeader(address=UniqueAddress(serial=1000 + i), seq=i + 1,
                                                not_after_s=2_000_000_000),
                     [SetRegion(region=i)], bytes([i]) * 12) for i in range(count)]


def test_a_file_of_back_to_back_sections_is_decoded_section_by_section(
        keys: tuple[OperatorKeys, Path], tmp_path: Path) -> None:
    k, key_path = keys
    sections = [*_emms(k, 3), _ecm(k), build_cat(Cat(version_number=1))]
    path = tmp_path / "emms.sections"  # what `cas emm generate` writes: sections back to back
    path.write_bytes(b"".join(sections))
    code, out, err = _run("--json", "decode", str(path), "--keys", str(key_path))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "sections" and doc["count"] == 5
    assert doc["counts"] == {"emm": 3, "ecm": 1, "section": 1}
    assert [s["kind"] for s in doc["sections"]] == ["emm", "emm", "emm", "ecm", "section"]
    assert [s["offset"] for s in doc["sections"]] == [
        sum(len(x) for x in sections[:i]) for i in range(5)]
    assert all(s["authenticated"] for s in doc["sections"][:4])
    assert doc["sections"][2]["commands"][0]["region"] == 2
    # the same bytes as one hex argument (far beyond a file name's 255 characters)
    hex_arg = b"".join(sections).hex()
    assert len(hex_arg) > 255
    code, out2, err = _run("--json", "decode", hex_arg)
    assert code == 0, err
    assert json.loads(out2)["count"] == 5


def test_a_long_sections_file_is_counted_whole_and_shown_in_part(
        keys: tuple[OperatorKeys, Path], tmp_path: Path) -> None:
    from cas.cli.decode import SECTIONS_SHOWN

    k, _ = keys
    path = tmp_path / "many.sections"
    path.write_bytes(b"".join(_emms(k, SECTIONS_SHOWN + 5)) + b"\xff" * 7)  # stuffing at the end
    code, out, err = _run("--json", "decode", str(path))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["count"] == SECTIONS_SHOWN + 5 and doc["shown"] == SECTIONS_SHOWN
    assert len(doc["sections"]) == SECTIONS_SHOWN


def test_several_ts_packets_as_hex_decode_as_a_stream() -> None:
    cat = build_cat(Cat(version_number=1))
    data = b"".join(ts.Packetizer(0x0001).packetize(cat) + [ts.null_packet()] * 2)
    code, out, err = _run("--json", "decode", data.hex())
    assert code == 0, err
    assert json.loads(out)["kind"] == "ts" and json.loads(out)["packets"] == 3


@pytest.mark.parametrize("arg", ["", "  "])
def test_an_empty_argument_is_refused_clearly(arg: str) -> None:
    code, _, err = _run("decode", arg)
    assert code == 2
    assert err.strip() == "error: empty argument: give hex bytes, a file, or '-' for stdin"


def test_hex_longer_than_a_file_name_is_hex() -> None:
    body = "00" * 300  # 600 characters: no file system takes that as a name
    code, _, err = _run("decode", body)
    assert "File name too long" not in err and "Errno" not in err
    assert code == 3 and err.startswith("error: cannot tell")


def test_text_and_unknown_bytes_say_cannot_tell(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello")
    for source in (str(tmp_path / "hello.txt"), "0102", b"hello world".hex(), "00" * 60):
        code, out, err = _run("decode", source)
        assert code == 3, (source, out)
        assert err.startswith("error: cannot tell") and err.count("\n") == 1
        assert "response" not in out


def test_a_status_word_alone_is_still_recognised_and_longer_answers_need_as() -> None:
    code, out, _ = _run("--json", "decode", "9000")
    assert code == 0 and json.loads(out)["kind"] == "response-apdu"
    code, out, _ = _run("--json", "decode", "6982")
    assert code == 0 and json.loads(out)["sw"] == "6982"
    code, out, _ = _run("--json", "decode", "--as", "response-apdu", "01029000")
    assert code == 0 and json.loads(out)["data_length"] == 2
    code, _, err = _run("decode", "--as", "sections", "0102")
    assert code == 3 and err.startswith("error:")


def test_a_card_image_with_its_state_area_decodes_whole(tmp_path: Path) -> None:
    from cas.card.eeprom import build_image
    from cas.formats.cardstate import CardState, SharingFlag
    from cas.sharing import SharingRule
    from tests.unit.card.helpers import make_record

    state = CardState(flag=SharingFlag(rules=(SharingRule.SERVICES,), window_s=10,
                                       services=3, requests=3))
    image = tmp_path / "card.img"
    image.write_bytes(build_image(make_record(), state))
    code, out, _ = _run("--json", "decode", str(image))
    assert code == 0, out
    doc = json.loads(out)
    assert doc["card_state"]["sharing_flag"]["services"] == 3
    assert doc["card_state"]["sharing"]["policy"] == "FLAG"
    image.write_bytes(build_image(make_record(), state)[:-1])  # a broken state area
    code, out, err = _run("decode", str(image))
    assert code == 3 and "Traceback" not in out + err
