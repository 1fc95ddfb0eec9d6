"""Reading one TOML table of the live head-end's configuration: typed getters whose errors
name the file, ``[section].key`` and the problem (in both languages), shared by
:mod:`cas.live.config` and :mod:`cas.live.config_simulcrypt`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cas.errors import ConfigError
from cas.i18n import Msg

__all__ = ["Table", "host_port"]


class Table:
    """One TOML table being read: typed getters, each error naming ``[section].key``."""

    def __init__(self, file: str, name: str, data: object) -> None:
        self.file = file
        self.name = name
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: [{name}]: expected a table").with_id(
                "live.expected_table", file=file, name=name)
        self.data: dict[str, Any] = dict(data)
        self.used: set[str] = set()

    def fail(self, key: str, message: str, problem: Msg) -> ConfigError:
        """``[name].key: message``; ``problem`` is ``message`` as a catalogue message."""
        return ConfigError(f"{self.file}: [{self.name}].{key}: {message}").with_id(
            "live.config_field", file=self.file, name=self.name, key=key, problem=problem)

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def raw(self, key: str) -> Any:
        """The value as TOML gave it (the caller checks it)."""
        return self._get(key)

    def str_(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self._get(key)
        if value is None:
            if required or default is None:
                raise self.fail(key, "required", Msg("errors.live.problem.required"))
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}",
                Msg("errors.live.problem.expected_string_got", {"name__": type(value).__name__}))
        return value

    def int_(self, key: str, default: int | None, lo: int, hi: int) -> int:
        value = self._get(key)
        if value is None:
            if default is None:
                raise self.fail(key, "required", Msg("errors.live.problem.required"))
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}",
                Msg("errors.live.problem.expected_integer_got", {"value": f"{value!r}"}))
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} outside {lo}..{hi}",
                Msg("errors.live.problem.outside", {"value": value, "lo": lo, "hi": hi}))
        return value

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        return None if self.data.get(key) is None else self.int_(key, None, lo, hi)

    def float_(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}",
                Msg("errors.live.problem.expected_number_got", {"value": f"{value!r}"}))
        if not lo <= float(value) <= hi:
            raise self.fail(key, f"{value} outside {lo:g}..{hi:g}",
                Msg("errors.live.problem.outside",
                    {"value": value, "lo": f"{lo:g}", "hi": f"{hi:g}"}))
        return float(value)

    def bool_(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}",
                Msg("errors.live.problem.expected_true_false_got", {"value": f"{value!r}"}))
        return value

    def enum_(self, key: str, kind: type[Any], default: Any) -> Any:
        text = self.str_(key, default.value)
        try:
            return kind(text)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in kind)
            raise self.fail(key, f"{text!r} is not one of {choices}",
                Msg("errors.live.problem.not_one",
                    {"text": f"{text!r}", "choices": choices})) from None

    def path_(self, key: str, base: Path) -> Path | None:
        text = self.str_(key, "")
        if not text:
            return None
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key", Msg("errors.live.problem.unknown_key"))


def host_port(table: Table, key: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
        raise table.fail(key, f"{text!r}: expected HOST:PORT",
            Msg("errors.live.problem.expected_host_port", {"text": f"{text!r}"}))
    return host, int(port)
