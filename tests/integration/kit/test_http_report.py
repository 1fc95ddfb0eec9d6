"""The HTTP form of the report protocol over real HTTP on 127.0.0.1: the runner's endpoint,
the stub's ``--report-url``, and ``cas kit run --report http`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cas.cli.app import Exit
from cas.cli.main import cli
from cas.kit.httpreport import ReportServer
from cas.kit.run import stub_command
from tests.integration.kit.test_build_run import SCENARIO


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kit")
    (root / "small.toml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["kit", "build", str(root / "small.toml"),
                                      "-o", str(root / "kit")])
    assert result.exit_code == 0, result.output
    return root / "kit"


def _run(kit: Path, out: Path, *extra: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "-o", str(out),
                                      "--report", "http", *extra])
    return result.exit_code, json.loads(result.output)


def test_the_endpoint_takes_report_lines_for_the_step_being_played() -> None:
    line = '{"channel": 27, "state": "LOCKED", "reason": "MATURITY_LOCKED", "message": "E22"}'
    with ReportServer() as server:
        url = server.expect(3, "kids room")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/kit/3/kids%20room")
        headers = {"Content-Type": "application/x-ndjson"}
        opened = '{"channel": 1, "state": "OPEN", "reason": "OPEN", "message": "E22"}'
        first = httpx.post(url, content=f"{line}\n{opened}\n", headers=headers)
        assert first.status_code == 204 and first.content == b""
        # a second POST: the last line about a channel wins
        again = httpx.post(url, content='{"channel": 27, "reason": "OPEN"}\n', headers=headers)
        assert again.status_code == 204
        other = httpx.post(server.base_url + "/kit/2/kids%20room", content=line)
        assert other.status_code == 404 and "not the step and box" in other.text
        empty = httpx.post(url, content="hello\n")
        assert empty.status_code == 400 and empty.text == "no channel line in the body\n"
        assert httpx.get(url).status_code == 405
        seen, posts = server.take(3, "kids room")
        assert posts == 2
        assert {n: s.reason for n, s in seen.items()} == {27: "OPEN", 1: "OPEN"}
        assert seen[1].message == "E22"
        # taken: the URL is closed
        assert httpx.post(url, content=line).status_code == 404


def test_the_stub_passes_over_http(kit: Path, tmp_path: Path) -> None:
    code, data = _run(kit, tmp_path / "res")
    assert code == 0, data
    assert data["ok"] and data["cases"] == 20 and data["failures"] == []


def test_over_http_the_boxs_stdout_does_not_count(kit: Path, tmp_path: Path) -> None:
    """A box that prints a perfect report on stdout but POSTs nothing reports nothing."""
    stdout_box = tmp_path / "stdout-box.sh"
    stdout_box.write_text("#!/bin/sh\nexec " + " ".join(stub_command()) + ' "$@"\n')
    stdout_box.chmod(0o755)
    env_box = tmp_path / "no-post.sh"
    # the stub with KIT_REPORT_URL removed: it prints its lines instead of posting them
    env_box.write_text("#!/bin/sh\nunset KIT_REPORT_URL\nexec " + " ".join(stub_command())
                       + ' "$@"\n')
    env_box.chmod(0o755)
    code, data = _run(kit, tmp_path / "res", "--box", str(env_box))
    assert code == int(Exit.MISMATCH)
    assert len(data["failures"]) == 20
    assert {f["seen"] for f in data["failures"]} == {"NOT_REPORTED"}
    # the same stub with the variable: it posts, and passes
    code, data = _run(kit, tmp_path / "res2", "--box", str(stdout_box))
    assert code == 0, data["failures"][:3]


def test_the_stub_fails_in_one_line_when_no_endpoint_listens(kit: Path,
                                                             tmp_path: Path) -> None:
    timeline = json.loads((kit / "timeline.json").read_text())
    with ReportServer() as server:
        dead = server.base_url  # closed on leaving: nothing listens there any more
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update({"KIT_CHIP_RECORD": str(kit / timeline["chip_batch"]),
                "KIT_CHIP_ID": timeline["boxes"]["empty"]["chip_id"],
                "KIT_VENDOR_KEY": str(kit / timeline["vendor_key"]),
                "KIT_NVRAM": str(tmp_path / "empty.nvram")})
    done = subprocess.run([*stub_command(), "--report-url", dead + "/kit/1/empty",
                           str(kit / timeline["steps"][0]["stream"])], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot POST the report to http://127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
