"""Playback delivery: manifests, segments, thumbnails and the embeddable player.

URLs follow Cloudflare Stream's: ``{delivery_base}/{uid or token}/manifest/video.m3u8``,
``.../manifest/video.mpd``, ``.../thumbnails/thumbnail.jpg`` and ``.../iframe``. Variant
playlists and segments live under the same ``manifest/`` path, and every manifest refers to
them relatively, so a player that opened ``/{token}/manifest/video.m3u8`` asks for
``/{token}/manifest/v0/seg_00001.m4s``: the token rides along in every request without
rewriting the files, and every request is checked, not just the first.

Checks, in order, all before a byte of media is read:

1. the path's id is a uid (32 hex) or a token; a token must verify (RS256, a live key of
   this account, ``exp``/``nbf``) and names the video in ``sub``;
2. a video with ``requireSignedURLs`` is never served by bare uid (401);
3. the token's ``accessRules`` (first match wins) with the client's IP and the country
   from a configurable header (Cloudflare's ``CF-IPCountry`` by default);
4. ``allowedOrigins``: a non-empty list needs an ``Origin`` or ``Referer`` whose host
   matches (``*.example.com`` covers subdomains, not the apex). A request carrying neither
   is refused too, or a page could hotlink with ``referrerpolicy="no-referrer"``;
5. the video is playable (``readyToStream``) and the file exists.

Denials are 401 (no or unusable credentials) or 403 (credentials that do not grant this)
with a tiny JSON body; never media. Segments are immutable (cached for a year, ``private``
when the video is signed); playlists are cached for seconds.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from hybridvideo.engine.models import EngineVideo
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.errors import NotFound
from hybridvideo.stream.tokens import InvalidToken, verify_token

_UID = re.compile(r"^[0-9a-f]{32}$")
#: ``master.m3u8`` or ``v0/seg_00001.m4s``: one or two plain names, none starting with a dot.
_REL = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})?$")
MEDIA_DIR = "media"
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
}
SEGMENT_CACHE = "max-age=31536000, immutable"
PLAYLIST_CACHE = "max-age=10"


class Denied(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _deny(exc: Denied) -> JSONResponse:
    body = {"error": {"code": exc.code, "message": exc.message}}
    return JSONResponse(body, status_code=exc.status, headers={"Cache-Control": "no-store"})


def _site(source: str) -> tuple[str, int] | None:
    """``(host, port)`` of an Origin/Referer value (default port by scheme), or None."""
    try:
        parts = urlsplit(source)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def origin_allowed(allowed: list[str], request: Request) -> str | None:
    """The matching origin (for CORS), ``"*"`` when unrestricted; raise Denied otherwise.

    Patterns are Cloudflare's: ``example.com``, ``*.example.com`` (subdomains, not the
    apex) and ``host:port``; a pattern without a port matches only the default ports.
    """
    origin = request.headers.get("origin")
    if not allowed:
        return origin or "*"
    source = origin or request.headers.get("referer")
    site = _site(source) if source else None
    if site is None:
        raise Denied(403, "ORIGIN_REQUIRED", "this video may only be played on its allowed sites")
    host, port = site
    for pattern in allowed:
        want_host, _, want_port = pattern.lower().partition(":")
        if want_port:
            if str(port) != want_port:
                continue
        elif port not in (80, 443):
            continue
        if want_host.startswith("*."):
            if host.endswith(want_host[1:]) and host != want_host[2:]:
                return origin or "*"
        elif host == want_host:
            return origin or "*"
    raise Denied(403, "ORIGIN_NOT_ALLOWED", "this video may not be played on this site")


class Gate:
    """Resolves ``{uid or token}`` to a playable video, or raises :class:`Denied`."""

    def __init__(self, rt: EngineRuntime) -> None:
        self.rt = rt

    def video_for(self, ident: str, request: Request) -> tuple[EngineVideo, bool, str | None]:
        signed = not _UID.match(ident)
        if signed:
            keys = self.rt.store.live_public_keys(self.rt.account_id)
            try:
                claims = verify_token(ident, keys=keys)
            except InvalidToken as exc:
                raise Denied(403, "INVALID_TOKEN", exc.message) from None
            uid = claims.uid
        else:
            uid = ident
        try:
            video = self.rt.store.get_video(uid)
        except NotFound:
            raise Denied(404 if not signed else 403, "NOT_FOUND", "no such video") from None
        if video.account_id != self.rt.account_id:
            raise Denied(403 if signed else 404, "NOT_FOUND", "no such video")
        if video.require_signed_urls and not signed:
            raise Denied(401, "SIGNED_URL_REQUIRED", "this video needs a signed token")
        if signed:
            country = request.headers.get(self.rt.country_header)
            client_ip = request.client.host if request.client else ""
            if not claims.allows(client_ip=client_ip, country=country):
                raise Denied(403, "ACCESS_RULE", "the token's access rules deny this viewer")
        cors = origin_allowed(list(video.allowed_origins), request)
        if not video.ready_to_stream:
            raise Denied(404, "NOT_READY", "the video is not ready to stream yet")
        # Origin-restricted answers must not be reused by a shared cache for other sites.
        return video, signed or bool(video.allowed_origins), cors

    def file(self, uid: str, rel: str) -> Path:
        if not _REL.match(rel) or ".." in rel or Path(rel).suffix not in CONTENT_TYPES:
            raise Denied(404, "NOT_FOUND", "no such file")
        root = (self.rt.video_dir(uid) / MEDIA_DIR).resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise Denied(404, "NOT_FOUND", "no such file")
        return path


def _file(path: Path, *, signed: bool, cors: str | None, playlist: bool) -> FileResponse:
    cache = PLAYLIST_CACHE if playlist else SEGMENT_CACHE
    headers = {
        "Cache-Control": f"{'private' if signed else 'public'}, {cache}",
        "X-Content-Type-Options": "nosniff",
        "Timing-Allow-Origin": "*",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = cors
        if cors != "*":
            headers["Vary"] = "Origin, Referer"
    media_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=headers)


def build_delivery_router(rt: EngineRuntime, *, prefix: str = "/delivery") -> APIRouter:
    gate = Gate(rt)
    router = APIRouter(prefix=prefix, include_in_schema=False)

    def serve(ident: str, rel: str, request: Request) -> Response:
        try:
            video, signed, cors = gate.video_for(ident, request)
            path = gate.file(video.uid, rel)
        except Denied as exc:
            return _deny(exc)
        return _file(path, signed=signed, cors=cors, playlist=rel.endswith((".m3u8", ".mpd")))

    @router.api_route("/{ident}/manifest/video.m3u8", methods=["GET", "HEAD"])
    def master(ident: str, request: Request) -> Response:
        return serve(ident, "master.m3u8", request)

    @router.api_route("/{ident}/manifest/video.mpd", methods=["GET", "HEAD"])
    def dash(ident: str, request: Request) -> Response:
        return serve(ident, "video.mpd", request)

    @router.api_route("/{ident}/manifest/{rel:path}", methods=["GET", "HEAD"])
    def media(ident: str, rel: str, request: Request) -> Response:
        return serve(ident, rel, request)

    @router.api_route("/{ident}/thumbnails/thumbnail.jpg", methods=["GET", "HEAD"])
    def thumbnail(ident: str, request: Request) -> Response:
        return serve(ident, "thumbnail.jpg", request)

    @router.get("/{ident}/iframe")
    def iframe(ident: str, request: Request) -> Response:
        try:
            gate.video_for(ident, request)
        except Denied as exc:
            return _deny(exc)
        page = _player_page(request, rt.player_script_url)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return router


def _player_page(request: Request, hlsjs: str) -> str:
    """A minimal embeddable player: native HLS where the browser has it, else hls.js from
    the engine's configured URL (never from the query string: that would let a link load
    any script on this origin), with Cloudflare's poster/autoplay/muted/loop options."""
    q = request.query_params
    src = "manifest/video.m3u8"
    poster = q.get("poster") or "thumbnails/thumbnail.jpg"
    flags = " ".join(f for f in ("autoplay", "muted", "loop") if q.get(f) not in (None, "false"))
    config = json.dumps({"src": src, "hlsjs": hlsjs})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<base href="/{html.escape(request.url.path.rsplit("/iframe", 1)[0].lstrip("/"))}/">
<style>html,body{{margin:0;height:100%;background:#000}}video{{width:100%;height:100%}}</style>
</head><body>
<video id="v" controls playsinline {flags} poster="{html.escape(poster)}"></video>
<script>
const cfg = {config};
const v = document.getElementById("v");
if (v.canPlayType("application/vnd.apple.mpegurl")) {{ v.src = cfg.src; }}
else {{
  const s = document.createElement("script"); s.src = cfg.hlsjs;
  s.onload = () => {{ const h = new Hls(); h.loadSource(cfg.src); h.attachMedia(v); }};
  document.head.appendChild(s);
}}
</script></body></html>"""
