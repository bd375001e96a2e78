"""The encoder on real media: a small clip through the real ffmpeg, both first-rung
strategies, checked by reading the output back with PyAV and parsing both manifests."""

from __future__ import annotations

import io
import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import pytest

from hybridvideo.engine.encode import EncodeError, EncodeResult, build_command, encode
from hybridvideo.engine.encode_result import read_result
from hybridvideo.engine.ladder import plan_ladder
from hybridvideo.media.testclip import make_test_clip

SIZE = (1280, 720)  # three rungs: 360p, 540p, 720p
SECONDS = 8  # two segments: 6 s + 2 s
_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
_LEVEL_BYTE = {"3.0": "1e", "3.1": "1f", "3.2": "20", "4.0": "28", "4.1": "29", "4.2": "2a"}


@dataclass
class Encoded:
    """One encode, and what a player could have seen when ``on_first_playable`` ran."""

    out: Path
    early: bool
    result: EncodeResult = field(init=False)
    progress: list[float] = field(default_factory=list)
    playable_calls: int = 0
    master_at_first: str = ""
    playlists_at_first: set[str] = field(default_factory=set)
    complete_at_first: bool = False

    def first_playable(self) -> None:
        self.playable_calls += 1
        self.master_at_first = (self.out / "master.m3u8").read_text()
        self.playlists_at_first = {p.parent.name for p in self.out.glob("v*/index.m3u8")}
        self.complete_at_first = (self.out / "encode.json").exists()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "clip.mp4"
    return make_test_clip(path, seconds=SECONDS, size=f"{SIZE[0]}x{SIZE[1]}", fps=25)


