"""Typed dependencies: route signatures read like domain code."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from hybridvideo.container import Container
from hybridvideo.errors import Unauthorized
from hybridvideo.ingest.tokens import looks_like_upload_token
from hybridvideo.ingest.tus.handler import Principal

ADMIN = Principal("admin", is_admin=True)


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


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def upload_principal(request: Request) -> Principal:
    """The admin, or the holder of a valid upload token (``hvu1...``); 401 otherwise."""
    container = get_container(request)
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <admin or upload token>'"
        )
    if looks_like_upload_token(token):
        grant = container.upload_tokens.verify(token)
        notes = {"token": grant.id}
        if grant.collection is not None:
            notes["collection"] = grant.collection
        if grant.owner_id is not None:
            notes["owner_id"] = grant.owner_id
        return Principal(f"token:{grant.id}", max_size=grant.max_size, notes=notes)
    expected = container.admin_token
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthorized("invalid token")
    return ADMIN


async def upload_principal_async(request: Request) -> Principal:
    return upload_principal(request)


UploaderDep = Annotated[Principal, Depends(upload_principal)]
