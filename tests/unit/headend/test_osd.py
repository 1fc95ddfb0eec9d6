"""The head-end's builders of card command EMMs (cas/headend/osd.py): the sharing-policy
commands that `cas card sharing-policy` and the kit's `sharing-policy` event both send."""

from __future__ import annotations

import pytest

from cas.errors import UsageError
from cas.formats.emm import ClearSharing, SetSharing
from cas.headend.osd import sharing_commands
from cas.sharing import SharingPolicy


def test_sharing_commands_set_then_clear() -> None:
    assert sharing_commands(SharingPolicy.REFUSE, tuners=1, window_s=1) == [
        SetSharing(policy=SharingPolicy.REFUSE, tuners=1, rate_tolerance=1, window_s=1)]
    assert sharing_commands(SharingPolicy.OFF, clear=True) == [
        SetSharing(policy=SharingPolicy.OFF, tuners=2, rate_tolerance=1, window_s=10),
        ClearSharing()]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tuners": 0}, "sharing tuners 0 outside 1..255"),
    ({"tuners": 256}, "sharing tuners 256 outside 1..255"),
    ({"rate_tolerance": -1}, "sharing rate tolerance -1 outside 0..255"),
    ({"window_s": 0}, "sharing window 0 outside 1..255"),
])
def test_sharing_limits_outside_their_u8_fields_are_refused(kwargs: dict[str, int],
                                                            message: str) -> None:
    with pytest.raises(UsageError) as exc:
        sharing_commands(SharingPolicy.FLAG, **kwargs)
    assert str(exc.value) == message
