"""``cas diag fingerprint CLIP``: which card's covert fingerprint is in a captured clip."""

from __future__ import annotations

from pathlib import Path

import click

from cas.console import Application, pass_app
from cas.diag.fingerprint import read_fingerprint


@click.command("fingerprint")
@click.argument("clip", metavar="CLIP", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "json_flag", is_flag=True, help="Machine-readable JSON output.")
@pass_app
def fingerprint_cmd(app: Application, clip: Path, json_flag: bool) -> None:
    """Read the card serial back from the covert fingerprint in CLIP (any video ffmpeg
    decodes: a capture, a re-encoded or scaled-down restream).  Exit 12 when none is found."""
    if json_flag:
        app.json_mode = True
    reading = read_fingerprint(clip)
    data = {"clip": str(clip), **reading.to_json()}
    app.output(data, lambda: app.print(
        f"card [bold]{reading.serial:010d}[/] (covert fingerprint, {reading.corner.name.lower()} "
        f"corner, {reading.frames} frames, pattern share {reading.share:.2f}, "
        f"{reading.corrected_bits} bits corrected)"))
