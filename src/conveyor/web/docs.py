"""The OpenAPI docs page at ``/api/v1/docs``: Swagger UI served from the
installed ``fastapi-offline`` package under ``/static/docs/`` (FastAPI's own page
loads it from a CDN, which leaks each visit to a third party and needs the
network), started by ``static/docs/docs.js`` so no inline script is needed."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "add_docs"]

#: URL of the docs page's files, relative to the app's root.
ASSETS = "/static/docs"
_OWN_FILES = Path(__file__).with_name("static") / "docs"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>conveyor API</title>
  <link rel="icon" href="{assets}/favicon.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <script defer src="{assets}/swagger-ui-bundle.js"></script>
  <script defer src="{assets}/docs.js"></script>
</head>
<body>
  <div id="swagger-ui" data-openapi="{openapi}"></div>
</body>
</html>
"""


def add_docs(app: FastAPI, path: str, openapi_url: str) -> None:
    """Serve the docs page at ``path`` and its files under :data:`ASSETS`; call it
    before mounting anything else at ``/static``, so these files are found first."""

    @app.get(path, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = _PAGE.format(assets=html.escape(root + ASSETS),
                            openapi=html.escape(root + openapi_url))
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount(ASSETS, StaticFiles(directory=_OWN_FILES, packages=[("fastapi_offline", "static")]),
              name="docs-static")
