"""Scenario files: a good one reads into declarations; a bad one gives ONE line naming the
file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.formats.emm import ClearSharing, SetSharing
from cas.kit.library import shipped_scenarios
from cas.kit.scenario import (
    CHECKS,
    EventKind,
    ScenarioError,
    load_scenario,
    parse_scenario,
    sharing_event_commands,
)
from cas.reasons import Reason
from cas.sharing import SharingPolicy

GOOD = """\
[kit]
name = "tiny"
seed = 7

[[subscriber]]
key = "a"

[[subscriber]]
key = "b"
card = false

[[step]]
name = "paid"
events = [
  {do = "pay", who = "a", amount = 4980},
  {do = "subscribe", who = "a", package = "start"},
]
[step.expect.a]
21 = "CHANNEL_NOT_IN_PACKAGE"
[step.expect.b]
default = "NO_CARD"
"""


def _error(text: str, tmp_path: Path) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    return message[len(str(path)) + 1:]


def test_good_scenario_reads_into_declarations() -> None:
    sc = parse_scenario(GOOD, Path("s.toml"))
    assert sc.name == "tiny" and sc.seed == 7 and sc.profile == "demo"
    assert [s.key for s in sc.subscribers] == ["a", "b"]
    assert sc.subscribers[1].card is False and sc.subscribers[0].region is None
    step = sc.steps[0]
    assert [e.kind for e in step.events] == [EventKind.PAY, EventKind.SUBSCRIBE]
    assert step.events[0].args == {"amount": 4980}
    assert step.expect["a"].reason(21) is Reason.CHANNEL_NOT_IN_PACKAGE
    assert step.expect["a"].reason(1) is Reason.OPEN
    assert step.expect["b"].reason(1) is Reason.NO_CARD


def test_bad_toml_names_its_line(tmp_path: Path) -> None:
    assert _error(GOOD.replace('seed = 7', 'seed = = 7'), tmp_path).startswith(
        "3: not valid TOML")


def test_unknown_reason_names_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace('21 = "CHANNEL_NOT_IN_PACKAGE"', '21 = "CHANNEL_NOT_IN_PACK"')
    msg = _error(text, tmp_path)
    assert msg.startswith("19: step[0].expect.a.21: 'CHANNEL_NOT_IN_PACK' is not a reason code")


def test_missing_key_is_named(tmp_path: Path) -> None:
    msg = _error(GOOD.replace('seed = 7\n', ''), tmp_path)
    assert msg.startswith("1: kit.seed: missing")


def test_wrong_type_names_line_and_key(tmp_path: Path) -> None:
    msg = _error(GOOD.replace('amount = 4980', 'amount = "4980"'), tmp_path)
    assert msg == "15: step[0].events[0].amount: expected int, got str"


def test_unknown_event_and_unknown_subscriber(tmp_path: Path) -> None:
    msg = _error(GOOD.replace('{do = "pay", who', '{do = "pray", who'), tmp_path)
    assert msg.startswith("15: step[0].events[0].do: 'pray' is not an event")
    msg = _error(GOOD.replace('who = "a", package', 'who = "z", package'), tmp_path)
    assert msg == "16: step[0].events[1].who: no subscriber 'z'"


def test_every_box_needs_an_expectation(tmp_path: Path) -> None:
    msg = _error(GOOD.replace('[step.expect.b]\ndefault = "NO_CARD"\n', ''), tmp_path)
    assert msg.startswith("12: step[0].expect: no expectation for box 'b'")


def test_replay_must_name_an_earlier_step(tmp_path: Path) -> None:
    text = GOOD + '\n[[step]]\nname = "again"\nevents = [{do = "replay-emm", step = "later"}]\n' \
        '[step.expect.a]\n[step.expect.b]\n'
    msg = _error(text, tmp_path)
    assert msg == "25: step[1].events[0].step: no earlier step 'later'"


def test_duplicate_subscriber(tmp_path: Path) -> None:
    msg = _error(GOOD.replace('key = "b"', 'key = "a"'), tmp_path)
    assert msg == "9: subscriber[1].key: 'a' is used twice"


def test_cli_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('"NO_CARD"', '"NO_CART"'))
    result = CliRunner().invoke(cli, ["kit", "build", str(path), "-o", str(tmp_path / "k")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {path}:21: step[0].expect.b.default: 'NO_CART' is not a reason "
                     f"code ({', '.join(r.value for r in Reason)})"]
    assert not (tmp_path / "k").exists()


def test_shipped_scenarios_all_read() -> None:
    paths = shipped_scenarios()
    assert len(paths) >= 3
    for p in paths:
        assert load_scenario(p).name == p.stem


def test_other_card_emm_is_a_stream_event_without_fields(tmp_path: Path) -> None:
    text = GOOD.replace('  {do = "subscribe", who = "a", package = "start"},\n',
                        '  {do = "subscribe", who = "a", package = "start"},\n'
                        '  {do = "other-card-emm"},\n')
    sc = parse_scenario(text, Path("s.toml"))
    other = sc.steps[0].events[2]
    assert other.kind is EventKind.OTHER_CARD_EMM and other.who is None and other.args == {}
    bad = text.replace('{do = "other-card-emm"}', '{do = "other-card-emm", who = "a"}')
    assert _error(bad, tmp_path) == (
        "17: step[0].events[2].who: unknown field for 'other-card-emm'")


PPV = GOOD.replace('  {do = "subscribe", who = "a", package = "start"},\n',
                   '  {do = "subscribe", who = "a", package = "start"},\n'
                   '  {do = "ppv-event", event = 7, channel = 24, start_s = -60, '
                   'duration_s = 600, price = 150},\n'
                   '  {do = "buy", who = "a", channel = 24, event = 7, pin = "0000"},\n'
                   '  {do = "upload-report", who = "a"},\n'
                   '  {do = "message", address = "global", id = 2, priority = 5, '
                   'duration_s = 10, text = "hi"},\n') + """[step.check.a]
