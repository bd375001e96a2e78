"""The reference player: ``/watch/{id}``, ``/embed/{id}`` and ``/player/static/{name}``.

Hand-written HTML from the package (``static/player/``) plus one esbuild bundle
(``player.js``: ``web/src/player.js`` with hls.js). The server fills one attribute,
``data-config``, with the video id and the player's settings (HTML-escaped JSON), so the
page needs no extra request before it can ask for its playback answer, and no inline
script (the Content-Security-Policy allows none).

Headers: the admin pages' policy, widened only where playback needs it: media, images and
playlists may come from the delivery base and the archive (``https:`` covers Cloudflare's
customer hosts and R2/S3 presigned posters), hls.js runs its transmuxer in a ``blob:``
worker and feeds ``blob:`` media sources. ``/watch`` may not be framed; ``/embed`` may be
framed by this origin and ``HYBRIDVIDEO_PLAYER_EMBED_ORIGINS`` only. The referrer policy
sends the origin cross-site: the engine's ``allowedOrigins`` check needs it.

The pages hold no data; the viewer's JWT comes from the page URL's fragment (or query)
and stays in the tab's ``sessionStorage`` (see ``web/src/player.js``).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response

from hybridvideo.api.routers.admin_pages import CONTENT_TYPES, HTML_TYPE, _etags, _Files
from hybridvideo.config import Settings
from hybridvideo.errors import InvalidInput, NotFound
from hybridvideo.telemetry.qoe import VIDEO_ID

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "player"
BUNDLE = "player.js"
FILES = ("player.js", "player.css")
PLACEHOLDER = "__PLAYER_CONFIG__"
NOT_BUILT_MESSAGE = (
    "The player's JavaScript bundle is not built. Install Node.js 20 or newer, then run "
    "`npm ci && npm run build` in web/ (./scripts/serve does this when Node.js is installed)."
)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.match(origin) else None


def content_security_policy(settings: Settings, *, embed: bool) -> str:
    """The player page's policy (see the module docstring for each widening)."""
    sources = ["'self'", "https:"]
    delivery = _origin(settings.resolved_engine_delivery_url)
    if delivery and delivery not in sources:
        sources.append(delivery)
    media = " ".join(sources)
    if embed:
        framers = ["'self'"] + [o for o in settings.player_embed_origins if _ORIGIN.match(o)]
        ancestors = " ".join(framers)
    else:
        ancestors = "'none'"
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {media} data:; "
        f"media-src {media} blob:; connect-src {media}; worker-src 'self' blob:; "
        f"font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        f"frame-ancestors {ancestors}"
    )


def _headers(csp: str, *, embed: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if not embed:
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return headers


def page_config(settings: Settings, video_id: str, next_id: str | None) -> dict[str, object]:
    """What the page's script needs: ids, endpoints and the player settings (flags)."""
    return {
        "videoId": video_id,
        "next": next_id,
        "playbackBase": "/api/v1/videos/",
        "beaconUrl": "/api/v1/telemetry/qoe",
        "cache": settings.player_segment_cache,
        "preload": settings.player_preload_next,
        "abr": settings.player_abr,
        "debug": settings.player_debug,
        "cohort": {
            "cohort": settings.player_cohort,
            "segment_cache": "on" if settings.player_segment_cache else "off",
            "preload_next": "on" if settings.player_preload_next else "off",
            "abr": "on" if settings.player_abr else "off",
        },
    }


def build_player_pages_router(settings: Settings, static_dir: Path = STATIC_DIR) -> APIRouter:
    files = _Files(static_dir)
    router = APIRouter(tags=["player-pages"], include_in_schema=False)
    policies = {embed: content_security_policy(settings, embed=embed) for embed in (False, True)}

    def page(request: Request, video_id: str, *, embed: bool) -> Response:
        headers = {**_headers(policies[embed], embed=embed), "Cache-Control": "no-store"}
        if VIDEO_ID.match(video_id) is None:
            raise NotFound("no such video")
        next_id = request.query_params.get("next")
        if next_id is not None and VIDEO_ID.match(next_id) is None:
            raise InvalidInput("next is not a video id")
        if files.get(BUNDLE) is None:
            return Response(
                NOT_BUILT_MESSAGE + "\n",
                status_code=503,
                media_type="text/plain; charset=utf-8",
                headers={**headers, "Retry-After": "3600"},
            )
        template = files.get("embed.html" if embed else "watch.html")
        if template is None:  # a broken install: the package ships these files
            raise NotFound("the player page is missing from this installation")
        config = html.escape(json.dumps(page_config(settings, video_id, next_id)), quote=True)
        body = template.body.decode().replace(PLACEHOLDER, config, 1)
        return Response(
            b"" if request.method == "HEAD" else body.encode(),
            media_type=HTML_TYPE,
            headers=headers,
        )

    @router.api_route("/watch/{video_id}", methods=["GET", "HEAD"])
    def watch_page(video_id: str, request: Request) -> Response:
        """The reference player for one video."""
        return page(request, video_id, embed=False)

    @router.api_route("/embed/{video_id}", methods=["GET", "HEAD"])
    def embed_page(video_id: str, request: Request) -> Response:
        """The embeddable player: minimal chrome, framed by the configured origins only."""
        return page(request, video_id, embed=True)

    @router.api_route("/player/static/{name}", methods=["GET", "HEAD"])
    def static_file(name: str, request: Request) -> Response:
        """The player's script and stylesheet, by exact name."""
        if name not in FILES:
            raise NotFound("no such file")
        found = files.get(name)
        if found is None:
            raise NotFound("no such file (the player bundle may not be built)")
        headers = {
            **_headers(policies[False], embed=False),
            "Cache-Control": "no-cache",
            "ETag": found.etag,
        }
        if found.etag in _etags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        body = b"" if request.method == "HEAD" else found.body
        suffix = name[name.rfind(".") :]
        return Response(body, media_type=CONTENT_TYPES[suffix], headers=headers)

    return router


__all__ = ["STATIC_DIR", "build_player_pages_router", "content_security_policy"]
