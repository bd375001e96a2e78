"""Webhook signatures: Cloudflare's header format, freshness, replay, rotation, junk."""

from __future__ import annotations

import hashlib
import hmac
import threading

import pytest

from hybridvideo.errors import ConfigurationError, HybridVideoError
from hybridvideo.stream.webhooks import (
    InvalidWebhook,
    MemoryReplayCache,
    ReplayCache,
    WebhookVerifier,
    parse_signature_header,
    sign_webhook,
)

# The secret and header from Cloudflare's "Use webhooks" page.
SECRET = "85011ed3a913c6ad5f9cf6c5573cc0a7"
DOCS_HEADER = (
    "time=1230811200,sig1=60493ec9388b44585a29543bcf0de62e377d4da393246a8b1c901d0e3e672404"
)
T = 1230811200
BODY = (
    b'{"uid":"6b9e68b07dfee8cc2d116e4c51d6a957","readyToStream":true,'
    b'"status":{"state":"ready","pctComplete":"100.000000","errorReasonCode":"",'
    b'"errorReasonText":""},"duration":5.5}\n'
)


def reason_of(verifier: WebhookVerifier, header: str | None, body: bytes, now: float) -> str:
    with pytest.raises(InvalidWebhook) as caught:
        verifier.verify(header, body, now=now)
    assert caught.value.code == "INVALID_WEBHOOK"
    assert isinstance(caught.value, HybridVideoError)
    return caught.value.reason


def test_signature_is_hmac_sha256_hex_over_time_dot_raw_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, BODY, timestamp=T) == f"time={T},sig1={expected}"


def test_round_trip() -> None:
    header = sign_webhook(SECRET, BODY, timestamp=T)
    WebhookVerifier(SECRET).verify(header, BODY, now=T)
    WebhookVerifier(SECRET).verify(sign_webhook(SECRET, BODY), BODY)  # real clock


def test_the_docs_example_header_parses() -> None:
    parsed = parse_signature_header(DOCS_HEADER)
    assert parsed.time == T and parsed.raw_time == "1230811200"
    assert parsed.signatures == (
        "60493ec9388b44585a29543bcf0de62e377d4da393246a8b1c901d0e3e672404",
    )
    # Well formed: what fails is the signature (the docs do not give the body it signed).
    assert reason_of(WebhookVerifier(SECRET), DOCS_HEADER, BODY, T) == "bad_signature"


@pytest.mark.parametrize(
    "body",
    [
        BODY.replace(b'"ready"', b'"error"'),
        BODY.rstrip(b"\n"),
        BODY + b" ",
        b"",
    ],
    ids=["changed-state", "newline-dropped", "space-added", "empty"],
)
def test_tampered_body(body: bytes) -> None:
    header = sign_webhook(SECRET, BODY, timestamp=T)
    assert reason_of(WebhookVerifier(SECRET), header, body, T) == "bad_signature"


def test_tampered_time() -> None:
    header = sign_webhook(SECRET, BODY, timestamp=T)
    moved = header.replace(f"time={T}", f"time={T + 1}")
    assert reason_of(WebhookVerifier(SECRET), moved, BODY, T) == "bad_signature"
    # Same number, written differently: the HMAC covers the time as sent.
    padded = header.replace(f"time={T}", f"time=0{T}")
    assert reason_of(WebhookVerifier(SECRET), padded, BODY, T) == "bad_signature"


def test_wrong_secret() -> None:
    header = sign_webhook("another secret", BODY, timestamp=T)
    assert reason_of(WebhookVerifier(SECRET), header, BODY, T) == "bad_signature"


def test_stale_and_future_with_default_tolerance() -> None:
    verifier = WebhookVerifier(SECRET)
    header = sign_webhook(SECRET, BODY, timestamp=T)
    verifier.verify(header, BODY, now=T + 300)
    verifier.verify(header, BODY, now=T - 300)
    assert reason_of(verifier, header, BODY, T + 301) == "stale"
    assert reason_of(verifier, header, BODY, T + 86400) == "stale"
    assert reason_of(verifier, header, BODY, T - 301) == "future"


def test_custom_tolerance() -> None:
    verifier = WebhookVerifier(SECRET, tolerance=30)
    header = sign_webhook(SECRET, BODY, timestamp=T)
    verifier.verify(header, BODY, now=T + 30)
    assert reason_of(verifier, header, BODY, T + 31) == "stale"


def test_a_second_delivery_of_the_same_signature_is_replayed() -> None:
    clock = [0.0]
    cache = MemoryReplayCache(clock=lambda: clock[0])
    verifier = WebhookVerifier(SECRET, replay_cache=cache)
    header = sign_webhook(SECRET, BODY, timestamp=T)
    verifier.verify(header, BODY, now=T)
    assert reason_of(verifier, header, BODY, T + 1) == "replayed"
    # Another delivery (another body, or the same body at another time) is new.
    verifier.verify(sign_webhook(SECRET, BODY + b" ", timestamp=T), BODY + b" ", now=T)
    verifier.verify(sign_webhook(SECRET, BODY, timestamp=T + 1), BODY, now=T + 1)
    assert len(cache) == 3
    # Remembered for 2 x tolerance: by then the time check refuses it anyway.
    clock[0] = 599.0
    assert reason_of(verifier, header, BODY, T + 2) == "replayed"
    clock[0] = 600.0
    assert len(cache) == 0
    assert reason_of(verifier, header, BODY, T + 600) == "stale"


