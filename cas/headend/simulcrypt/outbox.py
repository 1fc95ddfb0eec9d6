"""The EMMG's outbox: EMM datagrams with positions, and how far the mux has confirmed.

Delivery semantics (docs/simulcrypt.md, "EMMG delivery"):

* Every datagram has a **position**: its index in the source (0, 1, 2, ...).
* ``acked``: every datagram before this position has been *confirmed* by the mux.  SimulCrypt
  has no acknowledgement for data_provision, so the EMMG makes one from standard messages: it
  sends a stream_test after a batch of data_provisions, and the mux's stream_status (it must
  answer, TS 103 197 §6.1) comes back on the same ordered TCP connection *after* the mux has
  read every data_provision sent before the test.  That answer confirms the batch.
* ``sent``: the next position to write on the current connection.  After a reconnection the
  EMMG rewinds ``sent`` to ``acked`` and sends the unconfirmed tail again.

So no EMM is lost (at-least-once towards any mux that answers stream_test), and the only EMMs
that can be delivered twice are those after the last confirmation when the connection broke.
cas-sim's own mux (:mod:`.mux`) writes a stream's datagrams to its output only when it answers
the stream_test that closes their batch, so against it each EMM is written exactly once
unless the connection breaks between that write and the arrival of the answer (then the last
batch is written twice).  A duplicated EMM is harmless to a card (it refuses sequence numbers
it has applied, 9811) but costs bandwidth, so batches are kept short.

With ``state_path`` the acknowledged position survives a restart of the EMMG process: the
source is replayed from the start and the first ``acked`` datagrams are skipped.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from cas.errors import ConfigError


class Outbox:
    """Positions over a (possibly endless) source of datagrams."""

    def __init__(self, source: Iterable[bytes] = (), *, state_path: Path | None = None,
                 read_ahead: int = 4096) -> None:
        self._source: Iterator[bytes] = iter(source)
        self._exhausted = False
        self._state_path = state_path
        self._read_ahead = read_ahead
        self._pending: deque[bytes] = deque()   # positions acked .. acked+len-1
        self.acked = 0
        self.sent = 0
        if state_path is not None and state_path.exists():
            self.acked = self.sent = self._load_state(state_path)
            skipped = 0
            while skipped < self.acked and self._pull():
                self._pending.popleft()
                skipped += 1
            if skipped < self.acked:
                raise ConfigError(f"{state_path}: {self.acked} EMMs acknowledged but the "
                                  f"source holds only {skipped}").with_id(
                    "headend.emms_acknowledged_but_source", state_path=state_path,
                    acked=self.acked, skipped=skipped)

    # --- filling ---------------------------------------------------------------------------
    def put(self, datagram: bytes) -> int:
        """Queue one datagram (for live sources); returns its position."""
        if not datagram:
            raise ValueError("empty datagram")
        self._pending.append(bytes(datagram))
        return self.acked + len(self._pending) - 1

    def _pull(self) -> bool:
        if self._exhausted:
            return False
        try:
            self._pending.append(next(self._source))
        except StopIteration:
            self._exhausted = True
            return False
        return True

    # --- state ------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Positions known so far (acked + unconfirmed + not yet sent, read ahead)."""
        return self.acked + len(self._pending)

    @property
    def source_exhausted(self) -> bool:
        return self._exhausted

    @property
    def unsent(self) -> int:
        return self.queued - self.sent

    @property
    def unconfirmed(self) -> int:
        return self.sent - self.acked

    def has_unsent(self) -> bool:
        """Whether a datagram waits to be sent (reads one from the source if needed)."""
        return self.sent - self.acked < len(self._pending) or self._pull()

    @property
    def done(self) -> bool:
        """Source exhausted and every datagram confirmed."""
        if not self._exhausted and not self._pending:
            self._pull()
        return self._exhausted and not self._pending

    # --- sending ----------------------------------------------------------------------------
    def take(self, max_count: int, max_bytes: int) -> list[bytes]:
        """The next unsent datagrams (at least one if any, within the limits); marks them sent."""
        out: list[bytes] = []
        size = 0
        while len(out) < max_count:
            index = self.sent - self.acked
            while index >= len(self._pending) and len(self._pending) < self._read_ahead \
                    and self._pull():
                pass
            if index >= len(self._pending):
                break
            item = self._pending[index]
            if out and size + len(item) > max_bytes:
                break
            out.append(item)
            size += len(item)
            self.sent += 1
        return out

    def ack(self, position: int) -> int:
        """Everything before ``position`` is confirmed; returns how many were newly confirmed."""
        position = min(position, self.sent)
        count = max(0, position - self.acked)
        for _ in range(count):
            self._pending.popleft()
        self.acked += count
        if count and self._state_path is not None:
            self._save_state(self._state_path)
        return count

    def rewind(self) -> int:
        """After a lost connection: send again from the last confirmed position."""
        resent = self.sent - self.acked
        self.sent = self.acked
        return resent

    # --- persistence ------------------------------------------------------------------------
    @staticmethod
    def _load_state(path: Path) -> int:
        try:
            data = json.loads(path.read_text("utf-8"))
            acked = int(data["acked"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not an EMMG outbox state file").with_id(
                "headend.not_emmg_outbox_state", path=path) from exc
        if acked < 0:
            raise ConfigError(f"{path}: negative position").with_id(
                "headend.negative_position", path=path)
        return acked

    def _save_state(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"acked": self.acked}), "utf-8")
        os.replace(tmp, path)   # atomic: a crash leaves the old or the new position
