"""Typed dependencies: route signatures read like domain code."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from hybridvideo.container import Container
from hybridvideo.errors import Unauthorized


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def require_admin(request: Request, container: ContainerDep) -> None:
    """Bearer token check, compared in constant time so timing reveals nothing."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <admin token>'")
    expected = container.admin_token
    if expected is None or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid admin token")


AdminDep = Depends(require_admin)
