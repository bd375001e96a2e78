"""Benchmark tus ingest: our server against @tus/server, dd, and boto3 on the same S3 API.

    .venv/bin/python bench/ingest.py [--sizes 100M,1G] [--rounds 3] [--only local|s3]
        [--chunks inf,50MiB] [--work-dir DIR] [--no-write] [--profile DIR]

One file of random bytes per size is written once into a temporary folder (on the disk
the servers write to), then uploaded, each round in alternating order:

local
    * ``@tus/server`` 2.x with ``@tus/file-store`` (``bench/tus_node_server.mjs``),
    * ``hybridvideo serve`` (the real server as a subprocess, local archive),
    * ``dd if=FILE of=... bs=1M conv=fdatasync`` to the same disk: the ceiling.
s3 (moto's server on loopback as the S3 API)
    * ``hybridvideo serve`` with the S3 archive (tus parts go straight into the bucket),
    * boto3 ``upload_file`` of the same file, default ``TransferConfig`` (8 MiB parts,
      10 threads), and with 8 MiB parts sent one at a time as our store sends them.

Both tus servers get the same client, tus-js-client under Node (``bench/tus_upload.mjs``),
with the same settings, once per ``--chunks`` value (``inf`` = one PATCH). The time is what
the client sees, creation POST to the last 204. Before each run the page cache is synced
(``sync``), so no run pays for the previous one's writeback; right after each run
``sync`` is timed again: "+sync" adds that time, which is what a server that does not
fsync (``@tus/server``'s FileStore) still owes the disk. Ours fsyncs before it answers
and hashes (sha256) every byte on the way. The CPU seconds of every process involved
(server, client, moto) are recorded too: steadier than wall time on a shared machine.

MB/s are decimal (1 MB = 10^6 bytes). Results replace the sections "Ingest (tus), local
disk" and "Ingest (tus), S3 archive" of ``bench/RESULTS.md`` (each only when that part
ran; ``--no-write`` leaves the file alone; "Ingest (tus): notes" is written by hand).
``--profile DIR`` then records one
upload of the largest size into our local server with py-spy (``pip install py-spy``)
and prints where its busy threads spent their samples (the upload and the ingest job
after it; raw stacks in DIR for flame graphs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("RESULTS.md")
#: One section per part, each rewritten only by a run of that part; "## Ingest (tus):
#: notes" is written by hand and never touched.
SECTIONS = {"local": "## Ingest (tus), local disk", "s3": "## Ingest (tus), S3 archive"}
UPLOAD_JS = Path(__file__).with_name("tus_upload.mjs")
NODE_SERVER_JS = Path(__file__).with_name("tus_node_server.mjs")
WEB_MODULES = ROOT / "web" / "node_modules"
PYTHON = ROOT / ".venv" / "bin" / "python"
MiB = 1024 * 1024
#: Our S3 store's part size (``HYBRIDVIDEO_S3_PART_SIZE``'s default); boto3's too.
PART_SIZE = 8 * MiB
#: ``--src``: a copy of ``src/`` our server runs from instead of the work tree.
OUR_SRC: Path | None = None
_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- figures -----------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``100M``/``100MB`` = 10^8 bytes, ``1G`` = 10^9, ``50MiB`` = 50 x 2^20."""
    value = text.strip().upper()
    digits = value.rstrip("KMGIB")
    unit = value[len(digits) :]
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 100M, 1G, 50MiB)")
    return int(digits) * _UNITS[unit]


def parse_chunk(text: str) -> int | None:
    """A tus-js-client ``chunkSize``: ``inf`` (one PATCH) is None."""
    return None if text.strip().lower() in ("inf", "infinity") else parse_size(text)


def size_label(n: int) -> str:
    """``100 MB``, ``1 GB``, ``50 MiB``: whichever unit divides the size exactly."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def chunk_label(chunk: int | None) -> str:
    return "Infinity" if chunk is None else size_label(chunk)


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Decimal megabytes per second (1 MB = 10^6 bytes)."""
    return nbytes / seconds / 1e6


