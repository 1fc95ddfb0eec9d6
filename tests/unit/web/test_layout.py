"""The web layer's shape: it reaches billing through public modules only, and the portal's
redirect for "login required" is an exception handler the app registers."""

from __future__ import annotations

import ast
from pathlib import Path

from cas.web import portal
from cas.web.app import create_app
from cas.web.settings import WebSettings

WEB = Path(__file__).resolve().parents[3] / "cas" / "web"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_web_never_imports_the_private_billing_core() -> None:
    offenders = sorted(str(p.relative_to(WEB)) for p in WEB.rglob("*.py")
                       if any(m.startswith("cas.billing._") for m in _imports(p)))
    assert offenders == []


def test_login_required_is_an_exception_handler_of_the_app() -> None:
    app = create_app([], WebSettings(secret_key=b"\0" * 32), parts=("portal",))
    assert app.exception_handlers[portal.LoginRequired] is portal.on_login_required
    api_only = create_app([], WebSettings(secret_key=b"\0" * 32), parts=("api",))
    assert portal.LoginRequired not in api_only.exception_handlers
