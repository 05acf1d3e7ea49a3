"""Tests of the benchmark script (experiments/benchmark.py): its pure functions, and the script run
as a command at tiny sizes."""

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
    "--max_rounds=2",
    "--long_length=16",
    "--compile_lengths=8,16",
    "--selective_lengths=16",
    "--chunk_length=16",
    "--chunk_sizes=8",
    "--path_shapes=3,5,2,4",
    "--torch=false",
]
SECTION_TITLES = [
    "## Cells",
    "## Long sequences",
    "## Compile time vs length",
    "## Selective state spaces vs LSTM and LRU",
    "## Mamba-2 chunk size (chunked training step, T=16)",
    "## Fused or step path",
    "## Targets",
]
TARGET_ROWS = [
    "| inference ≥1.0× Flax's speed at every cell shape (within the spread) |",
    "| Mamba block training step (8,4096,64; d_state 16, expand 2; default method) ≥0.7× the "
    "LSTM layer's speed | not measured: no selective training row at T=4096 |",
    "| Mamba block training step (same): peak temporary memory below one (B,T,E,N) float32 "
    "array (256 MiB) |",
    "| Mamba-2 chunked training step (T=4096, same width and state) ≥2× faster than the LSTM "
    "layer |",
    "| Mamba-2 chunked training step: peak temporary memory at T=16384 over T=4096 (linear in "
    "T: ≈4) |",
    "| no regression: training torch/recurrax, long-range (worst row) | not measured |",
    "| for reference: LRU layer speed over the LSTM layer's (training, T=4096) |",
]
SELECTIVE = [
    ("lstm", "default"),
    ("lru", "default"),
    ("mamba", "fused"),
    ("mamba", "sequential"),
    ("mamba2", "chunked"),
    ("mamba2", "fused"),
]
FLOORS = [
    ("floor", "matmul of lstm"),
    ("floor", "matmul of mamba"),
    ("floor", "matmul of mamba2"),
    ("floor", "exp(Δ⊗A) pass"),
]


@pytest.fixture(scope="module")
def benchmark():
    from experiments import benchmark

    return benchmark


def run(*args, timeout=600):
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
    assert "interquartile range" in text and "Previous run (no-regression rows): none" in text
    assert "| custom | 2,6,3,4 | lstm | training | fused |" in text
    assert "## Targets" in done.stdout and f"wrote {out}" in done.stdout

    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert all(r["note"] == "" for r in rows), [r["note"] for r in rows if r["note"]]
    for r in rows:
        assert 0 < float(r["q1_ms"]) <= float(r["median_ms"]) <= float(r["q3_ms"]), r
        assert 1 <= int(r["rounds"]) <= 2 or r["section"] == "compile", r
    cells = {(r["cell"], r["mode"], r["candidate"]) for r in rows if r["section"] == "cells"}
    candidates = ("recurrax", "recurrax-step", "flax", "matmul")
    assert cells == set(product(("rnn", "lstm", "gru"), ("inference", "training"), candidates))
    long = {r["candidate"]: r for r in rows if r["section"] == "long"}
    assert set(long) == {"no remat", "remat", "step, no remat", "step, remat"}
    assert all(float(r["temp_mib"]) > 0 and float(r["peak_mib"]) > 0 for r in long.values())
    compiled = {(r["shape"], r["candidate"]) for r in rows if r["section"] == "compile"}
    assert compiled == {(f"8,{T},32,64", k) for T in (8, 16) for k in ("recurrax", "flax")}
    selective = [r for r in rows if r["section"] == "selective"]
    assert {(r["cell"], r["candidate"]) for r in selective} == set(SELECTIVE + FLOORS)
    assert {(r["shape"], r["mode"]) for r in selective} == {
        ("8,16,64,64", mode) for mode in ("inference", "training")
    }
    assert all(float(r["peak_mib"]) > 0 for r in selective if r["cell"] != "floor")
    assert all(float(r["median_ms"]) > 0 for r in selective if r["cell"] == "floor")
    chunks = [r for r in rows if r["section"] == "chunks"]
    assert [(r["shape"], r["cell"], r["candidate"]) for r in chunks] == [
        ("8,16,64,64", "mamba2", "chunk 8")
    ]
    paths = {(r["shape"], r["cell"], r["candidate"]) for r in rows if r["section"] == "paths"}
    assert paths == set(product(("3,5,2,4",), ("rnn", "lstm", "gru"), ("fused", "step")))
    assert "| 3,5,2,4 | 12 | gru |" in text


