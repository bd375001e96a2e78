"""Run one ffmpeg command with a deadline, progress reports and a bounded error tail.

One thread multiplexes both pipes with :mod:`selectors`: stdout carries ``-progress pipe:1``
key=value lines, stderr is kept as a rolling tail (the last few KB are what explains a
failure; a corrupt source can log megabytes). No pipe is ever left unread, so ffmpeg can
never block on a full pipe, and whatever happens (deadline, exception in a callback,
KeyboardInterrupt) the process is killed and reaped before we return.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable, Sequence

import imageio_ffmpeg

TAIL_BYTES = 4096


class FfmpegFailed(Exception):
    """ffmpeg exited non-zero or overran its deadline; ``stderr_tail`` says why."""

    def __init__(self, message: str, *, returncode: int | None, stderr_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr_tail = stderr_tail

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def ffmpeg_exe() -> str:
    """The static ffmpeg shipped in the ``imageio-ffmpeg`` wheel (no system ffmpeg needed)."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _parse_progress(line: bytes) -> float | None:
    """Seconds of output written, from an ``out_time_us=`` line (``N/A`` at the start)."""
    key, _, value = line.partition(b"=")
    if key.strip() == b"out_time_us" and value.strip().lstrip(b"-").isdigit():
        return max(0.0, int(value) / 1_000_000)
    return None


def run_ffmpeg(
    argv: Sequence[str],
    *,
    timeout: float,
    on_time: Callable[[float], None] | None = None,
    tail_bytes: int = TAIL_BYTES,
) -> str:
    """Run ``argv`` to completion and return the stderr tail (warnings worth logging).

    ``on_time(seconds)`` receives the output position each time ffmpeg reports it (twice a
    second). Raises :class:`FfmpegFailed` on a non-zero exit or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    tail = bytearray()
    pending = b""
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FfmpegFailed(
                        f"ffmpeg overran its {timeout:.0f} s deadline",
                        returncode=None,
                        stderr_tail=tail.decode("utf-8", "replace"),
                    )
                for key, _ in sel.select(min(remaining, 1.0)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.fileobj is proc.stderr:
                        tail += chunk
                        del tail[:-tail_bytes]
                    else:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            seconds = _parse_progress(line)
                            if seconds is not None and on_time is not None:
                                on_time(seconds)
        returncode = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise FfmpegFailed(
            "ffmpeg closed its pipes but did not exit",
            returncode=None,
            stderr_tail=tail.decode("utf-8", "replace"),
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    text = tail.decode("utf-8", "replace")
    if returncode != 0:
        raise FfmpegFailed(
            f"ffmpeg exited with status {returncode}", returncode=returncode, stderr_tail=text
        )
    return text


__all__ = ["FfmpegFailed", "ffmpeg_exe", "run_ffmpeg"]
