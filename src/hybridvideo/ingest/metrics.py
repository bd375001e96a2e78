"""Prometheus metrics for tus ingest, named after tusd's so its dashboards translate.

tusd (``pkg/prometheuscollector``) counts requests by method, errors by status and code,
bytes received, uploads created / finished / terminated, and open connections; we expose
the same under ``hybridvideo_tus_`` (errors by status only: the status already says which
family of failure it was) plus a histogram of PATCH durations:

=============================================  =================================  =========
metric                                         labels                             tusd
=============================================  =================================  =========
``hybridvideo_tus_requests_total``             ``method``                         requests_total
``hybridvideo_tus_errors_total``               ``status``                         errors_total
``hybridvideo_tus_bytes_received_total``                                          bytes_received
``hybridvideo_tus_uploads_created_total``                                         uploads_created
``hybridvideo_tus_uploads_finished_total``                                        uploads_finished
``hybridvideo_tus_uploads_terminated_total``                                      uploads_terminated
``hybridvideo_tus_open_connections``           (gauge)                            connections_open
``hybridvideo_tus_patch_duration_seconds``     (histogram)                        —
=============================================  =================================  =========

Every :class:`TusMetrics` registers on its own :class:`~prometheus_client.CollectorRegistry`
(never the process-global default one): tests build many apps in one process, and two
apps in one process must not share or clash over counters. Label values are bounded
(methods outside the HTTP set become ``OTHER``, statuses outside 100-599 ``other``), since
the method can come from a client's ``X-HTTP-Method-Override`` header and every distinct
label value is a new time series kept forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "hybridvideo_tus"
_METHODS = frozenset({"OPTIONS", "HEAD", "GET", "POST", "PATCH", "PUT", "DELETE"})
#: PATCH durations: a small chunk on loopback takes milliseconds, a whole large file on a
#: slow link minutes.
PATCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def _method_label(method: str) -> str:
    upper = method.upper()
    return upper if upper in _METHODS else "OTHER"


def _status_label(status: int) -> str:
    return str(status) if isinstance(status, int) and 100 <= status <= 599 else "other"


class TusMetrics:
    """The counters the tus handler moves; one instance (and registry) per app."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            f"{PREFIX}_requests", "tus requests, by effective method.", ["method"], registry=r
        )
        self._errors = Counter(
            f"{PREFIX}_errors",
            "tus requests answered with an error, by HTTP status.",
            ["status"],
            registry=r,
        )
        self._bytes = Counter(
            f"{PREFIX}_bytes_received", "Upload bytes received and stored.", registry=r
        )
        self._created = Counter(f"{PREFIX}_uploads_created", "Uploads created.", registry=r)
        self._finished = Counter(
            f"{PREFIX}_uploads_finished", "Uploads that received their last byte.", registry=r
        )
        self._terminated = Counter(
            f"{PREFIX}_uploads_terminated", "Uploads terminated (DELETE).", registry=r
        )
        self._open = Gauge(
            f"{PREFIX}_open_connections", "tus requests being served right now.", registry=r
        )
        self._patch = Histogram(
            f"{PREFIX}_patch_duration_seconds",
            "Time to serve a PATCH (or a POST carrying data), body included.",
            buckets=PATCH_BUCKETS,
            registry=r,
        )

    def request(self, method: str) -> None:
        """One request with effective ``method`` (after ``X-HTTP-Method-Override``)."""
        self._requests.labels(method=_method_label(method)).inc()

    def error(self, status: int) -> None:
        """One request answered with error ``status`` (4xx/5xx)."""
        self._errors.labels(status=_status_label(status)).inc()

    def received(self, n: int) -> None:
        """``n`` upload bytes received (stored); zero is allowed and counts nothing."""
        if n < 0:
            raise ValueError("a byte count cannot be negative")
        self._bytes.inc(n)

    def created(self) -> None:
        self._created.inc()

    def finished(self) -> None:
        self._finished.inc()

    def terminated(self) -> None:
        self._terminated.inc()

    @contextmanager
    def connection(self) -> Iterator[None]:
        """Count a request as open for the duration of the ``with`` block."""
        self._open.inc()
        try:
            yield
        finally:
            self._open.dec()

    @contextmanager
    def patch_timer(self) -> Iterator[None]:
        """Observe how long the ``with`` block (one PATCH) took, failures included."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._patch.observe(time.perf_counter() - started)


__all__ = ["PATCH_BUCKETS", "PREFIX", "TusMetrics"]
