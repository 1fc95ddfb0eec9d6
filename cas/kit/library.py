"""The shipped scenario library (``cas/kit/scenarios/*.toml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cas.errors import UsageError


def shipped_scenarios() -> list[Path]:
    root = Path(str(resources.files("cas.kit.scenarios")))
    return sorted(root.glob("*.toml"))


def find_scenario(name_or_path: str) -> Path:
    """A scenario file: an existing path, else a shipped scenario's name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for p in shipped_scenarios():
        if p.stem == name_or_path:
            return p
    names = ", ".join(p.stem for p in shipped_scenarios())
    raise UsageError(f"no scenario file {name_or_path!r} and no shipped scenario of that name "
                     f"({names})").with_id(
        "kit.no_scenario_file_no", name_or_path=f"{name_or_path!r}", names=names)
