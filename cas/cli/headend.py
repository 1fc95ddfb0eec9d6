"""``cas headend run CONFIG.toml``: the live head-end (real-time scrambled playout over IP).

Thin: the TOML file → :mod:`cas.live.config`; the service → :mod:`cas.live.service`.
``--check`` validates the file (and, with a store, the channels and sources) and exits.
"""

from __future__ import annotations

from pathlib import Path

import click

from cas.cli.app import Application, pass_app
from cas.cli.common import group


def register(cli: click.Group) -> None:
    headend = group(cli, "headend", "The live head-end: scrambled playout over IP.")

    @headend.command("run")
    @click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
    @click.option("--check", is_flag=True,
                  help="Validate the configuration (keys, channels, sources) and exit.")
    @click.option("--duration", "duration_s", type=click.FloatRange(0.1, None),
                  help="Stop after this many seconds (default: run until SIGTERM/SIGINT).")
    @pass_app
    def run(app: Application, config: Path, check: bool, duration_s: float | None) -> None:
        """Play out the services of CONFIG (TOML, see docs/live.md) until stopped."""
        from cas.live.config import load_config
        from cas.live.service import HeadendService, setup_logging

        cfg = load_config(config)
        data_dir = app.data_dir if (app.data_dir.exists() or cfg.headend.data_dir is None) \
            else None
        service = HeadendService(cfg, data_dir=data_dir, db_url=app.db_url)
        if check:
            service.open(check=True)
            layout = [{"channel": s.layout.channel_number, "service_id": s.service_id,
                       "name": s.layout.name, "pmt_pid": s.layout.pmt_pid,
                       "es_pids": list(s.layout.es_pids), "ecm_pid": s.layout.ecm_pid,
                       "scrambled": s.layout.scrambled} for s in service.services]
            ca_systems = [{"ca_system_id": e.cfg.ca_system_id, "ecmg": e.cfg.ecmg_host + ":"
                           + str(e.cfg.ecmg_port),
                           "backup_ecmg": f"{e.cfg.backup_host}:{e.cfg.backup_port}"
                           if e.cfg.has_backup else None,
                           "ecm_pids": {str(st.service_id): st.ecm_pid for st in e.streams}}
                          for e in service.ca_ecmgs]
            service.close()
            app.output({"config": str(config), "ok": True, "output": cfg.output.url,
                        "emm_pid": cfg.emm.pid, "services": layout, "ca_systems": ca_systems},
                       lambda: app.print(f"{config}: ok — {len(layout)} service(s) to "
                                         f"{cfg.output.url}, EMM PID {cfg.emm.pid:#06x}"))
            return
        setup_logging(cfg.ops.log)
        service.open()
        code = service.run(duration_s=duration_s)
        if code:
            raise SystemExit(code)
