"""The catalog: channels and packages from a TOML lineup file (DESIGN §4).

Lineup format (``docs/subscribers.md`` has the full reference)::

    [lineup]
    name = "ATV+ sample lineup"

    [[channels]]
    number = 1            # logical channel number
    name = "AzTV"
    service_id = 1001     # DVB service id, also the ECM channel_id
    maturity = 0          # age rating; above a card's maturity limit needs the PIN
    regions = [31]        # where it may be watched (empty: everywhere)

    [[packages]]
    id = 2                # u16 package id carried in entitlements
    code = "sport"
    name = "+Sport — 153 channels — 12 manat"
    kind = "base"         # or "addon" (needs a base package)
    price = 12            # major units: integer or quoted decimal ("12.50"), never a float
    period_days = 30
    screens = 1           # simultaneous devices this tariff allows (base packages)
    channels = [1, 2, 3]  # channel numbers, or "1-153" ranges as strings
    tiers = [{ from_month = 7, price = 25000 }]   # optional tiered price

    [[promos]]
    code = "TVPLUS30"
    package = "base"
    days = 30
    max_uses = 1000       # optional
    valid_until = "2027-12-31"   # optional, UTC end of that day
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cas.access import AccessCriteria
from cas.billing.money import config_amount
from cas.errors import ConfigError, ValidationError
from cas.store.errors import RecordNotFound
from cas.store.models import (
    Channel,
    ChannelRegion,
    Package,
    PackageChannel,
    PackagePriceTier,
    PromoCode,
)
from cas.text import control_refusal, foreign_number_refusal, is_ascii_digits, parse_digits

PACKAGE_KINDS = ("base", "addon")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSpec:
    number: int
    name: str
    service_id: int
    maturity_rating: int = 0
    regions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceTier:
    from_period: int
    price_minor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageSpec:
    id: int
    code: str
    name: str
    kind: str
    price_minor: int
    period_days: int
    max_screens: int | None
    channel_numbers: tuple[int, ...]
    tiers: tuple[PriceTier, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PromoSpec:
    code: str
    package_code: str
    days: int
    max_uses: int | None = None
    valid_until_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lineup:
    name: str
    channels: tuple[ChannelSpec, ...]
    packages: tuple[PackageSpec, ...]
    promos: tuple[PromoSpec, ...] = ()


def _int(item: dict[str, Any], key: str, where: str, *, lo: int, hi: int,
         default: int | None = None) -> int:
    value = item.get(key, default)
    if value is None:
        raise ConfigError(f"{where}: missing {key!r}").with_id(
            "billing.missing", where=where, key=f"{key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key!r} must be an integer {lo}..{hi}, got {value!r}").with_id(
            "billing.integer", where=where, key=f"{key!r}", lo=lo, hi=hi, value=f"{value!r}")
    return value


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string").with_id(
            "billing.non_empty_string", where=where, key=f"{key!r}")
    return value.strip()


def _unique(items: Sequence[Any], attrs: tuple[str, ...], source: str, what: str) -> None:
    """ConfigError if two of ``items`` share a value of one of ``attrs``."""
    for attr in attrs:
        values = [getattr(item, attr) for item in items]
        if len(set(values)) != len(values):
            raise ConfigError(f"{source}: two {what} share a {attr}").with_id(
                "billing.two_share", source=source, what=what, attr=attr)


def _channel_numbers(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'channels' must be a list").with_id(
            "billing.channels_list", where=where)
    out: list[int] = []
    for item in raw:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(item)
        elif isinstance(item, str) and "-" in item:
            lo_s, _, hi_s = item.partition("-")
            try:
                lo, hi = int(lo_s), int(hi_s)
            except ValueError as exc:
                raise ConfigError(f"{where}: bad channel range {item!r}").with_id(
                    "billing.bad_channel_range", where=where, item=f"{item!r}") from exc
            if lo > hi:
                raise ConfigError(f"{where}: bad channel range {item!r}").with_id(
                    "billing.bad_channel_range", where=where, item=f"{item!r}")
            out.extend(range(lo, hi + 1))
        else:
            raise ConfigError(f"{where}: bad channel reference {item!r}").with_id(
                "billing.bad_channel_reference", where=where, item=f"{item!r}")
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: a channel is listed twice").with_id(
            "billing.channel_listed_twice", where=where)
    return tuple(out)


def _end_of_day_s(value: Any, where: str) -> int:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp())
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad date {value!r}").with_id(
                "billing.bad_date", where=where, value=f"{value!r}") from exc
    else:
        raise ConfigError(f"{where}: bad date {value!r}").with_id(
            "billing.bad_date", where=where, value=f"{value!r}")
    return int((datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp())


def parse_lineup(text: str, *, minor_per_major: int, source: str = "<lineup>") -> Lineup:
    """Parse and cross-check a lineup document (prices in the profile's currency)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}").with_id(
            "billing.not_valid_toml", source=source, exc=exc) from exc
    head = doc.get("lineup", {})
    name = head.get("name", source) if isinstance(head, dict) else source
    channels: list[ChannelSpec] = []
    for i, item in enumerate(doc.get("channels", [])):
        where = f"{source}: channels[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table").with_id("billing.table", where=where)
        regions = item.get("regions", [])
        if not isinstance(regions, list) or any(
                isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= 0xFFFF
                for r in regions):
            raise ConfigError(f"{where}: regions must be a list of u16 region codes").with_id(
                "billing.regions_list_u16_region", where=where)
        channels.append(ChannelSpec(
            number=_int(item, "number", where, lo=1, hi=9999),
            name=_str(item, "name", where),
            service_id=_int(item, "service_id", where, lo=1, hi=0xFFFF),
            maturity_rating=_int(item, "maturity", where, lo=0, hi=0xFF, default=0),
            regions=tuple(sorted(set(regions)))))
    if not channels:
        raise ConfigError(f"{source}: a lineup needs at least one channel").with_id(
            "billing.lineup_needs_least_one", source=source)
    _unique(channels, ("number", "service_id"), source, "channels")
    known = {c.number for c in channels}

    packages: list[PackageSpec] = []
    for i, item in enumerate(doc.get("packages", [])):
        where = f"{source}: packages[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table").with_id("billing.table", where=where)
        kind = _str(item, "kind", where)
        if kind not in PACKAGE_KINDS:
            raise ConfigError(f"{where}: kind must be one of {PACKAGE_KINDS}").with_id(
                "billing.kind_one", where=where, package_kinds=PACKAGE_KINDS)
        numbers = _channel_numbers(item.get("channels", []), where)
        unknown = sorted(set(numbers) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown channel numbers {unknown}").with_id(
                "billing.unknown_channel_numbers", where=where, unknown=unknown)
        tiers: list[PriceTier] = []
        for j, tier in enumerate(item.get("tiers", [])):
            twhere = f"{where}.tiers[{j}]"
            if not isinstance(tier, dict):
                raise ConfigError(f"{twhere}: must be a table").with_id(
                    "billing.table_2", twhere=twhere)
            tiers.append(PriceTier(
                from_period=_int(tier, "from_month", twhere, lo=2, hi=10_000),
                price_minor=config_amount(tier.get("price"), minor_per_major, f"{twhere}.price")))
        screens = item.get("screens")
        if screens is not None:
            screens = _int(item, "screens", where, lo=1, hi=100)
        packages.append(PackageSpec(
            id=_int(item, "id", where, lo=1, hi=0xFFFF),
            code=_str(item, "code", where),
            name=_str(item, "name", where),
            kind=kind,
            price_minor=config_amount(item.get("price"), minor_per_major, f"{where}.price"),
            period_days=_int(item, "period_days", where, lo=1, hi=3660, default=30),
            max_screens=screens,
            channel_numbers=numbers,
            tiers=tuple(sorted(tiers, key=lambda t: t.from_period))))
    if not packages:
        raise ConfigError(f"{source}: a lineup needs at least one package").with_id(
            "billing.lineup_needs_least_one_2", source=source)
    _unique(packages, ("id", "code"), source, "packages")
    codes = {p.code for p in packages}

    promos: list[PromoSpec] = []
    for i, item in enumerate(doc.get("promos", [])):
        where = f"{source}: promos[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table").with_id("billing.table", where=where)
        package_code = _str(item, "package", where)
        if package_code not in codes:
            raise ConfigError(f"{where}: unknown package {package_code!r}").with_id(
                "billing.unknown_package", where=where, package_code=f"{package_code!r}")
        max_uses = item.get("max_uses")
        promos.append(PromoSpec(
            code=_str(item, "code", where).upper(),
            package_code=package_code,
            days=_int(item, "days", where, lo=1, hi=3660),
            max_uses=None if max_uses is None else _int(item, "max_uses", where, lo=1, hi=10**9),
            valid_until_s=(None if item.get("valid_until") is None
                           else _end_of_day_s(item["valid_until"], where))))
    return Lineup(name=str(name), channels=tuple(channels), packages=tuple(packages),
                  promos=tuple(promos))