report = 150
messages = [2]
"""


def test_pay_per_view_and_message_events_and_checks_read(tmp_path: Path) -> None:
    step = parse_scenario(PPV, Path("s.toml")).steps[0]
    kinds = [e.kind for e in step.events]
    assert kinds[2:] == [EventKind.PPV_EVENT, EventKind.BUY, EventKind.UPLOAD_REPORT,
                         EventKind.MESSAGE]
    assert step.events[2].who is None and step.events[2].args["impulse"] is True
    assert step.events[4].args == {"mode": "fresh"}
    assert step.events[5].who is None  # a global message names no subscriber
    assert step.box_actions
    assert step.checks == {"a": {"report": 150, "messages": [2]}}


PPV_MISTAKES = [
    ('pin = "0000"', 'pin = "00"', "18: step[0].events[3].pin: a PIN is 4 digits"),
    ('{do = "upload-report", who = "a"}', '{do = "upload-report", who = "a", mode = "x"}',
     "19: step[0].events[4].mode: fresh / replayed / forged"),
    ('address = "global"', 'address = "unique"', "12: step[0].events[5].who: missing"),
    ("price = 150", "price = 0", "17: step[0].events[2].price: a price is 1..65535 tokens"),
    ("report = 150", 'report = "PAID"',
     "27: step[0].check.a.report: major units billed, or PPV_REPORT_REPLAYED / "
     "PPV_REPORT_FORGED"),
    ("messages = [2]", "sharing = 1", "28: step[0].check.a.sharing: expected bool, got int"),
    ("messages = [2]", "colour = 1",
     "28: step[0].check.a.colour: unknown check (use messages, fingerprint, report, "
     "sharing, tuners)"),
    ("report = 150", "report = 1.5",
     "27: step[0].check.a.report: expected int or str, got float"),
    ("messages = [2]", "messages = [0]",
     "28: step[0].check.a.messages: a list of message ids (1..65535)"),
    ("messages = [2]", "tuners = 2",
     "28: step[0].check.a.tuners: 1..64, with a sharing check"),
    ("event = 7, channel = 24, start_s", "event = 0, channel = 24, start_s",
     "17: step[0].events[2].event: an event id is 1..4294967295"),
    ("duration_s = 600", "duration_s = 0",
     "17: step[0].events[2].duration_s: an event lasts at least 1 s"),
    ("priority = 5", "priority = 500",
     "20: step[0].events[5].id: id 1..65535, priority 0..255, duration_s 1..65535, "
     "text 1..246 bytes of UTF-8"),
]


@pytest.mark.parametrize(("old", "new", "error"), PPV_MISTAKES)
def test_bad_new_events_and_checks_are_one_line(old: str, new: str, error: str,
                                                tmp_path: Path) -> None:
    assert old in PPV
    assert _error(PPV.replace(old, new), tmp_path) == error


def test_a_scenario_error_in_russian(tmp_path: Path) -> None:
    """The same line and key, the problem in Russian (README, "Errors")."""
    from cas.i18n import Translator

    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace('who = "a", package', 'who = "z", package'))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert exc.value.message_id is not None
    ru = Translator("ru").error(exc.value.message_id, exc.value.message_params)
    assert ru == f"{path}:16: step[0].events[1].who: нет абонента 'z'"
    path.write_text(GOOD.replace('amount = 4980', 'amount = "4980"'))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert exc.value.message_id is not None
    assert Translator("ru").error(exc.value.message_id, exc.value.message_params) == (
        f"{path}:15: step[0].events[0].amount: ожидается int, получено str")


SHARING = GOOD.replace('  {do = "subscribe", who = "a", package = "start"},\n',
                       '  {do = "subscribe", who = "a", package = "start"},\n'
                       '  {do = "sharing-policy", who = "a", policy = "refuse", tuners = 1},\n')


def test_sharing_policy_event_reads_with_the_cli_defaults() -> None:
    event = parse_scenario(SHARING, Path("s.toml")).steps[0].events[2]
    assert event.kind is EventKind.SHARING_POLICY and event.who == "a"
    # the defaults of `cas card sharing-policy`
    assert event.args == {"policy": "refuse", "tuners": 1, "rate_tolerance": 1,
                          "window_s": 10, "clear": False}
    assert sharing_event_commands(event.args) == [
        SetSharing(policy=SharingPolicy.REFUSE, tuners=1, rate_tolerance=1, window_s=10)]
    clear = parse_scenario(SHARING.replace("tuners = 1}", "tuners = 1, clear = true}"),
                           Path("s.toml")).steps[0].events[2]
    assert sharing_event_commands(clear.args)[-1] == ClearSharing()


SHARING_MISTAKES = [
    ('policy = "refuse"', 'policy = "deny"',
     "17: step[0].events[2].policy: off / flag / refuse"),
    ("tuners = 1", "tuners = 0",
     "17: step[0].events[2]: sharing tuners 0 outside 1..255"),
    ("tuners = 1", "tuners = 1, window_s = 300",
     "17: step[0].events[2]: sharing window 300 outside 1..255"),
    ('who = "a", policy', "policy", "12: step[0].events[2].who: missing"),
]


@pytest.mark.parametrize(("old", "new", "error"), SHARING_MISTAKES)
def test_bad_sharing_policy_event_is_one_line(old: str, new: str, error: str,
                                              tmp_path: Path) -> None:
    assert old in SHARING
    assert _error(SHARING.replace(old, new), tmp_path) == error


@pytest.mark.parametrize(("text", "old", "new", "russian"), [
    *((PPV, old, new, None) for old, new, _error in PPV_MISTAKES),
    *((SHARING, old, new, None) for old, new, _error in SHARING_MISTAKES),
    (PPV, "price = 150", "price = 0", "17: step[0].events[2].price: цена — от 1 до 65535 жетонов"),
    (SHARING, "tuners = 1", "tuners = 0",
     "17: step[0].events[2]: число тюнеров для кардшаринга 0 вне 1..255"),
])
def test_bad_new_events_and_checks_are_said_in_russian(text: str, old: str, new: str,
                                                       russian: str | None,
                                                       tmp_path: Path) -> None:
    """The pay-per-view, message and sharing events' mistakes name their catalogue message:
    English as raised, Russian with no English sentence left (README, "Errors")."""
    from cas.i18n import Translator
    from tests.fixtures.lang import english_in

    path = tmp_path / "s.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    error = exc.value
    assert error.message_id is not None, str(error)
    assert Translator("en").error(error.message_id, error.message_params) == str(error)
    ru = Translator("ru").error(error.message_id, error.message_params)
    # the check keys are TOML names, not English
    assert ru is not None and english_in(ru, allow=list(CHECKS)) == [], ru
    if russian is not None:
        assert ru == f"{path}:{russian}"