def rate_cell(rates: Sequence[float]) -> str:
    """The median, and the spread when there is more than one round."""
    if not rates:
        return "-"
    median = statistics.median(rates)
    if len(rates) == 1:
        return f"{median:,.0f}"
    return f"{median:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


def ratio_cell(ours: Sequence[float], theirs: Sequence[float]) -> str:
    """Median over median, as ``1.23x`` (above 1: we are faster)."""
    if not ours or not theirs:
        return "-"
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}x"


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def process(
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[int]:
    """Run ``argv`` for the duration of the block; its pid. Stopped by pid (with ``stop``;
    py-spy writes its profile on SIGINT), never by name."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            yield proc.pid
        finally:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode not in (0, -stop, 128 + stop):
        say(f"note: {argv[0]} exited {proc.returncode}; its log:\n{log.read_text()[-2000:]}")


def timed_sync() -> float:
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def tus_upload(
    file: Path, endpoint: str, chunk: int | None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One tus-js-client upload (bench/tus_upload.mjs); its JSON result, or an error."""
    args = {"file": str(file), "endpoint": endpoint, "chunkSize": chunk, "headers": headers or {}}
    done = subprocess.run(
        ["node", str(UPLOAD_JS), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"tus_upload.mjs: {done.stdout[-500:]} {done.stderr[-1500:]}") from None
    if not result.get("ok"):
        raise RuntimeError(f"upload to {endpoint} failed: {result.get('error')}")
    return result


# -- the contestants ---------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used during a span by named processes and by the client: this
    process's children (node, dd) or, with ``client_is_self``, this process (boto3).
    CPU time is far steadier than wall time on a shared machine."""

    def __init__(self, pids: dict[str, int], client_is_self: bool) -> None:
        self.pids = pids
        self.client_is_self = client_is_self
        self.used: dict[str, float] = {}

    def _client(self) -> float:
        t = os.times()
        if self.client_is_self:
            return t.user + t.system
        return t.children_user + t.children_system

    def __enter__(self) -> CpuMeter:
        self._start = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        self._start["client"] = self._client()
        return self

    def __exit__(self, *_exc: object) -> None:
        now = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        now["client"] = self._client()
        self.used = {name: now[name] - self._start[name] for name in now}


@dataclass
class Run:
    seconds: float  # as the client sees it
    synced: float  # the sync() right after
    cpu: dict[str, float] = field(default_factory=dict)  # "server", "client", "moto"
    extra: dict[str, float] = field(default_factory=dict)


class Contestant:
    """Something that stores a file; ``run`` returns its timing and cleans up after itself."""

    name: str
    uses_chunks = True
    client_is_self = False

    def __init__(self) -> None:
        #: Processes whose CPU is measured during each run: "server", "moto".
        self.pids: dict[str, int] = {}

    def meter(self) -> CpuMeter:
        return CpuMeter(self.pids, self.client_is_self)

    def run(self, file: Path, chunk: int | None) -> Run:
        raise NotImplementedError


class NodeTus(Contestant):
    name = "@tus/server"

    def __init__(self, port: int, directory: Path) -> None:
        super().__init__()
        self.endpoint = f"http://127.0.0.1:{port}/files"
        self.directory = directory

    def run(self, file: Path, chunk: int | None) -> Run:
        with self.meter() as cpu:
            result = tus_upload(file, self.endpoint, chunk)
        synced = timed_sync()
        stored = self.directory / result["uploadUrl"].rsplit("/", 1)[1]
        if stored.stat().st_size != file.stat().st_size:
            raise RuntimeError(f"@tus/server stored {stored.stat().st_size} bytes")
        for entry in self.directory.iterdir():
            entry.unlink()
        return Run(result["seconds"], synced, cpu.used)


class OurTus(Contestant):
    """``hybridvideo serve``: after each upload, wait for the ingest job's verdict (a random
    file is ``failed``: not a video), untimed, then DELETE it to free the disk."""

    def __init__(self, port: int, token: str, name: str = "hybridvideo") -> None:
        super().__init__()
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}

    def _call(self, method: str, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, method=method)
        for key, value in {**self.headers, "Tus-Resumable": "1.0.0"}.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def run(self, file: Path, chunk: int | None) -> Run:
        with self.meter() as cpu:
            result = tus_upload(file, f"{self.base}/files/", chunk, self.headers)
        done = time.perf_counter()
        synced = timed_sync()
        upload_id = result["uploadUrl"].rsplit("/", 1)[1]
        outcome = self._wait_outcome(upload_id, file.stat().st_size) - done
        status, _ = self._call("DELETE", f"/files/{upload_id}")
        if status != 204:
            raise RuntimeError(f"DELETE {upload_id}: {status}")
        return Run(result["seconds"], synced, cpu.used, {"outcome": outcome})

    def _wait_outcome(self, upload_id: str, size: int) -> float:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status, body = self._call("GET", f"/api/v1/uploads/{upload_id}")
            if status == 404:  # S3 store on moto: mid-completion, the parts are gone and
                time.sleep(0.05)  # the object not there yet (see the notes in RESULTS.md)
                continue
            data = json.loads(body) if status == 200 else {}
            if data.get("offset") != size:
                raise RuntimeError(f"upload {upload_id}: {status} {body[:300]!r}")
            if data.get("state") not in ("receiving", "processing"):
                return time.perf_counter()
            time.sleep(0.05)
        raise RuntimeError(f"upload {upload_id} still processing after 300 s")


class Dd(Contestant):
    name = "dd"
    uses_chunks = False

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.target = directory / "dd.out"

    def run(self, file: Path, chunk: int | None) -> Run:
        argv = ["dd", f"if={file}", f"of={self.target}", "bs=1M", "conv=fdatasync", "status=none"]
        with self.meter() as cpu:
            start = time.perf_counter()
            subprocess.run(argv, check=True)
            seconds = time.perf_counter() - start
        synced = timed_sync()
        self.target.unlink()
        return Run(seconds, synced, cpu.used)


class Boto3Upload(Contestant):
    uses_chunks = False
    client_is_self = True

    def __init__(self, endpoint: str, bucket: str, name: str, concurrency: int | None) -> None:
        from boto3.s3.transfer import TransferConfig

        super().__init__()
        self.name = name
        self.client = s3_client(endpoint)
        self.bucket = bucket
        self.config = (
            TransferConfig()
            if concurrency is None
            else TransferConfig(
                multipart_threshold=PART_SIZE,
                multipart_chunksize=PART_SIZE,
                max_concurrency=concurrency,
                use_threads=concurrency > 1,
            )
        )

    def run(self, file: Path, chunk: int | None) -> Run:
        key = f"bench/{secrets.token_hex(8)}"
        with self.meter() as cpu:
            start = time.perf_counter()
            self.client.upload_file(str(file), self.bucket, key, Config=self.config)
            seconds = time.perf_counter() - start
        synced = timed_sync()
        size = self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        if size != file.stat().st_size:
            raise RuntimeError(f"boto3 stored {size} bytes")
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return Run(seconds, synced, cpu.used)


def s3_client(endpoint: str) -> Any:
    """A client configured exactly as our S3 archive's (same botocore settings)."""
    import boto3

    from hybridvideo.archive.s3 import client_config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench-secret",
        config=client_config(),
    )


