"""The virtual card service behind ``cas card serve``: card images served on vpcd slots.

Each image becomes an :class:`~cas.card.applet.Applet` on its own vpcd slot (TCP
``port + i`` for the i-th image, one thread and one connection per slot).  An image can be
served by one process at a time: a lock file next to it (``.<name>.lock``, ``flock``) says
so, and the kernel drops the lock if the process dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from cas.card.applet import Applet
from cas.card.eeprom import Eeprom
from cas.card.vpcd import Backoff, serve_cards
from cas.crypto import Key
from cas.errors import CardError


class ImageInUseError(CardError):
    """Another process is already serving this card image."""


def lock_image(path: Path, stack: ExitStack) -> None:
    """Hold an exclusive lock on ``path``'s sidecar lock file until ``stack`` closes."""
    lock_path = path.parent / f".{path.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ImageInUseError(f"card image {path} is already being served").with_id(
            "card.card_image_already_being", path=path) from None


def open_applets(images: Sequence[Path], rom_key: Key, stack: ExitStack, *,
                 sync: bool = True, ecm_log: Path | None = None) -> list[Applet]:
    """Lock and load every image; one applet per image, in order.  With ``ecm_log`` every
    card appends the ECMs it answers to that file (cas.card.ecmlog)."""
    log = None
    if ecm_log is not None:
        from cas.card.ecmlog import open_ecm_log

        log = open_ecm_log(ecm_log, stack)
    applets: list[Applet] = []
    for path in images:
        lock_image(path, stack)
        applet = Applet(Eeprom.open(path, sync=sync), rom_key=rom_key)
        applet.on_ecm_answered = log
        applets.append(applet)
    return applets


def serve_images(images: Sequence[Path], rom_key: Key, host: str, port: int, *,
                 stop: threading.Event, sync: bool = True,
                 on_ready: Callable[[list[Applet]], None] | None = None,
                 on_state: Callable[[int, str], None] | None = None,
                 backoff: Backoff | None = None, ecm_log: Path | None = None) -> None:
    """Serve ``images[i]`` on vpcd ``host:port+i`` until ``stop`` is set."""
    with ExitStack() as stack:
        applets = open_applets(images, rom_key, stack, sync=sync, ecm_log=ecm_log)
        if on_ready is not None:
            on_ready(applets)
        serve_cards(applets, host, port, stop=stop, backoff=backoff, on_state=on_state)
