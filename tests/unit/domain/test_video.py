from __future__ import annotations

import pytest

from hybridvideo.domain.video import (
    StreamStatus,
    can_transition,
    check_transition,
    validate_collection,
    validate_title,
)
from hybridvideo.errors import InvalidInput, InvalidTransition

S = StreamStatus


def test_full_life_is_allowed() -> None:
    path = [
        S.NOT_DELIVERED,
        S.PROCESSING,
        S.READY,
        S.EVICTED,
        S.PROCESSING,
        S.ERROR,
        S.PROCESSING,
        S.READY,
    ]
    for current, new in zip(path, path[1:], strict=False):
        check_transition(current, new)


@pytest.mark.parametrize("status", list(S))
def test_repeating_a_state_is_always_allowed(status: StreamStatus) -> None:
    assert can_transition(status, status)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.NOT_DELIVERED, S.READY),
        (S.NOT_DELIVERED, S.EVICTED),
        (S.EVICTED, S.READY),
        (S.PROCESSING, S.EVICTED),
        (S.PROCESSING, S.NOT_DELIVERED),
        (S.EVICTED, S.ERROR),
    ],
)
def test_forbidden_moves(current: StreamStatus, new: StreamStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current} to {new}"):
        check_transition(current, new)


@pytest.mark.parametrize("good", ["work", "inbound", "outbound", "a-b_c9"])
def test_collections(good: str) -> None:
    assert validate_collection(good) == good


@pytest.mark.parametrize("bad", ["", "Work", "a b", "x" * 65, "../x", "é"])
def test_bad_collections(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_collection(bad)


def test_titles() -> None:
    assert validate_title("  Intro 소개  ") == "Intro 소개"
    for bad in ["", "   ", "x" * 301, "a\x00b"]:
        with pytest.raises(InvalidInput):
            validate_title(bad)
