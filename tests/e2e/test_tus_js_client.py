"""tus-js-client (the real library, under Node) against our tus server on a real socket.

Each scenario runs ``tests/node/tus_scenario.mjs`` in a Node process and checks what the
client did (its requests, from its own hooks) and what the server kept: every completed
upload's stored bytes hash to the source's sha256. A connection cut mid-PATCH goes
through :class:`CuttingProxy`, a loopback TCP proxy that resets the connection after a
set number of bytes, so the client meets a real network failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import IngestServer, NodeTus
from tests.services import free_port, wait_for_port

MiB = 1024 * 1024
pytestmark = pytest.mark.slow


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_file(folder: Path, size: int, name: str = "source.bin") -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def methods(result: dict[str, Any]) -> list[str]:
    return [str(r["method"]) for r in result["requests"]]


def assert_stored(
    server: IngestServer, result: dict[str, Any], source: Path, *, state: str = "failed"
) -> dict[str, Any]:
    """The upload succeeded, got its outcome (random bytes: ``failed``, NOT_A_VIDEO; a real
    clip: ``ready``), and the bytes the server archived are the source's. Returns the
    upload's status."""
    assert result["ok"], result["error"]
    outcome = server.outcome(result["uploadUrl"])
    assert outcome["state"] == state, outcome
    if state == "failed":
        assert outcome["error"]["code"] == "NOT_A_VIDEO", outcome
        assert outcome["videoId"] is None
    stored = server.stored(result["uploadUrl"])
    assert len(stored) == source.stat().st_size
    assert sha256(stored) == sha256(source.read_bytes())
    return outcome


def test_creation_then_patches(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 3 * MiB + 17)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        chunkSize=MiB,
        metadata={"filename": "source.bin", "filetype": "video/mp4", "title": "Été, ça va"},
    )
    assert_stored(ingest_server, result, source)
    assert methods(result) == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"]
    post = result["requests"][0]
    assert post["headers"]["Upload-Length"] == str(3 * MiB + 17)
    assert post["status"] == 201
    offsets = [r["responseHeaders"]["Upload-Offset"] for r in result["requests"][1:]]
    assert offsets == [str(MiB), str(2 * MiB), str(3 * MiB), str(3 * MiB + 17)]
    info = ingest_server.store.get(IngestServer.upload_id(result["uploadUrl"]))
    assert info.metadata["title"] == "Été, ça va"  # UTF-8 through base64 metadata
    assert info.metadata["filetype"] == "video/mp4"


def test_creation_with_upload_sends_the_data_in_the_post(
    node_tus: NodeTus, ingest_server: IngestServer, sample_video: Path
) -> None:
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=sample_video,
        headers=ingest_server.headers,
        uploadDataDuringCreation=True,
    )
    outcome = assert_stored(ingest_server, result, sample_video, state="ready")
    assert outcome["error"] is None and outcome["videoId"]
    assert methods(result) == ["POST"]  # the whole (small) file went with the creation
    post = result["requests"][0]
    assert post["headers"]["Content-Type"] == "application/offset+octet-stream"
    assert post["responseHeaders"]["Upload-Offset"] == str(sample_video.stat().st_size)


def test_creation_with_upload_then_patches(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 2 * MiB + 5)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        uploadDataDuringCreation=True,
        chunkSize=MiB,
    )
    assert_stored(ingest_server, result, source)
    assert methods(result) == ["POST", "PATCH", "PATCH"]
    assert result["requests"][0]["responseHeaders"]["Upload-Offset"] == str(MiB)


def test_deferred_length_from_a_stream(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 2 * MiB + 100)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        uploadLengthDeferred=True,
        chunkSize=MiB,
    )
    assert_stored(ingest_server, result, source)
    post, *patches = result["requests"]
    assert post["headers"].get("Upload-Defer-Length") == "1"
    assert "Upload-Length" not in post["headers"]
    # The length is declared once the stream has ended, on a PATCH.
    declared = [p["headers"]["Upload-Length"] for p in patches if "Upload-Length" in p["headers"]]
    assert declared == [str(2 * MiB + 100)]
    info = ingest_server.store.get(IngestServer.upload_id(result["uploadUrl"]))
    assert info.length == 2 * MiB + 100