@pytest.fixture(scope="module", params=[False, True], ids=["one-pass", "early-first-rung"])
def encoded(
    request: pytest.FixtureRequest, clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Encoded:
    run = Encoded(tmp_path_factory.mktemp("enc") / "out", early=request.param)
    run.result = encode(
        clip,
        run.out,
        thumbnail_pct=0.5,
        early_first_rung=run.early,
        on_first_playable=run.first_playable,
        on_progress=run.progress.append,
    )
    return run


def master_variants(text: str) -> list[tuple[dict[str, str], str]]:
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = dict(re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', line.split(":", 1)[1]))
            out.append(({k: v.strip('"') for k, v in attrs.items()}, lines[i + 1]))
    return out


def media_playlist(path: Path) -> tuple[str, list[tuple[float, str]]]:
    text = path.read_text()
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    assert init is not None
    entries = re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)
    return init.group(1), [(float(d), name) for d, name in entries]


def hls_files(out: Path) -> set[str]:
    """Every file HLS references, relative to ``out``, starting from the master."""
    text = (out / "master.m3u8").read_text()
    playlists = [uri for _, uri in master_variants(text)]
    playlists += re.findall(r'#EXT-X-MEDIA:.*URI="([^"]+)"', text)
    files = set()
    for rel in playlists:
        folder = str(Path(rel).parent)
        init, segments = media_playlist(out / rel)
        files |= {f"{folder}/{init}", *(f"{folder}/{name}" for _, name in segments)}
    return files


def dash_files(out: Path) -> tuple[set[str], dict[str, float]]:
    """Every file the MPD addresses (expanding SegmentTemplate + SegmentTimeline), and
    each Representation's duration from its timeline."""
    root = ET.parse(out / "video.mpd").getroot()
    files: set[str] = set()
    durations: dict[str, float] = {}
    for rep in root.iterfind(".//d:Representation", _NS):
        tpl = rep.find("d:SegmentTemplate", _NS)
        assert tpl is not None
        files.add(tpl.attrib["initialization"])
        number = int(tpl.attrib["startNumber"])
        total = 0
        for s in tpl.iterfind("d:SegmentTimeline/d:S", _NS):
            for _ in range(int(s.get("r", "0")) + 1):
                files.add(tpl.attrib["media"].replace("$Number%05d$", f"{number:05d}"))
                number += 1
                total += int(s.attrib["d"])
        durations[rep.attrib["id"]] = total / int(tpl.attrib["timescale"])
    return files, durations


def read_track(out: Path, folder: str) -> bytes:
    init, segments = media_playlist(out / folder / "index.m3u8")
    parts = [init, *(name for _, name in segments)]
    return b"".join((out / folder / p).read_bytes() for p in parts)


def keyframe_times(data: bytes) -> list[Fraction]:
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        return [
            p.pts * p.time_base
            for p in container.demux(stream)
            if p.is_keyframe and p.pts is not None and p.time_base is not None
        ]


# ---------------------------------------------------------------- the produced ladder


def test_rungs_have_the_planned_resolutions(encoded: Encoded) -> None:
    planned = plan_ladder(*SIZE, 25)
    assert [(r.name, r.width, r.height) for r in encoded.result.rungs] == [
        (p.name, p.width, p.height) for p in planned
    ]
    for i, rung in enumerate(planned):
        with av.open(io.BytesIO(read_track(encoded.out, f"v{i}")), "r") as container:
            first = next(container.decode(video=0))
            assert (first.width, first.height) == (rung.width, rung.height)
        with av.open(io.BytesIO(read_track(encoded.out, f"v{i}")), "r") as container:
            packets = [p for p in container.demux(video=0) if p.size]
            assert len(packets) == SECONDS * 25  # every frame, none dropped or duplicated


def test_keyframes_are_aligned_across_rungs_every_two_seconds(encoded: Encoded) -> None:
    times = [keyframe_times(read_track(encoded.out, f"v{i}")) for i in range(3)]
    assert times[0] == times[1] == times[2]
    assert len(times[0]) == SECONDS // 2
    gaps = [b - a for a, b in zip(times[0], times[0][1:], strict=False)]
    assert all(gap == 2 for gap in gaps), gaps


def test_segments_last_six_seconds_except_the_last(encoded: Encoded) -> None:
    for folder in ("v0", "v1", "v2", "audio"):
        _, segments = media_playlist(encoded.out / folder / "index.m3u8")
        durations = [d for d, _ in segments]
        assert len(durations) == 2
        assert durations[0] == pytest.approx(6.0, abs=0.05)
        assert durations[-1] <= 6.0
        assert sum(durations) == pytest.approx(SECONDS, abs=0.1)


def test_master_playlist_declares_every_attribute(encoded: Encoded) -> None:
    variants = master_variants((encoded.out / "master.m3u8").read_text())
    assert [uri for _, uri in variants] == ["v0/index.m3u8", "v1/index.m3u8", "v2/index.m3u8"]
    planned = plan_ladder(*SIZE, 25)
    for (attrs, _), rung, out in zip(variants, planned, encoded.result.rungs, strict=True):
        assert {"CODECS", "RESOLUTION", "BANDWIDTH", "AVERAGE-BANDWIDTH", "FRAME-RATE"} <= set(
            attrs
        )
        assert attrs["RESOLUTION"] == f"{rung.width}x{rung.height}"
        assert attrs["FRAME-RATE"] == "25.000"
        # the CODECS level byte is read from the real SPS and matches the planned level
        assert attrs["CODECS"] == f"avc1.6400{_LEVEL_BYTE[rung.level]},mp4a.40.2"
        assert int(attrs["BANDWIDTH"]) >= int(attrs["AVERAGE-BANDWIDTH"]) > 0
        assert (int(attrs["BANDWIDTH"]), attrs["CODECS"]) == (out.bandwidth, out.codecs)
        # measured, so near the rung's target (+ 128 kb/s audio) on this easy content
        assert int(attrs["AVERAGE-BANDWIDTH"]) < (rung.maxrate_kbps + 200) * 1000


def test_hls_and_dash_reference_the_same_segment_files(encoded: Encoded) -> None:
    hls = hls_files(encoded.out)
    dash, durations = dash_files(encoded.out)
    assert hls == dash
    assert all((encoded.out / f).is_file() for f in hls)
    assert len(hls) == 4 * 3  # 3 rungs + audio, each init + 2 segments
    for rid, seconds in durations.items():
        hls_total = sum(d for d, _ in media_playlist(encoded.out / rid / "index.m3u8")[1])
        assert seconds == pytest.approx(hls_total, abs=0.01)


def test_thumbnail_is_a_jpeg_of_the_requested_width(encoded: Encoded) -> None:
    thumb = encoded.result.thumbnail
    assert thumb == encoded.out / "thumbnail.jpg"
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    with av.open(str(thumb)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)


def test_result_describes_the_files_and_is_saved_last(encoded: Encoded) -> None:
    result = encoded.result
    assert (result.width, result.height, result.fps) == (*SIZE, 25.0)
    assert result.duration == pytest.approx(SECONDS, abs=0.1)
    assert result.audio is not None and result.audio.codecs == "mp4a.40.2"
    for rung in result.rungs:
        assert rung.playlist.is_file() and rung.init.is_file()
        assert [p.name for p in rung.segments] == ["seg_00001.m4s", "seg_00002.m4s"]
    assert read_result(encoded.out) == result
    assert not any(p.name.endswith(".tmp") for p in encoded.out.rglob("*"))


def test_first_playable_comes_before_the_end(encoded: Encoded) -> None:
    assert encoded.playable_calls == 1
    assert not encoded.complete_at_first
    announced = [uri for _, uri in master_variants(encoded.master_at_first)]
    if encoded.early:
        # only the lowest rung was published, and the others did not exist yet
        assert announced == ["v0/index.m3u8"]
        assert encoded.playlists_at_first == {"v0"}
    else:
        assert announced == ["v0/index.m3u8", "v1/index.m3u8", "v2/index.m3u8"]


def test_progress_rises_to_100(encoded: Encoded) -> None:
    values = encoded.progress
    assert len(values) >= 2
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert values[0] >= 0 and values[-1] == 100.0


# ---------------------------------------------------------------- failures


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"


def test_a_text_file_is_not_a_video(tmp_path: Path, out_dir: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just some words\n" * 50)
    with pytest.raises(EncodeError) as info:
        encode(text, out_dir)
    assert info.value.code == "ERR_NON_VIDEO"


def test_an_audio_only_file_is_not_a_video(tmp_path: Path, out_dir: Path) -> None:
    sound = tmp_path / "tone.m4a"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi"]
    cmd += ["-i", "sine=duration=1", "-c:a", "aac", str(sound)]
    subprocess.run(cmd, check=True, timeout=60)
    with pytest.raises(EncodeError) as info:
        encode(sound, out_dir)
    assert info.value.code == "ERR_NON_VIDEO"


def test_a_truncated_mp4_is_malformed_and_leaves_nothing(
    clip: Path, tmp_path: Path, out_dir: Path
) -> None:
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # moov is in front (faststart): the tail is gone
    with pytest.raises(EncodeError) as info:
        encode(cut, out_dir, early_first_rung=True, on_first_playable=lambda: None)
    assert info.value.code == "ERR_MALFORMED_VIDEO"
    assert list(out_dir.iterdir()) == []
    # cut inside its header: no demuxer can open it, but it is recognisably an MP4
    cut.write_bytes(data[:4000])
    with pytest.raises(EncodeError) as info:
        encode(cut, out_dir)
    assert info.value.code == "ERR_MALFORMED_VIDEO"


def test_a_very_short_clip_is_too_short(tmp_path: Path, out_dir: Path) -> None:
    short = make_test_clip(tmp_path / "short.mp4", seconds=0.05, size="320x180", fps=25)
    with pytest.raises(EncodeError) as info:
        encode(short, out_dir)
    assert info.value.code == "ERR_DURATION_TOO_SHORT"


def test_a_folder_with_foreign_files_is_left_alone(clip: Path, out_dir: Path) -> None:
    out_dir.mkdir()
    (out_dir / "precious.doc").write_text("keep me")
    with pytest.raises(EncodeError) as info:
        encode(clip, out_dir)
    assert info.value.code == "ERR_UNKNOWN"
    assert (out_dir / "precious.doc").read_text() == "keep me"


# ---------------------------------------------------------------- the command itself


def test_one_command_decodes_once_and_keeps_gop_rules_identical(out_dir: Path) -> None:
    rungs = plan_ladder(1920, 1080, 25)
    argv = build_command(Path("in.mp4"), out_dir, rungs, Fraction(25), True, preset="veryfast")
    assert argv.count("-i") == 1
    graph = argv[argv.index("-filter_complex") + 1]
    assert "split=4" in graph and graph.count("scale=") == 4
    assert argv[argv.index("-g") + 1] == argv[argv.index("-keyint_min") + 1] == "50"
    assert argv[argv.index("-sc_threshold") + 1] == "0"
    assert argv[argv.index("-force_key_frames") + 1] == "expr:gte(t,n_forced*2)"
    assert argv[argv.index("-var_stream_map") + 1] == (
        "v:0,name:v0 v:1,name:v1 v:2,name:v2 v:3,name:v3 a:0,name:audio"
    )
    rest = build_command(Path("in.mp4"), out_dir, rungs[1:], Fraction(25), False, first_index=1)
    assert rest[rest.index("-var_stream_map") + 1] == "v:0,name:v1 v:1,name:v2 v:2,name:v3"
    assert "-c:a" not in rest
