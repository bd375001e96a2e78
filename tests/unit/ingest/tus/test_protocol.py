from __future__ import annotations

import base64
import hashlib
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hybridvideo.errors import ConfigurationError, HybridVideoError
from hybridvideo.ingest.tus.protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    MAX_HEADER_CHARS,
    MAX_INT64,
    TUS_VERSION,
    Capabilities,
    Concat,
    PatchPlan,
    TusError,
    TusErrorKind,
    UploadInfo,
    check_checksum,
    check_patch,
    check_version,
    format_expires,
    head_headers,
    method_override,
    new_hasher,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_offset,
    parse_upload_metadata,
    serialize_upload_metadata,
)

K = TusErrorKind
OCTET = "application/offset+octet-stream"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_kind(exc: pytest.ExceptionInfo[TusError], kind: TusErrorKind) -> None:
    assert exc.value.kind is kind
    assert exc.value.code == kind.code
    assert exc.value.status == kind.status


# --- error catalogue ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (K.UNSUPPORTED_VERSION, 412),
        (K.INVALID_OFFSET, 400),
        (K.OFFSET_MISMATCH, 409),
        (K.INVALID_CONTENT_TYPE, 415),
        (K.CHECKSUM_MISMATCH, 460),
        (K.UNSUPPORTED_CHECKSUM_ALGORITHM, 400),
        (K.INVALID_CHECKSUM, 400),
        (K.MAX_SIZE_EXCEEDED, 413),
        (K.SIZE_EXCEEDED, 413),
        (K.NOT_FOUND, 404),
        (K.GONE, 410),
        (K.LOCKED, 423),
        (K.MODIFY_FINAL, 403),
        (K.INVALID_LENGTH, 400),
        (K.INVALID_DEFER_LENGTH, 400),
        (K.AMBIGUOUS_LENGTH, 400),
        (K.INVALID_METADATA, 400),
        (K.INVALID_CONCAT, 400),
        (K.INVALID_METHOD_OVERRIDE, 400),
    ],
)
def test_catalogue_statuses(kind, status):
    err = TusError(kind, detail="internal")
    assert isinstance(err, HybridVideoError)
    assert err.status == status
    assert err.code == kind.code and err.code.startswith("ERR_")
    assert err.message == kind.message and "internal" not in err.message


def test_catalogue_codes_are_unique():
    codes = [kind.code for kind in TusErrorKind]
    assert len(codes) == len(set(codes))


def test_unsupported_version_error_carries_tus_version():
    assert TusError(K.UNSUPPORTED_VERSION).headers == {"Tus-Version": TUS_VERSION}
    assert TusError(K.NOT_FOUND).headers == {}


# --- capabilities ------------------------------------------------------------------------

ALL_ON = Capabilities(
    creation=True,
    creation_with_upload=True,
    creation_defer_length=True,
    expiration=True,
    checksum=True,
    termination=True,
    concatenation=True,
    max_size=1024,
)


def test_every_extension_has_a_capability_field():
    names = {f.name for f in fields(Capabilities)}
    for ext in EXTENSIONS:
        assert ext.replace("-", "_") in names


def test_all_extensions_advertised_in_order():
    assert ALL_ON.tus_extension_header() == (
        "creation,creation-with-upload,creation-defer-length,expiration,checksum,"
        "termination,concatenation"
    )
    assert ALL_ON.options_headers() == {
        "Tus-Resumable": "1.0.0",
        "Tus-Version": "1.0.0",
        "Tus-Extension": ALL_ON.tus_extension_header(),
        "Tus-Max-Size": "1024",
        "Tus-Checksum-Algorithm": "sha1,md5,sha256",
    }


def test_core_only_advertises_nothing_optional():
    caps = Capabilities()
    assert caps.extensions() == ()
    assert caps.tus_extension_header() is None
    assert caps.options_headers() == {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0"}


@pytest.mark.parametrize("ext", [e for e in EXTENSIONS if e not in ("creation",)], ids=lambda e: e)
def test_disabled_extension_disappears(ext):
    caps = Capabilities(**{**vars(ALL_ON), ext.replace("-", "_"): False})
    assert not caps.supports(ext)
    assert ext not in caps.tus_extension_header().split(",")
    headers = caps.options_headers()
    assert ("Tus-Checksum-Algorithm" in headers) is (ext != "checksum")


def test_checksum_algorithms_header_follows_configuration():
    caps = Capabilities(checksum=True, checksum_algorithms=("sha1",))
    assert caps.options_headers()["Tus-Checksum-Algorithm"] == "sha1"


def test_supports_rejects_unknown_extension():
    with pytest.raises(ValueError):
        Capabilities().supports("checksum-trailer")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"creation_with_upload": True},
        {"creation_defer_length": True},
        {"concatenation": True},
        {"max_size": -1},
        {"max_size": MAX_INT64 + 1},
        {"checksum_algorithms": ("crc32",)},
        {"checksum": True, "checksum_algorithms": ("md5",)},
    ],
)
def test_inconsistent_capabilities_refused(kwargs):
    with pytest.raises(ConfigurationError):
        Capabilities(**kwargs)


