"""``cas demo``: the end-to-end demo on the embedded defaults (see :mod:`cas.demo.scenario`)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from cas.cli.app import Application, Exit, pass_app
from cas.reasons import Reason, info


def _cell(reason: Reason) -> str:
    if reason is Reason.OPEN:
        return "[green]OPEN[/green]"
    return f"[red]{reason.value}[/red]"


@click.command("demo")
@click.option("--data-dir", "demo_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where to build the demo (default: ./demo-data; rebuilt on every run).")
@pass_app
def demo_cmd(app: Application, demo_dir: Path | None) -> None:
    """Build a head-end, subscribers in every seed situation, EMMs, ECMs and a scrambled
    stream; run a box per subscriber; exit 0 only if every box agrees with `cas why`."""
    from cas.demo.scenario import run_demo

    target = demo_dir or Path("demo-data")
    result = run_demo(target, progress=lambda msg: app.print(f"[dim]· {msg}[/dim]"))
    if app.json_mode:
        app.emit_json(result.to_json())
    else:
        app.print(f"\nSimulated now: {result.at:%Y-%m-%d %H:%M} UTC · stream {result.stream} "
                  f"· {result.emm_count} EMMs\n")
        for box in result.boxes:
            card = "no card" if box.serial is None else f"card {box.serial:010d}"
            title = (f"{box.situation.title}  [dim]({box.situation.seed}; account "
                     f"{box.account_number}; {card}; box {box.chip_id:08X})[/dim]")
            t = Table(title=title, title_justify="left", show_lines=False)
            for col in ("ch", "name", "the box says", "code", "cas why", "expected"):
                t.add_column(col, no_wrap=True)
            for c in box.channels:
                if c.headend is None:
                    agree = "[dim]n/a[/dim]"
                else:
                    agree = "[green]agrees[/green]" if c.headend is c.box else _cell(c.headend)
                expected = "[green]✓[/green]" if c.expected is c.box else _cell(c.expected)
                t.add_row(str(c.number), c.name, _cell(c.box), info(c.box).screen_code,
                          agree, expected)
            app.print(t)
            locked = [c for c in box.channels if c.box is not Reason.OPEN]
            if locked:
                app.print(f"  [dim]cause (head-end): {locked[0].headend_cause}[/dim]\n")
        good = sum(b.ok for b in result.boxes)
        colour = "green" if result.ok else "red"
        app.print(f"[{colour}]{good}/{len(result.boxes)} boxes agree with the head-end's `cas why` "
                  f"(where there is a card to ask about) and with the expected situation"
                  f"[/{colour}]")
    if not result.ok:
        raise SystemExit(int(Exit.MISMATCH))


def register(cli: click.Group) -> None:
    cli.add_command(demo_cmd)
