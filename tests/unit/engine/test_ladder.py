"""The ladder planner: sizes, rates, levels and frame rates, without ffmpeg."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hybridvideo.engine.ladder import h264_level, plan_fps, plan_ladder


def sizes(width: int, height: int, fps: float = 25) -> list[tuple[int, int]]:
    return [(r.width, r.height) for r in plan_ladder(width, height, fps)]


def test_1080p_gets_the_four_reference_rungs() -> None:
    rungs = plan_ladder(1920, 1080, 25)
    assert [r.name for r in rungs] == ["360p", "540p", "720p", "1080p"]
    assert [(r.width, r.height) for r in rungs] == [
        (640, 360),
        (960, 540),
        (1280, 720),
        (1920, 1080),
    ]
    assert [r.video_kbps for r in rungs] == [730, 2000, 3000, 6000]
    assert [r.level for r in rungs] == ["3.0", "3.1", "3.1", "4.0"]
    for r in rungs:
        assert r.maxrate_kbps == round(r.video_kbps * 1.5)
        assert r.bufsize_kbps == r.video_kbps * 2
        assert r.profile == "high"
        assert r.audio_kbps == 128


def test_720p_stops_at_its_own_size() -> None:
    assert sizes(1280, 720) == [(640, 360), (960, 540), (1280, 720)]


def test_360p_gets_one_rung() -> None:
    rungs = plan_ladder(640, 360, 30)
    assert [(r.name, r.width, r.height, r.video_kbps) for r in rungs] == [("360p", 640, 360, 730)]


def test_a_source_below_360p_is_never_upscaled() -> None:
    rungs = plan_ladder(320, 180, 25)
    assert len(rungs) == 1
    assert (rungs[0].name, rungs[0].width, rungs[0].height) == ("180p", 320, 180)
    # the rate follows the pixel area, with Apple's lowest rung as a floor
    assert rungs[0].video_kbps == round(730 * 0.25)
    assert plan_ladder(160, 90, 25)[0].video_kbps == 145


def test_portrait_is_planned_on_its_short_side() -> None:
    assert sizes(1080, 1920) == [(360, 640), (540, 960), (720, 1280), (1080, 1920)]
    assert [r.name for r in plan_ladder(1080, 1920, 30)] == ["360p", "540p", "720p", "1080p"]


@pytest.mark.parametrize(
    ("width", "height"), [(1279, 719), (1921, 1081), (321, 181), (853, 479), (1917, 803)]
)
def test_odd_sizes_become_even_and_never_exceed_the_source(width: int, height: int) -> None:
    for w, h in sizes(width, height):
        assert w % 2 == 0 and h % 2 == 0
        assert w <= width and h <= height
    assert sizes(321, 181) == [(320, 180)]


def test_aspect_ratio_is_kept_and_rate_follows_the_area() -> None:
    rungs = plan_ladder(1440, 1080, 25)  # 4:3
    assert [(r.width, r.height) for r in rungs] == [
        (480, 360),
        (720, 540),
        (960, 720),
        (1440, 1080),
    ]
    assert rungs[0].video_kbps == round(730 * 0.75)
    wide = plan_ladder(1920, 804, 24)  # 2.39:1 scope
    assert [(r.width, r.height) for r in wide][-1] == (1920, 804)
    assert len(wide) == 4


def test_a_source_close_to_a_box_gets_that_rung_at_its_own_size() -> None:
    rungs = plan_ladder(1900, 1060, 25)
    assert (rungs[-1].name, rungs[-1].width, rungs[-1].height) == ("1080p", 1900, 1060)
    # but a clearly smaller source stops at the rung below
    assert sizes(1000, 562)[-1] == (960, 540)


def test_4k_tops_out_at_1080p() -> None:
    assert sizes(3840, 2160)[-1] == (1920, 1080)
    assert sizes(2160, 3840)[-1] == (1080, 1920)


def test_high_frame_rates_get_more_bits_and_higher_levels() -> None:
    rungs = plan_ladder(1920, 1080, 60)
    assert [r.video_kbps for r in rungs] == [1095, 3000, 4500, 9000]
    assert [r.level for r in rungs] == ["3.1", "3.2", "3.2", "4.2"]


def test_frame_rate_is_kept_and_capped_at_60_by_an_integer_divisor() -> None:
    assert plan_fps(25) == 25
    assert plan_fps(Fraction(30000, 1001)) == Fraction(30000, 1001)
    assert plan_fps(Fraction(60000, 1001)) == Fraction(60000, 1001)
    assert plan_fps(60) == 60
    assert plan_fps(120) == 60
    assert plan_fps(100) == 50
    assert plan_fps(Fraction(120000, 1001)) == Fraction(60000, 1001)
    assert plan_fps(240) == 60
    assert plan_fps(0) == 30  # unknown rate


def test_levels_follow_the_h264_table() -> None:
    assert h264_level(640, 360, 30, 1000, 1500) == "3.0"
    assert h264_level(1280, 720, 30, 4500, 6000) == "3.1"
    assert h264_level(1280, 720, 60, 4500, 6000) == "3.2"
    assert h264_level(1920, 1080, 30, 9000, 12000) == "4.0"
    assert h264_level(1920, 1080, 30, 30000, 40000) == "4.1"  # bit rate alone raises it
    assert h264_level(1920, 1080, 60, 13500, 18000) == "4.2"


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_ladder(0, 1080, 25)
