"""The committed OpenAPI document (``docs/openapi.json``): generated from the app, checked by a
test that fails when it is stale.

    python -m cas.web.openapi            # rewrite docs/openapi.json
    python -m cas.web.openapi --check    # exit 1 if docs/openapi.json differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document; it does not depend on which stores are served."""
    from cas.web.app import create_app
    from cas.web.settings import WebSettings

    app = create_app([], WebSettings(secret_key=b"\0" * 32), parts=("api",))
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text("utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python -m cas.web.openapi", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