@pytest.mark.parametrize(
    "flag",
    [
        "--shapes=1,2,3",
        "--rounds=0",
        "--cells=lstm,transformer",
        "--path_shapes=4,4",
        "--selective_lengths=16,x",
        "--chunk_sizes=0",
        "--max_rounds=3",  # below the default --rounds=7
    ],
)
def test_bad_flags_exit_with_a_message_naming_the_flag(tmp_path, flag):
    done = run(flag, f"--out={tmp_path / 'never.md'}", timeout=120)
    assert done.returncode != 0
    assert flag.split("=")[0] in done.stderr
    assert not (tmp_path / "never.md").exists()


# --------------------------------------------------------------------------------------------
# Spreads, adaptive rounds and the "within noise" flag


def test_quartiles_and_relative_spread(benchmark):
    assert benchmark.quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert benchmark.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert benchmark.summarize([4.0, 1.0, 3.0, 2.0, 5.0]) == benchmark.Timing(3.0, 2.0, 4.0, 5)
    assert benchmark.relative_spread([4.0, 1.0, 3.0, 2.0, 5.0]) == pytest.approx(2 / 3)
    # One outlier in seven rounds does not widen the interquartile range.
    assert benchmark.relative_spread([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 9.0]) == 0.0


def test_adaptive_rounds_stop_at_the_base_when_tight_and_at_the_cap_when_wide(benchmark):
    plan = benchmark.Plan(rounds=3, max_rounds=6, spread_limit=0.1)
    more = benchmark.needs_more_rounds
    assert more({"a": [1.0, 1.0], "b": [1.0, 1.0]}, plan)  # fewer than the base rounds
    assert not more({"a": [1.0, 1.01, 1.02], "b": [2.0, 2.0, 2.0]}, plan)  # every spread tight
    assert more({"a": [1.0, 1.01, 1.02], "b": [1.0, 2.0, 3.0]}, plan)  # b is wide
    assert not more({"a": [1.0] * 6, "b": [1.0, 2.0, 3.0] * 2}, plan)  # at the cap
    assert not more({}, plan)

    calls = []

    def candidate(name):
        return lambda: calls.append(name)

    times = benchmark.time_candidates(
        {"x": candidate("x"), "y": candidate("y")}, plan._replace(spread_limit=1e9), warmup=1
    )
    assert {t.rounds for t in times.values()} == {3}
    warmup, rounds = calls[:2], calls[2:]
    assert warmup == ["x", "y"]
    assert rounds == ["x", "y", "y", "x", "x", "y"]  # each round starts one candidate later
    times = benchmark.time_candidates({"x": lambda: None}, plan._replace(spread_limit=-1.0))
    assert times["x"].rounds == 6


def test_ratio_interval_within_noise_and_verdict(benchmark):
    Timing, Ratio = benchmark.Timing, benchmark.Ratio
    r = benchmark.ratio(Timing(1.0, 0.9, 1.2, 7), Timing(2.0, 1.8, 2.5, 7))
    assert r == pytest.approx(Ratio(0.5, 0.9 / 2.5, 1.2 / 1.8))
    faster, slower = Timing(1.0, 0.95, 1.05, 7), Timing(1.02, 0.98, 1.1, 7)
    assert benchmark.within_noise(benchmark.ratio(faster, slower), 1.0)
    assert benchmark.ratio_text(faster, slower) == "0.98 [0.86–1.07] within noise"
    assert benchmark.ratio_text(faster, Timing(2.0, 1.9, 2.1, 7)) == "0.50 [0.45–0.55]"
    assert benchmark.ratio_text(Timing(2.0, 2.0, 2.0, 1), Timing(1.0, 1.0, 1.0, 1)) == "2.00"
    assert benchmark.verdict(Ratio(1.1, 1.0, 1.2), 1.0) == "met"
    assert benchmark.verdict(Ratio(0.95, 0.9, 1.01), 1.0) == "met within noise"
    assert benchmark.verdict(Ratio(1.4, 1.3, 1.45), 2.0) == "missed by 30%"