def empty_bucket(endpoint: str, bucket: str) -> None:
    client = s3_client(endpoint)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def our_env(data_dir: Path, token: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYBRIDVIDEO_", "CLOUDFLARE"))}
    env.update(
        HYBRIDVIDEO_DATA_DIR=str(data_dir),
        HYBRIDVIDEO_ADMIN_TOKEN=token,
        HYBRIDVIDEO_ENGINE="false",
        HYBRIDVIDEO_STREAM_API_URL="http://127.0.0.1:9/client/v4",
        CLOUDFLARE_ACCOUNT_ID=secrets.token_hex(16),
        CLOUDFLARE_STREAM_TOKEN=secrets.token_urlsafe(30)[:40],
        HYBRIDVIDEO_LOG_LEVEL="WARNING",
        HYBRIDVIDEO_UPLOAD_MAX_SIZE=str(64 * 10**9),
    )
    env.update(extra)
    if OUR_SRC is not None:
        env["PYTHONPATH"] = str(OUR_SRC)
    return env


@contextlib.contextmanager
def our_server(work: Path, name: str, **extra: str) -> Iterator[OurTus]:
    token = secrets.token_hex(20)
    port = free_port()
    data = work / f"{name}-data"
    argv = [str(PYTHON), "-m", "hybridvideo.cli", "serve", "--port", str(port)]
    with process(argv, work / f"{name}.log", our_env(data, token, **extra)) as pid:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        ours = OurTus(port, token, name)
        ours.pids["server"] = pid
        yield ours


@contextlib.contextmanager
def node_server(work: Path) -> Iterator[NodeTus]:
    port = free_port()
    directory = work / "tus-node-files"
    argv = ["node", str(NODE_SERVER_JS), str(port), str(directory)]
    with process(argv, work / "tus-node.log") as pid:
        wait_http(f"http://127.0.0.1:{port}/files")
        node = NodeTus(port, directory)
        node.pids["server"] = pid
        yield node


@contextlib.contextmanager
def moto_server(work: Path, bucket: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with process(argv, work / "moto.log") as pid:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint + "/moto-api/")
        s3_client(endpoint).create_bucket(Bucket=bucket)
        yield endpoint, pid


# -- running -----------------------------------------------------------------------------

#: (size, contestant name, chunk) -> runs
Results = dict[tuple[int, str, int | None], list[Run]]


def make_file(work: Path, size: int) -> Path:
    path = work / f"source-{size}.bin"
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MiB))
            fh.write(block)
            left -= len(block)
    os.sync()
    return path


