"""One behaviour suite for every tus UploadStore: a local folder and S3 (moto on loopback).

Each test gets its own folders or bucket, so the suite is safe under pytest-xdist. The S3
store runs with the real 5 MiB minimum part size (moto refuses smaller parts on complete),
so the multi-part cases use ~11-16 MiB of random bytes made in memory.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.archive.local import LocalArchive
from hybridvideo.archive.s3 import S3Archive, client_config
from hybridvideo.errors import BackendUnavailable, ConfigurationError
from hybridvideo.ingest.tus.protocol import TusError, UploadInfo
from hybridvideo.ingest.tus.s3_store import S3UploadStore
from hybridvideo.ingest.tus.store import LocalUploadStore, UploadStore, new_upload_id
from tests.services import free_port

MiB = 1024 * 1024
PART = 5 * MiB
SECRET = b"upload-store-suite-secret-012345"


@dataclass
class Env:
    """A store, the archive it finishes into, and ways to look under the hood."""

    kind: str
    store: UploadStore
    archive: ArchiveStore
    #: A second store over the same storage: another node, or this one after a restart.
    reopen: Callable[[], UploadStore]
    #: What storage holds for an upload besides its info (to prove nothing was kept).
    raw: Callable[[str], Any]
    #: Leave behind what a crash inside create() would: storage without an info.
    make_orphan: Callable[[], None]
    #: Unfinished multipart uploads on ``incoming/<id>`` (always empty for the folder).
    multipart: Callable[[str], list[str]]


def _local(tmp_path: Path) -> Env:
    root = tmp_path / "archive"
    root.mkdir()
    archive = LocalArchive(root, base_url="http://testserver", secret=SECRET)
    uploads = tmp_path / "uploads"
    store = LocalUploadStore(uploads, archive)

    def raw(upload_id: str) -> Any:
        path = store.data_path(upload_id)
        return path.read_bytes() if path.exists() else None

    def make_orphan() -> None:
        folder = uploads / new_upload_id()
        folder.mkdir()
        (folder / f"{folder.name}.bin").write_bytes(b"left by a crash")

    return Env(
        "local",
        store,
        archive,
        lambda: LocalUploadStore(uploads, archive),
        raw,
        make_orphan,
        lambda _id: [],
    )


def _s3(endpoint: str) -> Env:
    bucket = f"hv-tus-{uuid.uuid4().hex[:16]}"

    def new_archive() -> S3Archive:
        return S3Archive(
            bucket=bucket,
            endpoint_url=endpoint,
            region="us-east-1",
            access_key_id="testing",
            secret_access_key="testing",
            part_size=PART,
        )

    archive = new_archive()
    client = archive.client
    client.create_bucket(Bucket=bucket)
    store = S3UploadStore(archive, part_size=PART)

    def multipart(upload_id: str) -> list[str]:
        listed = client.list_multipart_uploads(Bucket=bucket, Prefix=f"incoming/{upload_id}")
        return [u["UploadId"] for u in listed.get("Uploads", [])]

    def raw(upload_id: str) -> Any:
        parts = []
        for mp in multipart(upload_id):
            got = client.list_parts(Bucket=bucket, Key=f"incoming/{upload_id}", UploadId=mp)
            parts += [(p["PartNumber"], p["Size"], p["ETag"]) for p in got.get("Parts", [])]
        spool = [
            (o["Key"], o["Size"], o["ETag"])
            for o in client.list_objects_v2(Bucket=bucket, Prefix=f".tus/{upload_id}.part").get(
                "Contents", []
            )
        ]
        return parts, spool

    def make_orphan() -> None:
        key = f"incoming/{new_upload_id()}"
        client.create_multipart_upload(Bucket=bucket, Key=key)

    return Env(
        "s3",
        store,
        archive,
        lambda: S3UploadStore(new_archive(), part_size=PART),  # its own client: a new node
        raw,
        make_orphan,
        multipart,
    )


@pytest.fixture(params=["local", "s3"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Env:
    if request.param == "local":
        return _local(tmp_path)
    return _s3(request.getfixturevalue("s3_endpoint"))


def _info(length: int | None, **fields: Any) -> UploadInfo:
    return UploadInfo(
        id=new_upload_id(), offset=0, length=length, created_at=datetime.now(UTC), **fields
    )


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _stored(env: Env, key: str) -> bytes:
    return b"".join(env.archive.open(key))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _status(call: Callable[[], object]) -> int:
    with pytest.raises(TusError) as err:
        call()
    return err.value.status


@pytest.fixture(scope="module")
def data() -> bytes:
    """Two whole parts and an odd tail."""
    return os.urandom(2 * PART + 1_234_567)


# -- creation and info -----------------------------------------------------------------


def test_create_and_get_round_trip_every_field(env: Env) -> None:
    expires = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    info = _info(
        None,
        metadata_raw="filename dmlkw6kubXA0,flag",
        metadata={"filename": "vidéo.mp4", "flag": None},
        is_partial=True,
        expires_at=expires,
        notes={"owner": "alice"},
    )
    created = env.store.create(info)
    assert created == info
    for store in (env.store, env.reopen()):
        got = store.get(info.id)
        assert got == info
        assert got.created_at == info.created_at
        assert got.length is None and not got.is_complete


def test_update_merges_notes_and_sets_expiry(env: Env) -> None:
    info = env.store.create(_info(10, notes={"a": "1"}))
    later = datetime.now(UTC) + timedelta(hours=1)
    got = env.store.update(info.id, notes={"b": "2"}, expires_at=later)
    assert got.notes == {"a": "1", "b": "2"} and got.expires_at == later
    assert env.store.update(info.id, notes={"a": "3"}).notes == {"a": "3", "b": "2"}
    assert env.reopen().get(info.id).expires_at == later
    assert _status(lambda: env.store.update(new_upload_id(), notes={"x": "y"})) == 404


def test_write_records_a_sliding_expiry(env: Env) -> None:
    info = env.store.create(_info(10))
    first = datetime.now(UTC) + timedelta(minutes=5)
    assert env.store.write(info.id, 0, iter([b"abc"]), 10, expires_at=first) == 3
    assert env.reopen().get(info.id).expires_at == first
    second = first + timedelta(minutes=5)
    assert env.store.write(info.id, 3, iter([b"defghij"]), 7, expires_at=second) == 10
    assert env.reopen().get(info.id) == replace(info, offset=10, expires_at=second)


def test_unknown_and_malformed_ids_are_404(env: Env) -> None:
    for bad in (new_upload_id(), "../x", "A" * 32, ""):
        assert _status(lambda bad=bad: env.store.get(bad)) == 404
        assert _status(lambda bad=bad: env.store.terminate(bad)) == 404
        assert _status(lambda bad=bad: env.store.finish(bad)) == 404
        assert _status(lambda bad=bad: env.store.write(bad, 0, iter([b"x"]), None)) == 404
        assert _status(lambda bad=bad: env.store.declare_length(bad, 1)) == 404


# -- writing ---------------------------------------------------------------------------


def test_sequential_writes_with_odd_chunks_cross_part_boundaries(env: Env, data: bytes) -> None:
    info = env.store.create(_info(len(data)))
    offset = 0
    # Writes end before, exactly on and after part boundaries, in chunks of odd sizes.
    for size, chunk in [
        (3 * MiB + 17, 777_777),
        (PART - (3 * MiB + 17), 65_537),
        (PART + 1, 1_000_003),
        (len(data) - 2 * PART - 1, 4096 * 3 + 1),
    ]:
        piece = data[offset : offset + size]
        offset = env.store.write(info.id, offset, _chunks(piece, chunk), len(data) - offset)
        assert env.store.get(info.id).offset == offset
    assert offset == len(data)
    assert env.store.get(info.id).is_complete
    key = env.store.finish(info.id)
    assert key == f"incoming/{info.id}"
    assert _sha(_stored(env, key)) == _sha(data)


def test_another_node_recovers_the_offset_and_continues(env: Env, data: bytes) -> None:
    info = env.store.create(_info(len(data), metadata={"filetype": "video/mp4"}))
    cut = PART + 2 * MiB + 5  # a whole part and a tail that is not one
    assert env.store.write(info.id, 0, _chunks(data[:cut], MiB), None) == cut
    other = env.reopen()
    assert other.get(info.id).offset == cut
    second = cut + 3 * MiB
    assert other.write(info.id, cut, _chunks(data[cut:second], 999_999), None) == second
    third = env.reopen()  # and back to yet another one for the end
    assert third.get(info.id).offset == second
    assert third.write(info.id, second, iter([data[second:]]), None) == len(data)
    assert env.store.get(info.id).is_complete
    key = env.reopen().finish(info.id)
    assert _sha(_stored(env, key)) == _sha(data)
    assert env.archive.head(key).content_type == "video/mp4"


class Gone(Exception):
    """The client went away mid-body."""


def _broken(*pieces: bytes) -> Iterator[bytes]:
    yield from pieces
    raise Gone


def test_a_broken_body_keeps_and_records_what_arrived(env: Env, data: bytes) -> None:
    info = env.store.create(_info(len(data)))
    with pytest.raises(Gone):
        env.store.write(info.id, 0, _broken(data[:3]), None)
    assert env.reopen().get(info.id).offset == 3
    # Past a part boundary: the whole part and the tail after it are both kept.
    upto = PART + MiB
    with pytest.raises(Gone):
        env.store.write(info.id, 3, _broken(*_chunks(data[3:upto], MiB)), None)
    assert env.reopen().get(info.id).offset == upto
    assert env.store.write(info.id, upto, iter([data[upto:]]), None) == len(data)
    assert _sha(_stored(env, env.store.finish(info.id))) == _sha(data)


def _digest(algorithm: str, payload: bytes) -> tuple[str, bytes]:
    return algorithm, hashlib.new(algorithm, payload).digest()


def test_checksum_match_applies_and_mismatch_discards_everything(env: Env, data: bytes) -> None:
    info = env.store.create(_info(len(data)))
    head = data[: MiB + 3]
    assert env.store.write(
        info.id, 0, _chunks(head, 300_000), None, checksum=_digest("sha1", head)
    ) == len(head)
    before = env.raw(info.id)
    big = data[len(head) : len(head) + PART + 7]  # would fill and flush a whole part
    wrong = _digest("sha256", big[:-1] + b"!")
    assert (
        _status(
            lambda: env.store.write(info.id, len(head), _chunks(big, MiB), None, checksum=wrong)
        )
        == 460
    )
    assert env.store.get(info.id).offset == len(head)
    assert env.raw(info.id) == before  # no leftover bytes, no new part
    with pytest.raises(Gone):  # a checksummed body cut short keeps nothing either
        env.store.write(info.id, len(head), _broken(big[:MiB]), None, checksum=_digest("md5", big))
    assert env.store.get(info.id).offset == len(head)
    assert env.raw(info.id) == before
    end = env.store.write(info.id, len(head), _chunks(big, MiB), None, checksum=_digest("md5", big))
    assert end == len(head) + len(big)
    assert env.store.write(info.id, end, iter([data[end:]]), None) == len(data)
    assert _sha(_stored(env, env.store.finish(info.id))) == _sha(data)


def test_limit_and_length_are_413(env: Env) -> None:
    info = env.store.create(_info(20))
    assert _status(lambda: env.store.write(info.id, 0, iter([b"x" * 11]), 10)) == 413
    assert env.store.get(info.id).offset == 0
    # The chunk that would cross the limit is dropped; the ones before it are kept.
    assert _status(lambda: env.store.write(info.id, 0, iter([b"12345", b"678901"]), 10)) == 413
    assert env.store.get(info.id).offset == 5
    # Without a limit from the caller the store still never goes beyond the length.
    assert _status(lambda: env.store.write(info.id, 5, iter([b"y" * 16]), None)) == 413
    assert env.store.get(info.id).offset == 5
    with_checksum = _digest("sha1", b"z" * 16)
    assert (
        _status(lambda: env.store.write(info.id, 5, iter([b"z" * 16]), 15, checksum=with_checksum))
        == 413
    )
    assert env.store.get(info.id).offset == 5


def test_offset_mismatch_is_409(env: Env) -> None:
    info = env.store.create(_info(10))
    assert env.store.write(info.id, 0, iter([b"abc"]), None) == 3
    assert _status(lambda: env.store.write(info.id, 0, iter([b"def"]), None)) == 409
    assert _status(lambda: env.store.write(info.id, 4, iter([b"def"]), None)) == 409
    assert env.store.get(info.id).offset == 3


def test_declare_length(env: Env) -> None:
    info = env.store.create(_info(None))
    assert env.store.write(info.id, 0, iter([b"abc"]), None) == 3
    assert _status(lambda: env.store.declare_length(info.id, 2)) == 400
    assert env.store.declare_length(info.id, 10).length == 10
    assert env.store.declare_length(info.id, 10).length == 10  # the same again is fine
    assert _status(lambda: env.store.declare_length(info.id, 11)) == 400
    assert env.reopen().get(info.id).length == 10
    assert env.store.write(info.id, 3, iter([b"defghij"]), None) == 10
    assert _stored(env, env.store.finish(info.id)) == b"abcdefghij"


def test_declaring_the_length_reached_completes_the_upload(env: Env, data: bytes) -> None:
    # A deferred upload whose last bytes are still spooled when the length arrives.
    size = PART + 4321
    info = env.store.create(_info(None))
    assert env.store.write(info.id, 0, _chunks(data[:size], MiB), None) == size
    assert env.store.declare_length(info.id, size).is_complete
    assert env.store.write(info.id, size, iter([]), 0) == size  # the PATCH that declared it
    assert env.store.get(info.id).is_complete
    assert _sha(_stored(env, env.store.finish(info.id))) == _sha(data[:size])


# -- finishing -------------------------------------------------------------------------


def test_finish_puts_exactly_the_bytes_and_is_idempotent(env: Env, data: bytes) -> None:
    payload = data[: PART * 2 + 11]
    info = env.store.create(_info(len(payload), metadata={"filetype": "video/webm"}))
    assert _status(lambda: env.store.finish(info.id)) == 400  # incomplete
    assert env.store.write(info.id, 0, _chunks(payload, 3 * MiB), None) == len(payload)
    key = env.store.finish(info.id)
    head = env.archive.head(key)
    assert head.size == len(payload) and head.content_type == "video/webm"
    assert _sha(_stored(env, key)) == _sha(payload)
    assert env.store.finish(info.id) == key
    assert env.reopen().finish(info.id) == key
    assert _sha(_stored(env, key)) == _sha(payload)
    got = env.reopen().get(info.id)  # HEAD keeps answering
    assert got.offset == got.length == len(payload)
    assert env.store.write(info.id, len(payload), iter([b""]), 0) == len(payload)
    assert _status(lambda: env.store.write(info.id, len(payload), iter([b"x"]), None)) == 413
    assert env.multipart(info.id) == []


def test_a_finished_upload_outlives_its_incoming_object(env: Env, data: bytes) -> None:
    """The application moves ``incoming/<id>`` to its master key; HEAD, notes, a
    repeated finish and termination must not depend on that object any more."""
    payload = data[: PART + 99]
    info = env.store.create(_info(len(payload)))
    env.store.write(info.id, 0, _chunks(payload, 2 * MiB), None)
    key = env.store.finish(info.id)
    env.archive.delete(key)  # what ArchiveStore.move leaves behind at the source
    for store in (env.store, env.reopen()):
        got = store.get(info.id)
        assert got.offset == got.length == len(payload)
        assert store.finish(info.id) == key
    assert env.store.update(info.id, notes={"state": "ready"}).offset == len(payload)
    assert [u.offset for u in env.store.list_uploads()] == [len(payload)]
    assert not env.archive.exists(key)
    env.store.terminate(info.id)
    assert _status(lambda: env.store.get(info.id)) == 404


def test_zero_length_upload(env: Env) -> None:
    info = env.store.create(_info(0))
    assert env.store.get(info.id).is_complete
    assert env.store.write(info.id, 0, iter([]), 0) == 0
    key = env.store.finish(info.id)
    assert env.archive.head(key).size == 0
    assert _stored(env, key) == b""
    assert env.store.finish(info.id) == key
    assert env.multipart(info.id) == []


def test_partial_uploads_are_never_finished(env: Env) -> None:
    info = env.store.create(_info(3, is_partial=True))
    env.store.write(info.id, 0, iter([b"abc"]), None)
    assert _status(lambda: env.store.finish(info.id)) == 400


# -- concatenation ---------------------------------------------------------------------


def _partial(env: Env, payload: bytes, *, complete: bool = True) -> str:
    info = env.store.create(_info(len(payload), is_partial=True))
    body = payload if complete else payload[:-1]
    env.store.write(info.id, 0, _chunks(body, 2 * MiB), None)
    return info.id


def _final(ids: list[str], **fields: Any) -> UploadInfo:
    return _info(None, is_final=True, partial_ids=tuple(ids), **fields)


def test_concatenate_large_and_small_partials_and_a_repeat(env: Env, data: bytes) -> None:
    a = data[: PART + MiB + 1]  # spans a part boundary of the final
    b = data[-1000:]  # tiny: the part around it must be assembled
    c = data[MiB : MiB + PART]  # exactly one part
    ids = [_partial(env, a), _partial(env, b), _partial(env, a), _partial(env, c)]
    expected = a + b + a + c
    final = env.store.concatenate(_final(ids, metadata={"filetype": "video/mp4"}))
    assert final.is_final and final.partial_ids == tuple(ids)
    assert final.offset == final.length == len(expected)
    got = env.reopen().get(final.id)
    assert got.is_complete and got.partial_ids == tuple(ids) and got.is_final
    key = env.store.finish(final.id)
    assert _sha(_stored(env, key)) == _sha(expected)
    for pid in ids:  # partials stay, complete
        assert env.store.get(pid).is_complete
    env.store.terminate(ids[0])  # the final does not depend on its partials any more
    assert _sha(_stored(env, key)) == _sha(expected)


def test_concatenate_parallel_client_style(env: Env, data: bytes) -> None:
    # tus-js-client parallelUploads: one file cut into N small partials, then one final.
    payload = data[: 3 * 70_001]
    ids = [_partial(env, payload[i : i + 70_001]) for i in range(0, len(payload), 70_001)]
    final = env.store.concatenate(_final(ids))
    assert final.length == len(payload)
    assert _stored(env, env.reopen().finish(final.id)) == payload


def test_concatenate_refusals_record_nothing(env: Env) -> None:
    done = _partial(env, b"abc")
    unfinished = _partial(env, b"defg", complete=False)
    plain = env.store.create(_info(1)).id
    env.store.write(plain, 0, iter([b"x"]), None)
    for ids, status in (
        ([done, unfinished], 400),
        ([done, new_upload_id()], 404),
        ([done, "../../etc"], 404),
        ([plain, done], 400),
    ):
        final = _final(ids)
        assert _status(lambda final=final: env.store.concatenate(final)) == status
        assert _status(lambda final=final: env.store.get(final.id)) == 404
        assert env.multipart(final.id) == []
    assert env.store.get(done).is_complete


def test_concatenate_empty_partials(env: Env) -> None:
    ids = [_partial(env, b""), _partial(env, b"")]
    final = env.store.concatenate(_final(ids))
    assert final.offset == final.length == 0
    assert env.archive.head(env.store.finish(final.id)).size == 0


# -- termination, listing, sweeping ----------------------------------------------------


def test_terminate(env: Env, data: bytes) -> None:
    info = env.store.create(_info(len(data)))
    env.store.write(info.id, 0, _chunks(data[: PART + 5], MiB), None)
    if env.kind == "s3":
        assert len(env.multipart(info.id)) == 1
    env.store.terminate(info.id)
    assert env.multipart(info.id) == []
    assert env.raw(info.id) in (None, ([], []))
    for store in (env.store, env.reopen()):
        assert _status(lambda store=store: store.get(info.id)) == 404
        assert _status(lambda store=store: store.terminate(info.id)) == 404
        assert (
            _status(lambda store=store: store.write(info.id, PART + 5, iter([b"x"]), None)) == 404
        )
    # A finished upload's archive object goes with it.
    done = env.store.create(_info(3))
    env.store.write(done.id, 0, iter([b"abc"]), None)
    key = env.store.finish(done.id)
    env.store.terminate(done.id)
    assert not env.archive.exists(key)
    assert [u.id for u in env.store.list_uploads()] == []


def test_list_uploads(env: Env) -> None:
    assert list(env.store.list_uploads()) == []
    infos = [env.store.create(_info(n, notes={"n": str(n)})) for n in (3, 4, 5)]
    env.store.write(infos[0].id, 0, iter([b"ab"]), None)
    final = env.store.concatenate(_final([_partial(env, b"xyz")]))
    listed = {u.id: u for u in env.reopen().list_uploads()}
    assert set(listed) >= {i.id for i in infos} | {final.id}
    assert listed[infos[0].id].offset == 2
    assert listed[infos[1].id].notes == {"n": "4"}
    assert listed[final.id].is_final
    env.store.terminate(infos[2].id)
    assert infos[2].id not in {u.id for u in env.store.list_uploads()}


def test_purge_orphans(env: Env) -> None:
    live = env.store.create(_info(10))
    env.store.write(live.id, 0, iter([b"abc"]), None)
    env.make_orphan()
    # moto dates every multipart upload in 2010, so "recent" here is anything after 2000.
    assert env.store.purge_orphans(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert env.store.purge_orphans(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert env.store.purge_orphans(datetime.now(UTC) + timedelta(minutes=1)) == 0
    assert env.store.get(live.id).offset == 3  # a recorded upload is never an orphan
    assert env.store.write(live.id, 3, iter([b"defghij"]), None) == 10


# -- store-specific --------------------------------------------------------------------


def test_s3_store_refuses_parts_below_5_mib(s3_endpoint: str) -> None:
    archive = _s3(s3_endpoint).archive
    assert isinstance(archive, S3Archive)
    with pytest.raises(ConfigurationError):
        S3UploadStore(archive, part_size=PART - 1)


def test_s3_parts_are_equal_and_the_spool_holds_the_rest(s3_endpoint: str, data: bytes) -> None:
    env = _s3(s3_endpoint)
    info = env.store.create(_info(len(data)))
    cut = 2 * PART + 10
    env.store.write(info.id, 0, _chunks(data[:cut], 3 * MiB + 1), None)
    parts, spool = env.raw(info.id)
    assert [size for _, size, _ in parts] == [PART, PART]
    assert [size for _, size, _ in spool] == [10]
    env.store.write(info.id, cut, iter([data[cut:]]), None)
    parts, spool = env.raw(info.id)
    assert [size for _, size, _ in parts] == [PART, PART, len(data) - 2 * PART]
    assert spool == []


def test_s3_spool_made_stale_by_a_crash_is_ignored(s3_endpoint: str, data: bytes) -> None:
    """A crash between flushing a part and replacing the spool: the part already holds
    the spooled bytes, so counting the spool too would report bytes twice."""
    env = _s3(s3_endpoint)
    archive = env.archive
    assert isinstance(archive, S3Archive)
    info = env.store.create(_info(len(data)))
    assert env.store.write(info.id, 0, iter([data[:10]]), None) == 10  # spool for part 1
    key = f"incoming/{info.id}"
    (multipart,) = env.multipart(info.id)
    archive.client.upload_part(
        Bucket=archive.bucket, Key=key, UploadId=multipart, PartNumber=1, Body=data[:PART]
    )
    assert [size for _, size, _ in env.raw(info.id)[1]] == [10]  # the spool is still there
    assert env.reopen().get(info.id).offset == PART
    assert env.store.write(info.id, PART, _chunks(data[PART:], 2 * MiB), None) == len(data)
    assert _sha(_stored(env, env.store.finish(info.id))) == _sha(data)


def test_s3_final_parts_are_copied_or_assembled_equal(s3_endpoint: str, data: bytes) -> None:
    env = _s3(s3_endpoint)
    a, b = data[: PART + 3], data[: 2 * PART]
    final = env.store.concatenate(_final([_partial(env, a), _partial(env, b)]))
    parts, spool = env.raw(final.id)
    assert [size for _, size, _ in parts] == [PART, PART, PART, 3]
    assert spool == []


def test_s3_orphan_spools_are_purged(s3_endpoint: str) -> None:
    env = _s3(s3_endpoint)
    archive = env.archive
    assert isinstance(archive, S3Archive)
    live = env.store.create(_info(10))
    env.store.write(live.id, 0, iter([b"abc"]), None)  # its spool is not an orphan
    orphan = f".tus/{new_upload_id()}.part"
    archive.client.put_object(Bucket=archive.bucket, Key=orphan, Body=b"left")
    assert env.store.purge_orphans(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert env.store.purge_orphans(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert not archive.exists(orphan)
    assert env.store.get(live.id).offset == 3


def test_s3_errors_become_domain_errors(s3_endpoint: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    quick = Config(retries={"max_attempts": 1}, connect_timeout=1)
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="auto", config=client_config().merge(quick)
    )
    nowhere = S3Archive(
        bucket="archive",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        client=client,
    )
    with pytest.raises(BackendUnavailable) as caught:
        S3UploadStore(nowhere).get(new_upload_id())
    assert "testing" not in caught.value.message
    no_bucket = S3Archive(
        bucket=f"hv-missing-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    store = S3UploadStore(no_bucket)
    for call in (lambda: store.get(new_upload_id()), lambda: store.create(_info(3))):
        with pytest.raises(BackendUnavailable):
            call()


def test_local_finish_into_an_archive_without_adopt(tmp_path: Path, s3_endpoint: str) -> None:
    """The local store also finishes into S3 (streamed through ``put``)."""
    s3 = _s3(s3_endpoint)
    store = LocalUploadStore(tmp_path / "uploads", s3.archive)
    info = store.create(_info(5))
    store.write(info.id, 0, iter([b"hello"]), None)
    key = store.finish(info.id)
    assert _stored(s3, key) == b"hello"
    assert not store.data_path(info.id).exists()
    assert store.finish(info.id) == key
    store.terminate(info.id)
    assert not s3.archive.exists(key)


def test_local_store_without_archive_cannot_finish(tmp_path: Path) -> None:
    store = LocalUploadStore(tmp_path / "uploads")
    info = store.create(_info(1))
    store.write(info.id, 0, iter([b"x"]), None)
    with pytest.raises(ConfigurationError):
        store.finish(info.id)


def test_local_finish_drops_an_unrecorded_tail(tmp_path: Path) -> None:
    env = _local(tmp_path)
    store = env.store
    assert isinstance(store, LocalUploadStore)
    info = store.create(_info(3))
    store.write(info.id, 0, iter([b"abc"]), None)
    with store.data_path(info.id).open("ab") as fh:  # a crash after writing, before recording
        fh.write(b"garbage")
    assert _stored(env, store.finish(info.id)) == b"abc"
