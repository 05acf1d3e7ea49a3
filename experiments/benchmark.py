"""Speed, memory and compile-time benchmark of recurrax's cells against Flax and PyTorch.

Sections (``--sections``, all by default):

* ``cells``: ``rnn``, ``lstm`` and ``gru`` at each ``--shapes`` entry (batch, length, input,
  hidden), inference (forward, outputs) and training (``value_and_grad`` of ``mean(ys**2)`` with
  respect to the params), for ``recurrax.unroll`` with its default method, the same with
  ``method="step"`` (the reference path), ``flax.linen.RNN``, ``torch.nn.{RNN,LSTM,GRU}`` (when
  torch is installed) and a yardstick: one ``x @ w`` with the cell's matmul FLOPs.
* ``long``: an LSTM training step at ``--long_length`` steps without and with ``remat=True``: time
  and the compiled step's memory.
* ``compile``: time to trace and compile a fresh LSTM training step, recurrax and Flax, by length.
* ``linear``: a training step of one LRU layer and one Mamba block against one LSTM layer.
* ``paths``: the training step of each cell on the fused path against the step path at each
  ``--path_shapes`` entry: the crossover behind ``recurrax.fused.default_method``.

A ``Targets`` table closes the report. Every timing is the median over ``--rounds`` rounds, after
two warm-up calls, with the candidates interleaved within each round; all in float32.

    python experiments/benchmark.py                  # writes BENCHMARKS.md and BENCHMARKS.csv
    python experiments/benchmark.py --sections=cells --cells=lstm --rounds=3

Reading the ratios: ``flax/recurrax``, ``torch/recurrax`` and ``step/recurrax`` are time ratios,
above 1 when recurrax (default method) is faster. ``matmul/recurrax`` is the yardstick's time over
recurrax's: the fraction of this machine's matmul rate that recurrax reaches (1 would mean the
recurrence costs no more than its matrix multiplies done as one large product).
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

import recurrax
from recurrax.fused import default_method

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPES = "32,256,128,256;16,1024,64,128;8,2048,32,64"
PATH_SHAPES = "8,512,128,256;32,512,32,64;16,256,128,256;32,256,64,128;64,256,64,128;32,256,128,256"
REGIMES = {
    (32, 256, 128, 256): "throughput",
    (16, 1024, 64, 128): "long-range",
    (8, 2048, 32, 64): "long-range",
}
CELLS = {"rnn": recurrax.rnn, "lstm": recurrax.lstm, "gru": recurrax.gru}
FLAX_CELLS = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
SECTIONS = ("cells", "long", "compile", "linear", "paths")
MODES = ("inference", "training")
CANDIDATES = ("recurrax", "recurrax-step", "flax", "torch", "matmul")
WARMUP_CALLS = 2
COMPILE_REPEATS = 3
LINEAR_BATCH, LINEAR_WIDTH = 8, 64
MIB = 2**20


def parse_shapes(text: str) -> list[tuple[int, int, int, int]]:
    """``"B,T,D,H;B,T,D,H"`` -> shapes; raises ValueError naming the bad entry."""
    shapes = []
    for entry in text.split(";"):
        parts = entry.split(",")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(
                f"entries must be batch,length,input,hidden (positive integers) separated by ';'; "
                f"got {entry!r}"
            )
        shapes.append(shape)
    return shapes


def _check(predicate, message):
    def check(value):
        if not predicate(value):
            raise flags.ValidationError(message)
        return True

    return check


def _valid_shapes(text):
    try:
        parse_shapes(text)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "markdown report (default: BENCHMARKS.md at the repository root)")
flags.DEFINE_string("csv", None, "CSV of every measurement (default: --out with .csv)")
flags.DEFINE_list("sections", list(SECTIONS), f"sections to run, among {', '.join(SECTIONS)}")
flags.DEFINE_list("cells", list(CELLS), f"cells of the cells section, among {', '.join(CELLS)}")
flags.DEFINE_string("shapes", DEFAULT_SHAPES, "';'-separated batch,length,input,hidden shapes")
flags.DEFINE_integer(
    "rounds", 7, "timed rounds per measurement (the median is reported)", lower_bound=1
)
flags.DEFINE_boolean("torch", True, "time torch.nn.RNN/LSTM/GRU when torch can be imported")
flags.DEFINE_integer("long_length", 16384, "sequence length of the long section", lower_bound=1)
flags.DEFINE_integer("long_batch", 8, "batch of the long and compile sections", lower_bound=1)
flags.DEFINE_integer("long_input", 32, "input size of the long and compile sections", lower_bound=1)
flags.DEFINE_integer("long_hidden", 64, "LSTM size of the long and compile sections", lower_bound=1)
flags.DEFINE_list("compile_lengths", ["256", "1024", "4096", "16384"], "lengths to compile at")
flags.DEFINE_integer("linear_length", 4096, "sequence length of the linear section", lower_bound=1)
flags.DEFINE_string("path_shapes", PATH_SHAPES, "';'-separated shapes of the paths section")
flags.register_validator("shapes", _valid_shapes)
flags.register_validator("path_shapes", _valid_shapes)
flags.register_validator(
    "sections",
    _check(lambda v: bool(v) and set(v) <= set(SECTIONS), f"--sections must be among {SECTIONS}"),
)
flags.register_validator(
    "cells",
    _check(lambda v: bool(v) and set(v) <= set(CELLS), f"--cells must be among {tuple(CELLS)}"),
)
flags.register_validator(
    "compile_lengths",
    _check(
        lambda v: bool(v) and all(s.isdigit() and int(s) >= 1 for s in v),
        "--compile_lengths must be positive integers separated by ','",
    ),
)


# --------------------------------------------------------------------------------------------
# Timing


def median_times(candidates: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each zero-argument, blocking candidate; warmed up, interleaved."""
    for call in candidates.values():
        for _ in range(WARMUP_CALLS):
            call()
    samples = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, call in candidates.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def progress(label, times):
    """Prints one measurement's medians as soon as they are known."""
    print(f"  {label}: " + ", ".join(f"{k} {ms(v)} ms" for k, v in times.items()), flush=True)


