"""Operator profiles and lineups: the five shipped ones carry the seeds' rules; bad files are
refused with a ConfigError naming the problem."""

from __future__ import annotations

import pytest

from cas.billing.catalog import load_lineup, parse_lineup
from cas.billing.profile import load_profile, parse_profile, shipped_profiles
from cas.errors import ConfigError


def test_five_seed_profiles_ship() -> None:
    assert shipped_profiles() == ["atvplus", "mts", "ntvplus", "tvplus", "uzonline"]
    tv, ntv, atv = load_profile("tvplus"), load_profile("ntvplus"), load_profile("atvplus")
    mts, uz = load_profile("mts"), load_profile("uzonline")
    assert (tv.currency, tv.minor_unit, tv.home_region) == ("KZT", "tiyn", 398)
    assert tv.account_kinds == ("prepaid", "postpaid") and tv.max_screens_total == 5
    assert tv.promo_enabled and tv.promo_requires_verification
    assert (ntv.currency, ntv.minor_unit, ntv.sms_keyword) == ("RUB", "kopeck", "ntvplus")
    assert ntv.promised_payment is not None and ntv.suspension is not None
    assert (atv.currency, atv.minor_unit) == ("AZN", "qəpik")
    assert atv.payment_card_denominations_minor == (900, 1000, 1200, 1500)
    assert (atv.switch_lock_days, atv.switch_credit_unused) == (30, True)
    assert mts.currency == "RUB" and mts.account_number_digits == 12
    assert (uz.currency, uz.minor_unit, uz.subscribe_requires_verification) == ("UZS", "tiyin", True)


@pytest.mark.parametrize("name", ["atvplus", "mts", "ntvplus", "tvplus", "uzonline"])
def test_every_shipped_lineup_parses(name: str) -> None:
    profile = load_profile(name)
    lineup = load_lineup(profile.lineup, minor_per_major=profile.minor_per_major)
    assert lineup.channels and any(p.kind == "base" for p in lineup.packages)


def test_atv_sport_is_153_channels_for_12_manat() -> None:
    lineup = load_lineup("atvplus.toml", minor_per_major=100)
    sport = next(p for p in lineup.packages if p.code == "sport")
    assert sport.name == "+Sport — 153 channels — 12 manat"
    assert (len(sport.channel_numbers), sport.price_minor, sport.kind) == (153, 1200, "base")
    assert {p.name for p in lineup.packages} == {"Standard", sport.name}


def test_uzonline_tiers() -> None:
    lineup = load_lineup("uzonline.toml", minor_per_major=100)
    ivi = lineup.packages[0]
    assert ivi.price_minor == 1_000_000
    assert [(t.from_period, t.price_minor) for t in ivi.tiers] == [(7, 2_500_000)]


_GOOD_PROFILE = """
[operator]
key = "x"
name = "X"
country = "KZ"
home_region = 398
lineup = "tvplus.toml"
[money]
currency = "KZT"
minor_unit = "tiyn"
minor_per_major = 100
"""


@pytest.mark.parametrize(("extra", "needle"), [
    ("[payments]\npayment_card_denominations = [9.5]\n", "float"),
    ("[accounts]\nkinds = [\"credit\"]\n", "accounts.kinds"),
    ("[accounts]\ncontract_digits = 3\n", "digits out of range"),
    ("[payments]\nsms_keyword = \"two words\"\n", "one word"),
    ("[devices]\ndefault_screens = 6\n", "default_screens"),
    ("[promised_payment]\nenabled = true\ndays = 3\nmax = 0.5\n", "float"),
])
def test_bad_profiles(extra: str, needle: str) -> None:
    _check_bad_profile(_GOOD_PROFILE + extra, needle)


