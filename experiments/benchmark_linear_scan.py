"""Benchmark of the linear-recurrence engine: sequential, associative and chunked scans.

For every (batch, length, state) shape it times the forward pass and the forward+backward pass of
each method, beside an elementwise pass over the same bytes (``a * h + b`` over the whole array:
what a scan would cost if it were limited by memory bandwidth alone). Everything is measured in one
process, interleaved round by round, warm, and reported as medians and ratios; then it checks
that ``method="auto"`` picks a method within 10% of the fastest one at each shape.

    python experiments/benchmark_linear_scan.py                # writes experiments/results/linear_scan.{md,csv}
    python experiments/benchmark_linear_scan.py --rounds=3 --shapes=4x1024x16
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags

import recurrax
from recurrax.paths import choose_linear_method

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "shapes",
    ["16x1024x64", "8x4096x64", "1x4096x256", "64x4096x16", "1x65536x64", "4x65536x16"],
    "BxTxN shapes to measure",
)
flags.DEFINE_integer("rounds", 7, "timed rounds (the median is reported)", lower_bound=1)
flags.DEFINE_string("out", "experiments/results/linear_scan", "output path without extension")
flags.DEFINE_enum("dtype", "float32", ["float32", "complex64"], "dtype of a, b and the state")

# (label, method, chunk_size, unroll)
CONFIGS = [
    ("sequential", "sequential", None, 1),
    ("sequential/unroll8", "sequential", None, 8),
    ("associative", "associative", None, 1),
    ("chunked/64", "chunked", 64, 1),
    ("chunked/256", "chunked", 256, 1),
    ("chunked/1024", "chunked", 1024, 1),
]


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        B, T, N = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"--shapes entries must look like 8x4096x64; got {text!r}") from None
    return B, T, N


def make_functions(method, chunk_size, unroll):
    def forward(a, b):
        return recurrax.linear_scan(a, b, method=method, chunk_size=chunk_size, unroll=unroll)[1]

    def loss(a, b):
        return jnp.sum(jnp.real(forward(a, b)) ** 2)

    return jax.jit(forward), jax.jit(jax.grad(loss, argnums=(0, 1)))


def timed(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def measure(shape, dtype, rounds):
    T = shape[1]
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.uniform(ka, shape, jnp.float32, 0.5, 0.99).astype(dtype)
    b = jax.random.normal(kb, shape, jnp.float32).astype(dtype)
    elementwise = jax.jit(lambda a, b: a * b + b)
    candidates = {("elementwise", "forward"): elementwise}
    for label, method, chunk, unroll in CONFIGS:
        if method == "chunked" and chunk >= T:
            continue
        fwd, fwd_bwd = make_functions(method, chunk, unroll)
        candidates[(label, "forward")] = fwd
        candidates[(label, "forward+backward")] = fwd_bwd
    for fn in candidates.values():  # compile and warm up
        timed(fn, a, b)
        timed(fn, a, b)
    samples = {key: [] for key in candidates}
    for _ in range(rounds):  # interleaved: every candidate once per round
        for key, fn in candidates.items():
            samples[key].append(timed(fn, a, b))
    return {key: statistics.median(v) for key, v in samples.items()}


def auto_label(shape):
    method, chunk = choose_linear_method(*shape)
    return {"sequential": "sequential", "associative": "associative"}.get(
        method, f"chunked/{chunk}"
    )


def main(argv):
    del argv
    shapes = [parse_shape(s) for s in FLAGS.shapes]
    dtype = jnp.dtype(FLAGS.dtype)
    device = jax.devices()[0]
    header = (
        f"Measured {datetime.date.today().isoformat()} on {device.platform} "
        f"({device.device_kind}; {os.cpu_count()} cores, {platform.machine()}), "
        f"jax {jax.__version__}, dtype {FLAGS.dtype}, median of {FLAGS.rounds} interleaved rounds.\n"
        f"Command: `python experiments/benchmark_linear_scan.py "
        f"--shapes={','.join(FLAGS.shapes)} --rounds={FLAGS.rounds} --dtype={FLAGS.dtype}`\n"
    )
    print(header)
    rows, checks = [], []
    for shape in shapes:
        medians = measure(shape, dtype, FLAGS.rounds)
        yardstick = medians[("elementwise", "forward")]
        auto = auto_label(shape)
        for mode in ("forward", "forward+backward"):
            timings = {
                lbl: t for (lbl, m), t in medians.items() if m == mode and lbl != "elementwise"
            }
            fastest_label = min(timings, key=timings.get)
            fastest = timings[fastest_label]
            for label, t in timings.items():
                rows.append(
                    {
                        "shape": "x".join(map(str, shape)),
                        "mode": mode,
                        "method": label,
                        "ms": f"{t * 1e3:.3f}",
                        "vs_fastest": f"{t / fastest:.2f}",
                        "vs_elementwise": f"{t / yardstick:.1f}",
                        "auto": "yes" if label == auto else "",
                    }
                )
            ratio = timings[auto] / fastest if auto in timings else float("inf")
            checks.append((shape, mode, auto, fastest_label, ratio))
            print(
                f"{'x'.join(map(str, shape)):>12s} {mode:17s} fastest {fastest_label:18s} "
                f"{fastest * 1e3:9.3f} ms   auto {auto:18s} x{ratio:.2f}  "
                f"elementwise {yardstick * 1e3:.3f} ms",
                flush=True,
            )
    write(rows, checks, header)


def write(rows, checks, header):
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Linear scan benchmark",
        "",
        header,
        "",
        "`vs_fastest`: time over the fastest method at that shape and mode. `vs_elementwise`: "
        "time over one elementwise pass `a * b + b` over the same arrays (the bandwidth "
        "yardstick).",
        "",
        "| shape BxTxN | mode | method | median ms | vs fastest | vs elementwise | auto |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['shape']} | {r['mode']} | {r['method']} | {r['ms']} | {r['vs_fastest']} | "
        f"{r['vs_elementwise']} | {r['auto']} |"
        for r in rows
    ]
    lines += [
        "",
        "## Does `auto` pick a method within 10% of the fastest?",
        "",
        "| shape | mode | auto picks | fastest | auto / fastest | within 10% |",
        "|---|---|---|---|---:|---|",
    ]
    passed = 0
    for shape, mode, auto, fastest, ratio in checks:
        ok = ratio <= 1.10
        passed += ok
        lines.append(
            f"| {'x'.join(map(str, shape))} | {mode} | {auto} | {fastest} | "
            f"{ratio:.2f} | {'yes' if ok else 'NO'} |"
        )
    summary = f"auto within 10% of the fastest: {passed} of {len(checks)} (shape, mode) pairs"
    lines += ["", summary, ""]
    print(summary)
    with open(out.with_suffix(".md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


if __name__ == "__main__":
    app.run(main)