# --- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("007", 7),
        (" 42\t", 42),
        ("9" * 18, int("9" * 18)),
        (str(MAX_INT64), MAX_INT64),
        ("0" * 19 + "5", 5),  # 20 digits is the cap
    ],
)
def test_parse_offset_valid(value, expected):
    assert parse_offset(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "-1",
        "+1",
        "1.0",
        "1e3",
        "0x10",
        "1 2",
        "١٢",  # Arabic-Indic digits: str.isdigit() would accept them
        "²",
        "0" * 21,
        "9" * 5000,
        str(MAX_INT64 + 1),
        "1" * (MAX_HEADER_CHARS + 1),
    ],
)
def test_parse_offset_malformed(value):
    with pytest.raises(TusError) as exc:
        parse_offset(value)
    assert_kind(exc, K.INVALID_OFFSET)


@pytest.mark.parametrize(
    ("length", "defer", "kwargs", "expected"),
    [
        ("0", None, {}, 0),
        ("100", None, {"max_size": 100}, 100),
        (None, "1", {}, None),
        (None, " 1 ", {}, None),
        (str(MAX_INT64), None, {}, MAX_INT64),
    ],
)
def test_parse_length_valid(length, defer, kwargs, expected):
    assert parse_length(length, defer, **kwargs) == expected


@pytest.mark.parametrize(
    ("length", "defer", "kwargs", "kind"),
    [
        (None, None, {}, K.INVALID_LENGTH),
        ("", None, {}, K.INVALID_LENGTH),
        ("-5", None, {}, K.INVALID_LENGTH),
        ("9" * 5000, None, {}, K.INVALID_LENGTH),
        ("abc", None, {}, K.INVALID_LENGTH),
        ("101", None, {"max_size": 100}, K.MAX_SIZE_EXCEEDED),
        ("10", "1", {}, K.AMBIGUOUS_LENGTH),
        (None, "0", {}, K.INVALID_DEFER_LENGTH),
        (None, "2", {}, K.INVALID_DEFER_LENGTH),
        (None, "true", {}, K.INVALID_DEFER_LENGTH),
        (None, "", {}, K.INVALID_DEFER_LENGTH),
        (None, "1", {"allow_defer": False}, K.INVALID_DEFER_LENGTH),
    ],
)
def test_parse_length_malformed(length, defer, kwargs, kind):
    with pytest.raises(TusError) as exc:
        parse_length(length, defer, **kwargs)
    assert_kind(exc, kind)


# --- metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("   ", {}),
        ("filename " + b64("movie.mp4"), {"filename": "movie.mp4"}),
        (
            f"filename {b64('a.mp4')},filetype {b64('video/mp4')},is_confidential",
            {"filename": "a.mp4", "filetype": "video/mp4", "is_confidential": None},
        ),
        (f"a {b64('x')}, b {b64('y')}", {"a": "x", "b": "y"}),  # OWS after the comma
        ("name " + b64("vidéo 映像"), {"name": "vidéo 映像"}),
        ("k " + b64("line\nbreak"), {"k": "line\nbreak"}),  # kept; consumers sanitize
        ("flag", {"flag": None}),
        ("Key-With.Punct_1 " + b64("v"), {"Key-With.Punct_1": "v"}),
        ("Key " + b64("a") + ",key " + b64("b"), {"Key": "a", "key": "b"}),  # case matters
    ],
)
def test_parse_metadata_valid(header, expected):
    assert parse_upload_metadata(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        ",",
        "a YQ==,",
        "a YQ==,,b Yg==",
        f"a {b64('x')},a {b64('y')}",  # duplicate key
        "a !!!",  # not base64
        "a YQ",  # missing padding
        "a YQ==YQ==",  # padding in the middle
        "a  YQ==",  # two spaces
        "a YQ== extra",
        "clé " + b64("x"),  # non-ASCII key
        "a\x00 YQ==",  # control character in key
        "a " + base64.b64encode(b"\xff\xfe").decode(),  # valid base64, not UTF-8
        "k " + "A" * MAX_HEADER_CHARS,  # over the header cap
    ],
)
def test_parse_metadata_malformed(header):
    with pytest.raises(TusError) as exc:
        parse_upload_metadata(header)
    assert_kind(exc, K.INVALID_METADATA)


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"filename": "a.mp4"},
        {"filename": "vidéo 映像.mov", "flag": None, "note": "a,b c=d"},
    ],
)
def test_metadata_round_trip(metadata):
    header = serialize_upload_metadata(metadata)
    assert parse_upload_metadata(header) == metadata
    assert serialize_upload_metadata(parse_upload_metadata(header)) == header