# --------------------------------------------------------------------------------------------
# Targets


def timing(seconds):
    return {"median": seconds, "q1": seconds * 0.99, "q3": seconds * 1.01, "rounds": 7}


def cell_row(benchmark, cell, recurrax, flax, matmul, regime="long-range", mode="inference"):
    times = {k: benchmark.Timing(**timing(v)) for k, v in
             {"recurrax": recurrax, "flax": flax, "matmul": matmul}.items()}  # fmt: skip
    return {"regime": regime, "mode": mode, "cell": cell, "shape": (1, 2, 3, 4), "times": times}


def test_targets_name_the_rows_that_would_need_more_than_the_matmul_rate(benchmark):
    rows = [
        cell_row(benchmark, "rnn", 1.0, 2.0, 0.1),
        cell_row(benchmark, "lstm", 1.0, 1.2, 0.1),
        cell_row(benchmark, "gru", 1.0, 1.2, 0.9),
    ]
    measured, status = benchmark.cell_target(rows, "long-range", "inference", "flax", 1.5)
    assert status == "missed by 20%"
    assert measured.startswith("1.20× [1.18–1.22] (worst: lstm at 1,2,3,4); 2 of 3 rows below")
    # gru needs 1.2 / 1.5 = 0.8 s, less than its 0.9 s matmul; lstm's 0.8 s is above 0.1 s.
    assert measured.endswith("matmul: gru at 1,2,3,4 (needs ≤800.000 ms, matmul 900.000 ms)")
    measured, status = benchmark.cell_target(rows, "long-range", "inference", "flax", 1.1)
    assert (measured, status) == ("1.20× [1.18–1.22] (worst: lstm at 1,2,3,4)", "met")


def test_inference_target_covers_every_regime_and_counts_noise_as_met(benchmark):
    rows = [
        cell_row(benchmark, "rnn", 1.0, 1.5, 0.1, regime="throughput"),
        cell_row(benchmark, "lstm", 1.0, 0.995, 0.1),  # below 1.0, but within the spread
        cell_row(benchmark, "gru", 1.0, 0.9, 0.1, mode="training"),  # another mode: not counted
    ]
    measured, status = benchmark.cell_target(rows, None, "inference", "flax", 1.0)
    assert status == "met within noise"
    assert measured.startswith("0.99× [0.98–1.02] (worst: lstm at 1,2,3,4); 1 of 2 rows below")
    assert "(1 within noise)" in measured
    rows[0] = cell_row(benchmark, "rnn", 1.0, 0.8, 0.1, regime="throughput")
    assert benchmark.cell_target(rows, None, "inference", "flax", 1.0)[1] == "missed by 20%"
    assert benchmark.cell_target(None, None, "inference", "flax", 1.0)[1] == "not measured"


def selective_results(benchmark, lstm=1.0, mamba=1.25, mamba2=0.4, temps=(200.0, 60.0, 230.0)):
    """Training rows at T=4096 and 16384: mamba fused is the default."""
    Timing = benchmark.Timing
    mamba_temp, mamba2_temp, mamba2_long_temp = temps
    results = []
    for length, scale in ((4096, 1), (16384, 4)):
        times = {"lstm": lstm, "lru": 0.4, "mamba fused": mamba, "mamba sequential": 3.0,
                 "mamba2 chunked": mamba2}  # fmt: skip
        memory = {name: (10.0 * scale, 20.0 * scale) for name in times}
        memory["mamba fused"] = (mamba_temp * scale, mamba_temp * scale + 5)
        memory["mamba2 chunked"] = (mamba2_temp if scale == 1 else mamba2_long_temp, 100.0)
        memory["mamba2 fused"] = (1.0, 2.0)
        results.append({
            "shape": (8, length, 64, 64), "mode": "training",
            "times": {k: Timing(**timing(v * scale)) for k, v in times.items()},
            "memory": memory, "paths": {}, "notes": {"mamba2 fused": "failed: ValueError: x"},
            "default": {"lstm": True, "lru": True, "mamba fused": True, "mamba2 chunked": True},
        })  # fmt: skip
    return results


