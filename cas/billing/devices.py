"""Screens and devices (TV+ seed): a tariff allows 1-3 simultaneous devices, extra screens can
be bought up to the profile's total; beyond the limit the oldest devices are logged out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.ledger import notify
from cas.billing.profile import OperatorProfile
from cas.billing.renewals import base_of, open_subscriptions
from cas.billing.txn import account_by_number, atomic, current_profile, lock_account
from cas.billing.vocab import SubscriptionStatus
from cas.errors import ValidationError
from cas.store.errors import RecordNotFound
from cas.store.models import Account, Device
from cas.store.repo import to_s

_DEVICE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def screens_limit(session: Session, profile: OperatorProfile, acc: Account) -> int:
    """Simultaneous devices: the active base tariff's screens (or the profile default) plus
    extra screens bought, never above the profile's total (TV+: up to 5)."""
    base = base_of(open_subscriptions(session, acc))
    tariff = profile.default_screens
    if base is not None and base[0].status == SubscriptionStatus.ACTIVE and base[1].max_screens:
        tariff = base[1].max_screens
    return min(profile.max_screens_total, tariff + acc.extra_screens)


def enforce_device_limit(session: Session, profile: OperatorProfile, acc: Account,
                         at_s: int) -> list[str]:
    """Log out the devices beyond the limit, oldest login first ("extra devices will be
    logged out")."""
    limit = screens_limit(session, profile, acc)
    active = session.execute(
        select(Device).where(Device.account_id == acc.id, Device.logged_out_at_s.is_(None))
        .order_by(Device.logged_in_at_s.desc(), Device.id.desc())).scalars().all()
    out: list[str] = []
    for dev in active[limit:]:
        dev.logged_out_at_s = at_s
        dev.logout_reason = "device_limit"
        out.append(dev.device_id)
    if out:
        notify(session, acc, at_s, "device_logout",
               f"Logged out {len(out)} device(s): the tariff allows {limit} screen(s)")
    session.flush()
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLogin:
    device_id: str
    screens_limit: int
    active_devices: tuple[str, ...]
    logged_out: tuple[str, ...]


@atomic
def device_login(session: Session, *, account_number: str, device_id: str, at: datetime,
                 label: str = "") -> DeviceLogin:
    """A device logs in to the account; devices beyond the limit are logged out."""
    at_s = to_s(at)
    if not isinstance(device_id, str) or not _DEVICE.match(device_id):
        raise ValidationError("device id: 1-64 of A-Z a-z 0-9 . _ : -", code="BAD_DEVICE").with_id(
            "billing.device_id_z_z")
    profile = current_profile(session)
    acc = lock_account(session, account_by_number(session, account_number).id)
    dev = session.execute(select(Device).where(Device.account_id == acc.id,
                                               Device.device_id == device_id)).scalar()
    if dev is None:
        dev = Device(account_id=acc.id, device_id=device_id, label=label[:128],
                     logged_in_at_s=at_s)
        session.add(dev)
    else:
        dev.logged_in_at_s = at_s
        dev.logged_out_at_s = None
        dev.logout_reason = None
    session.flush()
    out = enforce_device_limit(session, profile, acc, at_s)
    return DeviceLogin(device_id=device_id, screens_limit=screens_limit(session, profile, acc),
                       active_devices=tuple(active_devices(session, acc)), logged_out=tuple(out))


@atomic
def device_logout(session: Session, *, account_number: str, device_id: str, at: datetime) -> None:
    at_s = to_s(at)
    acc = account_by_number(session, account_number)
    dev = session.execute(select(Device).where(Device.account_id == acc.id,
                                               Device.device_id == device_id)).scalar()
    if dev is None or dev.logged_out_at_s is not None:
        raise RecordNotFound(f"device {device_id!r} is not logged in", code="UNKNOWN_DEVICE").with_id(
            "billing.device_not_logged", device_id=f"{device_id!r}")
    dev.logged_out_at_s = at_s
    dev.logout_reason = "logout"


def active_devices(session: Session, acc: Account) -> list[str]:
    return [str(d) for d in session.execute(
        select(Device.device_id).where(Device.account_id == acc.id,
                                       Device.logged_out_at_s.is_(None))
        .order_by(Device.logged_in_at_s, Device.id)).scalars()]


@atomic
def set_extra_screens(session: Session, *, account_number: str, extra: int,
                      at: datetime) -> int:
    """Extra screens bought through the operator (TV+: "up to 5 in total").  Returns the new
    limit; lowering it logs out the devices beyond it."""
    at_s = to_s(at)
    profile = current_profile(session)
    acc = lock_account(session, account_by_number(session, account_number).id)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise ValidationError("extra screens must be a non-negative integer", code="BAD_SCREENS").with_id(
            "billing.extra_screens_non_negative")
    base = base_of(open_subscriptions(session, acc))
    tariff = base[1].max_screens \
        if base and base[0].status == SubscriptionStatus.ACTIVE and base[1].max_screens \
        else profile.default_screens
    if tariff + extra > profile.max_screens_total:
        raise ValidationError(
            f"at most {profile.max_screens_total} screens in total (tariff {tariff})",
            code="SCREEN_LIMIT").with_id(
            "billing.most_screens_total_tariff", max_screens_total=profile.max_screens_total,
            tariff=tariff)
    acc.extra_screens = extra
    session.flush()
    enforce_device_limit(session, profile, acc, at_s)
    return screens_limit(session, profile, acc)


__all__ = ["DeviceLogin", "active_devices", "device_login", "device_logout",
           "enforce_device_limit", "screens_limit", "set_extra_screens"]