def shipped_lineup_text(name: str) -> str:
    root = resources.files("cas.billing.lineups")
    entry = root / name
    if not entry.is_file():
        raise ConfigError(f"no shipped lineup {name!r}").with_id(
            "billing.no_shipped_lineup", name=f"{name!r}")
    return entry.read_text("utf-8")


def load_lineup(name_or_path: str | Path, *, minor_per_major: int) -> Lineup:
    """A shipped lineup by file name (``"atvplus.toml"``) or a lineup file by path."""
    path = Path(name_or_path)
    if path.is_file():
        return parse_lineup(path.read_text("utf-8"), minor_per_major=minor_per_major,
                            source=str(path))
    return parse_lineup(shipped_lineup_text(str(name_or_path)), minor_per_major=minor_per_major,
                        source=f"lineup {name_or_path}")


def install_lineup(session: Session, lineup: Lineup) -> None:
    """Replace the catalog with ``lineup``.

    Channels are replaced; packages are updated in place by id, and packages missing from
    the new lineup are kept but marked retired (subscriptions may still refer to them).
    """
    session.execute(delete(PackageChannel))
    session.execute(delete(PackagePriceTier))
    session.execute(delete(ChannelRegion))
    session.execute(delete(Channel))
    session.flush()
    by_number: dict[int, int] = {}
    for ch in lineup.channels:
        session.add(Channel(service_id=ch.service_id, number=ch.number, name=ch.name,
                            maturity_rating=ch.maturity_rating))
        by_number[ch.number] = ch.service_id
    session.flush()
    session.add_all(ChannelRegion(service_id=ch.service_id, region=r)
                    for ch in lineup.channels for r in ch.regions)
    existing = {p.id: p for p in session.execute(select(Package)).scalars()}
    wanted = {p.id for p in lineup.packages}
    for spec in lineup.packages:
        row = existing.get(spec.id)
        if row is None:
            clash = session.execute(select(Package).where(Package.code == spec.code)).scalar()
            if clash is not None:  # a retired package held this code
                clash.code = f"{clash.code}~{clash.id}"
                session.flush()
            row = Package(id=spec.id)
            session.add(row)
        row.code, row.name, row.kind = spec.code, spec.name, spec.kind
        row.price_minor, row.period_days = spec.price_minor, spec.period_days
        row.max_screens, row.retired = spec.max_screens, False
    for pid, row in existing.items():
        if pid not in wanted:
            row.retired = True
    session.flush()
    session.add_all(PackageChannel(package_id=spec.id, service_id=by_number[n])
                    for spec in lineup.packages for n in spec.channel_numbers)
    session.add_all(PackagePriceTier(package_id=spec.id, from_period=t.from_period,
                                     price_minor=t.price_minor)
                    for spec in lineup.packages for t in spec.tiers)
    package_ids = {p.code: p.id for p in lineup.packages}
    for promo in lineup.promos:
        row_p = session.get(PromoCode, promo.code)
        if row_p is None:
            row_p = PromoCode(code=promo.code, used_count=0)
            session.add(row_p)
        row_p.package_id = package_ids[promo.package_code]
        row_p.days, row_p.max_uses, row_p.valid_until_s = promo.days, promo.max_uses, promo.valid_until_s
    session.flush()


