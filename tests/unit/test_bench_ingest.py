"""The ingest benchmark's arithmetic and its RESULTS.md surgery (bench/ingest.py).

The benchmark itself is not run here (it needs minutes and a quiet machine); what is
checked is what could silently publish wrong figures: the units (1 MB = 10^6 bytes), the
medians and ratios, and that rewriting one section of RESULTS.md keeps every other
section, the hand-written notes included.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest.py"


@pytest.fixture(scope="module")
def ingest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def test_sizes_are_decimal_unless_binary_is_said(ingest: ModuleType) -> None:
    assert ingest.parse_size("100M") == 100_000_000
    assert ingest.parse_size("1G") == 1_000_000_000
    assert ingest.parse_size("1gb") == 1_000_000_000
    assert ingest.parse_size("50MiB") == 50 * 1024 * 1024
    assert ingest.parse_chunk("inf") is None
    assert ingest.parse_chunk("50MiB") == 50 * 1024 * 1024
    for bad in ("", "M", "1.5G", "10X", "-1M"):
        with pytest.raises(ValueError):
            ingest.parse_size(bad)


def test_labels(ingest: ModuleType) -> None:
    assert ingest.size_label(1_000_000_000) == "1 GB"
    assert ingest.size_label(100_000_000) == "100 MB"
    assert ingest.size_label(50 * 1024 * 1024) == "50 MiB"
    assert ingest.chunk_label(None) == "Infinity"


def test_rates_medians_and_ratios(ingest: ModuleType) -> None:
    assert ingest.mb_per_s(1_000_000_000, 4.0) == pytest.approx(250.0)
    assert ingest.rate_cell([300.0, 100.0, 200.0]) == "200 (100-300)"
    assert ingest.rate_cell([1234.4]) == "1,234"
    assert ingest.rate_cell([]) == "-"
    # median over median: ours 300 vs theirs 200 (not the mean of per-round ratios)
    assert ingest.ratio_cell([250.0, 300.0, 400.0], [150.0, 200.0, 600.0]) == "1.50x"
    assert ingest.ratio_cell([], [1.0]) == "-"


def test_a_section_is_replaced_and_the_others_kept(
    ingest: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmark results\n\n## Encoding\n\nencode figures\n\n"
        "## Ingest (tus), local disk\n\nold local figures\n\n"
        "## Ingest (tus): notes\n\nhand-written\n"
    )
    monkeypatch.setattr(ingest, "RESULTS", results)
    local, s3 = ingest.SECTIONS["local"], ingest.SECTIONS["s3"]

    ingest.write_section(local, ["new local figures"], "cmd --only local")
    text = results.read_text()
    assert "old local figures" not in text
    assert "new local figures" in text and "Command: `cmd --only local`" in text
    assert "encode figures" in text and "hand-written" in text
    assert text.index("## Encoding") < text.index(local) < text.index("## Ingest (tus): notes")

    ingest.write_section(s3, ["s3 figures"], "cmd --only s3")
    ingest.write_section(s3, ["s3 figures, again"], "cmd --only s3")
    text = results.read_text()
    assert text.count(s3) == 1 and "s3 figures, again" in text
    assert "new local figures" in text and "hand-written" in text


def test_profile_summary_counts_threads_and_frames(ingest: ModuleType, tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "thread (1): MainThread;run (loop.py:1);read (sock.py:2) 6\n"
        "thread (2): worker;write (store.py:3);update (digest.py:4) 3\n"
        "thread (2): worker;write (store.py:3) 1\n"
    )
    text = "\n".join(ingest.summarize_profile(raw))
    assert "10 samples" in text
    assert " 60.0%  thread (1): MainThread" in text
    assert " 40.0%  thread (2): worker" in text
    assert " 40.0%  write (store.py:3)" in text  # inclusive: both worker stacks