def run_rounds(
    contestants: Sequence[Contestant],
    sizes: Sequence[int],
    chunks: Sequence[int | None],
    rounds: int,
    work: Path,
    results: Results,
) -> None:
    cases = [(c, ch) for c in contestants for ch in (chunks if c.uses_chunks else [None])]
    warm = work / "warm-up.bin"
    warm.write_bytes(os.urandom(10 * MiB))
    for contestant, chunk in cases:  # first requests import and allocate: not timed
        contestant.run(warm, chunk)
    for size in sizes:
        source = make_file(work, size)
        try:
            for round_no in range(rounds):
                order = cases if round_no % 2 == 0 else cases[::-1]
                for contestant, chunk in order:
                    os.sync()
                    run = contestant.run(source, chunk)
                    results.setdefault((size, contestant.name, chunk), []).append(run)
                    rate = mb_per_s(size, run.seconds)
                    extra = " ".join(f"{k}={v:.2f}s" for k, v in run.extra.items())
                    extra += " CPU " + " ".join(f"{k}={v:.2f}s" for k, v in run.cpu.items())
                    say(
                        f"{size_label(size):>7} round {round_no + 1} {contestant.name:>20} "
                        f"chunk {chunk_label(chunk):>8}: {run.seconds:7.2f} s {rate:8.1f} MB/s"
                        f" (+sync {run.synced:.2f} s) {extra}"
                    )
        finally:
            source.unlink()


def run_local(
    work: Path, sizes: Sequence[int], chunks: Sequence[int | None], rounds: int, results: Results
) -> None:
    with node_server(work) as node, our_server(work, "hybridvideo") as ours:
        run_rounds([node, ours, Dd(work)], sizes, chunks, rounds, work, results)