# --- queries -----------------------------------------------------------------------------------
def _check_ref(ref: str | int, what: str) -> None:
    """A reference typed by someone: an ``int`` (not ``bool``), or text without control
    characters (numbers in it are read as ASCII digits only, :mod:`cas.text`)."""
    if isinstance(ref, bool) or not isinstance(ref, int | str):
        raise ValidationError(f"{what} is named by a number or a name, not {ref!r}",
                              code="BAD_TEXT").with_id(
            "billing.named_number_name_not", what=what, ref=f"{ref!r}")
    if isinstance(ref, str):
        refusal = control_refusal(ref, what)
        if refusal is not None:
            raise ValidationError(refusal, code="BAD_TEXT").with_id(
                refusal.message_id, **refusal.params)
        number = ref[4:] if ref.lower().startswith("sid:") else ref
        refusal = foreign_number_refusal(number, what)
        if refusal is not None:
            raise ValidationError(refusal, code="BAD_NUMBER").with_id(
                refusal.message_id, **refusal.params)


def get_package(session: Session, ref: str | int) -> Package:
    """A package by code (``"sport"``) or numeric id."""
    row: Package | None
    _check_ref(ref, "a package")
    number = ref if isinstance(ref, int) else parse_digits(ref, max_value=0xFFFF)
    if number is not None:
        row = session.get(Package, number)
    elif is_ascii_digits(ref):
        row = None  # digits, but beyond any package id
    else:
        row = session.execute(select(Package).where(Package.code == ref)).scalar_one_or_none()
    if row is None or row.retired:
        raise RecordNotFound(f"unknown package {ref!r}", code="UNKNOWN_PACKAGE").with_id(
            "unknown_package", ref=ref)
    return row


