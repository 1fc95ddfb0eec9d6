"""``cas ecm generate``: ECMs for test benches (every channel, N crypto-periods) + CW log.

Thin: lineup/catalog → :func:`cas.headend.ecmgen.generate_ecms`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError
from cas.outpath import check_output_file


def register(cli: click.Group) -> None:
    ecm = group(cli, "ecm", "ECM generation for test benches.")

    @ecm.command("generate")
    @click.option("--channel", "channels", type=int, multiple=True,
                  help="Service id (= ECM channel_id); repeatable; default: every channel.")
    @click.option("--periods", type=click.IntRange(1, 100_000), default=3, show_default=True,
                  help="Crypto-periods per channel.")
    @click.option("--first-cp", type=click.IntRange(0, 2**32 - 2), default=0, show_default=True)
    @click.option("--crypto-period-s", type=click.FloatRange(0.1, 3600), default=10.0,
                  show_default=True)
    @click.option("--algo", type=click.Choice(["csa2", "cissa"]), default="csa2",
                  show_default=True, help="CW size: 8 bytes (CSA2) or 16 (CISSA).")
    @click.option("--ecm-key-index", type=click.IntRange(0, 255), default=0, show_default=True)
    @click.option("--lineup", help="Lineup TOML (default: the store's catalog).")
    @click.option("--keys", "keys_path", type=click.Path(path_type=Path, dir_okay=False))
    @click.option("--out", "-o", "out", default="-", show_default=True,
                  help="Sections file (concatenated ECM sections), or - for stdout.")
    @click.option("--cw-log", type=click.Path(path_type=Path, dir_okay=False),
                  help="JSON lines: channel, cp, parity, current CW, both slots.")
    @pass_app
    def generate(app: Application, channels: tuple[int, ...], periods: int, first_cp: int,
                 crypto_period_s: float, algo: str, ecm_key_index: int, lineup: str | None,
                 keys_path: Path | None, out: str, cw_log: Path | None) -> None:
        """Write ECM sections for channels over crypto-periods, with their CWs logged."""
        from cas.cli.stream import lineup_criteria
        from cas.crypto import load_operator_keys
        from cas.headend.ecmgen import EcmSettings, generate_ecms

        check_output_file(out, "--out")
        if cw_log is not None:
            check_output_file(cw_log, "--cw-log")
        keys = load_operator_keys(keys_path, data_dir=app.data_dir)
        criteria, _ = lineup_criteria(app, lineup)
        if channels:
            missing = sorted(set(channels) - set(criteria))
            if missing:
                raise UsageError(f"channel(s) {missing} not in the lineup").with_id(
                    "cli.channel_not_lineup", missing=missing)
            chosen = [criteria[c] for c in channels]
        else:
            chosen = list(criteria.values())
        if not chosen:
            raise UsageError("no channels").with_id("cli.no_channels")
        cp_ms = round(crypto_period_s * 1000)
        settings = EcmSettings(crypto_period_ms=cp_ms - cp_ms % 100,
                               cw_length=8 if algo == "csa2" else 16,
                               ecm_key_index=ecm_key_index)
        ecms = list(generate_ecms(keys, chosen, periods=periods, settings=settings,
                                  first_cp=first_cp))
        data = b"".join(e.section for e in ecms)
        if cw_log is not None:
            with cw_log.open("w", encoding="utf-8") as fh:
                for e in ecms:
                    fh.write(json.dumps(e.log_json(), sort_keys=True) + "\n")
        if out == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        Path(out).write_bytes(data)
        app.output({"out": out, "ecms": len(ecms), "bytes": len(data)},
                   lambda: app.print(f"{out}: {len(ecms)} ECMs for {len(chosen)} channels"))
