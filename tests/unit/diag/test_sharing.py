"""Card-sharing detection (docs/sharing.md): the rule on observations, the log parser, and
``cas diag sharing`` through click's CliRunner (table, JSON, exit codes, ``--block`` on a
real store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.billing.emm_queue import card_emm_queue
from cas.cli.main import cli
from cas.diag.sharing import (
    EcmObservation,
    SharingLimits,
    SharingRule,
    detect,
    flagged_cards,
    parse_log,
)
from cas.errors import FormatError, UsageError
from cas.store.engine import open_store
from cas.store.models import Card

T0 = 1_800_000_000  # a multiple of 10: windows start on it


def _box(card: int, channels: tuple[int, ...], periods: int = 6,
         period_s: int = 10) -> list[EcmObservation]:
    """One ECM request per channel per crypto-period change, as a box makes them."""
    return [EcmObservation(time_s=T0 + i * period_s + 0.1 * k, card=card, channel=ch)
            for i in range(periods) for k, ch in enumerate(channels)]


def test_two_tuner_box_on_two_channels_is_not_flagged() -> None:
    (f,) = detect(_box(7, (1, 2)))
    assert not f.flagged and f.max_services == 2 and f.max_rate == 2


def test_card_serving_three_boxes_is_flagged_for_services() -> None:
    obs = _box(7, (1,)) + _box(7, (2,)) + _box(7, (3,)) + _box(8, (1, 2))
    findings = detect(obs)
    assert flagged_cards(findings) == [7]
    f = findings[0]
    assert f.rules == (SharingRule.SERVICES,) and f.max_services == 3
    assert f.channels == (1, 2, 3)


def test_more_tuners_configured_clears_the_same_card() -> None:
    obs = _box(7, (1,)) + _box(7, (2,)) + _box(7, (3,))
    assert flagged_cards(detect(obs, SharingLimits(tuners=3))) == []


def test_many_boxes_on_one_channel_are_flagged_for_rate() -> None:
    obs = [o for _ in range(5) for o in _box(7, (1,))]  # five boxes, same channel
    (f,) = detect(obs)
    assert f.rules == (SharingRule.RATE,) and f.max_services == 1 and f.max_rate == 5


def test_zapping_within_tolerance_is_not_flagged() -> None:
    obs = [*_box(7, (1, 2)), EcmObservation(time_s=T0 + 5, card=7, channel=1),
           EcmObservation(time_s=T0 + 6, card=7, channel=2)]
    assert flagged_cards(detect(obs)) == []


def test_limits_are_checked() -> None:
    with pytest.raises(UsageError):
        SharingLimits(tuners=0)
    with pytest.raises(UsageError):
        SharingLimits(window_s=0)


@pytest.mark.parametrize(("line", "needle"), [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"card": 1, "channel": 2}', "'time'"),
    ('{"time": "2026-01-01T00:00:00", "card": 1, "channel": 2}', "no UTC offset"),
    ('{"time": "yesterday", "card": 1, "channel": 2}', "not ISO 8601"),
    ('{"time_s": 5, "card": -1, "channel": 2}', "'card'"),
    ('{"time_s": 5, "card": 1, "channel": true}', "'channel'"),
])
def test_bad_lines_name_the_line(line: str, needle: str) -> None:
    with pytest.raises(FormatError, match=needle) as info:
        parse_log(["", '{"time_s": 1, "card": 1, "channel": 1}', line], "x.jsonl")
    assert str(info.value).startswith("x.jsonl:3: ")


def test_iso_and_unix_times_agree() -> None:
    a, b = parse_log(['{"time": "2027-01-15T08:00:00+00:00", "card": 1, "channel": 2}',
                      '{"time_s": 1800000000, "card": 1, "channel": 2}'])
    assert a.time_s == 1_800_000_000 == b.time_s


# --- the command ----------------------------------------------------------------------------
def _write(path: Path, obs: list[EcmObservation]) -> Path:
    path.write_text("".join(json.dumps({"time_s": o.time_s, "card": o.card,
                                        "channel": o.channel}) + "\n" for o in obs))
    return path


def _run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})


def test_cli_flags_sharing_with_exit_7_and_json(tmp_path: Path) -> None:
    log = _write(tmp_path / "ecm.jsonl",
                 _box(7, (1,)) + _box(7, (2,)) + _box(7, (3,)) + _box(8, (1, 2)))
    r = _run("--json", "diag", "sharing", str(log))
    assert r.exit_code == 7, r.output
    data = json.loads(r.stdout)
    assert data["flagged"] == [7] and data["blocked"] == []
    by_card = {c["card"]: c for c in data["cards"]}
    assert by_card[7]["rules"] == ["services"] and not by_card[8]["flagged"]
    text = _run("--lang", "en", "diag", "sharing", str(log))
    assert text.exit_code == 7
    assert "0000000007" in text.stdout and "more channels at once than tuners" in text.stdout
    ru = _run("--lang", "ru", "diag", "sharing", str(log))
    assert "каналов одновременно больше, чем тюнеров" in ru.stdout


def test_cli_normal_box_exits_0(tmp_path: Path) -> None:
    log = _write(tmp_path / "ecm.jsonl", _box(8, (1, 2)))
    r = _run("diag", "sharing", str(log), "--tuners", "2")
    assert r.exit_code == 0, r.output
    assert "normal" in r.stdout


@pytest.mark.parametrize(("content", "code"), [("{oops\n", 3), (None, 2)])
def test_cli_bad_log_is_one_line(tmp_path: Path, content: str | None, code: int) -> None:
    log = tmp_path / "ecm.jsonl"
    if content is not None:
        log.write_text(content)
    r = _run("--lang", "en", "diag", "sharing", str(log))
    assert r.exit_code == code
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_block_blocks_the_flagged_card_and_queues_its_emm(tmp_path: Path,
                                                              db_url: str) -> None:
    def cas(*args: str, code: int = 0) -> Any:
        r = CliRunner().invoke(cli, ["--db-url", db_url, *args], env={"COLUMNS": "200"})
        assert r.exit_code == code, (args, r.output)
        return r

    cas("operator", "use", "tvplus", "--clock-start", "2026-03-01")
    number = json.loads(cas("--json", "account", "create", "--surname", "Aliyev",
                            "--name", "Rashad").stdout)["account_number"]
    cas("card", "add", "2256884759", "--account", number)
    cas("card", "add", "2256884760", "--account", number)
    store = open_store(db_url=db_url)
    try:
        with store.transaction() as s:
            before = card_emm_queue(s, 2256884759).rights_version
        log = _write(tmp_path / "ecm.jsonl", _box(2256884759, (1,)) + _box(2256884759, (2,))
                     + _box(2256884759, (3,)) + _box(2256884760, (1, 2)))
        r = cas("--json", "diag", "sharing", str(log), "--block", code=7)
        assert json.loads(r.stdout)["blocked"] == [2256884759]
        with store.transaction() as s:
            shared = s.get(Card, 2256884759)
            normal = s.get(Card, 2256884760)
            assert shared is not None and normal is not None
            assert (shared.status, normal.status) == ("blocked", "active")
            queue = card_emm_queue(s, 2256884759)
            assert queue.pending and queue.rights_version == before + 1
            assert [c.cause for c in queue.pending_changes][-1] == "sharing"
        why = json.loads(cas("--json", "why", "--card", "2256884759", "--channel", "1").stdout)
        assert why["reason"] == "CARD_KILLED"
        # Blocking again changes nothing.
        again = cas("--json", "diag", "sharing", str(log), "--block", code=7)
        assert json.loads(again.stdout)["blocked"] == []
    finally:
        store.dispose()


def test_cli_unblock_takes_a_blocked_card_back(tmp_path: Path, db_url: str) -> None:
    def cas(*args: str, code: int = 0) -> Any:
        r = CliRunner().invoke(cli, ["--db-url", db_url, *args], env={"COLUMNS": "200"})
        assert r.exit_code == code, (args, r.output)
        return r

    cas("operator", "use", "tvplus", "--clock-start", "2026-03-01")
    number = json.loads(cas("--json", "account", "create", "--surname", "Aliyev",
                            "--name", "Rashad").stdout)["account_number"]
    cas("card", "add", "2256884759", "--account", number)
    cas("card", "add", "2256884761", "--account", number)
    log = _write(tmp_path / "ecm.jsonl", _box(2256884759, (1, 2, 3)))
    cas("--json", "diag", "sharing", str(log), "--block", code=7)
    why = json.loads(cas("--json", "why", "--card", "2256884759", "--channel", "1").stdout)
    assert why["reason"] == "CARD_KILLED" and "cas card unblock 2256884759" in why["fix"]
    # an active card is not blocked; a killed one stays killed
    cas("card", "unblock", "2256884761", code=6)
    cas("card", "kill", "2256884761", "--yes")
    r = cas("card", "unblock", "2256884761", code=7)
    assert "killed" in r.output and "Traceback" not in r.output

    r = cas("card", "unblock", "2256884759")
    assert "unblocked" in r.output
    store = open_store(db_url=db_url)
    try:
        with store.transaction() as s:
            card = s.get(Card, 2256884759)
            assert card is not None and card.status == "active"
            queue = card_emm_queue(s, 2256884759)
            assert queue.pending and [c.cause for c in queue.pending_changes][-1] == "unblock"
    finally:
        store.dispose()
    why = json.loads(cas("--json", "why", "--card", "2256884759", "--channel", "1").stdout)
    assert why["reason"] != "CARD_KILLED"
    cas("card", "unblock", "2256884759", code=6)  # not blocked any more
