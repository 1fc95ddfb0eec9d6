"""``cas card``: personalise cards and serve them to pcscd as virtual cards.

* ``cas card personalise --count N [--start-serial S] --out DIR`` — N new cards: one EEPROM
  image each (``DIR/<serial>.img``), a personalisation batch file, and the cards registered
  with the head-end store.  ``--batch FILE`` takes the cards from a card-factory batch
  instead.
* ``cas card serve --image FILE [--image FILE ...] [--vpcd HOST:PORT]`` — serve each image on
  its own vpcd reader slot (TCP port, port+1, ...) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cas.access import NO_MATURITY_LIMIT
from cas.card.applet import Applet
from cas.card.personalise import (
    DEFAULT_FIRST_SERIAL,
    DEFAULT_PIN,
    BatchFileWriter,
    check_record_keys,
    default_slot,
    image_path,
)
from cas.card.service import serve_images
from cas.card.vpcd import DEFAULT_VPCD_PORT, parse_endpoint
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.crypto import OperatorKeys, load_operator_keys
from cas.errors import UsageError
from cas.formats.cardstate import CardState, SharingSettings
from cas.formats.records import CardRecord, parse_card_batch
from cas.outpath import check_output_dir, check_output_file
from cas.sharing import DEFAULT_TUNERS, SharingPolicy

if TYPE_CHECKING:
    from cas.card.personalise_fast import Factory, SlotLike

_KEYS_HELP = ("Operator key file (default: $CAS_OPERATOR_KEY, then "
              "<data-dir>/operator-keys.toml).")


def register(cli: click.Group) -> None:
    card = group(cli, "card", "Smart cards: personalise, serve over PC/SC (vpcd).")
    card.add_command(personalise_cmd)
    card.add_command(image_cmd)
    card.add_command(serve_cmd)


# --- personalise -------------------------------------------------------------------------------
def _store_register_records(app: Application, records: list[CardRecord]) -> None:
    """Register cards personalised elsewhere (a factory batch) at their own slots."""
    from cas.bulk.cards import NewCard

    with app.progress("registering", total=len(records)) as advance:
        _register(app, [NewCard(serial=r.serial, shared_address=r.shared_address,
                                member_position=r.member_position, region=r.region,
                                maturity_limit=r.maturity_limit) for r in records], advance)


def _register(app: Application, cards: list[Any], advance: Callable[[int], None],
              allocated: Callable[[list[Any]], None] | None = None) -> None:
    from cas.bulk.register import register_cards
    from cas.cli._subscribers import open_app_store

    store = open_app_store(app)
    try:
        register_cards(store, cards, advance, allocated)
    finally:
        store.dispose()


def _write_images(app: Application, records: list[CardRecord], out_dir: Path,
                  *, overwrite: bool, state: CardState | None = None) -> list[Path]:
    from cas.bulk.register import write_images_fast

    del overwrite  # _refuse_existing has checked (or --force)
    with app.progress("writing card images", total=len(records)) as advance:
        return write_images_fast(records, out_dir, advance=advance, state=state)


def _next_free_serial(app: Application) -> int:
    from sqlalchemy import func, select

    from cas.cli._subscribers import open_app_store
    from cas.store.models import Card

    store = open_app_store(app)
    try:
        with store.reader() as session:
            top = session.execute(select(func.max(Card.serial))).scalar_one_or_none()
    finally:
        store.dispose()
    return max(DEFAULT_FIRST_SERIAL, (top or 0) + 1)


@click.command("personalise")
@click.option("--count", "-n", type=click.IntRange(1, 1_000_000), help="How many new cards.")
@click.option("--start-serial", type=click.IntRange(1, 0xFFFFFFFF),
              help="First serial (default: after the highest registered card).")
@click.option("--batch", "batch_in", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take the cards from this card-factory personalisation batch.")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the EEPROM images (<serial>.img).")
@click.option("--batch-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the personalisation batch (default: DIR/batch-<first>-<n>.casb).")
@click.option("--pin", default=DEFAULT_PIN, show_default=True, help="Initial parental PIN.")
@click.option("--region", type=click.IntRange(0, 0xFFFF), default=0, show_default=True)
@click.option("--maturity-limit", type=click.IntRange(0, 0xFF), default=NO_MATURITY_LIMIT,
              show_default=True)
@click.option("--ecm-key-index", "ecm_key_indexes", type=click.IntRange(0, 255), multiple=True,
              help="ECM key(s) to put on the cards (default: 0).")
@click.option("--ecm-key-epoch", type=click.IntRange(0, 0xFFFFFF), default=0, show_default=True,
              help="ECM key epoch of the head-end (docs/keys.md).")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help=_KEYS_HELP)
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the cards with the head-end store.")
@click.option("--images/--no-images", default=True, show_default=True,
              help="Write one EEPROM image file per card. Without them, `cas card image "
                   "--batch FILE --serial S` writes a card's image from the batch file when "
                   "it is needed.")
@click.option("--workers", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Processes that personalise with --count (0: one per core).")
@click.option("--force", is_flag=True, help="Overwrite existing card images.")
@click.option("--sharing-policy", type=click.Choice([p.name.lower() for p in SharingPolicy]),
              default=SharingPolicy.FLAG.name.lower(), show_default=True,
              help="What the card does when it answers ECMs for more than one box "
                   "(docs/sharing.md); an EMM can change it.")
@click.option("--tuners", type=click.IntRange(1, 255), default=DEFAULT_TUNERS,
              show_default=True, help="Tuners of the box the card goes with (sharing check).")
@pass_app
def personalise_cmd(app: Application, count: int | None, start_serial: int | None,
                    batch_in: Path | None, out_dir: Path, batch_out: Path | None, pin: str,
                    region: int, maturity_limit: int, ecm_key_indexes: tuple[int, ...],
                    ecm_key_epoch: int, keys_path: Path | None, register: bool, images: bool,
                    workers: int, force: bool, sharing_policy: str, tuners: int) -> None:
    """Create cards: EEPROM images, a personalisation batch, and head-end registration."""
    if (count is None) == (batch_in is None):
        raise UsageError("give either --count N or --batch FILE").with_id("cli.give_either_count_n")
    state = CardState(sharing=SharingSettings(policy=SharingPolicy[sharing_policy.upper()],
                                              tuners=tuners))
    # Cards are registered with the store before their images are written: check first.
    check_output_dir(out_dir, "--out")
    if batch_out is not None:
        check_output_file(batch_out, "--batch-out")
    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    now_s = int(time.time())
    if batch_in is not None:
        records = list(parse_card_batch(batch_in.read_bytes()).records)
        rom_key = keys.transport_key()
        for r in records:
            check_record_keys(r, rom_key)
        if images:
            _refuse_existing(records_serials=[r.serial for r in records], out_dir=out_dir,
                             force=force)
        if register:
            _store_register_records(app, records)
        paths: list[Path] | None = (_write_images(app, records, out_dir, overwrite=force,
                                                  state=state) if images else None)
        batch_path = None
        slots: Sequence[SlotLike] = records
    else:
        assert count is not None
        first = start_serial if start_serial is not None else (
            _next_free_serial(app) if register else DEFAULT_FIRST_SERIAL)
        if first + count - 1 > 0xFFFFFFFF:
            raise UsageError("serials would run past 4294967295").with_id(
                "cli.serials_would_run_past")
        serials = range(first, first + count)
        if images:
            _refuse_existing(records_serials=serials, out_dir=out_dir, force=force)
        from cas.card.personalise_fast import Factory

        slots, paths, batch_path = _personalise_new(
            app, keys, serials, Factory(
                now_s=now_s, pin=pin, region=region, maturity_limit=maturity_limit,
                ecm_key_indexes=ecm_key_indexes or (0,), ecm_key_epoch=ecm_key_epoch),
            register=register, images=images, workers=workers, out_dir=out_dir, state=state,
            batch_out=batch_out or out_dir / f"batch-{first:010d}-{count}.casb")

    def cards(upto: int | None = None) -> list[dict[str, str | int | None]]:
        # Built only for what is shown: --json lists every card, the table the first 50.
        return [{"serial": f"{s.serial:010d}", "shared_address": s.shared_address,
                 "member_position": s.member_position,
                 "image": str(paths[i]) if paths else None}
                for i, s in enumerate(slots[:upto] if upto is not None else slots)]

    def render() -> None:
        table = Table(title=f"{len(slots)} card(s) personalised")
        for col in ("serial", "group", "position", "image"):
            table.add_column(col)
        for c in cards(50):
            table.add_row(str(c["serial"]), str(c["shared_address"]),
                          str(c["member_position"]), str(c["image"] or "-"))
        app.print(table)
        if len(slots) > 50:
            app.print(f"... and {len(slots) - 50} more")
        if batch_path:
            app.print(f"batch file: {batch_path}")
        app.print("registered with the head-end" if register else "not registered (--no-register)")

    if app.json_mode:
        app.output({"cards": cards(), "batch": str(batch_path) if batch_path else None,
                    "registered": register}, render)
    else:
        render()


def _personalise_new(app: Application, keys: OperatorKeys, serials: range,
                     factory: Factory, *, register: bool, images: bool, workers: int,
                     out_dir: Path, batch_out: Path, state: CardState
                     ) -> tuple[Sequence[SlotLike], list[Path] | None, Path]:
    """New cards: registered (slots allocated by the store, as runs of consecutive slots)
    while worker processes personalise each run as soon as its slots are known; then the
    images and the batch.  Every phase has its progress bar.  Nothing is done card by card
    in this process: a run goes to a worker as three numbers, the rows are generated by
    the database (:meth:`cas.bulk.cards.Registrar.register_range`)."""
    from cas.bulk.cards import RunSlots, SlotRun
    from cas.bulk.register import write_image_bytes
    from cas.card.personalise_fast import Personaliser, default_workers, split_records
    from cas.formats.cardstate import DEFAULT_CARD_STATE, build_card_state

    factory.record(keys, default_slot(serials[0]))  # bad options fail before anything is done
    count = len(serials)
    runs: list[SlotRun] = []

    def allocated(part: list[SlotRun]) -> None:
        runs.extend(part)
        personaliser.submit_runs(part)

    chunks: list[bytes] = []
    # The worker processes are forked before any database connection or progress display.
    # The batch file is written (to a temp file beside it) as the chunks come back, while
    # the workers go on; it is put in place at the end.
    with Personaliser(keys, factory, workers=workers or default_workers()) as personaliser, \
            BatchFileWriter(batch_out, count, now_s=factory.now_s) as batch:
        phases = ([("registering", count)] if register else []) + [("personalising", count)]
        with app.progress_bars(*phases) as bars:
            personaliser.advance = bars[-1]
            if register:
                _register_serials(app, serials, region=factory.region,
                                  maturity_limit=factory.maturity_limit, advance=bars[0],
                                  allocated=allocated)
            else:  # default slots: serial s at group s >> 8, position s & 0xFF
                allocated([SlotRun(serials[0], count, serials[0])])
            for chunk in personaliser.results():
                batch.write(chunk)
                if images:
                    chunks.append(chunk)
        paths = None
        if images:
            with app.progress("writing card images", total=count) as advance:
                tail = b"" if state == DEFAULT_CARD_STATE else build_card_state(state)
                paths = write_image_bytes(
                    serials, [r + tail for chunk in chunks for r in split_records(chunk)],
                    out_dir, advance=advance)
        with app.progress("writing the batch file", total=1) as advance:
            batch_path = batch.commit()
            advance(1)
    return RunSlots(runs), paths, batch_path


def _register_serials(app: Application, serials: range, *, region: int, maturity_limit: int,
                      advance: Callable[[int], None],
                      allocated: Callable[[list[Any]], None]) -> None:
    from cas.bulk.register import register_serials
    from cas.cli._subscribers import open_app_store

    store = open_app_store(app)
    try:
        register_serials(store, serials[0], len(serials), region=region,
                         maturity_limit=maturity_limit, advance=advance, allocated=allocated)
    finally:
        store.dispose()


def _refuse_existing(*, records_serials: Sequence[int], out_dir: Path, force: bool) -> None:
    if force:
        return
    for serial in records_serials:
        path = image_path(out_dir, serial)
        if path.exists():
            raise UsageError(f"card image {path} already exists (use --force to overwrite)").with_id(
                "cli.card_image_already_exists", path=path)


@click.command("image")
@click.option("--batch", "batch_in", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The personalisation batch the cards are in.")
@click.option("--serial", "serials", type=click.IntRange(1, 0xFFFFFFFF), multiple=True,
              required=True, help="Card serial; repeat for several cards.")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the EEPROM images (<serial>.img).")
@click.option("--force", is_flag=True, help="Overwrite existing card images.")
@pass_app
def image_cmd(app: Application, batch_in: Path, serials: tuple[int, ...], out_dir: Path,
              force: bool) -> None:
    """Write the EEPROM image of cards from their personalisation batch (on request)."""
    import mmap

    from cas.bulk.register import write_image_bytes
    from cas.formats.records.card_batch import find_card_records

    check_output_dir(out_dir, "--out")
    if batch_in.stat().st_size == 0:
        found = find_card_records(b"", serials)  # refused: no header
    else:
        with batch_in.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            found = find_card_records(m, serials)
    missing = [s for s in serials if s not in found]
    if missing:
        raise UsageError(f"card {missing[0]:010d} is not in {batch_in}").with_id(
            "cli.card_not_in_batch", serial=f"{missing[0]:010d}", path=batch_in)
    wanted = list(dict.fromkeys(serials))
    _refuse_existing(records_serials=wanted, out_dir=out_dir, force=force)
    paths = write_image_bytes(wanted, [found[s] for s in wanted], out_dir)
    data_out = {"images": [{"serial": f"{s:010d}", "image": str(p)}
                           for s, p in zip(wanted, paths, strict=True)]}

    def render() -> None:
        for s, p in zip(wanted, paths, strict=True):
            app.print(f"card {s:010d}: {p}")

    app.output(data_out, render)


# --- serve -------------------------------------------------------------------------------------
@click.command("serve")
@click.option("--image", "images", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, required=True,
              help="Card EEPROM image; repeat for several cards on consecutive slots.")
@click.option("--vpcd", "endpoint", default=f"127.0.0.1:{DEFAULT_VPCD_PORT}", show_default=True,
              help="vpcd HOST:PORT of slot 0; card i uses PORT+i.")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help=_KEYS_HELP + " Only the card-factory transport key (the card OS ROM key) is "
                   "derived from it and kept.")
@click.option("--no-fsync", is_flag=True, hidden=True,
              help="Skip fsync on EEPROM writes (benchmarks on slow disks only).")
@click.option("--ecm-log", type=click.Path(dir_okay=False, path_type=Path),
              help="Append every ECM the cards answer to this JSON-lines file "
                   "(for `cas diag sharing`).")
@pass_app
def serve_cmd(app: Application, images: tuple[Path, ...], endpoint: str,
              keys_path: Path | None, no_fsync: bool, ecm_log: Path | None) -> None:
    """Serve card images as virtual cards in pcscd's vpcd reader until stopped."""
    host, port = parse_endpoint(endpoint)
    rom_key = load_operator_keys(keys_path, data_dir=app.data_dir).transport_key()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_ready(applets: list[Applet]) -> None:
        for slot, (path, applet) in enumerate(zip(images, applets, strict=True)):
            app.err_console.print(
                f"slot {slot}: card {applet.record.serial:010d} ({path}) -> vpcd {host}:{port + slot}",
                markup=False, highlight=False)

    def on_state(slot: int, state: str) -> None:
        app.err_console.print(f"slot {slot}: {state}", markup=False, highlight=False)

    serve_images(list(images), rom_key, host, port, stop=stop, sync=not no_fsync,
                 on_ready=on_ready, on_state=on_state, ecm_log=ecm_log)
    app.err_console.print("stopped", markup=False, highlight=False)
