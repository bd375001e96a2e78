from __future__ import annotations

import pytest

from hybridvideo.domain.keys import MAX_KEY_BYTES, validate_key, validate_prefix
from hybridvideo.errors import InvalidKey


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "masters/v1/source.mp4",
        "thumbnails/cover image (1).jpg",
        "vidéos/ключ/映像.mp4",
        ".hidden",
        "courses/2024/intro:part1.mp4",
        "a..b/..c/d..",
        "x" * MAX_KEY_BYTES,
        "é" * (MAX_KEY_BYTES // 2),  # two UTF-8 bytes each: exactly the limit
    ],
)
def test_accepted_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "\\abs",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a\u200bb",  # zero-width space (format character)
        "a\u2028b",  # line separator
        "a//b",
        "a/",
        "./a",
        "a/./b",
        "../x",
        "a/../b",
        "a/..",
        "x" * (MAX_KEY_BYTES + 1),
        "é" * (MAX_KEY_BYTES // 2 + 1),
    ],
)
def test_refused_keys(key):
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_non_string_key_is_refused():
    with pytest.raises(InvalidKey):
        validate_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a", "a/", "masters/v1/", "thumbnails/th"])
def test_accepted_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "a//", "../", "a/../", "/abs/", "a\x00/"])
def test_refused_prefixes(prefix):
    with pytest.raises(InvalidKey):
        validate_prefix(prefix)
