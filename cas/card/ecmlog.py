"""The card's ECM log: one JSON line per ECM the card answered with control words
(``cas card serve --ecm-log``, ``stb --card-ecm-log``; read by ``cas diag sharing``,
docs/sharing.md).  Lines are appended with one ``write`` on an ``O_APPEND`` file, so several
processes can share one log.  No key bytes: time, serial and channel only."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from cas.errors import UsageError


class EcmLog:
    """Append-only JSON-lines writer; call it with (ECM time, card serial, channel id)."""

    def __init__(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open the ECM log {path}: {exc.strerror or exc}").with_id(
                "card.cannot_open_ecm_log", path=path, value=exc.strerror or exc) from None
        self.path = path

    def __call__(self, time_s: int, card: int, channel: int) -> None:
        at = datetime.fromtimestamp(time_s, UTC).isoformat()
        line = json.dumps({"time": at, "card": card, "channel": channel}) + "\n"
        os.write(self._fd, line.encode("ascii"))

    def close(self) -> None:
        os.close(self._fd)


def open_ecm_log(path: Path, stack: ExitStack) -> EcmLog:
    log = EcmLog(path)
    stack.callback(log.close)
    return log
