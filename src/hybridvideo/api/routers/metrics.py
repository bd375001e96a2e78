"""``GET /metrics``: one app's Prometheus registry in the exposition format.

Built around a given registry rather than prometheus_client's process-global one, so each
app (and each test) exposes exactly its own metrics. The format follows the scraper's
``Accept`` header: OpenMetrics when it asks for it, else the classic text format 0.0.4.
Whether the route is public or sits behind the admin token is the app's choice: metrics
name no uploads or users, but do reveal traffic volumes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def build_metrics_router(registry: CollectorRegistry, *, path: str = "/metrics") -> APIRouter:
    """A router serving ``registry`` at ``path`` (GET)."""
    router = APIRouter(tags=["metrics"])

    @router.get(path, include_in_schema=False)
    def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(
            encode(registry),
            media_type=content_type,
            headers={"Cache-Control": "no-store"},
        )

    return router


__all__ = ["build_metrics_router"]