@pytest.mark.parametrize(("locale", "needle"), [
    ("xx_YY", "not a CLDR locale"),
    ("ru_RU", "not of country 'KZ'"),
    ("", "not a CLDR locale"),
])
def test_bad_profile_locales(locale: str, needle: str) -> None:
    doc = _GOOD_PROFILE.replace('country = "KZ"\n', f'country = "KZ"\nlocale = "{locale}"\n')
    _check_bad_profile(doc, needle)


def test_profile_locale_and_money_in_the_readers_language() -> None:
    """The profile names its market's locale (default: Russian of its country); money
    with a language goes through Babel, without one stays the plain "12.34 KZT"."""
    p = parse_profile(_GOOD_PROFILE)
    assert p.locale == "ru_KZ"
    assert p.money(251_000, "ru") == "2\u00a0510,00\u00a0₸"
    assert p.money(251_000, "en") == "KZT2,510.00"
    assert p.money(251_000) == "2510.00 KZT"
    assert p.money_in("ru")(100) == "1,00\u00a0₸"
    assert {n: load_profile(n).locale for n in shipped_profiles()} == {
        "atvplus": "az_AZ", "mts": "ru_RU", "ntvplus": "ru_RU", "tvplus": "ru_KZ",
        "uzonline": "uz_UZ"}
    assert load_profile("ntvplus").money(59_900, "ru") == "599,00\u00a0₽"


def _check_bad_profile(doc: str, needle: str) -> None:
    parse_profile(_GOOD_PROFILE)
    with pytest.raises(ConfigError) as exc:
        parse_profile(doc)
    assert needle in str(exc.value)
    with pytest.raises(ConfigError):
        parse_profile("not toml [")
    with pytest.raises(ConfigError, match="unknown operator profile"):
        load_profile("nosuch")


def test_ten_digit_contract_numbers_are_allowed() -> None:
    """NTV Plus numbers its contracts with 10 digits (seed 001: "ntvplus 2256884759 425",
    the middle number being the contract): a profile may say so, and NTV Plus's does."""
    assert parse_profile(_GOOD_PROFILE + "[accounts]\ncontract_digits = 10\n") \
        .contract_number_digits == 10
    assert load_profile("ntvplus").contract_number_digits == 10


_CH = '[[channels]]\nnumber = 1\nname = "A"\nservice_id = 10\n'
_PKG = '[[packages]]\nid = 1\ncode = "b"\nname = "B"\nkind = "base"\nprice = 5\nchannels = [1]\n'


@pytest.mark.parametrize(("doc", "needle"), [
    (_PKG, "at least one channel"),
    (_CH, "at least one package"),
    (_CH + _CH + _PKG, "share a number"),
    (_CH + _PKG.replace("[1]", "[2]"), "unknown channel numbers [2]"),
    (_CH + _PKG.replace("price = 5", "price = 5.5"), "float"),
    (_CH + _PKG.replace("base", "premium"), "kind"),
    (_CH + _PKG.replace("id = 1", "id = 70000"), "'id'"),
    (_CH + _PKG.replace("[1]", '["3-1"]'), "range"),
    (_CH + _PKG + '[[promos]]\ncode = "P"\npackage = "zz"\ndays = 3\n', "unknown package"),
    (_CH.replace("service_id = 10", "service_id = 10\nregions = [70000]") + _PKG, "u16"),
])
def test_bad_lineups(doc: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_lineup(doc, minor_per_major=100)
    assert needle in str(exc.value)


def test_lineup_ranges_and_promos() -> None:
    doc = (_CH + _CH.replace("number = 1", "number = 2").replace("= 10", "= 11")
           + _PKG.replace("[1]", '["1-2"]')
           + '[[promos]]\ncode = "free7"\npackage = "b"\ndays = 7\nvalid_until = 2027-01-31\n')
    lineup = parse_lineup(doc, minor_per_major=100)
    assert lineup.packages[0].channel_numbers == (1, 2)
    assert lineup.promos[0].code == "FREE7"
    assert lineup.promos[0].valid_until_s == 1_801_440_000  # 2027-02-01 00:00 UTC
