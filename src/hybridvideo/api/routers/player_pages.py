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

**The admin as viewer** (the newcomer path: upload on ``/admin/upload``, press Play).
A fresh server has no app and so no viewer JWT; the admin holds the admin token, kept by
the upload page in the tab's ``sessionStorage``. With no viewer JWT, the player sends that
token to ``GET /player/admin-playback/{id}``, which answers exactly like the playback
endpoint, for the admin as viewer. It is allowed only while ``HYBRIDVIDEO_PLAYBACK_POLICY``
lists the ``admin`` rule (the default does): an operator who removed it said admins do not
watch through the app, and the admin token is then refused here (403) like any viewer.
The admin token is no JWT, so it cannot go through the viewer authenticator; checking it
here (constant time, ``require_admin``) keeps identity.py about the app's own users.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hybridvideo.api.deps import AdminDep, ContainerDep
from hybridvideo.api.errors import error_response
from hybridvideo.api.routers.admin_pages import CONTENT_TYPES, HTML_TYPE, PackagedFiles, etags
from hybridvideo.config import Settings
from hybridvideo.errors import ConfigurationError, InvalidInput, NotFound
from hybridvideo.playback.identity import Viewer
from hybridvideo.playback.service import Reimporting
from hybridvideo.telemetry.qoe import VIDEO_ID

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "player"
BUNDLE = "player.js"
FILES = ("player.js", "player.css")
PLACEHOLDER = "__PLAYER_CONFIG__"
ADMIN_PLAYBACK_BASE = "/player/admin-playback/"
#: The viewer the admin token stands for (its ``sub`` only shows in logs and beacons).
ADMIN_VIEWER = Viewer("admin", {"hybridvideo_admin_token": True})
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
        "adminPlaybackBase": ADMIN_PLAYBACK_BASE,
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
    files = PackagedFiles(static_dir)
    compressed: dict[str, bytes] = {}  # by the file's ETag: compressed once per build
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

    @router.get(ADMIN_PLAYBACK_BASE + "{video_id}", dependencies=[AdminDep])
    def admin_playback(video_id: str, request: Request, container: ContainerDep) -> Response:
        """The playback answer for the admin token's holder (see the module docstring)."""
        service = container.playback
        if service is None:
            raise ConfigurationError("playback is not configured on this server")
        if "admin" not in service.policy.rules:
            return error_response(
                request,
                403,
                "FORBIDDEN",
                "admins may not watch here: HYBRIDVIDEO_PLAYBACK_POLICY has no 'admin' rule",
            )
        client_ip = request.client.host if request.client else None
        result = service.playback(video_id, ADMIN_VIEWER, client_ip, skip_policy=True)
        headers = {"Cache-Control": "private, no-store"}
        if isinstance(result, Reimporting):
            headers["Retry-After"] = str(result.retry_after)
            body = {"status": "reimporting", "retryAfter": result.retry_after}
            return JSONResponse(body, status_code=202, headers=headers)
        return JSONResponse(result.to_json(), headers=headers)

    @router.api_route("/player/static/{name}", methods=["GET", "HEAD"])
    def static_file(name: str, request: Request) -> Response:
        """The player's script and stylesheet, by exact name."""
        if name not in FILES:
            raise NotFound("no such file")
        found = files.get(name)
        if found is None:
            raise NotFound("no such file (the player bundle may not be built)")
        # gzip: the bundle (hls.js) is ~585 kB, ~180 kB compressed; on a 4G link that is
        # about 0.4 s of the time to first frame (bench/startup.py).
        use_gzip = "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = found.etag[:-1] + '-gz"' if use_gzip else found.etag
        headers = {
            **_headers(policies[False], embed=False),
            "Cache-Control": "no-cache",
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        if etag in etags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        body = found.body
        if use_gzip:
            if found.etag not in compressed:
                if len(compressed) >= 2 * len(FILES):
                    compressed.clear()  # older builds' files
                compressed[found.etag] = gzip.compress(found.body, compresslevel=6, mtime=0)
            body = compressed[found.etag]
            headers["Content-Encoding"] = "gzip"
        body = b"" if request.method == "HEAD" else body
        suffix = name[name.rfind(".") :]
        return Response(body, media_type=CONTENT_TYPES[suffix], headers=headers)

    return router


__all__ = ["STATIC_DIR", "build_player_pages_router", "content_security_policy"]