def test_mamba_and_mamba2_targets(benchmark):
    results = {"selective": selective_results(benchmark)}
    _, speed, memory, speed2, growth = benchmark.targets(results, None)[:5]
    assert "≥0.7× the LSTM layer's speed" in speed[0] and "below one (B,T,E,N)" in memory[0]
    assert speed[1:] == ("0.80× [0.78–0.82] (mamba fused)", "", "met")
    assert memory[1:] == ("200.0 MiB temp (mamba fused)", "", "met")
    assert "≥2× faster" in speed2[0] and "T=16384 over T=4096" in growth[0]
    assert speed2[1:] == ("2.50× [2.45–2.55]", "", "met")
    assert growth[1:] == ("3.83× (230.0 MiB / 60.0 MiB temp)", "", "linear")

    slow = {"selective": selective_results(benchmark, mamba=2.0, mamba2=0.6,
                                           temps=(300.0, 60.0, 480.0))}  # fmt: skip
    statuses = [r[3] for r in benchmark.targets(slow, None)[1:5]]
    assert statuses == ["missed by 29%", "missed by 44 MiB (1.17×)", "missed by 17%",
                        "above linear by 100%"]  # fmt: skip

    not_run = benchmark.targets({"selective": None}, None)[1:5]
    assert {r[1] for r in not_run} == {"not measured: selective section not run"}
    no_default = selective_results(benchmark)
    for row in no_default:
        row["default"]["mamba fused"] = False
    assert benchmark.targets({"selective": no_default}, None)[1][1] == (
        "not measured: mamba's default method was not timed"
    )


def test_no_regression_rows_compare_like_with_like_rows_of_the_previous_run(benchmark):
    Timing = benchmark.Timing

    def long(remat, shape=(8, 16, 32, 64)):
        times = {"no remat": Timing(1.0, 0.95, 1.05, 7), "remat": Timing(*remat, 7)}
        return {"shape": shape, "times": times,
                "memory": {"no remat": (4.0, 8.0), "remat": (1.0, 2.0)}}  # fmt: skip

    now = {
        "cells": [
            cell_row(benchmark, "lstm", 1.0, 1.2, 0.1, mode="training"),
            cell_row(benchmark, "gru", 1.0, 0.5, 0.1, mode="training") | {"shape": (9, 9, 9, 9)},
        ],
        "long": long((1.1, 1.05, 1.15)),
        "selective": selective_results(benchmark),
    }
    before = {
        "cells": [cell_row(benchmark, "lstm", 1.0, 1.5, 0.1, mode="training")],
        "long": long((1.05, 1.0, 1.1)),
        "selective": selective_results(benchmark, lstm=1.02),
    }
    rows = {row[0]: row[1:] for row in benchmark.regression_rows(now, before)}
    # gru at 9,9,9,9 has no previous row, so it is left out on both sides.
    assert rows["no regression: training flax/recurrax, long-range (worst row)"] == (
        "1.20× [1.18–1.22]", "1.50× [1.47–1.53]", "regressed by 20%"
    )  # fmt: skip
    assert rows["no regression: training flax/recurrax, throughput (worst row)"][2] == (
        "not measured"
    )
    remat_memory = "no regression: remat: peak memory without / with (LSTM, long length, default "
    remat_memory += "method)"
    assert rows[remat_memory] == ("4.00×", "4.00×", "kept")
    # 0.91 [0.83–1.00] now against 0.95 [0.86–1.05] before: lower, but the intervals overlap.
    remat_time = "no regression: remat: time without / with (LSTM, long length, default method)"
    assert rows[remat_time] == ("0.91× [0.83–1.00]", "0.95× [0.86–1.05]", "kept within noise")
    lru = rows["for reference: LRU layer speed over the LSTM layer's (training, T=4096)"]
    assert lru == ("2.50× [2.45–2.55]", "2.55× [2.50–2.60]", "reference only")

    # A long section at another length is not compared.
    before["long"] = long((1.05, 1.0, 1.1), shape=(8, 32, 32, 64))
    rows = {row[0]: row[1:] for row in benchmark.regression_rows(now, before)}
    assert rows[remat_memory] == ("4.00×", "", "no previous value")
    assert benchmark.regression_status(benchmark.Ratio(1.0, 0.9, 1.1), None) == "no previous value"
    assert benchmark.regression_status(None, benchmark.Ratio(1.0, 1.0, 1.0)) == "not measured"


