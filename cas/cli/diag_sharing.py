"""``cas diag sharing LOG``: cards answering ECMs for more boxes than one (docs/sharing.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from cas.console import Application, Exit, pass_app
from cas.diag.sharing import (
    DEFAULT_RATE_TOLERANCE,
    DEFAULT_TUNERS,
    DEFAULT_WINDOW_S,
    SharingLimits,
    detect,
    flagged_cards,
    read_log,
)


@click.command("sharing")
@click.argument("log", metavar="LOG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tuners", type=click.IntRange(min=1), default=DEFAULT_TUNERS, show_default=True,
              help="Tuners of the subscriber's box: distinct channels one card may serve at once.")
@click.option("--window", "window_s", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_WINDOW_S, show_default=True,
              help="Window in seconds (one crypto-period).")
@click.option("--rate-tolerance", type=click.IntRange(min=0), default=DEFAULT_RATE_TOLERANCE,
              show_default=True,
              help="Extra ECM requests per tuner per window a single box may make.")
@click.option("--block", is_flag=True,
              help="Block the flagged cards in the store; the next EMM run carries the block.")
@click.option("--json", "json_flag", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def sharing_cmd(app: Application, log: Path, tuners: int, window_s: float, rate_tolerance: int,
                block: bool, json_flag: bool) -> None:
    """Flag cards in LOG (JSON lines of ECM requests) that serve more channels at once than
    a box can tune, or ask for ECMs faster than one box does.  Exit 7 when a card is flagged."""
    if json_flag:
        app.json_mode = True
    limits = SharingLimits(tuners=tuners, window_s=window_s, rate_tolerance=rate_tolerance)
    findings = detect(read_log(log), limits)
    flagged = flagged_cards(findings)
    blocked: list[int] = []
    if block and flagged:
        blocked = _block(app, flagged)
    data = {"log": str(log), "tuners": tuners, "window_s": window_s,
            "max_requests_per_window": limits.max_requests,
            "cards": [f.to_json() for f in findings], "flagged": flagged, "blocked": blocked}
    t = app.t

    def render() -> None:
        table = Table(title=t("sharing.title", tuners=tuners, window=f"{window_s:g}"),
                      title_justify="left")
        for key in ("card", "requests", "services", "rate", "verdict"):
            table.add_column(t(f"sharing.col.{key}"))
        for f in findings:
            verdict = (Text(", ".join(t(f"sharing.rule.{r.value}") for r in f.rules),
                            style="bold red") if f.flagged
                       else Text(t("sharing.ok"), style="green"))
            table.add_row(f"{f.card:010d}", str(f.requests),
                          f"{f.max_services}/{tuners}",
                          f"{f.max_rate}/{limits.max_requests}", verdict)
        app.print(table)
        for serial in blocked:
            app.print(t("sharing.blocked", card=f"{serial:010d}"))

    app.output(data, render)
    if flagged:
        raise SystemExit(int(Exit.RULE))


def _block(app: Application, serials: list[int]) -> list[int]:
    from cas.billing.cards import block_card
    from cas.cli._subscribers import now, transaction

    with transaction(app) as s:
        at = now(s)
        return [serial for serial in serials if block_card(s, serial=serial, at=at)]