def price_for_period(session: Session, package: Package, period_number: int) -> int:
    """The price of billing period ``period_number`` (1-based): the tier in force, else the list
    price (Uzonline: months 1–6 at 10,000 so'm, from month 7 at 25,000)."""
    tier = session.execute(
        select(PackagePriceTier.price_minor)
        .where(PackagePriceTier.package_id == package.id,
               PackagePriceTier.from_period <= period_number)
        .order_by(PackagePriceTier.from_period.desc()).limit(1)
    ).scalar_one_or_none()
    return int(tier) if tier is not None else package.price_minor


def get_channel(session: Session, ref: str | int) -> Channel:
    """A channel by number (``12``), service id (``"sid:1012"``) or exact name."""
    row: Channel | None = None
    _check_ref(ref, "a channel")
    if isinstance(ref, int):
        number: int | None = ref
    elif is_ascii_digits(ref):
        number = parse_digits(ref, max_value=9999)  # None: digits, but no channel number
    elif ref.lower().startswith("sid:") and is_ascii_digits(ref[4:]):
        sid = parse_digits(ref[4:], max_value=0xFFFF)
        row = session.get(Channel, sid) if sid is not None else None
        number = None
    else:
        number = None
        row = session.execute(select(Channel).where(Channel.name == ref)).scalar_one_or_none()
    if number is not None:
        row = session.execute(select(Channel).where(Channel.number == number)).scalar_one_or_none()
    if row is None:
        raise RecordNotFound(f"unknown channel {ref!r}", code="UNKNOWN_CHANNEL").with_id(
            "unknown_channel", ref=ref)
    return row


def access_criteria(session: Session, channel: Channel) -> AccessCriteria:
    """What an ECM for ``channel`` demands: its packages, regions and maturity rating."""
    packages = tuple(int(p) for p in session.execute(
        select(PackageChannel.package_id).join(Package, Package.id == PackageChannel.package_id)
        .where(PackageChannel.service_id == channel.service_id, Package.retired.is_(False))
        .order_by(PackageChannel.package_id)).scalars())
    regions = tuple(int(r) for r in session.execute(
        select(ChannelRegion.region).where(ChannelRegion.service_id == channel.service_id)
        .order_by(ChannelRegion.region)).scalars())
    return AccessCriteria(channel_id=channel.service_id, package_ids=packages, regions=regions,
                          maturity_rating=channel.maturity_rating)


def all_access_criteria(session: Session) -> list[tuple[Channel, AccessCriteria]]:
    """Criteria for every channel, by channel number (ECM generation for the whole lineup)."""
    return [(ch, access_criteria(session, ch)) for ch in
            session.execute(select(Channel).order_by(Channel.number)).scalars()]


def package_channels(session: Session, package_id: int) -> list[Channel]:
    return list(session.execute(
        select(Channel).join(PackageChannel, PackageChannel.service_id == Channel.service_id)
        .where(PackageChannel.package_id == package_id).order_by(Channel.number)).scalars())


def list_packages(session: Session, *, include_retired: bool = False) -> list[Package]:
    stmt = select(Package).order_by(Package.id)
    if not include_retired:
        stmt = stmt.where(Package.retired.is_(False))
    return list(session.execute(stmt).scalars())


def channel_counts(session: Session, package_ids: Iterable[int]) -> dict[int, int]:
    ids = list(package_ids)
    counts = dict.fromkeys(ids, 0)
    for pid in session.execute(select(PackageChannel.package_id)
                               .where(PackageChannel.package_id.in_(ids))).scalars():
        counts[int(pid)] += 1
    return counts
