"""Test-bench stand-ins for the outside parties of a CA system.

* ``cas box manufacture`` plays the chipset vendor: it makes Chip ID records (each chip's CSK
  wrapped under the vendor key) and the vendor's batch file that ``cas box import`` reads;
* ``cas keys export`` hands the two device-side secrets to the devices that burn them in:
  the chipset vendor key (the STB chip's root, ``stb --vendor-key``) and the card ROM key
  (the card-factory transport key, ``stb --rom-key-file`` / ``cas card serve``).
  Each is written as 32 hex digits to a new file with mode 0600; nothing is printed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.crypto import Key, load_operator_keys, wrap_key
from cas.errors import UsageError
from cas.formats.chipid import ChipBatch, ChipIdRecord, build_chip_batch, build_chip_id_record
from cas.outpath import check_output_dir

DEFAULT_VENDOR_ID = 0x0001


def _hex(text: str) -> int:
    try:
        if not text.isascii():  # int(text, 16) also reads "１０"
            raise ValueError(text)
        return int(text, 16)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not hexadecimal (ASCII 0-9, a-f)") from None


def _write_secret(path: Path, key: Key, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists (use --force to overwrite)").with_id(
            "cli.exists_force_overwrite", path=path) from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key.raw().hex() + "\n")
    os.chmod(path, 0o600)


@click.command("manufacture")
@click.option("--count", type=click.IntRange(1, 1_000_000), required=True)
@click.option("--start-chip-id", default="5A100001", show_default=True, callback=lambda c, p, v: _hex(v))
@click.option("--vendor", default="cas-sim chips", show_default=True)
@click.option("--model", default="STB-2026", show_default=True)
@click.option("--firmware", "firmware_version", default="02010000", show_default=True,
              callback=lambda c, p, v: _hex(v), help="Firmware version, hex (major.minor.patch.build).")
@click.option("--vendor-id", default=DEFAULT_VENDOR_ID, type=int, show_default=True)
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Operator key file holding the vendor key (default: data dir).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Writes OUT/chip-ids.bin (the batch) and OUT/<chip id>.chip per box.")
@pass_app
def manufacture_cmd(app: Application, count: int, start_chip_id: int, vendor: str, model: str,
                    firmware_version: int, vendor_id: int, keys_path: Path | None,
                    out_dir: Path) -> None:
    """Play the chipset vendor: make COUNT chips (Chip ID records, fresh CSKs)."""
    if start_chip_id + count - 1 > 0xFFFF_FFFF:
        raise UsageError("chip ids would run past FFFFFFFF").with_id("cli.chip_ids_would_run")
    check_output_dir(out_dir, "--out")
    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    vendor_key = keys.chipset_vendor_key(vendor_id)
    now_s = int(time.time())
    records = tuple(
        ChipIdRecord(chip_id=start_chip_id + i, vendor=vendor, model=model,
                     wrapped_csk=wrap_key(vendor_key, Key(os.urandom(16), label="csk")),
                     firmware_version=firmware_version, manufactured_s=now_s)
        for i in range(count)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    batch = out_dir / "chip-ids.bin"
    batch.write_bytes(build_chip_batch(ChipBatch(created_s=now_s, issuer=vendor, records=records)))
    for r in records:
        (out_dir / f"{r.chip_id:08X}.chip").write_bytes(build_chip_id_record(r))
    data = {"batch": str(batch), "chips": [f"{r.chip_id:08X}" for r in records]}
    app.output(data, lambda: app.print(
        f"{batch}: {count} chips {records[0].chip_id:08X}..{records[-1].chip_id:08X}, "
        f"one record per chip in {out_dir}"))


@click.command("export")
@click.option("--vendor-key", "vendor_key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the chipset vendor key (the STB chip's root) here.")
@click.option("--vendor-id", default=DEFAULT_VENDOR_ID, type=int, show_default=True)
@click.option("--rom-key", "rom_key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the card ROM key (card-factory transport key) here.")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Operator key file (default: $CAS_OPERATOR_KEY, then the data dir).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@pass_app
def export_cmd(app: Application, vendor_key_path: Path | None, vendor_id: int,
               rom_key_path: Path | None, keys_path: Path | None, force: bool) -> None:
    """Hand device-side secrets to the devices (files with mode 0600, never printed)."""
    if vendor_key_path is None and rom_key_path is None:
        raise UsageError("nothing to export: give --vendor-key FILE and/or --rom-key FILE").with_id(
            "cli.nothing_export_give_vendor")
    keys = load_operator_keys(keys_path, data_dir=app.data_dir)
    written: dict[str, str] = {}
    if vendor_key_path is not None:
        key = keys.chipset_vendor_key(vendor_id)
        _write_secret(vendor_key_path, key, force)
        written["vendor_key"] = f"{vendor_key_path} ({key.fingerprint()})"
    if rom_key_path is not None:
        key = keys.transport_key()
        _write_secret(rom_key_path, key, force)
        written["rom_key"] = f"{rom_key_path} ({key.fingerprint()})"

    def render() -> None:
        for name, where in written.items():
            app.print(f"{name}: {where}")

    app.output(written, render)


def register(cli: click.Group) -> None:
    group(cli, "box", "Set-top boxes (Chip IDs).").add_command(manufacture_cmd)
    group(cli, "keys", "Operator key file: create it, show fingerprints.").add_command(export_cmd)