def test_csv_round_trip_gives_the_previous_run(benchmark, tmp_path):
    results = {
        "cells": [cell_row(benchmark, "lstm", 1.0, 1.2, 0.1, regime="throughput")],
        "selective": selective_results(benchmark),
    }
    path = tmp_path / "previous.csv"
    benchmark.write_csv(path, benchmark.csv_rows(results))
    previous = benchmark.load_previous(path)
    assert benchmark.load_previous(tmp_path / "missing.csv") is None
    (row,) = previous["cells"]
    assert (row["regime"], row["shape"], row["cell"], row["mode"]) == (
        "throughput", (1, 2, 3, 4), "lstm", "inference"
    )  # fmt: skip
    assert row["times"]["flax"] == benchmark.Timing(1.2, 1.188, 1.212, 7)
    assert previous["long"] is None
    first = previous["selective"][0]
    assert first["times"]["mamba fused"].median == pytest.approx(1.25)
    assert "mamba2 fused" not in first["times"] and first["memory"]["mamba2 fused"] == (1.0, 2.0)
    with open(path) as f:
        failed = [r for r in csv.DictReader(f) if r["note"]]
    assert [(r["cell"], r["candidate"], r["median_ms"]) for r in failed] == [
        ("mamba2", "fused", ""), ("mamba2", "fused", "")
    ]  # fmt: skip


def test_the_old_csv_format_and_linear_section_are_read(benchmark, tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(
        "section,regime,shape,cell,mode,candidate,median_ms,temp_mib,peak_mib\n"
        'cells,long-range,"8,2048,32,64",lstm,training,recurrax,100.000,,\n'
        'cells,long-range,"8,2048,32,64",lstm,training,flax,150.000,,\n'
        'linear,,"8,4096,64,64",lstm,training,recurrax,300.000,,\n'
        'linear,,"8,4096,64,64",lru,training,recurrax,120.000,,\n'
    )
    previous = benchmark.load_previous(path)
    worst = benchmark.worst_ratio(previous["cells"], "long-range", "training", "flax")[0]
    assert worst == pytest.approx(benchmark.Ratio(1.5, 1.5, 1.5))
    lru = benchmark.selective_against_lstm(previous["selective"], "lru")[0]
    assert lru == pytest.approx(benchmark.Ratio(2.5, 2.5, 2.5))


def test_a_layer_that_fails_or_could_exceed_the_limits_is_not_timed(benchmark):
    import jax.numpy as jnp

    xs = jnp.ones((1, 8, benchmark.SELECTIVE_WIDTH), jnp.float32)
    assert benchmark.predicted_seconds(None, 8) == 0.0
    assert benchmark.predicted_seconds((4, 2.0), 8) == 8.0  # scaled by T², a bound

    def never():
        raise AssertionError("a layer predicted over the limit is not built")

    skipped = benchmark.prepare_call(never, None, None, "training", xs, (7.0, 1e9), (4, 2.0))
    assert skipped.call is None and skipped.note.startswith("not run: one call could take 8 s")

    def broken():
        raise RuntimeError("no such path\nmore detail")

    failed = benchmark.prepare_call(broken, None, None, "training", xs, (7.0, 1e9), None)
    assert (failed.call, failed.note) == (None, "failed: RuntimeError: no such path")

    def lstm():
        return benchmark.make_selective_cell("lstm")

    big = benchmark.prepare_call(lstm, None, None, "inference", xs, (7.0, 0.0), None)
    assert big.call is None and big.note.startswith("not run: needs 0 MiB")
    assert big.memory[1] > 0 and big.path == "fused"
    ok = benchmark.prepare_call(lstm, "step", None, "inference", xs, (60.0, 1e9), None)
    assert ok.call is not None and ok.note == "" and ok.path == "step" and ok.seconds > 0