def run_s3(
    work: Path, sizes: Sequence[int], chunks: Sequence[int | None], rounds: int, results: Results
) -> None:
    bucket = "bench-ingest"
    with moto_server(work, bucket) as (endpoint, moto_pid):
        extra = {
            "HYBRIDVIDEO_ARCHIVE_BACKEND": "s3",
            "HYBRIDVIDEO_S3_ENDPOINT_URL": endpoint,
            "HYBRIDVIDEO_S3_BUCKET": bucket,
            "HYBRIDVIDEO_S3_REGION": "us-east-1",
            "HYBRIDVIDEO_S3_ACCESS_KEY_ID": "bench",
            "HYBRIDVIDEO_S3_SECRET_ACCESS_KEY": "bench-secret",
            "HYBRIDVIDEO_SECRET_KEY": secrets.token_hex(20),
        }
        with our_server(work, "hybridvideo-s3", **extra) as ours:
            contestants: list[Contestant] = [
                ours,
                Boto3Upload(endpoint, bucket, "boto3 default", None),
                Boto3Upload(endpoint, bucket, "boto3 8 MiB x1", 1),
            ]
            for contestant in contestants:
                contestant.pids["moto"] = moto_pid
            try:
                run_rounds(contestants, sizes, chunks, rounds, work, results)
            finally:
                empty_bucket(endpoint, bucket)


# -- profiling ---------------------------------------------------------------------------