def test_forgeries_and_stale_requests_do_not_fill_the_replay_cache() -> None:
    cache = MemoryReplayCache()
    verifier = WebhookVerifier(SECRET, replay_cache=cache)
    forged = sign_webhook("guess", BODY, timestamp=T)
    assert reason_of(verifier, forged, BODY, T) == "bad_signature"
    assert reason_of(verifier, forged, BODY, T) == "bad_signature"
    old = sign_webhook(SECRET, BODY, timestamp=T - 1000)
    assert reason_of(verifier, old, BODY, T) == "stale"
    assert len(cache) == 0


LONG_TIME = "9" * 5000
SIG = "a" * 64


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("garbage", "malformed"),
        (",,,", "malformed"),
        (f"sig1={SIG}", "malformed"),
        (f"time={T}", "malformed"),
        (f"time={T},sig1=", "malformed"),
        (f"time={T},sig1=not-hex", "malformed"),
        (f"time={T},sig1={SIG[:-1]}", "malformed"),
        (f"time=,sig1={SIG}", "malformed"),
        (f"time=abc,sig1={SIG}", "malformed"),
        (f"time=-5,sig1={SIG}", "malformed"),
        (f"time=1.5,sig1={SIG}", "malformed"),
        (f"time={LONG_TIME},sig1={SIG}", "malformed"),
        (f"time={LONG_TIME[:4000]},sig1={SIG}", "malformed"),
        (f"time={T},time={T + 1},sig1={SIG}", "malformed"),
        (f"time={T}," + ",".join([f"sig1={SIG}"] * 100), "malformed"),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "garbage",
        "only-commas",
        "no-time",
        "no-sig1",
        "empty-sig1",
        "non-hex-sig1",
        "short-sig1",
        "empty-time",
        "text-time",
        "negative-time",
        "fractional-time",
        "5000-digit-time",
        "4000-digit-time",
        "two-times",
        "huge-header",
    ],
)
def test_missing_and_malformed_headers(header: str | None, reason: str) -> None:
    assert reason_of(WebhookVerifier(SECRET), header, BODY, T) == reason


def test_whitespace_unknown_parts_order_and_case_are_tolerated() -> None:
    sig = sign_webhook(SECRET, BODY, timestamp=T).split("sig1=")[1]
    verifier = WebhookVerifier(SECRET)
    for header in [
        f" time = {T} , sig1 = {sig} ",
        f"sig1={sig},time={T}",
        f"time={T},v=2,sig2=abc,flag,sig1={sig},",
        f"time={T},sig1={sig.upper()}",
        f"Time={T},SIG1={sig}",
        f"time={T},time={T},sig1={sig}",
    ]:
        verifier.verify(header, BODY, now=T)


def test_any_of_several_sig1_values_may_match() -> None:
    sig = sign_webhook(SECRET, BODY, timestamp=T).split("sig1=")[1]
    WebhookVerifier(SECRET).verify(f"time={T},sig1={'0' * 64},sig1={sig}", BODY, now=T)
    header = f"time={T},sig1={'0' * 64},sig1={'1' * 64}"
    assert reason_of(WebhookVerifier(SECRET), header, BODY, T) == "bad_signature"


def test_secret_rotation_accepts_old_and_new() -> None:
    old, new = SECRET, "f3b2c1d0e9a8b7c6d5e4f3a2b1c0d9e8"
    rotating = WebhookVerifier([new, old])
    rotating.verify(sign_webhook(old, BODY, timestamp=T), BODY, now=T)
    rotating.verify(sign_webhook(new, BODY, timestamp=T), BODY, now=T)
    rotated = WebhookVerifier([new])
    assert reason_of(rotated, sign_webhook(old, BODY, timestamp=T), BODY, T) == "bad_signature"


def test_configuration_and_argument_errors() -> None:
    with pytest.raises(ConfigurationError):
        WebhookVerifier([])
    with pytest.raises(ConfigurationError):
        WebhookVerifier("")
    with pytest.raises(ConfigurationError):
        WebhookVerifier(SECRET, tolerance=0)
    with pytest.raises(TypeError, match="raw request bytes"):
        WebhookVerifier(SECRET).verify(sign_webhook(SECRET, BODY), BODY.decode())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timestamp"):
        sign_webhook(SECRET, BODY, timestamp=-1)


def test_memory_replay_cache_is_a_replay_cache_and_thread_safe() -> None:
    cache = MemoryReplayCache()
    assert isinstance(cache, ReplayCache)
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def deliver() -> None:
        barrier.wait()
        results.append(cache.seen("same-signature", 60))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] + [True] * 15


def test_memory_replay_cache_is_bounded() -> None:
    clock = [0.0]
    cache = MemoryReplayCache(max_entries=2, clock=lambda: clock[0])
    assert not cache.seen("a", 10)
    assert not cache.seen("b", 20)
    assert not cache.seen("c", 30)  # evicts "a", the entry closest to expiry
    assert len(cache) == 2
    assert cache.seen("b", 20) and cache.seen("c", 30)
    assert not cache.seen("a", 10)
    with pytest.raises(ValueError):
        cache.seen("d", 0)
