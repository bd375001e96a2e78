"""The delivery job's backoff: doubling, capped, and never sooner than Retry-After."""

from __future__ import annotations

import pytest

from hybridvideo.jobs.deliver_video import MAX_DELAY, MAX_RETRY_AFTER, retry_delay


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 5.0), (2, 10.0), (3, 20.0), (8, 640.0), (9, MAX_DELAY)]
)
def test_backoff_doubles_up_to_a_cap(attempt: int, expected: float) -> None:
    assert retry_delay(attempt) == expected


def test_retry_after_is_honoured_but_bounded() -> None:
    assert retry_delay(1, retry_after=30.0) == 30.0
    assert retry_delay(4, retry_after=30.0) == 40.0  # the backoff is already longer
    assert retry_delay(1, retry_after=0.0) == 5.0
    assert retry_delay(1, retry_after=10 * 24 * 3600.0) == MAX_RETRY_AFTER
