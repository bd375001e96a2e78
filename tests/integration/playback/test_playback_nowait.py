"""``PlaybackService.playback_nowait``: the event-loop path of the playback endpoint.

It must answer exactly like ``playback`` when it answers, and give up (None) whenever the
answer would wait on I/O, so the endpoint can run it without a threadpool hop.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus
from hybridvideo.errors import Unauthorized
from hybridvideo.playback.identity import ANONYMOUS, Viewer
from hybridvideo.playback.service import NotReady, Playback, PlaybackService, Reimporting
from hybridvideo.stream.tokens import SigningKey, verify_token

VIEWER = Viewer("viewer", {"sub": "viewer"})
DELIVERY = "https://customer-x.cloudflarestream.com"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., tuple[Container, SigningKey]]]:
    made: list[Container] = []

    def build(**settings: Any) -> tuple[Container, SigningKey]:
        data_dir = tmp_path / f"data-{len(made)}"
        data_dir.mkdir()
        key = SigningKey.generate()
        (data_dir / "signing-key.json").write_text(json.dumps(key.to_cloudflare()))
        container = build_container(
            load_settings(data_dir=data_dir, playback_jwt_secret="s" * 32, **settings),
            serving=True,
        )
        made.append(container)
        return container, key

    yield build
    for container in made:
        container.close()


def add_video(
    container: Container, status: StreamStatus = StreamStatus.READY, *, thumbnail: bool = True
) -> str:
    n = uuid.uuid4().hex
    video = container.catalog.add_video(
        NewVideo(
            title="clip",
            collection="work",
            archive_bucket="masters",
            archive_key=f"videos/{n}.mp4",
            media=MediaInfo(10, hashlib.sha256(n.encode()).hexdigest(), "mp4", 1.0, 16, 9),
            thumbnail_url=f"http://archive.test/{n}.jpg" if thumbnail else None,
        )
    )
    steps = [StreamStatus.PROCESSING, StreamStatus.READY]
    if status is StreamStatus.EVICTED:
        steps.append(StreamStatus.EVICTED)
    elif status is StreamStatus.PROCESSING:
        steps = steps[:1]
    for step in steps:
        uid = n if step is StreamStatus.PROCESSING else None
        container.catalog.set_stream_status(video.id, step, stream_uid=uid)
    return video.id


def service(container: Container) -> PlaybackService:
    assert container.playback is not None
    return container.playback


def test_answers_from_the_cached_row_like_playback(make: Callable[..., Any]) -> None:
    container, key = make(playback_policy="signed_in", stream_delivery_url=DELIVERY)
    playback = service(container)
    video_id = add_video(container)
    assert playback.playback_nowait(video_id, VIEWER, None) is None  # not cached: a read
    blocking = playback.playback(video_id, VIEWER, None)
    fast = playback.playback_nowait(video_id, VIEWER, None)
    assert isinstance(blocking, Playback) and isinstance(fast, Playback)
    assert fast.stream_uid == blocking.stream_uid
    assert fast.poster == blocking.poster
    assert fast.hls == f"https://customer-x.cloudflarestream.com/{fast.token}/manifest/video.m3u8"
    claims = verify_token(fast.token, keys={key.id: key.public_key})
    assert claims.uid == blocking.stream_uid and claims.exp == fast.expires_at


def test_raises_like_playback(make: Callable[..., Any]) -> None:
    container, _ = make(playback_policy="signed_in", stream_delivery_url=DELIVERY)
    playback = service(container)
    ready, processing = add_video(container), add_video(container, StreamStatus.PROCESSING)
    playback.playback(ready, VIEWER, None)
    with pytest.raises(NotReady):
        playback.playback(processing, VIEWER, None)
    with pytest.raises(Unauthorized):
        playback.playback_nowait(ready, ANONYMOUS, None)
    with pytest.raises(NotReady):
        playback.playback_nowait(processing, VIEWER, None)


def test_gives_up_on_anything_that_waits(make: Callable[..., Any]) -> None:
    container, _ = make(playback_policy="signed_in", stream_delivery_url=DELIVERY)
    playback = service(container)
    evicted, archive_poster = (
        add_video(container, StreamStatus.EVICTED),
        add_video(container, thumbnail=False),
    )
    assert isinstance(playback.playback(evicted, VIEWER, None), Reimporting)
    assert playback.playback_nowait(evicted, VIEWER, None) is None  # a job to queue
    assert isinstance(playback.playback(archive_poster, VIEWER, None), Playback)
    assert playback.playback_nowait(archive_poster, VIEWER, None) is None  # archive poster

    granted, _ = make(playback_policy="grant", stream_delivery_url=DELIVERY)
    video_id = add_video(granted)
    service(granted).grants.grant(video_id, "viewer", created_by="admin")
    assert isinstance(service(granted).playback(video_id, VIEWER, None), Playback)
    assert service(granted).playback_nowait(video_id, VIEWER, None) is None  # a query


def test_cached_rows_off_means_always_the_blocking_path(make: Callable[..., Any]) -> None:
    container, _ = make(playback_policy="signed_in", stream_delivery_url=DELIVERY)
    playback = PlaybackService(
        catalog=container.catalog,
        archive=container.archive,
        authenticator=service(container).authenticator,
        grants=service(container).grants,
        policy=service(container).policy,
        minter=service(container).minter,
        delivery_base=DELIVERY,
        start_reimport=lambda _: None,
        video_cache_seconds=0,
    )
    video_id = add_video(container)
    assert isinstance(playback.playback(video_id, VIEWER, None), Playback)
    assert playback.playback_nowait(video_id, VIEWER, None) is None
