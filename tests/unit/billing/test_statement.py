"""The ledger's descriptions for people (:func:`cas.billing.statement.ledger_text`): every
description the billing rules write reads in Russian, with the right plural form; an
operator's own text (an adjustment reason) stays as typed; English stays as stored."""

from __future__ import annotations

import pytest

from cas.billing.statement import ledger_text
from cas.i18n import Translator
from tests.fixtures.lang import english_in

RU, EN = Translator("ru"), Translator("en")


@pytest.mark.parametrize(("stored", "russian"), [
    ("payment by card 2256884759 (online)", "оплата по номеру (карта) 2256884759 (онлайн)"),
    ("payment by contract 7701234 (terminal)", "оплата по номеру (договор) 7701234 (терминал)"),
    ("Bazovy: period 3", "Bazovy: период 3"),
    ("Bazovy: 1 unused days", "Bazovy: 1 неиспользованный день"),
    ("Bazovy: 3 unused days", "Bazovy: 3 неиспользованных дня"),
    ("Bazovy: 11 unused days", "Bazovy: 11 неиспользованных дней"),
    ("Bazovy: 21 unused days", "Bazovy: 21 неиспользованный день"),
    ("promised payment, due 2026-11-01", "обещанный платёж, погасить до 01.11.2026"),
    ("promised payment repaid", "обещанный платёж погашен"),
    ("promised payment not repaid in time", "обещанный платёж не погашен вовремя"),
    ("PPV event 7 bought on card 2256884759", "PPV-событие 7 куплено на карту 2256884759"),
    ("PPV event 7 Cup final", "PPV-событие 7: Cup final"),
])
def test_billing_descriptions_in_russian(stored: str, russian: str) -> None:
    text = ledger_text(stored, RU)
    assert text == russian
    assert english_in(text, allow=["Cup final"]) == []


def test_english_reads_as_stored_and_an_operators_text_stays() -> None:
    assert ledger_text("payment by card 2256884759 (online)", EN) == (
        "payment by card 2256884759 (online)")
    assert ledger_text("Bazovy: 3 unused days", EN) == "Bazovy: 3 unused days"
    assert ledger_text("goodwill after the outage", RU) == "goodwill after the outage"