def test_metadata_empty_value_reads_as_none():
    assert serialize_upload_metadata({"empty": "", "flag": None}) == "empty,flag"
    # "key " and "key" cannot be told apart once HTTP trims trailing whitespace.
    assert parse_upload_metadata("empty ,flag") == {"empty": None, "flag": None}


@pytest.mark.parametrize("key", ["", "a b", "a,b", "clé"])
def test_serialize_metadata_refuses_bad_keys(key):
    with pytest.raises(ValueError):
        serialize_upload_metadata({key: "x"})


# --- checksum ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", CHECKSUM_ALGORITHMS)
def test_parse_checksum_valid(algorithm):
    digest = hashlib.new(algorithm, b"chunk").digest()
    header = f"{algorithm} {base64.b64encode(digest).decode()}"
    assert parse_checksum(header) == (algorithm, digest)
    hasher = new_hasher(algorithm)
    hasher.update(b"chunk")
    check_checksum(digest, hasher.digest())


SHA1_OK = base64.b64encode(hashlib.sha1(b"x").digest()).decode()


@pytest.mark.parametrize(
    ("header", "algorithms", "kind"),
    [
        ("", CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
        ("sha1", CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
        (f"sha1  {SHA1_OK}", CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
        ("sha1 !!!!", CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
        ("sha1 " + base64.b64encode(b"short").decode(), CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
        (f"sha 1 {SHA1_OK}", CHECKSUM_ALGORITHMS, K.UNSUPPORTED_CHECKSUM_ALGORITHM),
        (f"crc32 {SHA1_OK}", CHECKSUM_ALGORITHMS, K.UNSUPPORTED_CHECKSUM_ALGORITHM),
        (f"SHA1 {SHA1_OK}", CHECKSUM_ALGORITHMS, K.UNSUPPORTED_CHECKSUM_ALGORITHM),
        (f"md5 {SHA1_OK}", ("sha1",), K.UNSUPPORTED_CHECKSUM_ALGORITHM),
        ("sha1 " + "A" * 300, CHECKSUM_ALGORITHMS, K.INVALID_CHECKSUM),
    ],
)
def test_parse_checksum_malformed(header, algorithms, kind):
    with pytest.raises(TusError) as exc:
        parse_checksum(header, algorithms)
    assert_kind(exc, kind)


def test_checksum_mismatch_is_460():
    with pytest.raises(TusError) as exc:
        check_checksum(hashlib.sha1(b"a").digest(), hashlib.sha1(b"b").digest())
    assert_kind(exc, K.CHECKSUM_MISMATCH)


def test_new_hasher_refuses_unknown():
    with pytest.raises(ValueError):
        new_hasher("crc32")


# --- concatenation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("partial", Concat("partial")),
        (" partial ", Concat("partial")),
        ("final;/files/a", Concat("final", ("/files/a",))),
        (
            "final;/files/a https://up.example/files/b /files/a",
            Concat("final", ("/files/a", "https://up.example/files/b", "/files/a")),
        ),
        ("final; /files/a  /files/b", Concat("final", ("/files/a", "/files/b"))),
    ],
)
def test_parse_concat_valid(header, expected):
    assert parse_concat(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Partial",
        "partial;/files/a",
        "final",
        "final;",
        "final; ",
        "final /files/a",
        "FINAL;/files/a",
        "final;/files/\x00a",
        "final;" + " ".join(f"/f/{i}" for i in range(257)),
        "final;/" + "a" * MAX_HEADER_CHARS,
    ],
)
def test_parse_concat_malformed(header):
    with pytest.raises(TusError) as exc:
        parse_concat(header)
    assert_kind(exc, K.INVALID_CONCAT)


def test_concat_header_round_trips():
    for header in ("partial", "final;/files/a /files/b"):
        assert parse_concat(header).header == header


# --- version and method override ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", {"Tus-Resumable": "1.0.0"}),
        ("PATCH", {"tus-resumable": "1.0.0"}),
        ("HEAD", {"TUS-RESUMABLE": " 1.0.0 "}),
        ("OPTIONS", {}),
        ("OPTIONS", {"Tus-Resumable": "0.2.2"}),  # ignored on OPTIONS
        ("options", {}),
    ],
)
def test_check_version_accepts(method, headers):
    check_version(headers, method=method)


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", {}),
        ("HEAD", {"Tus-Resumable": "0.2.2"}),
        ("PATCH", {"Tus-Resumable": "1.0"}),
        ("DELETE", {"Tus-Resumable": ""}),
        ("GET", {"Tus-Resumable": "1.0.0,0.2.2"}),
    ],
)
def test_check_version_refuses(method, headers):
    with pytest.raises(TusError) as exc:
        check_version(headers, method=method)
    assert_kind(exc, K.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("POST", {}, "POST"),
        ("patch", {}, "PATCH"),
        ("POST", {"X-HTTP-Method-Override": "PATCH"}, "PATCH"),
        ("POST", {"x-http-method-override": "delete"}, "DELETE"),
        ("GET", {"X-HTTP-Method-Override": "HEAD"}, "HEAD"),  # on every method
        ("PUT", {"X-HTTP-Method-Override": " OPTIONS "}, "OPTIONS"),
    ],
)
def test_method_override(method, headers, expected):
    assert method_override(method, headers) == expected


