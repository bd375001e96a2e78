"""The fault spec (``HYBRIDVIDEO_ENGINE_FAULTS``), its seeded picker, and which requests
the engine's rate limit and faults apply to."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from hybridvideo.engine.faults import FaultPicker, FaultSpec, parse_faults
from hybridvideo.engine.limits import is_control_api
from hybridvideo.errors import ConfigurationError

FULL = "429=0.1,500=0.05,500after=0.05,timeout=0.05,drop=0.05,seed=7,retry_after=1,hold=3"


def test_the_documented_example_parses() -> None:
    spec = parse_faults(FULL)
    assert spec == FaultSpec(
        rates=(("429", 0.1), ("500", 0.05), ("500after", 0.05), ("timeout", 0.05), ("drop", 0.05)),
        seed=7,
        retry_after=1.0,
        hold=3.0,
    )
    assert parse_faults(spec.describe()) == spec  # what is logged replays the run


def test_empty_is_off_and_spaces_and_order_do_not_matter() -> None:
    assert parse_faults("") is None and parse_faults("   ") is None
    spec = parse_faults(" drop = 0.2 , 429=0.1, ")
    assert spec is not None and spec.rates == (("429", 0.1), ("drop", 0.2))
    assert spec.retry_after == 1.0 and spec.hold == 35.0


def test_without_a_seed_one_is_chosen_and_shown() -> None:
    seeds = {spec.seed for spec in (parse_faults("500=0.1") for _ in range(5)) if spec}
    assert len(seeds) > 1
    spec = parse_faults("500=0.1")
    assert spec is not None and f"seed={spec.seed}" in spec.describe()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("429=0.1,oops=2", "'oops=2'"),
        ("429", "'429'"),
        ("429=lots", "'429=lots'"),
        ("429=1.5", "'429=1.5'"),
        ("429=-0.1", "'429=-0.1'"),
        ("429=nan", "'429=nan'"),
        ("seed=1.5", "'seed=1.5'"),
        ("hold=0", "'hold=0'"),
        ("retry_after=-1", "'retry_after=-1'"),
        ("500=0.1,500=0.2", "'500=0.2'"),
        ("429=0.6,drop=0.5", "add up to 1.1"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_faults(text)
    assert caught.value.message.startswith("HYBRIDVIDEO_ENGINE_FAULTS: ")
    assert named in caught.value.message


def test_the_picker_is_repeatable_and_keeps_its_rates() -> None:
    spec = parse_faults(FULL)
    assert spec is not None
    picker, again = FaultPicker(spec), FaultPicker(spec)
    run = [picker.pick() for _ in range(20_000)]
    assert run == [again.pick() for _ in range(20_000)]
    counts = Counter(run)
    for kind, rate in spec.rates:
        assert counts[kind] / len(run) == pytest.approx(rate, abs=0.01), kind
    assert counts[None] / len(run) == pytest.approx(0.7, abs=0.015)


def test_the_picker_is_thread_safe() -> None:
    spec = parse_faults("500=0.5,seed=3")
    assert spec is not None
    picker = FaultPicker(spec)
    picks: list[str | None] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [picker.pick() for _ in range(2_000)]
        with lock:
            picks.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    reference = FaultPicker(spec)
    expected = Counter(reference.pick() for _ in range(16_000))
    assert Counter(picks) == expected  # the same draws, whichever thread took them


ACCT = "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353"


@pytest.mark.parametrize(
    ("method", "path", "counted"),
    [
        ("GET", f"{ACCT}/stream", True),
        ("POST", f"{ACCT}/stream", True),  # tus creation
        ("POST", f"{ACCT}/stream/copy", True),
        ("GET", f"{ACCT}/stream/{'a' * 32}", True),
        ("POST", f"{ACCT}/stream/{'a' * 32}/token", True),
        ("PUT", f"{ACCT}/stream/webhook", True),
        ("OPTIONS", f"{ACCT}/stream", False),
        ("PATCH", f"{ACCT}/stream/tus/{'b' * 32}", False),
        ("HEAD", f"{ACCT}/stream/tus/{'b' * 32}", False),
        ("GET", f"{ACCT}/streams", False),
        ("GET", f"/delivery/{'a' * 32}/manifest/video.m3u8", False),
        ("GET", "/api/v1/videos", False),
        ("GET", "/healthz", False),
    ],
)
def test_which_requests_are_api_calls(method: str, path: str, counted: bool) -> None:
    assert is_control_api({"type": "http", "method": method, "path": path}) is counted
