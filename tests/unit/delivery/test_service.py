"""DeliveryService on real parts: SQLite catalog, local archive, the engine's real API.

Cloudflare-only answers (429 with Retry-After, refusals, an unreachable API) come from
``answering``: our real client over an httpx MockTransport speaking the documented envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybridvideo.delivery.service import (
    ARCHIVE_KEY_META,
    DEFERRED,
    FAILED,
    READY,
    REQUESTED,
    SENT,
    VIDEO_ID_META,
    DeliveryService,
    copy_meta,
)
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.errors import BackendUnavailable
from hybridvideo.stream.base import RateLimited, StreamAuthError, StreamProvider, StreamVideo
from tests.unit.delivery.world import (
    NON_VIDEO,
    CatalogFailingOnce,
    World,
    answering,
    delivery_world,
    envelope_error,
)

S = StreamStatus


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with delivery_world(tmp_path) as w:
        yield w


@pytest.fixture
def video(world: World, sample_video: Path) -> VideoState:
    return world.add(sample_video, title="Intro clip")


def kinds(world: World, video_id: str) -> list[str]:
    return [e.kind for e in world.catalog.events(video_id) if e.kind.startswith("delivery_")]


def stream_copies_of(world: World, video_id: str) -> list[StreamVideo]:
    return [v for v in world.stream.list() if v.meta.get(VIDEO_ID_META) == video_id]


# -- sending ---------------------------------------------------------------------------


def test_deliver_copies_the_presigned_master_and_records_processing(
    world: World, video: VideoState
) -> None:
    state = world.service.deliver(video.id)
    uid = state.spec.stream_uid
    assert uid is not None and state.spec.stream_status is S.PROCESSING
    assert world.copies == [uid]  # the engine queued exactly one ingest
    made = world.stream.get(uid)
    assert made.meta["name"] == "Intro clip" and made.meta[VIDEO_ID_META] == video.id
    source = made.meta["downloaded-from"]
    # The source is the archive's own signed URL of the master, valid for hours.
    assert source.startswith("http://archive.test/") and video.spec.archive_key in source
    assert kinds(world, video.id) == [REQUESTED, SENT]
    found = world.catalog.find_by_stream_uid(uid)
    assert found is not None and found.id == video.id


def test_repeated_deliver_makes_no_second_stream_video(world: World, video: VideoState) -> None:
    first = world.service.deliver(video.id)
    again = world.service.deliver(video.id)
    assert again.spec.stream_uid == first.spec.stream_uid
    assert len(world.copies) == 1 and len(stream_copies_of(world, video.id)) == 1
    world.service.apply_stream_update(world.finish(first.spec.stream_uid or ""))
    ready = world.service.deliver(video.id)  # READY: nothing to do either
    assert ready.spec.stream_status is S.READY and len(world.copies) == 1


def test_ready_update_is_applied_once_and_repeats_are_harmless(
    world: World, video: VideoState
) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    update = world.finish(uid)
    done = world.service.apply_stream_update(update)
    assert done is not None and done.spec.stream_status is S.READY
    assert done.spec.stream_uid == uid and done.spec.stream_error is None
    assert world.service.apply_stream_update(update) == done  # a duplicated webhook
    assert world.service.apply_stream_update(update, source="poll") == done
    assert kinds(world, video.id) == [REQUESTED, SENT, READY]
    ready_event = next(e for e in world.catalog.events(video.id) if e.kind == READY)
    assert ready_event.data["source"] == "webhook" and ready_event.data["width"] == 160


def test_error_update_records_cloudflare_code_and_a_retry_sends_again(
    world: World, video: VideoState
) -> None:
    first_uid = world.service.deliver(video.id).spec.stream_uid or ""
    failed = world.service.apply_stream_update(world.finish(first_uid, error=NON_VIDEO))
    assert failed is not None and failed.spec.stream_status is S.ERROR
    assert failed.spec.stream_error == "ERR_NON_VIDEO: The file is not a video"
    error_event = next(e for e in world.catalog.events(video.id) if e.kind == FAILED)
    assert error_event.data["code"] == "ERR_NON_VIDEO"

    retried = world.service.deliver(video.id)  # ERROR -> PROCESSING with a new copy
    assert retried.spec.stream_status is S.PROCESSING and retried.spec.stream_error is None
    assert retried.spec.stream_uid not in (None, first_uid) and len(world.copies) == 2
    # The superseded copy's late webhook names a uid the catalog no longer knows.
    assert world.service.apply_stream_update(world.stream.get(first_uid)) is None
    assert world.catalog.get_video(video.id).spec.stream_status is S.PROCESSING


def test_unknown_uid_is_ignored_and_logged(
    world: World, video: VideoState, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = world.stream.copy_from_url("http://elsewhere.test/a.mp4", name="not ours")
    with caplog.at_level(logging.INFO, logger="hybridvideo.delivery"):
        assert world.service.apply_stream_update(world.finish(stranger.uid)) is None
    assert any("unknown uid" in r.getMessage() for r in caplog.records)
    assert world.catalog.get_video(video.id).spec.stream_status is S.NOT_DELIVERED


def test_updates_still_in_progress_change_nothing(world: World, video: VideoState) -> None:
    sent = world.service.deliver(video.id)
    world.engine.set_processing_state(sent.spec.stream_uid or "", "inprogress", pct=40)
    update = world.stream.get(sent.spec.stream_uid or "")
    assert update.state == "inprogress"
    assert world.service.apply_stream_update(update) == world.catalog.get_video(video.id)
    assert world.catalog.get_video(video.id).spec.stream_status is S.PROCESSING


def test_a_late_update_for_an_evicted_video_is_ignored(world: World, video: VideoState) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(uid))
    world.catalog.set_stream_status(video.id, S.EVICTED)
    after = world.service.apply_stream_update(world.stream.get(uid))
    assert after is not None and after.spec.stream_status is S.EVICTED


def test_missing_master_ends_in_error_without_a_copy(world: World, video: VideoState) -> None:
    world.archive.delete(video.spec.archive_key)
    state = world.service.deliver(video.id)
    assert state.spec.stream_status is S.ERROR
    assert state.spec.stream_error == "the master is missing from the archive"
    assert world.copies == [] and kinds(world, video.id) == [FAILED]


# -- failures the Stream service reports -----------------------------------------------


def test_rate_limit_propagates_with_retry_after_and_changes_no_state(
    world: World, video: VideoState
) -> None:
    seen: list[str] = []

    def limited(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path.rsplit('/', 1)[-1]}")
        return envelope_error(429, 10_000, "rate limited", **{"retry-after": "7"})

    service = world.service_with(answering(limited))
    with pytest.raises(RateLimited) as raised:
        service.deliver(video.id)
    assert raised.value.retry_after == 7.0
    assert world.catalog.get_video(video.id).spec.stream_status is S.NOT_DELIVERED
    assert kinds(world, video.id) == [REQUESTED, DEFERRED]
    # A 429 made nothing, so the next attempt copies straight away (no search for orphans).
    with pytest.raises(RateLimited):
        service.deliver(video.id)
    assert seen == ["POST copy", "POST copy"]


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, 10_002, "url is not a valid URL", "Stream refused the request: url is not a valid"),
        (401, 10_000, "Authentication error", "CLOUDFLARE_STREAM_TOKEN"),
        (403, 10_000, "Authentication error", "CLOUDFLARE_ACCOUNT_ID"),
    ],
)
def test_refused_copies_end_in_error_with_a_message_for_clients(
    world: World, video: VideoState, status: int, code: int, message: str, expected: str
) -> None:
    service = world.service_with(answering(lambda r: envelope_error(status, code, message)))
    state = service.deliver(video.id)
    assert state.spec.stream_status is S.ERROR and state.spec.stream_uid is None
    error = state.spec.stream_error or ""
    assert expected in error
    assert "Traceback" not in error and "httpx" not in error and "api.test" not in error
    failed = next(e for e in world.catalog.events(video.id) if e.kind == FAILED)
    assert failed.data["source"] == "send"


def test_unreachable_service_propagates_and_the_retry_copies_once(
    world: World, video: VideoState
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(BackendUnavailable):
        world.service_with(answering(down)).deliver(video.id)
    assert world.catalog.get_video(video.id).spec.stream_status is S.NOT_DELIVERED
    # The answer was lost, so the retry first looks for a copy the request may have made;
    # finding none, it copies.
    state = world.service.deliver(video.id)
    assert state.spec.stream_status is S.PROCESSING and len(world.copies) == 1


def test_a_copy_whose_uid_was_never_recorded_is_adopted_not_duplicated(
    world: World, video: VideoState
) -> None:
    flaky = CatalogFailingOnce(world.catalog_engine)  # same database, one failure
    service = DeliveryService(catalog=flaky, archive=world.archive, stream=world.stream)
    with pytest.raises(BackendUnavailable):
        service.deliver(video.id)
    assert len(world.copies) == 1  # Stream has the copy; the catalog does not know its uid
    orphan = world.copies[0]

    state = service.deliver(video.id)  # the job's retry
    assert state.spec.stream_uid == orphan and state.spec.stream_status is S.PROCESSING
    assert len(world.copies) == 1 and len(stream_copies_of(world, video.id)) == 1
    sent = next(e for e in world.catalog.events(video.id) if e.kind == SENT)
    assert sent.data["adopted"] is True


def test_an_adopted_copy_that_already_finished_is_applied(world: World, video: VideoState) -> None:
    flaky = CatalogFailingOnce(world.catalog_engine)
    service = DeliveryService(catalog=flaky, archive=world.archive, stream=world.stream)
    with pytest.raises(BackendUnavailable):
        service.deliver(video.id)
    world.finish(world.copies[0])
    assert service.deliver(video.id).spec.stream_status is S.READY


def test_an_earlier_copy_of_the_video_is_never_adopted(world: World, video: VideoState) -> None:
    first = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(first))
    world.catalog.set_stream_status(video.id, S.EVICTED)  # its ready copy left in Stream, say
    second = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(second, error=NON_VIDEO))
    flaky = CatalogFailingOnce(world.catalog_engine)
    service = DeliveryService(catalog=flaky, archive=world.archive, stream=world.stream)
    with pytest.raises(BackendUnavailable):
        service.deliver(video.id)  # the third copy is made, its uid lost
    lost = world.copies[-1]
    world.finish(lost, error=("ERR_MALFORMED_VIDEO", "broken"))
    state = service.deliver(video.id)
    # The lost copy is adopted (and its failure applied), not the first, ready one.
    assert state.spec.stream_uid == lost and len(world.copies) == 3
    assert (state.spec.stream_error or "").startswith("ERR_MALFORMED_VIDEO")


def test_a_failed_reimport_leaves_an_evicted_video_evicted(world: World, video: VideoState) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(uid))
    world.catalog.set_stream_status(video.id, S.EVICTED)
    refused = answering(lambda r: envelope_error(400, 10_002, "bad url"))
    state = world.service_with(refused).deliver(video.id)
    assert state.spec.stream_status is S.EVICTED
    assert kinds(world, video.id)[-1] == FAILED


def test_give_up_records_error_unless_delivered_meanwhile(world: World, video: VideoState) -> None:
    limited = RateLimited("copy: still rate limited", retry_after=None)
    given_up = world.service.give_up(video.id, limited)
    assert given_up.spec.stream_status is S.ERROR
    assert "rate limits" in (given_up.spec.stream_error or "")
    delivered = world.service.deliver(video.id)
    assert world.service.give_up(video.id, BackendUnavailable("x")) == delivered


# -- polling ---------------------------------------------------------------------------


def deliver_three(world: World, sample_video: Path, tmp_path: Path) -> list[VideoState]:
    made = []
    for n in range(3):
        clip = tmp_path / f"clip{n}.mp4"
        clip.write_bytes(sample_video.read_bytes() + b"\0" * (n + 1))  # distinct masters
        made.append(world.service.deliver(world.add(clip).id))
    return made


def test_poll_finishes_processing_videos_webhooks_missed(
    world: World, sample_video: Path, tmp_path: Path
) -> None:
    ready, failed, busy = deliver_three(world, sample_video, tmp_path)
    world.finish(ready.spec.stream_uid or "")
    world.finish(failed.spec.stream_uid or "", error=("ERR_FETCH_ORIGIN_ERROR", "fetch failed"))

    assert world.service.poll_processing().checked == 0  # nothing PROCESSING for a minute yet
    report = world.service.poll_processing(older_than=timedelta(0))
    assert (report.checked, report.changed) == (3, 2)
    assert world.catalog.get_video(ready.id).spec.stream_status is S.READY
    error = world.catalog.get_video(failed.id).spec
    assert error.stream_status is S.ERROR
    assert error.stream_error == "ERR_FETCH_ORIGIN_ERROR: fetch failed"
    assert world.catalog.get_video(busy.id).spec.stream_status is S.PROCESSING
    event = next(e for e in world.catalog.events(ready.id) if e.kind == READY)
    assert event.data["source"] == "poll"


def test_poll_takes_a_backlog_in_turn(world: World, sample_video: Path, tmp_path: Path) -> None:
    videos = deliver_three(world, sample_video, tmp_path)
    world.requests.clear()
    for _ in range(3):
        assert world.service.poll_processing(2, older_than=timedelta(0)).checked == 2
    asked = [r.rsplit("/", 1)[-1] for r in world.requests if r.startswith("GET ")]
    uids = {v.spec.stream_uid for v in videos}
    assert set(asked) == uids and len(asked) == 6
    assert set(asked[:3]) == uids  # the second round starts with the one the first left


def test_poll_marks_a_vanished_copy_as_error(world: World, video: VideoState) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.stream.delete(uid)
    report = world.service.poll_processing(older_than=timedelta(0))
    assert (report.checked, report.changed) == (1, 1)
    state = world.catalog.get_video(video.id).spec
    assert state.stream_status is S.ERROR and "no longer has" in (state.stream_error or "")


def test_poll_stops_early_when_rate_limited(world: World, video: VideoState) -> None:
    world.service.deliver(video.id)
    limited = answering(lambda r: envelope_error(429, 10_000, "rate limited"))
    report = world.service_with(limited).poll_processing(older_than=timedelta(0))
    assert (report.checked, report.changed) == (0, 0)
    assert world.catalog.get_video(video.id).spec.stream_status is S.PROCESSING


def test_concurrent_deliveries_of_one_video_make_one_copy(
    tmp_path: Path, sample_video: Path
) -> None:
    """A job and the admin endpoint (or two workers) delivering the same video at once:
    the per-video lock makes the second wait and then find the copy on its way."""
    import threading
    import time as _time

    from hybridvideo.ingest.locks import InProcessLocker

    with delivery_world(tmp_path) as world:
        video = world.add(sample_video)
        real_copy = world.stream.copy_from_url

        def slow_copy(*args: Any, **kwargs: Any) -> Any:
            _time.sleep(0.3)  # wide open window between "not delivered" and "uid recorded"
            return real_copy(*args, **kwargs)

        world.stream.copy_from_url = slow_copy  # type: ignore[method-assign]
        service = DeliveryService(
            catalog=world.catalog,
            archive=world.archive,
            stream=world.stream,
            locker=InProcessLocker(),
        )
        results: list[str | None] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(service.deliver(video.id).spec.stream_uid)
            )
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(set(results)) == 1 and results[0] is not None, results
        assert len(world.copies) == 1


# -- what the migration relies on -------------------------------------------------------


def test_copies_carry_the_catalog_id_and_archive_key_and_require_signed_urls(
    world: World, video: VideoState, sample_video: Path
) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    made = world.stream.get(uid)
    assert made.meta[VIDEO_ID_META] == video.id
    assert made.meta[ARCHIVE_KEY_META] == video.spec.archive_key
    assert made.require_signed_urls is True
    open_service = DeliveryService(
        catalog=world.catalog, archive=world.archive, stream=world.stream, require_signed_urls=False
    )
    other = world.add(make_copy_of(sample_video, world), title="Open")
    assert (
        world.stream.get(open_service.deliver(other.id).spec.stream_uid or "").require_signed_urls
        is False
    )


def make_copy_of(sample: Path, world: World) -> Path:
    """A second master with different bytes (the catalog refuses the same sha twice)."""
    path = sample.parent / f"other-{len(world.copies)}.mp4"
    path.write_bytes(sample.read_bytes() + b"\0")
    return path


def test_a_copy_the_caller_found_by_meta_is_adopted_without_copying(
    world: World, video: VideoState
) -> None:
    # A copy left in Stream by a run whose catalog writes were lost (a restored backup).
    made = world.stream.copy_from_url("http://elsewhere.test/v.mp4", meta=copy_meta(video))
    world.requests.clear()
    state = world.service.deliver(video.id, found=[made])
    assert state.spec.stream_uid == made.uid and state.spec.stream_status is S.PROCESSING
    assert len(world.copies) == 1  # only the one made above
    assert not any(r.endswith("/copy") for r in world.requests)
    sent = next(e for e in world.catalog.events(video.id) if e.kind == SENT)
    assert sent.data["adopted"] is True


def test_a_lost_request_is_searched_for_even_when_the_caller_found_nothing(
    world: World, video: VideoState
) -> None:
    flaky = CatalogFailingOnce(world.catalog_engine)
    service = DeliveryService(catalog=flaky, archive=world.archive, stream=world.stream)
    with pytest.raises(BackendUnavailable):
        service.deliver(video.id)
    # The migration's listing may predate the copy: an empty hint never skips the search.
    state = service.deliver(video.id, found=[])
    assert state.spec.stream_uid == world.copies[0] and len(world.copies) == 1


class RacingStream:
    """Stream where, just before our copy lands, another process delivers the same video
    completely (its own copy, recorded first): the race two senders without a shared lock
    run (a job in `serve`, a migration elsewhere)."""

    def __init__(self, inner: StreamProvider, other: Callable[[], object]) -> None:
        self.inner = inner
        self.other: Callable[[], object] | None = other

    def copy_from_url(self, url: str, **kw: Any) -> StreamVideo:
        if self.other is not None:
            other, self.other = self.other, None
            other()
        return self.inner.copy_from_url(url, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_two_senders_racing_leave_one_copy_and_the_first_uid(
    world: World, video: VideoState
) -> None:
    rival = DeliveryService(catalog=world.catalog, archive=world.archive, stream=world.stream)
    won: list[VideoState] = []
    racing = RacingStream(world.stream, lambda: won.append(rival.deliver(video.id)))
    ours = DeliveryService(catalog=world.catalog, archive=world.archive, stream=racing)
    sent = ours.send(video.id)
    assert sent.action == "already"  # we lost: the rival's uid is the video's
    assert sent.video.spec.stream_uid == won[0].spec.stream_uid
    # Our copy was made and then deleted: Stream holds exactly one, the recorded one.
    assert len(world.copies) == 2
    assert [c.uid for c in stream_copies_of(world, video.id)] == [won[0].spec.stream_uid]


def test_a_refused_token_is_not_the_videos_fault_when_the_caller_says_so(
    world: World, video: VideoState
) -> None:
    denied = answering(lambda r: envelope_error(403, 10_000, "Authentication error"))
    service = world.service_with(denied)
    with pytest.raises(StreamAuthError):
        service.send(video.id, record_config_errors=False)
    after = world.catalog.get_video(video.id)
    assert after.spec.stream_status is S.NOT_DELIVERED and after.spec.stream_error is None
    # The request is answered (nothing was made): the next attempt copies, no search.
    world.requests.clear()
    assert world.service.deliver(video.id).spec.stream_status is S.PROCESSING
    assert not any(r.startswith("GET") for r in world.requests)


def test_ready_copies_stream_measurements_into_the_catalog(world: World, video: VideoState) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.engine.set_processing_state(
        uid, "ready", ready_to_stream=True, duration=42.5, width=1280, height=720, size=123456
    )
    done = world.service.apply_stream_update(world.stream.get(uid))
    assert done is not None and done.spec.stream_status is S.READY
    assert (done.spec.duration, done.spec.width, done.spec.height, done.spec.size) == (
        42.5,
        1280,
        720,
        123456,
    )
    assert world.catalog.get_video(video.id).spec == done.spec


def test_unknown_measurements_keep_the_probed_ones(world: World, video: VideoState) -> None:
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.engine.set_processing_state(uid, "ready", ready_to_stream=True)
    update = world.stream.get(uid)
    assert update.duration in (None, -1.0)
    done = world.service.apply_stream_update(update)
    assert done is not None and done.spec.duration == video.spec.duration
    assert done.spec.width == video.spec.width and done.spec.size == video.spec.size