@pytest.mark.parametrize("value", ["", "PA TCH", "PATCH\r\nX: y", "P(", "A" * 33])
def test_method_override_refuses_garbage(value):
    with pytest.raises(TusError) as exc:
        method_override("POST", {"X-HTTP-Method-Override": value})
    assert_kind(exc, K.INVALID_METHOD_OVERRIDE)


# --- Upload-Expires ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC), "Sun, 06 Nov 1994 08:49:37 GMT"),
        (datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC), "Fri, 02 Jan 2026 03:04:05 GMT"),
        (
            datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
            "Fri, 02 Jan 2026 03:04:05 GMT",
        ),
    ],
)
def test_format_expires(moment, expected):
    assert format_expires(moment) == expected


def test_format_expires_refuses_naive():
    with pytest.raises(ValueError):
        format_expires(datetime(2026, 1, 1))


# --- check_patch -------------------------------------------------------------------------


def info(**overrides: object) -> UploadInfo:
    values: dict[str, object] = {"id": "u1", "offset": 10, "length": 100, "created_at": T0}
    values.update(overrides)
    return UploadInfo(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("upload", "offset", "body", "max_size", "extra", "expected"),
    [
        (info(), "10", 5, None, {}, PatchPlan(100, 90)),
        (info(), "10", 90, None, {}, PatchPlan(100, 90)),  # exactly to the end
        (info(), "10", None, None, {}, PatchPlan(100, 90)),  # chunked body
        (info(), "10", 0, None, {}, PatchPlan(100, 90)),
        (info(length=None), "10", 5, None, {}, PatchPlan(None, None)),
        (info(length=None), "10", 5, 50, {}, PatchPlan(None, 40)),
        (info(length=None), "10", 5, 50, {"upload_length": "20"}, PatchPlan(20, 10)),
        (info(), "10", 5, None, {"upload_length": "100"}, PatchPlan(100, 90)),  # retry
        (info(expires_at=T0 + timedelta(hours=1)), "10", 5, None, {"now": T0}, PatchPlan(100, 90)),
        (info(is_partial=True), "10", 5, None, {}, PatchPlan(100, 90)),
    ],
)
def test_check_patch_accepts(upload, offset, body, max_size, extra, expected):
    assert check_patch(upload, offset, OCTET, body, max_size, **extra) == expected


