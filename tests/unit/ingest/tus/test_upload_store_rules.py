"""The pure rules of the upload stores: part bookkeeping, concatenation plans, info JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hybridvideo.ingest.tus.protocol import TusError, UploadInfo
from hybridvideo.ingest.tus.s3_store import ListedPart, plan_concatenation, usable_parts
from hybridvideo.ingest.tus.store import (
    check_finishable,
    check_partials,
    content_type_of,
    effective_limit,
    incoming_key,
    info_from_json,
    info_to_json,
    new_upload_id,
    refuse_more,
)

P = 10


def _parts(*spec: tuple[int, int]) -> list[ListedPart]:
    return [ListedPart(number, size, f'"{number}"') for number, size in spec]


def test_usable_parts_are_contiguous_and_equal_but_the_last() -> None:
    assert usable_parts([], P) == ()
    assert usable_parts(_parts((2, P), (1, P)), P) == tuple(_parts((1, P), (2, P)))
    assert usable_parts(_parts((1, P), (2, 3)), P) == tuple(_parts((1, P), (2, 3)))
    # A gap: part 3 is debris of an interrupted write and does not count.
    assert usable_parts(_parts((1, P), (3, P)), P) == tuple(_parts((1, P)))
    # Nothing counts after a short part (only a last part may be short).
    assert usable_parts(_parts((1, 4), (2, P)), P) == tuple(_parts((1, 4)))
    assert usable_parts(_parts((2, P)), P) == ()


def test_plan_cuts_sources_into_equal_parts() -> None:
    plan = list(plan_concatenation([25, 3, 0, 12], P))
    assert plan == [
        ((0, 0, 10),),
        ((0, 10, 20),),
        ((0, 20, 25), (1, 0, 3), (3, 0, 2)),
        ((3, 2, 12),),
    ]
    for ranges in plan[:-1]:
        assert sum(stop - start for _, start, stop in ranges) == P
    assert list(plan_concatenation([], P)) == []
    assert list(plan_concatenation([0, 0], P)) == []
    assert list(plan_concatenation([P], P)) == [((0, 0, P),)]
    assert list(plan_concatenation([3, 3], P)) == [((0, 0, 3), (1, 0, 3))]
    with pytest.raises(ValueError):
        list(plan_concatenation([1], 0))


@pytest.mark.parametrize("sizes", [[1], [9, 1], [10, 10, 1], [7, 7, 7, 7], [33]])
def test_plan_covers_every_byte_once_in_order(sizes: list[int]) -> None:
    seen = [
        (i, b) for ranges in plan_concatenation(sizes, P) for i, a, z in ranges for b in range(a, z)
    ]
    assert seen == [(i, b) for i, size in enumerate(sizes) for b in range(size)]


def test_content_type_comes_only_from_a_plain_media_type() -> None:
    assert content_type_of({"filetype": "video/MP4"}) == "video/mp4"
    assert content_type_of({"type": "video/webm"}) == "video/webm"
    assert (
        content_type_of({"filetype": None, "contentType": "video/x-matroska"}) == "video/x-matroska"
    )
    for bad in (
        "video/mp4; codecs=avc1",
        "video",
        "video/mp4\r\nX: y",
        "/mp4",
        "a" * 80 + "/b",
        "",
    ):
        assert content_type_of({"filetype": bad}) is None
    assert content_type_of({}) is None


def _info(offset: int, length: int | None, **fields: object) -> UploadInfo:
    return UploadInfo(
        id=new_upload_id(), offset=offset, length=length, created_at=datetime.now(UTC), **fields
    )  # type: ignore[arg-type]


def test_effective_limit_never_goes_beyond_the_length() -> None:
    assert effective_limit(_info(3, 10), None) == 7
    assert effective_limit(_info(3, 10), 5) == 5
    assert effective_limit(_info(3, 10), 50) == 7
    assert effective_limit(_info(3, None), 50) == 50
    assert effective_limit(_info(3, None), None) is None


def test_refuse_more_accepts_only_an_empty_body() -> None:
    refuse_more(iter([b"", b""]))
    with pytest.raises(TusError) as err:
        refuse_more(iter([b"", b"x"]))
    assert err.value.status == 413


def test_finishable_and_partials_checks() -> None:
    check_finishable(_info(4, 4))
    check_finishable(_info(0, 0))
    for info in (_info(3, 4), _info(0, None), _info(4, 4, is_partial=True)):
        with pytest.raises(TusError) as err:
            check_finishable(info)
        assert err.value.status == 400
    a, b = _info(2, 2, is_partial=True), _info(5, 5, is_partial=True)
    final = _info(0, None, is_final=True, partial_ids=(a.id, b.id, a.id))
    assert check_partials(final, {a.id: a, b.id: b}) == 9
    half = _info(1, 2, is_partial=True)
    whole = _info(2, 2)
    for partial in (half, whole):
        with pytest.raises(TusError) as err:
            check_partials(
                _info(0, None, is_final=True, partial_ids=(partial.id,)), {partial.id: partial}
            )
        assert err.value.status == 400
    with pytest.raises(ValueError):
        check_partials(_info(0, None, is_final=True), {})


def test_incoming_key_only_for_upload_ids() -> None:
    uid = new_upload_id()
    assert incoming_key(uid) == f"incoming/{uid}"
    with pytest.raises(TusError):
        incoming_key("../x")


def test_info_json_round_trip_and_old_sidecars() -> None:
    info = _info(
        5,
        9,
        metadata_raw="a YQ==,b",
        metadata={"a": "a", "b": None},
        is_final=True,
        partial_ids=("1" * 32, "2" * 32),
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        notes={"k": "v"},
    )
    assert info_from_json(json.loads(json.dumps(info_to_json(info)))) == info
    old = {  # a sidecar written before expiry, notes and concatenation were stored
        "id": info.id,
        "offset": 2,
        "length": None,
        "created_at": info.created_at.isoformat(),
        "metadata_raw": None,
        "metadata": {},
    }
    got = info_from_json(old)
    assert (got.offset, got.length, got.notes, got.expires_at, got.is_partial) == (
        2,
        None,
        {},
        None,
        False,
    )
