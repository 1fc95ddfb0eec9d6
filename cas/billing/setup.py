"""Choosing the operator profile and installing its catalog in a store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy.orm import Session

from cas.billing.catalog import Lineup, install_lineup, load_lineup
from cas.billing.clock import CLOCK_KEY, set_clock
from cas.billing.profile import OperatorProfile, load_profile, parse_profile, shipped_profiles
from cas.billing.txn import PROFILE_KEY, PROFILE_TOML_KEY, current_profile, forget_profile
from cas.store.repo import get_setting, set_setting

__all__ = ["Installed", "current_profile", "load_catalog", "use_profile"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    profile: OperatorProfile
    lineup: Lineup


def _profile_text(name_or_path: str | Path) -> tuple[str, str]:
    if isinstance(name_or_path, str) and name_or_path in shipped_profiles():
        text = (resources.files("cas.billing.profiles") / f"{name_or_path}.toml").read_text("utf-8")
        return name_or_path, text
    path = Path(name_or_path)
    load_profile(path)  # validates, raises ConfigError with the shipped names
    return str(path), path.read_text("utf-8")


def use_profile(session: Session, name_or_path: str | Path, *, lineup: str | Path | None = None,
                clock_start: datetime | None = None) -> Installed:
    """Make this store run ``name_or_path``'s rules and install a lineup (the profile's own
    shipped sample unless ``lineup`` names another file).  The profile text is stored in the
    database, so every process using the store (CLI, API) applies the same rules.  The
    simulation clock starts at ``clock_start`` if it has not started yet."""
    name, text = _profile_text(name_or_path)
    profile = parse_profile(text, source=name)
    catalog = load_lineup(lineup if lineup is not None else profile.lineup,
                          minor_per_major=profile.minor_per_major)
    set_setting(session, PROFILE_KEY, name)
    set_setting(session, PROFILE_TOML_KEY, text)
    forget_profile(session)
    install_lineup(session, catalog)
    if clock_start is not None and get_setting(session, CLOCK_KEY) is None:
        set_clock(session, clock_start)
    return Installed(profile=profile, lineup=catalog)


def load_catalog(session: Session, lineup: str | Path) -> Lineup:
    """Replace the catalog with another lineup file, priced in the profile's currency."""
    profile = current_profile(session)
    catalog = load_lineup(lineup, minor_per_major=profile.minor_per_major)
    install_lineup(session, catalog)
    return catalog