@pytest.mark.parametrize(
    ("upload", "offset", "ctype", "body", "max_size", "extra", "kind"),
    [
        (info(), "10", "application/octet-stream", 5, None, {}, K.INVALID_CONTENT_TYPE),
        (info(), "10", None, 5, None, {}, K.INVALID_CONTENT_TYPE),
        (info(), None, OCTET, 5, None, {}, K.INVALID_OFFSET),
        (info(), "-10", OCTET, 5, None, {}, K.INVALID_OFFSET),
        (info(), "9" * 5000, OCTET, 5, None, {}, K.INVALID_OFFSET),
        (info(), "9", OCTET, 5, None, {}, K.OFFSET_MISMATCH),
        (info(), "11", OCTET, 5, None, {}, K.OFFSET_MISMATCH),
        (info(), "10", OCTET, 91, None, {}, K.SIZE_EXCEEDED),
        (info(offset=100), "100", OCTET, 1, None, {}, K.SIZE_EXCEEDED),  # complete
        (info(length=None), "10", OCTET, 41, 50, {}, K.MAX_SIZE_EXCEEDED),
        (info(length=None), "10", OCTET, 5, 50, {"upload_length": "51"}, K.MAX_SIZE_EXCEEDED),
        (info(length=None), "10", OCTET, 5, None, {"upload_length": "9"}, K.INVALID_LENGTH),
        (info(length=None), "10", OCTET, 5, None, {"upload_length": "x"}, K.INVALID_LENGTH),
        (info(length=None), "10", OCTET, 11, None, {"upload_length": "20"}, K.SIZE_EXCEEDED),
        (info(), "10", OCTET, 5, None, {"upload_length": "200"}, K.INVALID_LENGTH),
        (info(is_final=True, offset=0), "0", OCTET, 5, None, {}, K.MODIFY_FINAL),
        (info(expires_at=T0), "10", OCTET, 5, None, {"now": T0}, K.GONE),
    ],
)
def test_check_patch_refuses(upload, offset, ctype, body, max_size, extra, kind):
    with pytest.raises(TusError) as exc:
        check_patch(upload, offset, ctype, body, max_size, **extra)
    assert_kind(exc, kind)


@pytest.mark.parametrize(
    "ctype",
    [OCTET, "Application/Offset+Octet-Stream", "application/offset+octet-stream; charset=x"],
)
def test_check_patch_content_type_is_a_media_type(ctype):
    check_patch(info(), "10", ctype, 1, None)


def test_check_patch_refuses_negative_body_length():
    with pytest.raises(ValueError):
        check_patch(info(), "10", OCTET, -1, None)


def test_check_patch_leaves_info_unchanged():
    upload = info(length=None)
    check_patch(upload, "10", OCTET, 5, None, upload_length="20")
    assert upload.length is None and upload.offset == 10


# --- HEAD --------------------------------------------------------------------------------


def test_head_headers_known_length_with_metadata_echoed_verbatim():
    raw = f"filename {b64('a.mp4')}, flag"
    upload = info(metadata_raw=raw, metadata=parse_upload_metadata(raw))
    assert head_headers(upload, T0) == {
        "Tus-Resumable": "1.0.0",
        "Cache-Control": "no-store",
        "Upload-Offset": "10",
        "Upload-Length": "100",
        "Upload-Metadata": raw,
    }


def test_head_headers_deferred_length_and_expiry():
    upload = info(offset=0, length=None, expires_at=T0 + timedelta(days=1))
    headers = head_headers(upload, T0)
    assert headers["Upload-Offset"] == "0"
    assert headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in headers
    assert headers["Upload-Expires"] == "Sat, 03 Jan 2026 03:04:05 GMT"


def test_head_headers_complete_upload_still_has_offset():
    assert head_headers(info(offset=100), T0)["Upload-Offset"] == "100"
    assert head_headers(info(offset=0, length=0), T0)["Upload-Offset"] == "0"


def test_head_headers_partial_and_final():
    assert head_headers(info(is_partial=True), T0)["Upload-Concat"] == "partial"
    final = info(is_final=True, offset=100, partial_ids=("a", "b"))
    headers = head_headers(final, T0, url_for=lambda i: f"/files/{i}")
    assert headers["Upload-Concat"] == "final;/files/a /files/b"
    assert headers["Upload-Offset"] == "100"


def test_head_headers_unfinished_final_hides_offset():
    final = info(is_final=True, offset=0, partial_ids=("a",))
    assert "Upload-Offset" not in head_headers(final, T0)


def test_head_headers_expired_is_gone():
    with pytest.raises(TusError) as exc:
        head_headers(info(expires_at=T0 - timedelta(seconds=1)), T0)
    assert_kind(exc, K.GONE)