def test_parallel_uploads_are_concatenated(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 3 * MiB + 3)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        parallelUploads=3,
    )
    assert_stored(ingest_server, result, source)
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    concat = [p["headers"].get("Upload-Concat", "") for p in posts]
    assert concat.count("partial") == 3
    finals = [c.removeprefix("final;").split() for c in concat if c.startswith("final;")]
    assert len(finals) == 1
    # The final upload joins exactly the three partials the client created, and it is the
    # one whose bytes became the archived file (checked above).
    partials = {
        IngestServer.upload_id(p["responseHeaders"]["Location"])
        for p in posts
        if p["headers"].get("Upload-Concat") == "partial"
    }
    assert {IngestServer.upload_id(url) for url in finals[0]} == partials
    final_id = IngestServer.upload_id(result["uploadUrl"])
    assert ingest_server.upload_ids() == sorted({*partials, final_id})
    assert all(ingest_server.store.get(pid).is_partial for pid in partials)


def test_method_override_sends_patches_as_posts(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 2 * MiB + 1)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        chunkSize=MiB,
        overridePatchMethod=True,
    )
    assert_stored(ingest_server, result, source)
    assert methods(result) == ["POST", "POST", "POST", "POST"]
    assert [r["headers"].get("X-HTTP-Method-Override") for r in result["requests"]] == [
        None,
        "PATCH",
        "PATCH",
        "PATCH",
    ]
    # The server saw no real PATCH: the override did the work.
    seen = [(r.method, r.override) for r in ingest_server.requests]
    assert ("PATCH", None) not in seen
    assert seen.count(("POST", "PATCH")) == 3


@pytest.mark.parametrize("how", ["uploadUrl", "urlStorage"])
def test_resume_after_the_client_stopped_mid_upload(
    how: str, node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    """A first client gives up part-way; a second one resumes the same upload, either
    from its URL or from the fingerprint a FileUrlStorage kept. (Chunks make the stop
    point deterministic; a cut in the middle of a PATCH is the proxy test below.)"""
    size = 6 * MiB + 7
    source = random_file(tmp_path, size)
    common: dict[str, Any] = {
        "file": source,
        "endpoint": ingest_server.endpoint,
        "headers": ingest_server.headers,
        "chunkSize": MiB,
    }
    if how == "urlStorage":
        common["urlStorage"] = tmp_path / "tus-urls.json"
    first = node_tus.run(**common, abortAfterBytes=2 * MiB + 1)
    assert first["aborted"] and not first["ok"], first
    url = first["uploadUrl"]
    assert url
    second_args = dict(common)
    if how == "uploadUrl":
        second_args["uploadUrl"] = url
    second = node_tus.run(**second_args)
    assert_stored(ingest_server, second, source)
    assert second["uploadUrl"] == url
    if how == "urlStorage":
        assert second["resumedFrom"] == url
    # No second upload was created: the client asked for the offset and went on.
    assert "POST" not in methods(second)
    head = second["requests"][0]
    assert head["method"] == "HEAD"
    assert 2 * MiB <= int(head["responseHeaders"]["Upload-Offset"]) < size
    assert ingest_server.upload_ids() == [IngestServer.upload_id(url)]


def test_resume_after_the_connection_is_cut_mid_patch(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    size = 5 * MiB + 11
    source = random_file(tmp_path, size)
    upstream = int(ingest_server.base.rsplit(":", 1)[1])
    with CuttingProxy(upstream, cut_after=2 * MiB) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}/files"
        result = node_tus.run(
            endpoint=endpoint,
            file=source,
            headers=ingest_server.headers,
            retryDelays=[0, 200, 500, 1000, 2000, 3000],
        )
    assert proxy.cuts == 1
    assert_stored(ingest_server, result, source)
    calls = methods(result)
    assert calls[:2] == ["POST", "PATCH"]
    assert result["requests"][1]["status"] is None  # the cut request got no answer
    assert "HEAD" in calls
    # The PATCH that completed the upload went on from the bytes the server kept at the
    # cut. (A HEAD right after the cut may still say 0 while the server records them;
    # the client then meets 409 and asks again: the spec's way, and tus-js-client's.)
    last = result["requests"][-1]
    assert (last["method"], last["status"]) == ("PATCH", 204)
    assert 0 < int(last["headers"]["Upload-Offset"]) < size
    assert calls.count("POST") == 1
    assert ingest_server.upload_ids() == [IngestServer.upload_id(result["uploadUrl"])]


def test_termination_after_success(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, MiB + 9)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        terminate=True,
    )
    assert result["ok"] and result["terminated"], result
    # While the finished upload is being turned into a video a DELETE is refused with 423
    # (tus-js-client retries it); once the outcome is recorded it goes through.
    seen = methods(result)
    assert seen[:2] == ["POST", "PATCH"] and set(seen[2:]) == {"DELETE"}, seen
    assert result["requests"][1]["responseHeaders"]["Upload-Offset"] == str(MiB + 9)
    statuses = [r["status"] for r in result["requests"][2:]]
    assert statuses[-1] == 204 and set(statuses[:-1]) <= {423}, statuses
    _assert_gone(ingest_server, result["uploadUrl"])


