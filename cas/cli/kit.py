"""``cas kit``: the STB conformance kit (docs/kit.md).

* ``cas kit build SCENARIO -o DIR`` — a self-contained, reproducible kit from a scenario file
  (a path, or the name of a shipped scenario: ``cas kit list``).
* ``cas kit run DIR --box CMD`` — play the kit to a box and grade it: JUnit XML, an HTML
  report and the exit code (0 all steps pass, 11 a box showed something else); ``--live``
  through the live head-end, ``--report http`` with the box POSTing its report.
* ``cas kit list`` — the shipped scenarios.
"""

from __future__ import annotations

from pathlib import Path

import click

from cas.cli.app import Application, Exit, pass_app
from cas.errors import UsageError


@click.group("kit")
def kit_group() -> None:
    """STB conformance kit: build kits from scenarios, grade a box against them."""


@kit_group.command("build")
@click.argument("scenario", metavar="SCENARIO")
@click.option("-o", "--out", "out", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="The kit directory (rebuilt if it is already a kit).")
@pass_app
def build_cmd(app: Application, scenario: str, out: Path) -> None:
    """Build SCENARIO (a .toml file or a shipped scenario's name) into a kit in OUT."""
    from cas.kit.build import build_kit
    from cas.kit.library import find_scenario
    from cas.kit.scenario import load_scenario

    sc = load_scenario(find_scenario(scenario))
    result = build_kit(sc, out, progress=lambda msg: app.print(f"[dim]· {msg}[/dim]"))
    app.output({"kit": sc.name, "out": str(result.out), "steps": result.steps,
                "boxes": result.boxes, "files": result.files},
               lambda: app.print(f"kit {sc.name}: {result.steps} steps, {result.boxes} boxes, "
                                 f"{result.files} files in {result.out}"))


@kit_group.command("run")
@click.argument("kit", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--box", "box", default="stub", show_default=True,
              help="The box command (started per step and box, stream path appended, "
                   "files in KIT_* variables); 'stub' is our set-top-box stub.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path, file_okay=False),
              default=Path("kit-results"), show_default=True,
              help="Where junit.xml and report.html go.")
@click.option("--report", "report", type=click.Choice(["stdout", "http"]), default="stdout",
              show_default=True,
              help="How the box reports: JSON lines on its stdout, or POSTs to KIT_REPORT_URL "
                   "(an endpoint the runner opens on 127.0.0.1).")
@click.option("--live", is_flag=True,
              help="Play the kit through the live head-end (cas headend run, UDP on "
                   "127.0.0.1): the box gets udp://127.0.0.1:PORT and runs until SIGTERM.")
@click.option("--settle", "settle_s", type=click.FloatRange(min=1.0), metavar="S",
              help="Live mode: grade a step after at most S seconds (default 30; the first "
                   "step 90).")
@pass_app
def run_cmd(app: Application, kit: Path, box: str, out: Path, report: str, live: bool,
            settle_s: float | None) -> None:
    """Play KIT to the box under test and grade every step."""
    from cas.kit.live import run_kit_live
    from cas.kit.report import write_reports
    from cas.kit.run import ReportVia, run_kit

    if settle_s is not None and not live:
        raise UsageError("--settle is for --live").with_id("cli.settle_live")

    def say(msg: str) -> None:
        app.print(f"[dim]· {msg}[/dim]")

    if live:
        result = run_kit_live(kit, box, report=ReportVia(report), settle_s=settle_s,
                              progress=say)
    else:
        result = run_kit(kit, box, report=ReportVia(report), progress=say)
    junit, html = write_reports(result, out)

    def show() -> None:
        for case in result.failures:
            app.print(f"[red]FAIL[/red] {case.failure_text()}"
                      + (f" ({case.message})" if case.message else ""))
        colour = "green" if result.ok else "red"
        skipped = f" ({len(result.skipped)} skipped)" if result.skipped else ""
        app.print(f"[{colour}]{len(result.cases) - len(result.failures)}/{len(result.cases)} "
                  f"checks pass[/{colour}]{skipped} · {junit} · {html}")

    app.output({**result.to_json(), "junit": str(junit), "html": str(html)}, show)
    if not result.ok:
        raise SystemExit(int(Exit.MISMATCH))


@kit_group.command("list")
@pass_app
def list_cmd(app: Application) -> None:
    """The shipped scenarios."""
    from cas.kit.library import shipped_scenarios
    from cas.kit.scenario import load_scenario

    rows = [(p.stem, load_scenario(p).title) for p in shipped_scenarios()]

    def show() -> None:
        for name, title in rows:
            app.print(f"{name:28} {title}")

    app.output([{"name": n, "title": t} for n, t in rows], show)


def register(cli: click.Group) -> None:
    cli.add_command(kit_group)
