"""The live head-end's ECMs carry the PPV event of their time (docs/ppv.md), and only then."""

from __future__ import annotations

from cas.access import AccessCriteria, PpvEvent
from cas.crypto import Key, OperatorKeys
from cas.headend.ecmgen import EcmGenerator
from cas.live.scrambling import InternalEcms
from cas.messages import open_ecm
from tests.fixtures.seeded import seeded_rng

KEYS = OperatorKeys(Key(bytes(range(16)), label="omk"))
EVENT = PpvEvent(event_id=12, start_s=1_000, end_s=2_000, price_tokens=30)


def test_event_rides_in_the_ecms_of_its_time_only() -> None:
    now = [999]
    ecms = InternalEcms(EcmGenerator(KEYS, rng=seeded_rng(3)),
                        AccessCriteria(channel_id=5, package_ids=()), cw_length=8,
                        timestamp_s=lambda: now[0], rng=seeded_rng(4), ppv_events=[EVENT])
    seen = []
    for t in (999, 1_000, 1_999, 2_000):
        now[0] = t
        _, body = open_ecm(KEYS.ecm_key(0), ecms.ecm_section(7))
        seen.append(body.ppv_event)
    assert seen == [None, EVENT, EVENT, None]