def blocking(fn, *args):
    """A zero-argument call of ``fn(*args)`` that waits for the result."""
    return lambda: jax.block_until_ready(fn(*args))


# --------------------------------------------------------------------------------------------
# The functions measured


def recurrax_forward(cell, method=None, remat=None):
    """``(params, xs) -> ys`` through ``recurrax.unroll``."""

    def forward(params, xs):
        return recurrax.unroll(cell, params, xs, method=method, remat=remat)[1]

    return forward


def flax_forward(model):
    """``(variables, xs) -> ys`` through a Flax Linen module."""

    def forward(variables, xs):
        return model.apply(variables, xs)

    return forward


def training_step(forward):
    """``(params, xs) -> (loss, grads)`` for the loss ``mean(forward(params, xs) ** 2)``."""

    def loss(params, xs):
        return jnp.mean(jnp.square(forward(params, xs)))

    return jax.value_and_grad(loss)


def for_mode(forward, mode):
    """The function that ``mode`` times: the forward pass, or the training step."""
    return forward if mode == "inference" else training_step(forward)


def matmul_yardstick(shape, cell_name, mode):
    """One jitted ``x @ w`` with the cell's matmul FLOPs (three times them for training)."""
    B, T, D, H = shape
    rows = B * T * (1 if mode == "inference" else 3)
    kx, kw = jax.random.split(jax.random.key(2))
    x = jax.random.normal(kx, (rows, D + H), jnp.float32)
    w = jax.random.normal(kw, (D + H, GATES[cell_name] * H), jnp.float32)
    return blocking(jax.jit(jnp.matmul), x, w)


def torch_candidate(torch, cell_name, shape, mode, device):
    """A blocking call of ``torch.nn.{RNN,LSTM,GRU}`` (inference, or forward + backward)."""
    B, T, D, H = shape
    torch.manual_seed(0)
    module_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name]
    module = module_class(D, H, batch_first=True).to(device)
    xs = torch.randn(B, T, D, device=device, dtype=torch.float32)
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None

    def inference():
        with torch.no_grad():
            module(xs)
        sync()

    def training():
        module.zero_grad(set_to_none=True)
        ys, _ = module(xs)
        ys.square().mean().backward()
        sync()

    return inference if mode == "inference" else training


