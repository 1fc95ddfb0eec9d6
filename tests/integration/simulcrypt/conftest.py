"""Real servers on 127.0.0.1 for the SimulCrypt integration tests.

Async tests start their servers in the test's own event loop.  Blocking callers (the blocking
SCS client, the hypothesis fuzz tests, the CLI) use :class:`ThreadedServer`: the server runs
on its own event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cas.crypto import OperatorKeys
from cas.formats.simulcrypt import (
    ECMG_SCS,
    EMMG_MUX,
    HEADER_SIZE,
    InterfaceSpec,
    build_message,
    parse_message,
)
from cas.headend.simulcrypt import ecmgscs, emmgmux
from cas.headend.simulcrypt.ecmg import EcmgConfig, EcmgServer, sealed_ecm_builder
from cas.headend.simulcrypt.events import Event, decode_event
from cas.headend.simulcrypt.mux import MemorySink, MuxConfig, MuxServer

TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def keys() -> OperatorKeys:
    return OperatorKeys.generate(os.urandom)


def frame(event: Event, version: int = 2) -> bytes:
    return build_message(event.to_message(version))


def decode(data: bytes, spec: InterfaceSpec = ECMG_SCS) -> Event:
    """Decode an answer; one in a version we do not speak (an error echoing the peer's
    unsupported version byte) is read with version 2 rules."""
    events = ecmgscs.EVENTS if spec is ECMG_SCS else emmgmux.EVENTS
    message = parse_message(data)
    version = None if message.protocol_version in spec.versions else 2
    return decode_event(message, events, spec, version=version)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One whole frame (bounded by the caller's timeout)."""
    header = await reader.readexactly(HEADER_SIZE)
    body = await reader.readexactly(int.from_bytes(header[3:5], "big"))
    return header + body


async def read_event(reader: asyncio.StreamReader, spec: InterfaceSpec = ECMG_SCS) -> Event:
    async with asyncio.timeout(TIMEOUT_S):
        return decode(await read_frame(reader), spec)


class FrameReader:
    """Frames from a blocking socket (several may arrive in one read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self, deadline: float) -> bytes | None:
        """The next frame, or None at end of stream; TimeoutError past ``deadline``."""
        while True:
            if len(self.buf) >= HEADER_SIZE:
                need = HEADER_SIZE + int.from_bytes(self.buf[3:5], "big")
                if len(self.buf) >= need:
                    out, self.buf = self.buf[:need], self.buf[need:]
                    return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk


class ThreadedServer:
    """An asyncio server (ECMG or mux) on its own loop in a daemon thread."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self.loop = asyncio.new_event_loop()
        self.server: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(TIMEOUT_S):
            raise RuntimeError("server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = self._factory()
            await self.server.start()

        self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()

    @property
    def port(self) -> int:
        return int(self.server.port)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        async def wrapper() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(TIMEOUT_S)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(TIMEOUT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def threaded_ecmg(keys: OperatorKeys) -> Iterator[ThreadedServer]:
    server = ThreadedServer(lambda: EcmgServer(sealed_ecm_builder(keys),
                                               EcmgConfig(max_message_length=4096)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def threaded_mux() -> Iterator[ThreadedServer]:
    server = ThreadedServer(lambda: MuxServer(MemorySink(), MuxConfig()))
    yield server
    server.stop()


__all__ = ["EMMG_MUX", "TIMEOUT_S", "FrameReader", "ThreadedServer", "decode", "frame",
           "read_event", "read_frame"]
