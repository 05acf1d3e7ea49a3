"""Tests of the benchmark script (experiments/benchmark.py), run as a command at tiny sizes."""

import csv
import subprocess
import sys
from itertools import product

import pytest

from conftest import REPO

SCRIPT = str(REPO / "experiments/benchmark.py")
TINY = [
    "--shapes=2,6,3,4",
    "--rounds=1",
    "--long_length=16",
    "--compile_lengths=8,16",
    "--linear_length=16",
    "--path_shapes=3,5,2,4",
    "--torch=false",
]
SECTION_TITLES = [
    "## Cells",
    "## Long sequences",
    "## Compile time vs length",
    "## Linear recurrences vs LSTM",
    "## Fused or step path",
    "## Targets",
]
TARGET_ROWS = [
    "| training ≥1.5× faster than Flax (long-range) |",
    "| training ≥1.0× Flax's speed (throughput) |",
    "| training ≥1.2× faster than PyTorch (long-range) | not measured: --torch=false |",
    "| inference ≥1.5× faster than Flax (long-range) |",
    "| remat cuts peak memory ≥4× for ≤1.5× the time (long length) |",
    "| an lru or mamba layer ≥5× faster than the LSTM layer |",
]


def run(*args, timeout=300):
    command = [sys.executable, SCRIPT, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_tiny_run_writes_every_section_target_and_measurement(tmp_path):
    out = tmp_path / "report" / "BENCH.md"
    done = run(*TINY, f"--out={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    for title in [*SECTION_TITLES, *TARGET_ROWS]:
        assert title in text, title
    assert "--shapes=2,6,3,4" in text and "jax " in text and "flax " in text
    assert "| custom | 2,6,3,4 | lstm | training | fused |" in text
    assert "## Targets" in done.stdout and f"wrote {out}" in done.stdout

    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert all(float(r["median_ms"]) > 0 for r in rows)
    cells = {(r["cell"], r["mode"], r["candidate"]) for r in rows if r["section"] == "cells"}
    candidates = ("recurrax", "recurrax-step", "flax", "matmul")
    assert cells == set(product(("rnn", "lstm", "gru"), ("inference", "training"), candidates))
    long = {r["candidate"]: r for r in rows if r["section"] == "long"}
    assert set(long) == {"no remat", "remat", "step, no remat", "step, remat"}
    assert all(float(r["temp_mib"]) > 0 and float(r["peak_mib"]) > 0 for r in long.values())
    compiled = {(r["shape"], r["candidate"]) for r in rows if r["section"] == "compile"}
    assert compiled == {(f"8,{T},32,64", k) for T in (8, 16) for k in ("recurrax", "flax")}
    assert {r["cell"] for r in rows if r["section"] == "linear"} == {"lstm", "lru", "mamba"}
    paths = {(r["shape"], r["cell"], r["candidate"]) for r in rows if r["section"] == "paths"}
    assert paths == set(product(("3,5,2,4",), ("rnn", "lstm", "gru"), ("fused", "step")))
    assert "| 3,5,2,4 | 12 | gru |" in text


@pytest.mark.parametrize(
    "flag", ["--shapes=1,2,3", "--rounds=0", "--cells=lstm,transformer", "--path_shapes=4,4"]
)
def test_bad_flags_exit_with_a_message_naming_the_flag(tmp_path, flag):
    done = run(flag, f"--out={tmp_path / 'never.md'}", timeout=120)
    assert done.returncode != 0
    assert flag.split("=")[0] in done.stderr
    assert not (tmp_path / "never.md").exists()


def test_targets_name_the_rows_that_would_need_more_than_the_matmul_rate():
    from experiments import benchmark

    def row(cell, recurrax, flax, matmul):
        times = {"recurrax": recurrax, "flax": flax, "matmul": matmul}
        return {"regime": "long-range", "mode": "inference", "cell": cell, "shape": (1, 2, 3, 4),
                "times": times}  # fmt: skip

    rows = [row("rnn", 1.0, 2.0, 0.1), row("lstm", 1.0, 1.2, 0.1), row("gru", 1.0, 1.2, 0.9)]
    measured, status = benchmark.cell_target(rows, "long-range", "inference", "flax", 1.5, None)
    assert status == "not met"
    assert measured.startswith("1.20× (worst: lstm at 1,2,3,4); 2 of 3 rows short")
    # gru needs 1.2 / 1.5 = 0.8 s, less than its 0.9 s matmul; lstm's 0.8 s is above 0.1 s.
    assert measured.endswith("matmul: gru at 1,2,3,4 (needs ≤800.000 ms, matmul 900.000 ms)")
    measured, status = benchmark.cell_target(rows, "long-range", "inference", "flax", 1.1, None)
    assert (measured, status) == ("1.20× (worst: lstm at 1,2,3,4)", "met")
