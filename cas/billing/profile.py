"""Operator profiles: each seed operator's rules as configuration (DESIGN §6).

A profile is a TOML file; one per seed operator ships in :mod:`cas.billing.profiles`
(``tvplus``, ``ntvplus``, ``atvplus``, ``mts``, ``uzonline``).  ``docs/subscribers.md`` lists
every option.  A store uses one profile at a time (setting ``operator.profile``); the domain
code in :mod:`cas.billing.service` reads every rule from it and hard-codes none.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cas.billing.money import config_amount, minor_digits
from cas.errors import ConfigError

PAYMENT_BY = ("card", "contract", "account")
ACCOUNT_KINDS = ("prepaid", "postpaid")


@dataclass(frozen=True, slots=True, kw_only=True)
class PromisedPaymentRules:
    """NTV Plus "Promised Payment": a credit of up to ``max_minor`` for ``days`` days."""

    days: int
    max_minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspensionRules:
    """Temporary suspension ("holiday"): between ``min_days`` and ``max_days`` long."""

    min_days: int
    max_days: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorProfile:
    key: str
    name: str
    country: str
    #: CLDR locale of the operator's market (``ru_KZ``): its country sets the region of the
    #: formats (:mod:`cas.locale`), e.g. the tenge sign in Russian.
    locale: str
    home_region: int
    lineup: str
    currency: str
    minor_unit: str
    minor_per_major: int
    account_kinds: tuple[str, ...]
    default_account_kind: str
    account_number_digits: int
    contract_number_digits: int
    postpaid_credit_limit_minor: int
    payment_by: tuple[str, ...]
    payment_card_denominations_minor: tuple[int, ...]
    sms_keyword: str | None
    auto_renew_default: bool
    renewal_toggle: bool
    switch_lock_days: int
    switch_credit_unused: bool
    reminder_days: int
    promised_payment: PromisedPaymentRules | None
    suspension: SuspensionRules | None
    promo_enabled: bool
    promo_requires_verification: bool
    subscribe_requires_verification: bool
    verification_code_digits: int
    verification_session_minutes: int
    verification_max_attempts: int
    default_screens: int
    max_screens_total: int
    kids_maturity_limit: int

    def money(self, amount_minor: int, lang: str | None = None) -> str:
        """``"12.34 AZN"`` without a language (logs, plain records); with one, the reader's
        format through Babel: ``money(251000, "ru")`` -> ``"2 510,00 ₸"`` (tvplus)."""
        if lang is None:
            from cas.billing.money import format_amount

            return format_amount(amount_minor, self.minor_per_major, self.currency)
        from cas.locale import format_money

        return format_money(amount_minor, self.currency, lang,
                            minor_per_major=self.minor_per_major, country=self.country)

    def money_in(self, lang: str) -> Callable[[int], str]:
        """A one-argument money formatter for ``lang`` (for templates)."""
        return functools.partial(self.money, lang=lang)


def _table(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table").with_id(
            "billing.table_3", where=where, name=name)
    return value


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing {key!r}").with_id(
                "billing.missing", where=where, key=f"{key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool and bool not in (
            kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: {key!r} has the wrong type").with_id(
            "billing.wrong_type", where=where, key=f"{key!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} has the wrong type ({type(value).__name__})").with_id(
            "billing.wrong_type_2", where=where, key=f"{key!r}", name__=type(value).__name__)
    return value


def _check_locale(locale: str, country: str, source: str) -> None:
    from babel import Locale, UnknownLocaleError

    try:
        parsed = Locale.parse(locale)
    except (ValueError, TypeError, UnknownLocaleError) as exc:
        raise ConfigError(f"{source}: operator.locale {locale!r} is not a CLDR locale").with_id(
            "billing.operator_locale_not_cldr", source=source, locale=f"{locale!r}") from exc
    if parsed.territory is not None and parsed.territory != country:
        raise ConfigError(f"{source}: operator.locale {locale!r} is not of country {country!r}").with_id(
            "billing.operator_locale_not_country", source=source, locale=f"{locale!r}",
            country=f"{country!r}")


def parse_profile(text: str, *, source: str = "<profile>") -> OperatorProfile:
    """Parse and validate a profile TOML document."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}").with_id(
            "billing.not_valid_toml", source=source, exc=exc) from exc
    op = _table(doc, "operator", source)
    money = _table(doc, "money", source)
    accounts = _table(doc, "accounts", source)
    payments = _table(doc, "payments", source)
    packages = _table(doc, "packages", source)
    promised = _table(doc, "promised_payment", source)
    suspension = _table(doc, "suspension", source)
    promo = _table(doc, "promo", source)
    verification = _table(doc, "verification", source)
    devices = _table(doc, "devices", source)
    profiles = _table(doc, "profiles", source)

    mpm = _get(money, "minor_per_major", int, source)
    if mpm < 1:
        raise ConfigError(f"{source}: minor_per_major must be positive").with_id(
            "billing.minor_per_major_positive", source=source)
    minor_digits(mpm)

    kinds = tuple(_get(accounts, "kinds", list, source, ["prepaid"]))
    if not kinds or any(k not in ACCOUNT_KINDS for k in kinds):
        raise ConfigError(f"{source}: accounts.kinds must be a non-empty subset of {ACCOUNT_KINDS}").with_id(
            "billing.accounts_kinds_non_empty", source=source, account_kinds=ACCOUNT_KINDS)
    default_kind = _get(accounts, "default_kind", str, source, kinds[0])
    if default_kind not in kinds:
        raise ConfigError(f"{source}: accounts.default_kind must be one of accounts.kinds").with_id(
            "billing.accounts_default_kind_one", source=source)
    by = tuple(_get(payments, "by", list, source, list(PAYMENT_BY)))
    if not by or any(b not in PAYMENT_BY for b in by):
        raise ConfigError(f"{source}: payments.by must be a non-empty subset of {PAYMENT_BY}").with_id(
            "billing.payments_non_empty_subset", source=source, payment_by=PAYMENT_BY)
    denoms = tuple(sorted(config_amount(d, mpm, f"{source}: payment_card_denominations")
                          for d in _get(payments, "payment_card_denominations", list, source, [])))
    sms = _get(payments, "sms_keyword", str, source, "") or None
    if sms is not None and (not sms.isalnum() or " " in sms):
        raise ConfigError(f"{source}: payments.sms_keyword must be one word").with_id(
            "billing.payments_sms_keyword_one", source=source)

    promised_rules = None
    if _get(promised, "enabled", bool, source, False):
        promised_rules = PromisedPaymentRules(
            days=_get(promised, "days", int, source),
            max_minor=config_amount(_get(promised, "max", (int, str), source), mpm,
                                    f"{source}: promised_payment.max"))
        if promised_rules.days < 1 or promised_rules.max_minor < 1:
            raise ConfigError(f"{source}: promised payment days and max must be positive").with_id(
                "billing.promised_payment_days_max", source=source)
    suspension_rules = None
    if _get(suspension, "enabled", bool, source, False):
        suspension_rules = SuspensionRules(min_days=_get(suspension, "min_days", int, source, 1),
                                           max_days=_get(suspension, "max_days", int, source, 90))
        if not 0 <= suspension_rules.min_days <= suspension_rules.max_days:
            raise ConfigError(f"{source}: suspension needs 0 <= min_days <= max_days").with_id(
                "billing.suspension_needs_min_days", source=source)

    country = _get(op, "country", str, source)
    locale = _get(op, "locale", str, source, f"ru_{country}")
    _check_locale(locale, country, source)
    profile = OperatorProfile(
        key=_get(op, "key", str, source),
        name=_get(op, "name", str, source),
        country=country,
        locale=locale,
        home_region=_get(op, "home_region", int, source),
        lineup=_get(op, "lineup", str, source),
        currency=_get(money, "currency", str, source),
        minor_unit=_get(money, "minor_unit", str, source),
        minor_per_major=mpm,
        account_kinds=kinds,
        default_account_kind=default_kind,
        account_number_digits=_get(accounts, "number_digits", int, source, 12),
        contract_number_digits=_get(accounts, "contract_digits", int, source, 8),
        postpaid_credit_limit_minor=config_amount(
            _get(accounts, "postpaid_credit_limit", (int, str), source, 0), mpm,
            f"{source}: accounts.postpaid_credit_limit"),
        payment_by=by,
        payment_card_denominations_minor=denoms,
        sms_keyword=sms,
        auto_renew_default=_get(packages, "auto_renew_default", bool, source, True),
        renewal_toggle=_get(packages, "renewal_toggle", bool, source, True),
        switch_lock_days=_get(packages, "switch_lock_days", int, source, 0),
        switch_credit_unused=_get(packages, "switch_credit_unused", bool, source, False),
        reminder_days=_get(packages, "reminder_days", int, source, 3),
        promised_payment=promised_rules,
        suspension=suspension_rules,
        promo_enabled=_get(promo, "enabled", bool, source, False),
        promo_requires_verification=_get(promo, "requires_verification", bool, source, False),
        subscribe_requires_verification=_get(verification, "subscribe_requires_code", bool,
                                             source, False),
        verification_code_digits=_get(verification, "code_digits", int, source, 6),
        verification_session_minutes=_get(verification, "session_minutes", int, source, 30),
        verification_max_attempts=_get(verification, "max_attempts", int, source, 5),
        default_screens=_get(devices, "default_screens", int, source, 1),
        max_screens_total=_get(devices, "max_screens_total", int, source, 5),
        kids_maturity_limit=_get(profiles, "kids_maturity_limit", int, source, 12),
    )
    if not 0 <= profile.home_region <= 0xFFFF:
        raise ConfigError(f"{source}: home_region must be a u16").with_id(
            "billing.home_region_u16", source=source)
    if not 6 <= profile.account_number_digits <= 20 or not 4 <= profile.contract_number_digits <= 20:
        raise ConfigError(f"{source}: account/contract number digits out of range").with_id(
            "billing.account_contract_number_digits", source=source)
    if profile.switch_lock_days < 0 or profile.reminder_days < 0:
        raise ConfigError(f"{source}: day counts must not be negative").with_id(
            "billing.day_counts_not_negative", source=source)
    if not 1 <= profile.default_screens <= profile.max_screens_total:
        raise ConfigError(f"{source}: need 1 <= default_screens <= max_screens_total").with_id(
            "billing.need_default_screens_max", source=source)
    if not 0 <= profile.kids_maturity_limit <= 0xFF:
        raise ConfigError(f"{source}: kids_maturity_limit must be a u8").with_id(
            "billing.kids_maturity_limit_u8", source=source)
    if not 4 <= profile.verification_code_digits <= 10:
        raise ConfigError(f"{source}: verification code_digits must be 4..10").with_id(
            "billing.verification_code_digits", source=source)
    return profile


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped in the package, sorted."""
    root = resources.files("cas.billing.profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> OperatorProfile:
    """A shipped profile by name (``"atvplus"``) or a profile file by path."""
    path = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in shipped_profiles():
        text = (resources.files("cas.billing.profiles") / f"{name_or_path}.toml").read_text("utf-8")
        return parse_profile(text, source=f"profile {name_or_path}")
    if path.suffix == ".toml" and path.is_file():
        return parse_profile(path.read_text("utf-8"), source=str(path))
    raise ConfigError(
        f"unknown operator profile {str(name_or_path)!r} (shipped: {', '.join(shipped_profiles())})").with_id(
        "billing.unknown_operator_profile_shipped", name_or_path=f"{str(name_or_path)!r}",
        shipped_profiles=", ".join(shipped_profiles()))
