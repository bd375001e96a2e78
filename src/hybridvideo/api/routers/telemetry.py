"""``POST /api/v1/telemetry/qoe``: QoE beacons from the reference player.

Who may send: any browser that plays (``navigator.sendBeacon`` cannot carry an
``Authorization`` header, and a viewer's JWT must not sit in a beacon queue). What we
require instead: a well-formed session id (minted per page view by the player), the id of
a video the catalog knows, known event kinds with bounded fields (see
:mod:`hybridvideo.telemetry.qoe`), a body of at most 16 KiB and a per-session and per-process
event budget (429 past it). A forger can therefore add plausible noise for real videos,
but cannot grow rows without bound or store arbitrary data; binding sessions to a
playback answer is the telemetry issue's (it needs the playback endpoint to record them).

The body is read raw and parsed here: ``sendBeacon`` sends ``text/plain`` blobs unless the
page builds a JSON ``Blob``, and either must be accepted. Answers 204 with no body.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from hybridvideo.api.deps import ContainerDep
from hybridvideo.api.errors import error_response
from hybridvideo.container import Container
from hybridvideo.errors import BackendUnavailable, InvalidInput, NotFound
from hybridvideo.telemetry.qoe import MAX_BODY_BYTES, BeaconBatch, SessionBudget, parse_batch

ACCEPTED_TYPES = ("application/json", "text/plain", "")


def build_router(budget: SessionBudget | None = None) -> APIRouter:
    """The beacon route, with its own in-process event budget."""
    limits = budget or SessionBudget()
    router = APIRouter(prefix="/api/v1/telemetry", tags=["telemetry"])

    @router.post("/qoe", status_code=204, response_class=Response)
    async def qoe_beacons(request: Request, container: ContainerDep) -> Response:
        """Store a batch of QoE events ``{"sessionId","videoId","cohort","events":[...]}``."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in ACCEPTED_TYPES:
            return error_response(
                request, 415, "UNSUPPORTED_MEDIA_TYPE", "send JSON (application/json)"
            )
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return _too_large(request)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _too_large(request)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the body is not JSON") from None
        batch = parse_batch(payload)
        if container.beacons is None:
            raise BackendUnavailable("QoE beacons are not stored by this server")
        if not limits.take(batch.session_id, len(batch.events)):
            return error_response(
                request,
                429,
                "RATE_LIMITED",
                "too many QoE events for this session; send fewer",
                {"Retry-After": str(int(limits.window))},
            )
        await _store(container, batch)
        return Response(status_code=204)

    return router


async def _store(container: Container, batch: BeaconBatch) -> None:
    """Check the video is known and write the batch, off the event loop."""

    def store() -> None:
        try:
            container.catalog.get_video(batch.video_id)
        except NotFound:
            raise InvalidInput("videoId is not a known video") from None
        assert container.beacons is not None
        container.beacons.add_beacons(batch.beacons())

    await run_in_threadpool(store)


def _too_large(request: Request) -> Response:
    return error_response(
        request, 413, "PAYLOAD_TOO_LARGE", f"a beacon batch is at most {MAX_BODY_BYTES} bytes"
    )


__all__ = ["build_router"]
