"""The API's interactive docs (Swagger UI 5, which reads OpenAPI 3.1) from the assets of the
``swagger-ui-py`` package, installed with cas-sim: the page loads nothing from the internet (FastAPI's own
``/docs`` would load its scripts from a CDN, so it is off).

``GET <API_PREFIX>/docs`` is the page; its scripts and styles are under
``<API_PREFIX>/docs/assets/`` and the start-up script (no inline script, for the
Content-Security-Policy) is ``<API_PREFIX>/docs/init.js``.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

#: Swagger UI's files as shipped by ``swagger-ui-py`` (only its ``static`` folder is used).
SWAGGER_UI_ASSETS = resources.files("swagger_ui") / "static"

#: Of the page: our own files only, no inline script; Swagger UI's styles set inline
#: ``style`` attributes and its images are data: URLs.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def add_api_docs(app: FastAPI, prefix: str, openapi_url: str) -> None:
    docs = f"{prefix}/docs"
    app.mount(f"{docs}/assets", StaticFiles(directory=str(SWAGGER_UI_ASSETS)), name="apidocs")
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{app.title} — API docs</title>
<link rel="stylesheet" href="{docs}/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{docs}/assets/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""
    init = (f"window.ui = SwaggerUIBundle({{url: {openapi_url!r}, dom_id: '#swagger-ui', "
            "deepLinking: true, presets: [SwaggerUIBundle.presets.apis]});\n")

    @app.get(docs, include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get(f"{docs}/init.js", include_in_schema=False)
    async def api_docs_init() -> Response:
        return Response(init, media_type="text/javascript")