def summarize_profile(raw: Path, top: int = 25) -> list[str]:
    """py-spy's collapsed stacks (``--format raw``) as per-thread totals and the functions
    holding the most samples, by self time and by inclusive time."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples", "", "by thread:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    lines += ["", "self (the frame on top of the stack):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return lines


def run_profile(work: Path, size: int, chunk: int | None, out: Path) -> None:
    spy = ROOT / ".venv" / "bin" / "py-spy"
    if not spy.exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    source = make_file(work, size)
    try:
        with our_server(work, "hybridvideo-profiled") as ours:
            pid = ours.pids["server"]
            ours.run(source, chunk)  # warm up
            os.sync()
            raw = out / "py-spy-raw.txt"
            argv = [str(spy), "record", "--pid", str(pid), "--rate", "500", "--threads"]
            argv += ["--format", "raw", "--output", str(raw), "--nonblocking"]
            with process(argv, work / "py-spy.log", stop=signal.SIGINT):
                time.sleep(1.0)  # py-spy attached
                run = ours.run(source, chunk)  # the upload, then the ingest job after it
            say(
                f"profiled upload: {mb_per_s(size, run.seconds):.1f} MB/s; samples of busy threads:"
            )
            say("\n".join(summarize_profile(raw)))
    finally:
        source.unlink()


# -- reporting ---------------------------------------------------------------------------


def machine_lines(work: Path) -> list[str]:
    model = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    usage = shutil.disk_usage(work)
    fs = subprocess.run(
        ["df", "--output=source,fstype", str(work)], capture_output=True, text=True
    ).stdout.split()[-2:]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    tree = commit.stdout.strip() + (" + uncommitted changes in src/" if changed.stdout else "")
    if OUR_SRC is not None:
        tree += f"; our server ran from {OUR_SRC} (--src)"

    def npm_version(name: str) -> str:
        package = json.loads((WEB_MODULES / name / "package.json").read_text())
        return str(package["version"])

    def py_version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    return [
        f"Machine: {os.cpu_count()} CPUs ({model}), {ram:.0f} GiB RAM, kernel "
        f"{platform.release()}; work dir on {' '.join(fs)} with {usage.free / 1e9:.0f} GB free "
        f"of {usage.total / 1e9:.0f} GB (all servers and dd write to that disk).",
        f"Code: {tree}. Software: Python {platform.python_version()}, "
        f"uvicorn {py_version('uvicorn')}, starlette {py_version('starlette')}, Node {node}, "
        f"tus-js-client {npm_version('tus-js-client')}, @tus/server {npm_version('@tus/server')}, "
        f"@tus/file-store {npm_version('@tus/file-store')}, boto3 {py_version('boto3')}, "
        f"moto {py_version('moto')}.",
    ]


def report(
    results: Results,
    sizes: Sequence[int],
    chunks: Sequence[int | None],
    rounds: int,
    part: str,
    work: Path,
    load: tuple[float, float] = (0.0, 0.0),
) -> list[str]:
    """The section for ``part`` (``local`` or ``s3``): machine, method, table, every run."""

    def rates(size: int, name: str, chunk: int | None, durable: bool = False) -> list[float]:
        runs = results.get((size, name, chunk), [])
        return [mb_per_s(size, r.seconds + (r.synced if durable else 0.0)) for r in runs]

    def extra(size: int, name: str, chunk: int | None, key: str) -> str:
        values = [r.extra[key] for r in results.get((size, name, chunk), []) if key in r.extra]
        return f"{statistics.median(values):.2f} s" if values else "-"

    lines = [
        *machine_lines(work),
        "",
        f"{rounds} round(s) per figure, order reversed every other round; figures are the "
        "median MB/s (1 MB = 10^6 bytes) with the range over rounds in brackets. "
        "Client: tus-js-client under Node (`bench/tus_upload.mjs`), the same settings for "
        "every tus server; time = creation POST to the last 204. Load average (1 min) "
        f"before/after: {load[0]:.2f}/{load[1]:.2f}.",
        "",
    ]
    if part == "local":
        names = ("@tus/server", "hybridvideo", "dd")
        lines += [
            '"+sync" adds the `sync` run right after the upload: the writeback of what was '
            "still only in the page cache (ours and dd have fsynced before they answer; "
            "@tus/server's FileStore never fsyncs). Ours also hashes every byte (sha256).",
            "",
            "| size | tus chunkSize | @tus/server | hybridvideo | dd conv=fdatasync "
            "| ours / @tus/server | ours / dd | @tus/server +sync | ours +sync "
            "| ours / @tus +sync |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for size in sizes:
            dd = rates(size, "dd", None)
            for chunk in chunks:
                node, ours = rates(size, "@tus/server", chunk), rates(size, "hybridvideo", chunk)
                node_d = rates(size, "@tus/server", chunk, durable=True)
                ours_d = rates(size, "hybridvideo", chunk, durable=True)
                lines.append(
                    f"| {size_label(size)} | {chunk_label(chunk)} | {rate_cell(node)} "
                    f"| {rate_cell(ours)} | {rate_cell(dd)} | {ratio_cell(ours, node)} "
                    f"| {ratio_cell(ours, dd)} | {rate_cell(node_d)} | {rate_cell(ours_d)} "
                    f"| {ratio_cell(ours_d, node_d)} |"
                )
    else:
        names = ("hybridvideo-s3", "boto3 default", "boto3 8 MiB x1")
        lines += [
            "moto's S3 server (`moto_server`, its own process) on loopback. Ours: tus parts "
            "of 8 MiB go to the bucket one at a time as they fill while the body streams "
            "in; the multipart completion runs after the last 204 in the `ingest.finish` "
            'job ("job after 204": last 204 until the upload\'s outcome is recorded, i.e. '
            "completion and probe). boto3's time includes its completion. boto3's default "
            'part size is already 8 MiB, ours too; "x 1" sends them one at a time as '
            "our store does.",
            "",
            "| size | tus chunkSize | hybridvideo (S3) | boto3 upload_file default "
            "(8 MiB x 10 threads) | boto3 8 MiB x 1 thread | ours / boto3 default "
            "| ours / boto3 x 1 | job after 204 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for size in sizes:
            b3 = rates(size, "boto3 default", None)
            b1 = rates(size, "boto3 8 MiB x1", None)
            for chunk in chunks:
                ours = rates(size, "hybridvideo-s3", chunk)
                lines.append(
                    f"| {size_label(size)} | {chunk_label(chunk)} | {rate_cell(ours)} "
                    f"| {rate_cell(b3)} | {rate_cell(b1)} | {ratio_cell(ours, b3)} "
                    f"| {ratio_cell(ours, b1)} "
                    f"| {extra(size, 'hybridvideo-s3', chunk, 'outcome')} |"
                )
    cpu_columns = ("server", "client") + (("moto",) if part == "s3" else ())
    headers = {
        "server": "server CPU (our server / @tus/server)",
        "client": "client CPU (tus-js-client / dd / boto3)",
        "moto": "moto CPU",
    }
    lines += [
        "",
        "CPU seconds per GB during the upload (median; user + system of each process, "
        "all threads):",
        "",
        "| size | run | " + " | ".join(headers[c] for c in cpu_columns) + " |",
        "|---|---|" + "---|" * len(cpu_columns),
    ]
    for (size, name, chunk), runs in results.items():
        if name not in names:
            continue
        cells = []
        for column in cpu_columns:
            values = [r.cpu[column] / (size / 1e9) for r in runs if column in r.cpu]
            cells.append(f"{statistics.median(values):.2f}" if values else "-")
        lines.append(
            f"| {size_label(size)} | {run_label(name, chunk)} | " + " | ".join(cells) + " |"
        )
    lines += ["", "Every run (MB/s, in the order run):", ""]
    for (size, name, chunk), runs in results.items():
        if name not in names:
            continue
        each = ", ".join(f"{mb_per_s(size, r.seconds):.0f}" for r in runs)
        lines.append(f"- {size_label(size)} {run_label(name, chunk)}: {each}")
    return lines


def run_label(name: str, chunk: int | None) -> str:
    if name.startswith("hybridvideo") or name == "@tus/server":
        return f"{name}, chunkSize {chunk_label(chunk)}"
    return name


def write_section(heading: str, lines: list[str], command: str) -> None:
    """Replace (or add) one section of RESULTS.md, leaving every other section alone.

    Shared by the other benchmarks (migrate, tokens, startup) through ``from ingest import``.
    """
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    body = "\n".join([heading, "", f"Command: `{command}`", "", *lines, ""])
    start = text.find(heading + "\n")  # the exact heading: never the hand-written notes
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + body + ("\n" + text[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(text)


def print_table(lines: list[str]) -> None:
    """The markdown tables as rich tables on a terminal (plain text otherwise)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        say("\n".join(lines))
        return
    console = Console(width=max(shutil.get_terminal_size().columns, 160))
    table: Table | None = None
    for line in lines:
        if line.startswith("|") and table is None:
            table = Table(*[c.strip() for c in line.strip("|").split("|")])
        elif line.startswith("|---"):
            continue
        elif line.startswith("|") and table is not None:
            table.add_row(*[c.strip() for c in line.strip("|").split("|")])
        else:
            if table is not None:
                console.print(table)
                table = None
            console.print(line, markup=False, highlight=False)
    if table is not None:
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="100M,1G", help="comma-separated, e.g. 100M,1G")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["local", "s3"])
    parser.add_argument("--chunks", default="inf,50MiB", help="tus-js-client chunkSize values")
    parser.add_argument("--work-dir", type=Path, help="a folder on the disk to measure")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--profile", type=Path, help="py-spy one upload; raw stacks here")
    parser.add_argument(
        "--src", type=Path, help="run our server from this copy of src/ (a patch to try)"
    )
    args = parser.parse_args(argv)
    global OUR_SRC
    OUR_SRC = args.src.resolve() if args.src else None
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    chunks = [parse_chunk(c) for c in args.chunks.split(",")]
    for tool in ("node", "dd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    if not (WEB_MODULES / "@tus" / "server").exists():
        raise SystemExit("web/node_modules is missing: run `npm ci` in web/")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.work_dir))
    command = " ".join(
        [".venv/bin/python bench/ingest.py", *(sys.argv[1:] if argv is None else argv)]
    )
    runners = {"local": run_local, "s3": run_s3}
    try:
        for part in [args.only] if args.only else ["local", "s3"]:
            results: Results = {}
            before = os.getloadavg()[0]
            runners[part](work, sizes, chunks, args.rounds, results)
            load = (before, os.getloadavg()[0])
            lines = report(results, sizes, chunks, args.rounds, part, work, load)
            print_table([SECTIONS[part], "", *lines])
            if not args.no_write:
                write_section(SECTIONS[part], lines, command)
        if args.profile is not None:
            run_profile(work, max(sizes), chunks[0], args.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
