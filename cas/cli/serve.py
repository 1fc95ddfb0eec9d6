"""``cas serve api|portal|all`` runs the operator API and/or the personal-account portal on
uvicorn; ``cas serve apikey create|list|revoke`` manages the billing systems' API keys.

With no ``--db-url`` the server uses the SQLite store in the data dir (the same one every other
``cas`` command uses); each ``--db-url`` adds one operator's store (PostgreSQL or SQLite), so
one process can serve several operators (each store runs one operator profile).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import click

from cas.cli._subscribers import open_app_store, table
from cas.cli.app import Application, pass_app
from cas.cli.common import group
from cas.errors import UsageError
from cas.store.engine import Store, open_store


def register(cli: click.Group) -> None:
    serve = group(cli, "serve", "Run the operator API and the personal-account portal.")
    for part in ("api", "portal", "all"):
        serve.add_command(_run_command(part))
    keys = click.Group(name="apikey", help="API keys of billing/CRM systems (one operator each).")
    keys.add_command(apikey_create)
    keys.add_command(apikey_list)
    keys.add_command(apikey_revoke)
    serve.add_command(keys)


def _stores(app: Application, db_urls: tuple[str, ...]) -> list[Store]:
    if db_urls:
        return [open_store(db_url=url, create=False) for url in db_urls]
    return [open_app_store(app)]


_HELP = {
    "api": "Serve the operator API (/api/v1, OpenAPI at /api/v1/openapi.json).",
    "portal": "Serve the subscribers' personal-account portal (/<operator>/).",
    "all": "Serve the operator API and the portal in one process.",
}


def _run_command(part: str) -> click.Command:
    @click.command(part, help=_HELP[part])
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--db-url", "db_urls", multiple=True,
                  help="A store to serve (repeat for several operators); default: the data "
                       "dir's SQLite store or the global --db-url.")
    @click.option("--secret-file", type=click.Path(path_type=Path),
                  help="Cookie-signing secret (created 0600 if missing); default: "
                       "<data-dir>/web-secret; $CAS_WEB_SECRET (hex) wins.")
    @click.option("--secure-cookies/--no-secure-cookies", default=False, show_default=True,
                  help="Mark cookies Secure (needs HTTPS in front).")
    @click.option("--log-level", default="info", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--trusted-proxies", envvar="CAS_TRUSTED_PROXIES", default="",
                  help="Comma-separated addresses or networks of reverse proxies whose "
                       "X-Forwarded-For names the client (rate limits, audit log); "
                       "default: none, the TCP peer is the client.  $CAS_TRUSTED_PROXIES.")
    @click.option("--max-body-bytes", envvar="CAS_MAX_BODY_BYTES", type=click.IntRange(1, 1 << 30),
                  help="Largest request body; larger ones get 413 before they are read "
                       "whole.  Default: 1048576 (1 MiB).  $CAS_MAX_BODY_BYTES.")
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
                  envvar="CAS_WEB_WORKERS",
                  help="Server processes on the port (each with its own database "
                       "connections; sessions, rate limits and idempotency keys live in the "
                       "store, so they hold across workers).  $CAS_WEB_WORKERS.")
    @pass_app
    def run(app: Application, host: str, port: int, db_urls: tuple[str, ...],
            secret_file: Path | None, secure_cookies: bool, log_level: str,
            trusted_proxies: str, max_body_bytes: int | None, workers: int) -> None:
        import uvicorn

        from cas.web.app import create_app
        from cas.web.settings import (
            DEFAULT_MAX_BODY_BYTES,
            WebSettings,
            load_secret,
            parse_trusted_proxies,
            tenant_of,
        )

        proxies = parse_trusted_proxies(trusted_proxies)
        stores = _stores(app, db_urls)
        tenants = [tenant_of(s) for s in stores]
        secret = load_secret(secret_file or app.ensure_data_dir() / "web-secret")
        settings = WebSettings(secret_key=secret, secure_cookies=secure_cookies,
                               trusted_proxies=proxies,
                               max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES)
        parts = ("api", "portal") if part == "all" else (part,)
        names = ", ".join(f"{t.key} ({t.store.dialect})" for t in tenants)
        # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from
        # 127.0.0.1 (its default), letting anyone behind a local pass-through proxy pick
        # their address; the app reads the header itself, from trusted proxies only.
        try:
            if workers == 1:
                web = create_app(tenants, settings, parts=parts)
                app.print(f"serving {'+'.join(parts)} for {names} on http://{host}:{port}/")
                with _signal_stops_cleanly() as caught:
                    uvicorn.run(web, host=host, port=port, log_level=log_level,
                                access_log=False, proxy_headers=False)
                if caught:
                    app.err_console.print(f"stopped ({caught[0]})", markup=False,
                                          highlight=False)
                return
            from cas.web.workers import serve_workers

            def run_worker(sock: socket.socket) -> None:
                own = dataclasses.replace(settings, worker_pid=os.getpid())
                config = uvicorn.Config(create_app(tenants, own, parts=parts),
                                        log_level=log_level, access_log=False,
                                        proxy_headers=False)
                uvicorn.Server(config).run(sockets=[sock])

            def before_fork() -> None:
                for s in stores:
                    s.dispose()

            serve_workers(run_worker, host=host, port=port, workers=workers,
                          before_fork=before_fork,
                          on_ready=lambda bound: app.print(
                              f"serving {'+'.join(parts)} for {names} on "
                              f"http://{host}:{bound}/ with {workers} workers"))
        finally:
            for s in stores:
                s.dispose()

    return run


@contextlib.contextmanager
def _signal_stops_cleanly() -> Iterator[list[str]]:
    """SIGTERM / SIGINT end a one-process server with exit 0.

    uvicorn shuts down gracefully on either signal, then raises it again to the handler it
    found when it started: with the default handler SIGTERM would then kill the process
    (exit -15) after its clean stop, and SIGINT become a KeyboardInterrupt.  While this is
    active, that handler only notes the signal's name in the list it yields.
    """
    caught: list[str] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_store(app: Application, db_url: str | None) -> Store:
    return open_store(db_url=db_url, create=False) if db_url else open_app_store(app)


@click.command("create")
@click.option("--operator", required=True, help="Operator key (the store's profile, e.g. atvplus).")
@click.option("--label", default="", help="Who uses the key (e.g. 'billing').")
@click.option("--db-url", help="The operator's store (default: the data dir's).")
@pass_app
def apikey_create(app: Application, operator: str, label: str, db_url: str | None) -> None:
    """Mint an API key for OPERATOR.  The key is printed once; only its digest is stored."""
    from cas.billing.txn import current_profile
    from cas.web.domain import create_api_key

    store = _one_store(app, db_url)
    try:
        with store.transaction() as s:
            profile = current_profile(s)
            if profile.key != operator:
                raise UsageError(f"this store runs operator {profile.key!r}, not {operator!r}").with_id(
                    "cli.store_runs_operator_not", key=f"{profile.key!r}",
                    operator=f"{operator!r}")
            minted = create_api_key(s, operator=operator, label=label, wall_s=int(time.time()))
    finally:
        store.dispose()
    data = {"operator": minted.operator, "key_id": minted.key_id, "api_key": minted.full}

    def render() -> None:
        app.console.print(f"API key for {minted.operator} (id {minted.key_id}); it is shown "
                          "only now, keep it secret:")
        app.console.print(minted.full, markup=False, highlight=False)

    app.output(data, render)


@click.command("list")
@click.option("--db-url", help="The operator's store (default: the data dir's).")
@pass_app
def apikey_list(app: Application, db_url: str | None) -> None:
    """List API keys (ids, labels, last use; never the keys)."""
    import dataclasses

    from cas.web.domain import list_api_keys

    store = _one_store(app, db_url)
    try:
        with store.reader() as s:
            keys = list_api_keys(s)
    finally:
        store.dispose()

    def when(ts: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"

    app.output([dataclasses.asdict(k) for k in keys], lambda: app.console.print(table(
        "API keys", ["id", "operator", "label", "created", "last used", "revoked"],
        [[k.key_id, k.operator, k.label, when(k.created_at_s), when(k.last_used_at_s),
          when(k.revoked_at_s)] for k in keys])))


@click.command("revoke")
@click.argument("key_id")
@click.option("--db-url", help="The operator's store (default: the data dir's).")
@pass_app
def apikey_revoke(app: Application, key_id: str, db_url: str | None) -> None:
    """Revoke an API key at once."""
    from cas.web.domain import revoke_api_key

    store = _one_store(app, db_url)
    try:
        with store.transaction() as s:
            revoke_api_key(s, key_id=key_id, wall_s=int(time.time()))
    finally:
        store.dispose()
    app.output({"revoked": key_id}, lambda: app.print(f"revoked API key {key_id}"))