def test_termination_mid_upload(
    node_tus: NodeTus, ingest_server: IngestServer, tmp_path: Path
) -> None:
    source = random_file(tmp_path, 6 * MiB)
    result = node_tus.run(
        endpoint=ingest_server.endpoint,
        file=source,
        headers=ingest_server.headers,
        chunkSize=MiB,
        abortAfterBytes=MiB + 1,
        terminate=True,
    )
    assert result["aborted"] and result["terminated"], result
    deletes = [r for r in result["requests"] if r["method"] == "DELETE"]
    assert deletes and deletes[-1]["status"] == 204  # possibly after 423s while writing
    _assert_gone(ingest_server, result["uploadUrl"])


def _assert_gone(server: IngestServer, upload_url: str) -> None:
    assert not server.exists(upload_url)
    head = httpx.head(upload_url, headers={"Tus-Resumable": "1.0.0", **server.headers})
    assert head.status_code in (404, 410)
    assert server.upload_ids() == []


# --- a loopback proxy that cuts one connection ------------------------------------------


class CuttingProxy:
    """Forwards TCP to ``127.0.0.1:upstream``; the first connection whose client sends
    more than ``cut_after`` bytes is reset (RST both ways) once exactly that many bytes
    went through. Later connections pass untouched.

    Before the reset it waits briefly so the server has read what was forwarded: a reset
    discards data still in the server's socket buffer, and the test wants to see the
    server keep every byte it received. One thread per connection moves both directions
    (``select``), so a socket is never closed under another thread's blocking ``recv``.
    """

    SETTLE_SECONDS = 1.0

    def __init__(self, upstream: int, *, cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.port = free_port()
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> CuttingProxy:
        self._spawn(self._accept_loop)
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._connection, client)

    def _claim_cut(self) -> bool:
        """True for the first connection to pass the mark, false for every later one."""
        with self._lock:
            if self.cuts:
                return False
            self.cuts = 1
            return True

    def _connection(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream))
        sent = 0
        may_cut = True  # asked once per connection, when it first passes the mark
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([client, server], [], [], 0.2)
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    if may_cut and sent + len(data) > self.cut_after:
                        may_cut = False
                        if self._claim_cut():
                            server.sendall(data[: self.cut_after - sent])
                            time.sleep(self.SETTLE_SECONDS)
                            _reset(client)
                            _reset(server)
                            return
                    server.sendall(data)
                    sent += len(data)
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            server.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, not an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