def load_torch():
    """``(torch module or None, device, why not)``."""
    if not FLAGS.torch:
        return None, None, "--torch=false"
    try:
        import torch
    except ImportError:
        return None, None, "torch not installed"
    gpu = jax.devices()[0].platform == "gpu" and torch.cuda.is_available()
    return torch, "cuda" if gpu else "cpu", None


# --------------------------------------------------------------------------------------------
# Sections


def run_cells(shapes, cell_names, rounds, torch_info):
    """Times every candidate per (shape, cell, mode); one result dict each."""
    torch, device, _ = torch_info
    results = []
    for shape in shapes:
        B, T, D, H = shape
        xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float32)
        for cell_name in cell_names:
            cell = CELLS[cell_name](H)
            params = cell.init(jax.random.key(0), D)
            model = nn.RNN(FLAX_CELLS[cell_name](H))
            variables = model.init(jax.random.key(0), xs)
            path = default_method(cell.projected, params, B)  # what recurrax's default runs
            for mode in MODES:
                candidates = {
                    "recurrax": blocking(
                        jax.jit(for_mode(recurrax_forward(cell), mode)), params, xs
                    ),
                    "recurrax-step": blocking(
                        jax.jit(for_mode(recurrax_forward(cell, "step"), mode)), params, xs
                    ),
                    "flax": blocking(jax.jit(for_mode(flax_forward(model), mode)), variables, xs),
                    "matmul": matmul_yardstick(shape, cell_name, mode),
                }
                if torch is not None:
                    candidates["torch"] = torch_candidate(torch, cell_name, shape, mode, device)
                times = median_times(candidates, rounds)
                result = {"regime": REGIMES.get(shape, "custom"), "shape": shape, "path": path}
                results.append(result | {"cell": cell_name, "mode": mode, "times": times})
                progress(f"{shape_text(shape)} {cell_name} {mode}", times)
    return results


def memory_mib(compiled):
    """``(temp, temp + arguments + outputs)`` in MiB of a compiled function, or Nones."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None, None
    temp = stats.temp_size_in_bytes
    total = temp + stats.argument_size_in_bytes + stats.output_size_in_bytes
    return temp / MIB, total / MIB


LONG_RUNS = {  # label: (method, remat); the target compares the first two (the default method)
    "no remat": (None, None),
    "remat": (None, True),
    "step, no remat": ("step", None),
    "step, remat": ("step", True),
}


def run_long(length, batch, input_size, hidden, rounds):
    """LSTM training step without and with ``remat=True``, for the default method and the step
    path: times and memory."""
    cell = recurrax.lstm(hidden)
    params = cell.init(jax.random.key(0), input_size)
    xs = jax.random.normal(jax.random.key(1), (batch, length, input_size), jnp.float32)
    compiled = {
        label: jax.jit(training_step(recurrax_forward(cell, method=method, remat=remat)))
        .lower(params, xs)
        .compile()
        for label, (method, remat) in LONG_RUNS.items()
    }
    times = median_times({k: blocking(c, params, xs) for k, c in compiled.items()}, rounds)
    memory = {k: memory_mib(c) for k, c in compiled.items()}
    return {"shape": (batch, length, input_size, hidden), "times": times, "memory": memory}


def lstm_training_factory(kind, hidden):
    """A new (never compiled) LSTM training-step function of recurrax or Flax."""
    if kind == "recurrax":
        return training_step(recurrax_forward(recurrax.lstm(hidden)))
    return training_step(flax_forward(nn.RNN(nn.OptimizedLSTMCell(hidden))))


def run_compile(lengths, batch, input_size, hidden):
    """Median seconds to trace and compile a fresh training step, per (length, library)."""
    params = {
        "recurrax": recurrax.lstm(hidden).init(jax.random.key(0), input_size),
        "flax": nn.RNN(nn.OptimizedLSTMCell(hidden)).init(
            jax.random.key(0), jnp.zeros((batch, 1, input_size), jnp.float32)
        ),
    }
    results = []
    for length in lengths:
        xs = jnp.zeros((batch, length, input_size), jnp.float32)
        samples = {kind: [] for kind in params}
        for _ in range(COMPILE_REPEATS):
            for kind in params:
                fn = lstm_training_factory(kind, hidden)
                start = time.perf_counter()
                jax.jit(fn).lower(params[kind], xs).compile()
                samples[kind].append(time.perf_counter() - start)
        times = {kind: statistics.median(s) for kind, s in samples.items()}
        results.append({"shape": (batch, length, input_size, hidden), "times": times})
        progress(f"compile T={length}", times)
    return results


def run_linear(length, rounds):
    """Training step of one LSTM, LRU and Mamba layer of width 64 at ``length`` steps."""
    cells = {
        "lstm": recurrax.lstm(LINEAR_WIDTH),
        "lru": recurrax.lru(state_size=LINEAR_WIDTH, features=LINEAR_WIDTH),
        "mamba": recurrax.mamba(LINEAR_WIDTH),
    }
    xs = jax.random.normal(jax.random.key(1), (LINEAR_BATCH, length, LINEAR_WIDTH), jnp.float32)
    candidates = {}
    for name, cell in cells.items():
        params = cell.init(jax.random.key(0), LINEAR_WIDTH)
        candidates[name] = blocking(jax.jit(training_step(recurrax_forward(cell))), params, xs)
    times = median_times(candidates, rounds)
    return {"shape": (LINEAR_BATCH, length, LINEAR_WIDTH, LINEAR_WIDTH), "times": times}


def run_paths(shapes, rounds):
    """Training step of each cell on the fused and on the step path, per shape."""
    results = []
    for shape in shapes:
        B, T, D, H = shape
        xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float32)
        for cell_name, make in CELLS.items():
            cell = make(H)
            params = cell.init(jax.random.key(0), D)
            candidates = {
                method: blocking(jax.jit(training_step(recurrax_forward(cell, method))), params, xs)
                for method in ("fused", "step")
            }
            times = median_times(candidates, rounds)
            default = default_method(cell.projected, params, B)
            results.append({"shape": shape, "cell": cell_name, "default": default, "times": times})
            progress(f"paths {shape_text(shape)} {cell_name}", times)
    return results


# --------------------------------------------------------------------------------------------
# Targets


def rows_against(cell_results, regime, mode, rival):
    """The cells-section rows of ``regime`` and ``mode`` in which ``rival`` was timed."""
    return [
        r
        for r in cell_results
        if r["regime"] == regime and r["mode"] == mode and rival in r["times"]
    ]


def speedup(row, rival):
    """``rival/recurrax`` time ratio of one row."""
    return row["times"][rival] / row["times"]["recurrax"]


def worst_ratio(cell_results, regime, mode, rival):
    """Smallest ``rival/recurrax`` time ratio over the cells and shapes of ``regime``."""
    rows = rows_against(cell_results, regime, mode, rival)
    if not rows:
        return None
    worst = min(rows, key=lambda r: speedup(r, rival))
    ratio = speedup(worst, rival)
    return ratio, f"{ratio:.2f}× (worst: {worst['cell']} at {shape_text(worst['shape'])})"


def cell_target(cell_results, regime, mode, rival, threshold, missing):
    """``(measured, status)`` of "recurrax ≥ threshold × faster than rival" in a regime."""
    if cell_results is None:
        return "not measured: cells section not run", "not measured"
    if rival == "torch" and missing:
        return f"not measured: {missing}", "not measured"
    found = worst_ratio(cell_results, regime, mode, rival)
    if found is None:
        return f"not measured: no {regime} shape in --shapes", "not measured"
    ratio, text = found
    return text + below_yardstick(cell_results, regime, mode, rival, threshold), (
        "met" if ratio >= threshold else "not met"
    )


def below_yardstick(cell_results, regime, mode, rival, threshold):
    """The rows that miss the target, and those among them where it asks for less time than one
    matmul of the same FLOPs takes: a loop of the same products cannot meet it at this machine's
    matmul rate."""
    rows = rows_against(cell_results, regime, mode, rival)
    short = [r for r in rows if speedup(r, rival) < threshold]
    if not short:
        return ""
    below = [r for r in short if r["times"][rival] / threshold < r["times"]["matmul"]]
    text = f"; {len(short)} of {len(rows)} rows short"
    if below:
        text += ", where it needs less time than the same-FLOP matmul: " + ", ".join(
            f"{r['cell']} at {shape_text(r['shape'])} (needs ≤{ms(r['times'][rival] / threshold)} "
            f"ms, matmul {ms(r['times']['matmul'])} ms)"
            for r in below
        )
    return text


def remat_target(long_result):
    """``(measured, status)`` of "remat: ≥4× less peak memory for ≤1.5× the time", for the default
    method and for the step path (plain autodiff of the loop)."""
    if long_result is None:
        return "not measured: long section not run", "not measured"
    memory, times = long_result["memory"], long_result["times"]
    if any(total is None for _, total in memory.values()):
        return "not measured: no memory analysis on this backend", "not measured"

    def cut(plain, remat):
        return memory[plain][1] / memory[remat][1], times[remat] / times[plain]

    runs = {"default": cut("no remat", "remat"), "step path": cut("step, no remat", "step, remat")}
    text = "; ".join(f"{k}: memory {m:.2f}× smaller, time {t:.2f}×" for k, (m, t) in runs.items())
    text += f" (T={long_result['shape'][1]})"
    met = [k for k, (m, t) in runs.items() if m >= 4 and t <= 1.5]
    status = "met" if len(met) == len(runs) else f"met on the {met[0]} only" if met else "not met"
    return text, status


def linear_target(linear_result):
    """``(measured, status)`` of "the faster of lru and mamba is ≥5× faster than the LSTM"."""
    if linear_result is None:
        return "not measured: linear section not run", "not measured"
    times = linear_result["times"]
    best = max(("lru", "mamba"), key=lambda k: times["lstm"] / times[k])
    ratio = times["lstm"] / times[best]
    return f"{ratio:.2f}× ({best})", "met" if ratio >= 5 else "not met"


def targets(cells, long, linear, torch_missing):
    """One ``(target, measured, status)`` per target."""
    rows = [
        ("training ≥1.5× faster than Flax (long-range)", "long-range", "training", "flax", 1.5),
        ("training ≥1.0× Flax's speed (throughput)", "throughput", "training", "flax", 1.0),
        ("training ≥1.2× faster than PyTorch (long-range)", "long-range", "training", "torch", 1.2),
        ("inference ≥1.5× faster than Flax (long-range)", "long-range", "inference", "flax", 1.5),
    ]
    out = [(name, *cell_target(cells, *args, torch_missing)) for name, *args in rows]
    out.append(("remat cuts peak memory ≥4× for ≤1.5× the time (long length)", *remat_target(long)))
    out.append(("an lru or mamba layer ≥5× faster than the LSTM layer", *linear_target(linear)))
    return out


# --------------------------------------------------------------------------------------------
# Report


def shape_text(shape):
    return ",".join(map(str, shape))


def ms(seconds):
    return f"{seconds * 1e3:.3f}"


def ratio_text(numerator, denominator):
    return "" if numerator is None or denominator is None else f"{numerator / denominator:.2f}"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def cells_table(results):
    header = ["regime", "shape B,T,D,H", "cell", "mode", "default path"]
    header += [f"{c} ms" for c in CANDIDATES]
    header += ["flax/recurrax", "torch/recurrax", "step/recurrax", "matmul/recurrax"]
    rows = []
    for r in results:
        t = r["times"]
        base = t["recurrax"]
        row = [r["regime"], shape_text(r["shape"]), r["cell"], r["mode"], r["path"]]
        row += [ms(t[c]) if c in t else "" for c in CANDIDATES]
        row += [ratio_text(t.get(c), base) for c in ("flax", "torch", "recurrax-step", "matmul")]
        rows.append(row)
    return markdown_table(header, rows)


def long_table(result):
    t, m = result["times"], result["memory"]
    header = ["shape B,T,D,H", "run", "median ms", "temp MiB", "temp+args+outputs MiB"]
    rows = [
        [shape_text(result["shape"]), label, ms(t[label])]
        + [f"{v:.1f}" if v is not None else "n/a" for v in m[label]]
        for label in LONG_RUNS
    ]
    ratios = (
        f"Default method: memory(no remat)/memory(remat): temp "
        f"{ratio_text(m['no remat'][0], m['remat'][0])}, temp+args+outputs "
        f"{ratio_text(m['no remat'][1], m['remat'][1])}; time(remat)/time(no remat): "
        f"{ratio_text(t['remat'], t['no remat'])}. Step path: memory(no remat)/memory(remat): "
        f"temp+args+outputs {ratio_text(m['step, no remat'][1], m['step, remat'][1])}; "
        f"time(remat)/time(no remat): {ratio_text(t['step, remat'], t['step, no remat'])}. "
        f"Step path without remat against the default with remat: memory "
        f"{ratio_text(m['step, no remat'][1], m['remat'][1])}, time "
        f"{ratio_text(t['remat'], t['step, no remat'])}."
    )
    return markdown_table(header, rows) + "\n\n" + ratios


def compile_table(results):
    rows = [
        [r["shape"][1], f"{r['times']['recurrax']:.2f}", f"{r['times']['flax']:.2f}",
         ratio_text(r["times"]["flax"], r["times"]["recurrax"])]
        for r in results
    ]  # fmt: skip
    return markdown_table(["length", "recurrax s", "flax s", "flax/recurrax"], rows)


def linear_table(result):
    t = result["times"]
    rows = [[name, ms(t[name]), ratio_text(t["lstm"], t[name])] for name in t]
    return markdown_table(["layer", "median ms", "lstm/layer"], rows)


def paths_table(results):
    header = [
        "shape B,T,D,H",
        "batch·hidden",
        "cell",
        "fused ms",
        "step ms",
        "step/fused",
        "default",
    ]
    rows = []
    for r in results:
        (B, _, _, H), t = r["shape"], r["times"]
        rows.append([shape_text(r["shape"]), B * H, r["cell"], ms(t["fused"]), ms(t["step"]),
                     ratio_text(t["step"], t["fused"]), r["default"]])  # fmt: skip
    note = (
        "\n\n`step/fused` above 1: the fused path trains faster. `default` is the path "
        "`recurrax.unroll` takes at that shape (`recurrax.fused.default_method`)."
    )
    return markdown_table(header, rows) + note


def targets_table(rows):
    return markdown_table(["target", "measured", "status"], rows)


def csv_rows(cells, long, compiled, linear, paths):
    """One CSV row per measurement."""
    rows = []

    def add(section, regime, shape, cell, mode, candidate, seconds, memory=(None, None)):
        row = dict(section=section, regime=regime, shape=shape_text(shape), cell=cell, mode=mode,
                   candidate=candidate, median_ms=ms(seconds))  # fmt: skip
        for column, mib in zip(("temp_mib", "peak_mib"), memory, strict=True):
            row[column] = "" if mib is None else f"{mib:.2f}"
        rows.append(row)

    for r in cells or []:
        for candidate, seconds in r["times"].items():
            add("cells", r["regime"], r["shape"], r["cell"], r["mode"], candidate, seconds)
    if long is not None:
        for label, seconds in long["times"].items():
            memory = long["memory"][label]
            add("long", "", long["shape"], "lstm", "training", label, seconds, memory)
    for r in compiled or []:
        for kind, seconds in r["times"].items():
            add("compile", "", r["shape"], "lstm", "compile training step", kind, seconds)
    if linear is not None:
        for name, seconds in linear["times"].items():
            add("linear", "", linear["shape"], name, "training", "recurrax", seconds)
    for r in paths or []:
        for method, seconds in r["times"].items():
            add("paths", "", r["shape"], r["cell"], "training", method, seconds)
    return rows


def machine_description():
    """Cores, total memory and CPU model, from ``/proc`` when it is there."""
    parts = [f"{os.cpu_count()} cores"]
    meminfo, cpuinfo = Path("/proc/meminfo"), Path("/proc/cpuinfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                parts.append(f"{int(line.split()[1]) / 2**20:.1f} GiB memory")
    if cpuinfo.exists():
        models = [l.split(":", 1)[1].strip() for l in cpuinfo.read_text().splitlines()
                  if l.startswith("model name")]  # fmt: skip
        if models:
            parts.append(models[0])
    parts.append(f"{platform.system()} {platform.machine()}")
    return ", ".join(parts)


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def header_text(torch_info):
    """Date, device, machine, versions, timing protocol and the command line, as a list."""
    device = jax.devices()[0]
    torch, torch_device, missing = torch_info
    torch_text = (
        f"torch {torch.__version__} (on {torch_device}, {torch.get_num_threads()} threads)"
        if torch is not None
        else f"torch not measured ({missing})"
    )
    versions = ", ".join(
        f"{name} {package_version(name)}"
        for name in ("jax", "jaxlib", "flax")
        if package_version(name)
    )
    command = shlex.join(["python", *sys.argv])
    return "\n".join([
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
        f"machine: {machine_description()}",
        f"- Versions: Python {platform.python_version()}, {versions}, {torch_text}",
        f"- Timing: float32, median of {FLAGS.rounds} interleaved rounds after {WARMUP_CALLS} "
        f"warm-up calls; compile times: median of {COMPILE_REPEATS}",
        f"- Command: `{command}`",
    ])  # fmt: skip


READING = (
    "Ratios are time ratios: `flax/recurrax`, `torch/recurrax` and `step/recurrax` above 1 mean "
    "recurrax (default method) is faster. `matmul/recurrax` is the time of one `x @ w` with the "
    "cell's matmul FLOPs (3× for training) over recurrax's time: the fraction of this machine's "
    "matmul rate that recurrax reaches. `default path` is the method `recurrax.unroll` takes by "
    "default at that shape (`recurrax.fused.default_method`); where it is `step`, `recurrax` and "
    "`recurrax-step` run the same program, and their ratio shows the run's noise. Regimes: the "
    "first default shape is `throughput`, the other two `long-range`; other shapes are `custom`."
)


def write_report(path, header, blocks):
    """The markdown report: header, each section's block, in order."""
    text = "# Benchmarks\n\n" + header + "\n\n" + READING + "\n"
    for title, body in blocks:
        text += f"\n## {title}\n\n{body}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["section", "regime", "shape", "cell", "mode", "candidate", "median_ms"]
    fields += ["temp_mib", "peak_mib"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def section(blocks, title, body):
    blocks.append((title, body))
    print(f"\n## {title}\n\n{body}\n", flush=True)


def main(argv):
    del argv
    out = Path(FLAGS.out) if FLAGS.out else REPO / "BENCHMARKS.md"
    csv_path = Path(FLAGS.csv) if FLAGS.csv else out.with_suffix(".csv")
    sections, rounds = set(FLAGS.sections), FLAGS.rounds
    dims = (FLAGS.long_batch, FLAGS.long_input, FLAGS.long_hidden)
    torch_info = load_torch() if "cells" in sections else (None, None, "cells section not run")
    header = header_text(torch_info)
    print(header, flush=True)
    blocks, cells, long, compiled, linear, paths = [], None, None, None, None, None
    if "cells" in sections:
        cells = run_cells(parse_shapes(FLAGS.shapes), FLAGS.cells, rounds, torch_info)
        note = f"\n\ntorch: not measured ({torch_info[2]})." if torch_info[0] is None else ""
        section(blocks, "Cells", cells_table(cells) + note)
    if "long" in sections:
        long = run_long(FLAGS.long_length, *dims, rounds)
        section(blocks, "Long sequences (LSTM training step)", long_table(long))
    if "compile" in sections:
        compiled = run_compile([int(v) for v in FLAGS.compile_lengths], *dims)
        section(blocks, "Compile time vs length (LSTM training step)", compile_table(compiled))
    if "linear" in sections:
        linear = run_linear(FLAGS.linear_length, rounds)
        title = f"Linear recurrences vs LSTM (training step, shape {shape_text(linear['shape'])})"
        section(blocks, title, linear_table(linear))
    if "paths" in sections:
        paths = run_paths(parse_shapes(FLAGS.path_shapes), rounds)
        section(blocks, "Fused or step path (training step)", paths_table(paths))
    section(blocks, "Targets", targets_table(targets(cells, long, linear, torch_info[2])))
    write_report(out, header, blocks)
    write_csv(csv_path, csv_rows(cells, long, compiled, linear, paths))
    print(f"wrote {out} and {csv_path}")


if __name__ == "__main__":
    app.run(main)
