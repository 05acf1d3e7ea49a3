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
* ``selective``: layers of width 64 at batch 8, at each ``--selective_lengths`` length, training
  step and inference, with the compiled function's memory: one LSTM layer, one LRU layer, the
  Mamba block (``d_state=16, expand=2``) on the fused selective scan (``method="fused"``) and on
  the linear scan (``method="sequential"``), and the Mamba-2 block (``headdim=64``) on the chunked
  state-space-dual form (``method="chunked"``) and on the fused selective scan; beside them the
  floors the machine sets: one product with each layer's matmul FLOPs (three times them for
  training) and one pass of ``exp(Δ⊗A)`` over ``(B, T, E, N)``. A layer whose
  compiled function needs more than ``--selective_memory_limit`` MiB, whose one call takes more
  than ``--selective_call_limit`` seconds (or could, from its time at the previous length scaled
  by T²), or that fails, is not timed and gets a note. Then a Mamba-2 chunk-size sweep: the
  chunked training step at ``--chunk_length`` for each ``--chunk_sizes`` entry.
* ``paths``: the training step of each cell on the fused path against the step path at each
  ``--path_shapes`` entry: the crossover behind ``recurrax.paths.gated_method``.

A ``Targets`` table closes the report: each target with its measured value and met or missed (by
how much), then "no regression" rows that compare ratios with the previous run's CSV (by default
the CSV this run overwrites, read before it is; ``--previous``).

    python experiments/benchmark.py                  # writes BENCHMARKS.md and BENCHMARKS.csv
    python experiments/benchmark.py --sections=cells --cells=lstm --rounds=3 --out=/tmp/b.md

Timing: every timing is the median over at least ``--rounds`` rounds, after two warm-up calls, with
the candidates of one row (one shape, cell and mode) interleaved within each round, each round
starting one candidate later than the one before; all in float32.
The spread printed beside each median, ``[q1–q3]``, is the interquartile range of the rounds (the
middle half of them). A row where some candidate's spread is wide, ``(q3 - q1) / median`` above
``--spread_limit``, gets more interleaved rounds, one at a time, until every candidate's spread is
within the limit or the row has ``--max_rounds`` rounds; the ``rounds`` column says how many it
had.

Reading the ratios: ``flax/recurrax``, ``torch/recurrax`` and ``step/recurrax`` are time ratios,
above 1 when recurrax (default method) is faster. ``matmul/recurrax`` is the yardstick's time over
recurrax's: the fraction of this machine's matmul rate that recurrax reaches (1 would mean the
recurrence costs no more than its matrix multiplies done as one large product). A ratio's interval
``[lo–hi]`` runs from the ratio of the spreads' far ends (``q1`` of one over ``q3`` of the other,
and back); "within noise" marks a ratio whose interval contains the value it is compared with (1
in the tables, the target in the targets table): the measurement cannot tell which side it is on.
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
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

import recurrax
from recurrax import paths
from recurrax.kernels import ssd
from recurrax.paths import gated_method

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
SECTIONS = ("cells", "long", "compile", "selective", "paths")
MODES = ("inference", "training")
CANDIDATES = ("recurrax", "recurrax-step", "flax", "torch", "matmul")
WARMUP_CALLS = 2
COMPILE_REPEATS = 3
MIB = 2**20

# The selective section: layers of width 64 at batch 8 (Mamba: d_state 16, expand 2).
SELECTIVE_BATCH, SELECTIVE_WIDTH, D_STATE, EXPAND, HEADDIM = 8, 64, 16, 2, 64
SELECTIVE_LAYERS = {  # name: (cell, method); method None is the cell's default
    "lstm": ("lstm", None),
    "lru": ("lru", None),
    "mamba fused": ("mamba", "fused"),
    "mamba sequential": ("mamba", "sequential"),
    "mamba2 chunked": ("mamba2", "chunked"),
    "mamba2 fused": ("mamba2", "fused"),
}
# The floors the machine sets, timed beside the layers: one product with a layer's matmul FLOPs per
# step (three times them for training) and one pass of exp(Δ ⊗ A) over (B, T, E, N), reduced as it
# is formed (so that no such array is written, as in the fused kernel).
# Multiply-adds per step of each layer's matrix products, at width W = 64, E = 2W, N = 16:
#   lstm: (W + W)·4W; mamba: W·2E (in) + E·(R + 2N) (x) + R·E (Δ, R = W/16) + E·W (out);
#   mamba2: W·(2E + 2N + E/headdim) (in: z, x, B, C, δ) + E·W (out).
_W, _E, _R = SELECTIVE_WIDTH, EXPAND * SELECTIVE_WIDTH, -(-SELECTIVE_WIDTH // 16)
LAYER_MACS = {
    "lstm": 2 * _W * 4 * _W,
    "mamba": _W * 2 * _E + _E * (_R + 2 * D_STATE) + _R * _E + _E * _W,
    "mamba2": _W * (2 * _E + 2 * D_STATE + _E // HEADDIM) + _E * _W,
}
FLOORS = {f"floor matmul of {kind}": kind for kind in LAYER_MACS} | {"floor exp(Δ⊗A) pass": "exp"}
HEAVY_LAYERS = ("mamba sequential",)  # timed apart from the others (see run_selective)
TARGET_LENGTH, LONG_TARGET_LENGTH = 4096, 16384
# One (B, T, E, N) float32 array at the target shape: 8 * 4096 * 128 * 16 * 4 bytes = 256 MiB.
STATE_ARRAY_MIB = SELECTIVE_BATCH * TARGET_LENGTH * EXPAND * SELECTIVE_WIDTH * D_STATE * 4 / MIB
LINEAR_IN_T_SLACK = 1.1  # a memory ratio up to 1.1 × the length ratio counts as linear in T


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


def _positive_ints(name, allow_empty=False):
    return _check(
        lambda v: (allow_empty or bool(v)) and all(s.isdigit() and int(s) >= 1 for s in v),
        f"--{name} must be positive integers separated by ','",
    )


FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "markdown report (default: BENCHMARKS.md at the repository root)")
flags.DEFINE_string("csv", None, "CSV of every measurement (default: --out with .csv)")
flags.DEFINE_string(
    "previous",
    None,
    "CSV of a previous run for the no-regression rows (default: the --csv file this run "
    "overwrites, when it exists; '' for none)",
)
flags.DEFINE_list("sections", list(SECTIONS), f"sections to run, among {', '.join(SECTIONS)}")
flags.DEFINE_list("cells", list(CELLS), f"cells of the cells section, among {', '.join(CELLS)}")
flags.DEFINE_string("shapes", DEFAULT_SHAPES, "';'-separated batch,length,input,hidden shapes")
flags.DEFINE_integer(
    "rounds", 7, "timed rounds per measurement, at least (the median is reported)", lower_bound=1
)
flags.DEFINE_integer(
    "max_rounds", 15, "at most this many rounds for a row with a wide spread", lower_bound=1
)
flags.DEFINE_float(
    "spread_limit",
    0.1,
    "a row gets more rounds while a candidate's (q3 - q1) / median is above this",
    lower_bound=0.0,
)
flags.DEFINE_boolean("torch", True, "time torch.nn.RNN/LSTM/GRU when torch can be imported")
flags.DEFINE_integer("long_length", 16384, "sequence length of the long section", lower_bound=1)
flags.DEFINE_integer("long_batch", 8, "batch of the long and compile sections", lower_bound=1)
flags.DEFINE_integer("long_input", 32, "input size of the long and compile sections", lower_bound=1)
flags.DEFINE_integer("long_hidden", 64, "LSTM size of the long and compile sections", lower_bound=1)
flags.DEFINE_list("compile_lengths", ["256", "1024", "4096", "16384"], "lengths to compile at")
flags.DEFINE_list(
    "selective_lengths", ["1024", "4096", "16384"], "sequence lengths of the selective section"
)
flags.DEFINE_float(
    "selective_call_limit",
    30.0,
    "selective section: a layer whose one call takes longer (seconds) is not timed",
    lower_bound=0.0,
)
flags.DEFINE_float(
    "selective_memory_limit",
    8192.0,
    "selective section: a layer whose compiled function needs more (MiB) is not run",
    lower_bound=0.0,
)
flags.DEFINE_integer(
    "chunk_length", 4096, "sequence length of the Mamba-2 chunk-size sweep", lower_bound=1
)
flags.DEFINE_list(
    "chunk_sizes", ["32", "64", "128", "256"], "chunk sizes of the Mamba-2 sweep ('' for none)"
)
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
flags.register_validator("compile_lengths", _positive_ints("compile_lengths"))
flags.register_validator("selective_lengths", _positive_ints("selective_lengths"))
flags.register_validator("chunk_sizes", _positive_ints("chunk_sizes", allow_empty=True))
flags.register_multi_flags_validator(
    ["rounds", "max_rounds"],
    lambda f: f["max_rounds"] >= f["rounds"],
    "--max_rounds must be at least --rounds",
)


# --------------------------------------------------------------------------------------------
# Timing: medians, spreads, adaptive rounds


class Timing(NamedTuple):
    """Seconds per call: the median and quartiles over ``rounds`` timed rounds."""

    median: float
    q1: float
    q3: float
    rounds: int


class Ratio(NamedTuple):
    """A ratio of two timings (or memories) and its interval from their spreads."""

    value: float
    lo: float
    hi: float


class Plan(NamedTuple):
    """How many rounds to time: ``rounds`` at least, up to ``max_rounds`` while some candidate's
    relative spread is above ``spread_limit``."""

    rounds: int
    max_rounds: int
    spread_limit: float


def quartiles(samples) -> tuple[float, float, float]:
    """``(q1, median, q3)`` of the samples (linear interpolation between order statistics)."""
    samples = sorted(samples)
    if not samples:
        raise ValueError("no samples")
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, median, q3


def summarize(samples) -> Timing:
    q1, median, q3 = quartiles(samples)
    return Timing(median, q1, q3, len(samples))


def relative_spread(samples) -> float:
    """``(q3 - q1) / median`` of the samples: the interquartile range as a fraction of the median."""
    q1, median, q3 = quartiles(samples)
    return (q3 - q1) / median if median > 0 else 0.0


def needs_more_rounds(samples: dict[str, list[float]], plan: Plan) -> bool:
    """Whether a row (its candidates' samples so far) gets another interleaved round: while some
    candidate's relative spread is above ``plan.spread_limit`` and it has fewer than
    ``plan.max_rounds`` rounds (never before ``plan.rounds``, which the caller runs first)."""
    if not samples:
        return False
    rounds = min(len(s) for s in samples.values())
    if rounds < plan.rounds:
        return True
    if rounds >= plan.max_rounds:
        return False
    return any(relative_spread(s) > plan.spread_limit for s in samples.values())


def time_candidates(candidates: dict, plan: Plan, warmup: int = WARMUP_CALLS) -> dict[str, Timing]:
    """Timing of each zero-argument, blocking candidate: warmed up, then interleaved rounds (each
    round calls every candidate once) until :func:`needs_more_rounds` says stop."""
    for call in candidates.values():
        for _ in range(warmup):
            call()
    samples = {name: [] for name in candidates}
    names = list(candidates)
    while needs_more_rounds(samples, plan):
        # Each round starts one candidate later, so that no candidate always runs right after
        # the same one (whose caches, allocations or spinning threads it would inherit).
        shift = len(samples[names[0]]) % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            candidates[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: summarize(s) for name, s in samples.items()}


def ratio(numerator: Timing, denominator: Timing) -> Ratio:
    """``numerator / denominator`` of the medians, with the interval from the far ends of the
    spreads: ``[q1 / q3', q3 / q1']``."""
    return Ratio(
        numerator.median / denominator.median,
        numerator.q1 / denominator.q3,
        numerator.q3 / denominator.q1,
    )


def within_noise(r: Ratio, target: float) -> bool:
    """Whether the ratio's interval contains ``target``: the run cannot tell which side it is on."""
    return r.lo <= target <= r.hi


def verdict(r: Ratio, threshold: float) -> str:
    """``met``, ``met within noise`` (the median is below but the interval reaches the threshold)
    or ``missed by N%`` (how far the median ratio is below the threshold)."""
    if r.value >= threshold:
        return "met"
    if r.hi >= threshold:
        return "met within noise"
    return f"missed by {shortfall(r.value, threshold)}"


def shortfall(value, threshold):
    """How far ``value`` is below ``threshold``, as a percentage of the threshold."""
    return f"{100 * (1 - value / threshold):.0f}%"


def progress(label, times):
    """Prints one measurement's medians and spreads as soon as they are known."""
    text = ", ".join(f"{k} {timing_text(v)} ms" for k, v in times.items())
    print(f"  {label}: {text or 'nothing timed'} ({rounds_of(times) or 0} rounds)", flush=True)


def blocking(fn, *args):
    """A zero-argument call of ``fn(*args)`` that waits for the result."""
    return lambda: jax.block_until_ready(fn(*args))


# --------------------------------------------------------------------------------------------
# The functions measured


def recurrax_forward(cell, method=None, remat=None, chunk_size=None):
    """``(params, xs) -> ys`` through ``recurrax.unroll``."""

    def forward(params, xs):
        return recurrax.unroll(cell, params, xs, method=method, remat=remat, chunk_size=chunk_size)[
            1
        ]

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
    # PyTorch's OpenMP threads spin for a while after each call; passive waiting keeps them off
    # the cores that the next candidate runs on (set before torch starts its thread pool).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None, None, "torch not installed"
    gpu = jax.devices()[0].platform == "gpu" and torch.cuda.is_available()
    return torch, "cuda" if gpu else "cpu", None


# --------------------------------------------------------------------------------------------
# Sections


def run_cells(shapes, cell_names, plan, torch_info):
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
            path = gated_method(cell.projected, params, B)  # what recurrax's default runs
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
                times = time_candidates(candidates, plan)
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


def run_long(length, batch, input_size, hidden, plan):
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
    times = time_candidates({k: blocking(c, params, xs) for k, c in compiled.items()}, plan)
    progress(f"long T={length}", times)
    memory = {k: memory_mib(c) for k, c in compiled.items()}
    return {"shape": (batch, length, input_size, hidden), "times": times, "memory": memory}


def lstm_training_factory(kind, hidden):
    """A new (never compiled) LSTM training-step function of recurrax or Flax."""
    if kind == "recurrax":
        return training_step(recurrax_forward(recurrax.lstm(hidden)))
    return training_step(flax_forward(nn.RNN(nn.OptimizedLSTMCell(hidden))))


def run_compile(lengths, batch, input_size, hidden):
    """Seconds to trace and compile a fresh training step, per (length, library): median and
    spread of ``COMPILE_REPEATS`` interleaved compilations."""
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
        times = {kind: summarize(s) for kind, s in samples.items()}
        results.append({"shape": (batch, length, input_size, hidden), "times": times})
        progress(f"compile T={length}", times)
    return results


def make_selective_cell(kind):
    """A new cell of the selective section's width."""
    W = SELECTIVE_WIDTH
    if kind == "lstm":
        return recurrax.lstm(W)
    if kind == "lru":
        return recurrax.lru(state_size=W, features=W)
    if kind == "mamba":
        return recurrax.mamba(W, d_state=D_STATE, expand=EXPAND)
    from recurrax.cells.mamba2 import mamba2

    return mamba2(W, d_state=D_STATE, expand=EXPAND, headdim=HEADDIM)


def path_text(cell, params, batch, length, method, chunk_size=None):
    """The concrete path that ``unroll`` takes, e.g. ``fused``, ``sequential`` or ``chunked 64``."""
    path = paths.resolve(cell, params, batch, length, method, chunk_size)
    chunk = path.chunk_size
    if chunk is None and path.method == "chunked" and cell.selective:
        chunk = ssd.DEFAULT_CHUNK  # the state-space-dual kernel's own default
    return path.method + ("" if chunk is None else f" {chunk}")


def first_line(error):
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def predicted_seconds(last, length):
    """A bound on a call's time at ``length`` from ``(length', seconds)`` at a shorter length (0
    without one): as if the time grew with T². A call cannot be interrupted once it runs, so the
    bound errs on the side of skipping: on a loaded 2-core machine one call has been seen to take
    20× longer at 4× the length."""
    if last is None:
        return 0.0
    last_length, seconds = last
    return seconds * (length / last_length) ** 2


class Prepared(NamedTuple):
    """One layer of the selective section, compiled and called once (or why not)."""

    call: object  # a zero-argument blocking call to time, or None when it is not timed
    memory: tuple  # (temp MiB, temp + arguments + outputs MiB), or Nones
    path: str  # the concrete path, e.g. "chunked 64"
    note: str  # why it is not timed, or ""
    seconds: float | None  # the one call's time, when it ran


def prepare_call(make_cell, method, chunk_size, mode, xs, limits, last):
    """Builds, compiles and calls one layer once. No call (and a note) when it fails, when its
    compiled function needs more than the memory limit, or when one call takes (or is predicted
    from ``last``, a shorter length's ``(length, seconds)``, to take) over the time limit."""
    call_limit, memory_limit = limits
    batch, length, _ = xs.shape
    memory, path = (None, None), ""

    def skip(note, seconds=None):
        return Prepared(None, memory, path, note, seconds)

    predicted = predicted_seconds(last, length)
    if predicted > call_limit:
        return skip(
            f"not run: one call could take {predicted:.0f} s ({last[1]:.1f} s at T={last[0]}, "
            f"scaled by T²; over --selective_call_limit={call_limit:g} s)"
        )
    try:
        cell = make_cell()
        params = cell.init(jax.random.key(0), SELECTIVE_WIDTH)
        path = path_text(cell, params, batch, length, method, chunk_size)
        fn = for_mode(recurrax_forward(cell, method, chunk_size=chunk_size), mode)
        compiled = jax.jit(fn).lower(params, xs).compile()
        memory = memory_mib(compiled)
        if memory[1] is not None and memory[1] > memory_limit:
            return skip(
                f"not run: needs {memory[1]:.0f} MiB (over --selective_memory_limit="
                f"{memory_limit:g})"
            )
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, xs))
        seconds = time.perf_counter() - start
    except Exception as error:  # out of memory, or a path this tree does not have
        return skip(f"failed: {first_line(error)}")
    if seconds > call_limit:
        return skip(
            f"not timed: one call took {seconds:.1f} s (over --selective_call_limit="
            f"{call_limit:g} s)",
            seconds,
        )
    return Prepared(blocking(compiled, params, xs), memory, path, "", seconds)


def floor_call(kind, length, mode):
    """A blocking call of one floor of the selective section (see ``FLOORS``)."""
    B = SELECTIVE_BATCH
    kx, kw = jax.random.split(jax.random.key(3))
    if kind == "exp":
        delta = jax.random.uniform(kx, (B, length, _E), jnp.float32)
        A = -jax.random.uniform(kw, (_E, D_STATE), jnp.float32)
        return blocking(jax.jit(lambda d, A: jnp.sum(jnp.exp(d[..., None] * A))), delta, A)
    rows = B * length * (1 if mode == "inference" else 3)
    x = jax.random.normal(kx, (rows, _W), jnp.float32)
    w = jax.random.normal(kw, (_W, LAYER_MACS[kind] // _W), jnp.float32)
    return blocking(jax.jit(jnp.matmul), x, w)


def run_selective(lengths, plan, limits):
    """Training step and inference of each ``SELECTIVE_LAYERS`` layer at each length: times
    (interleaved), memory, the concrete path and, for layers not timed, why."""
    B, W = SELECTIVE_BATCH, SELECTIVE_WIDTH
    results, last = [], {}  # last: (name, mode) -> (length, seconds per call) of the last timing
    defaults = {}
    for length in sorted(lengths):
        xs = jax.random.normal(jax.random.key(1), (B, length, W), jnp.float32)
        for mode in MODES:
            row = {"shape": (B, length, W, W), "mode": mode, "times": {}, "memory": {},
                   "paths": {}, "notes": {}, "default": {}}  # fmt: skip
            calls = {}
            for name, (kind, method) in SELECTIVE_LAYERS.items():
                call, memory, path, note, seconds = prepare_call(
                    lambda kind=kind: make_selective_cell(kind), method, None, mode, xs, limits,
                    last.get((name, mode)),
                )  # fmt: skip
                row["memory"][name], row["paths"][name], row["notes"][name] = memory, path, note
                if seconds is not None:
                    last[(name, mode)] = (length, seconds)
                if call is not None:
                    calls[name] = call
                if kind not in defaults:
                    defaults[kind] = default_method_of(kind, B, length)
                row["default"][name] = method is None or method == defaults[kind]
            for name, kind in FLOORS.items():
                calls[name] = floor_call(kind, length, mode)
                row["memory"][name], row["paths"][name], row["notes"][name] = (None, None), "", ""
                row["default"][name] = False
            # The one call of prepare_call counts as the first warm-up. Layers that hold
            # (T, E·N) arrays are timed in rounds of their own: interleaved with the others, their
            # gigabyte-sized allocations and frees make the allocator return memory to the system
            # and the next candidate fault it back in, which slowed the other layers by up to 2×.
            heavy = {name: calls.pop(name) for name in HEAVY_LAYERS if name in calls}
            row["times"] = time_candidates(calls, plan, warmup=WARMUP_CALLS - 1)
            row["times"] |= time_candidates(heavy, plan, warmup=WARMUP_CALLS - 1)
            for name, timing in row["times"].items():
                last[(name, mode)] = (length, timing.median)
            results.append(row)
            progress(f"selective T={length} {mode}", row["times"])
            for name, note in row["notes"].items():
                if note:
                    print(f"    {name}: {note}", flush=True)
    return results


def default_method_of(kind, batch, length):
    """The method ``unroll`` takes for the section's ``kind`` of cell, or a note why unknown."""
    try:
        cell = make_selective_cell(kind)
        params = cell.init(jax.random.key(0), SELECTIVE_WIDTH)
        return paths.default_method(cell, params, batch, length)
    except Exception as error:
        return f"unknown ({first_line(error)})"


def run_chunks(length, chunk_sizes, plan, limits):
    """The Mamba-2 training step on the chunked form at each chunk size, interleaved."""
    xs = jax.random.normal(
        jax.random.key(1), (SELECTIVE_BATCH, length, SELECTIVE_WIDTH), jnp.float32
    )
    result = {"shape": (SELECTIVE_BATCH, length, SELECTIVE_WIDTH, SELECTIVE_WIDTH),
              "times": {}, "memory": {}, "notes": {}, "default": None}  # fmt: skip
    calls = {}
    for size in chunk_sizes:
        name = f"chunk {size}"
        call, memory, _, note, _ = prepare_call(
            lambda: make_selective_cell("mamba2"), "chunked", size, "training", xs, limits, None
        )
        result["memory"][name], result["notes"][name] = memory, note
        if call is not None:
            calls[name] = call
    try:
        cell = make_selective_cell("mamba2")
        params = cell.init(jax.random.key(0), SELECTIVE_WIDTH)
        default = paths.resolve(cell, params, SELECTIVE_BATCH, length, "chunked", None)
        result["default"] = default.chunk_size or ssd.DEFAULT_CHUNK
    except Exception as error:
        result["default"] = f"unknown ({first_line(error)})"
    result["times"] = time_candidates(calls, plan, warmup=WARMUP_CALLS - 1)
    progress(f"mamba2 chunks T={length}", result["times"])
    return result


def run_paths(shapes, plan):
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
            times = time_candidates(candidates, plan)
            default = gated_method(cell.projected, params, B)
            results.append({"shape": shape, "cell": cell_name, "default": default, "times": times})
            progress(f"paths {shape_text(shape)} {cell_name}", times)
    return results


# --------------------------------------------------------------------------------------------
# Targets


def rows_against(cell_results, regime, mode, rival):
    """The cells-section rows of ``regime`` (None: every regime) and ``mode`` in which ``rival``
    was timed."""
    return [
        r
        for r in cell_results
        if (regime is None or r["regime"] == regime) and r["mode"] == mode and rival in r["times"]
    ]


def speedup(row, rival) -> Ratio:
    """``rival/recurrax`` time ratio of one row, with its interval."""
    return ratio(row["times"][rival], row["times"]["recurrax"])


def worst_ratio(cell_results, regime, mode, rival):
    """``(ratio, row)`` of the smallest ``rival/recurrax`` median ratio, or None."""
    rows = rows_against(cell_results or [], regime, mode, rival)
    if not rows:
        return None
    worst = min(rows, key=lambda r: speedup(r, rival).value)
    return speedup(worst, rival), worst


def interval_text(r: Ratio):
    """``value [lo–hi]``, or the value alone when the interval is a point (no spread known)."""
    if f"{r.lo:.2f}" == f"{r.value:.2f}" == f"{r.hi:.2f}":
        return f"{r.value:.2f}"
    return f"{r.value:.2f} [{r.lo:.2f}–{r.hi:.2f}]"


def ratio_interval_text(r: Ratio):
    return interval_text(r).replace(" ", "× ", 1) if " " in interval_text(r) else f"{r.value:.2f}×"


def below_yardstick(cell_results, regime, mode, rival, threshold):
    """The rows that miss the target, and those among them where it asks for less time than one
    matmul of the same FLOPs: a loop of the same products cannot meet it at this machine's matmul
    rate."""
    rows = rows_against(cell_results, regime, mode, rival)
    short = [r for r in rows if speedup(r, rival).value < threshold]
    if not short:
        return ""
    noise = [r for r in short if speedup(r, rival).hi >= threshold]
    text = f"; {len(short)} of {len(rows)} rows below" + (
        f" ({len(noise)} within noise)" if noise else ""
    )
    below = [r for r in short if r["times"][rival].median / threshold < r["times"]["matmul"].median]
    if below:
        text += ", where it needs less time than the same-FLOP matmul: " + ", ".join(
            f"{r['cell']} at {shape_text(r['shape'])} (needs ≤"
            f"{ms(r['times'][rival].median / threshold)} ms, matmul "
            f"{ms(r['times']['matmul'].median)} ms)"
            for r in below
        )
    return text


def cell_target(cell_results, regime, mode, rival, threshold, missing=None):
    """``(measured, status)`` of "recurrax ≥ threshold × rival's speed in every row of ``regime``
    (None: every regime)": met when the worst row's median ratio reaches it, met within noise when
    every row's interval reaches it, otherwise missed by the worst row's shortfall."""
    if cell_results is None:
        return "not measured: cells section not run", "not measured"
    if rival == "torch" and missing:
        return f"not measured: {missing}", "not measured"
    found = worst_ratio(cell_results, regime, mode, rival)
    if found is None:
        return f"not measured: no {regime or mode} row with {rival}", "not measured"
    worst, row = found
    rows = rows_against(cell_results, regime, mode, rival)
    text = f"{ratio_interval_text(worst)} (worst: {row['cell']} at {shape_text(row['shape'])})"
    text += below_yardstick(cell_results, regime, mode, rival, threshold)
    if worst.value >= threshold:
        return text, "met"
    if all(speedup(r, rival).hi >= threshold for r in rows):
        return text, "met within noise"
    return text, f"missed by {shortfall(worst.value, threshold)}"


def selective_row(selective, length, mode):
    """The selective-section row at ``length`` and ``mode``, or None."""
    return next((r for r in selective or [] if r["shape"][1] == length and r["mode"] == mode), None)


def selective_against_lstm(selective, name, length=TARGET_LENGTH):
    """``lstm/name`` training time ratio at ``length`` (the layer's speed over the LSTM's), or
    ``(None, why not)``."""
    row = selective_row(selective, length, "training")
    if row is None:
        return None, f"not measured: no selective training row at T={length}"
    for needed in ("lstm", name):
        if needed not in row["times"]:
            why = row.get("notes", {}).get(needed) or "not run"
            return None, f"not measured: {needed} at T={length}: {why}"
    return ratio(row["times"]["lstm"], row["times"][name]), ""


def floor_text(selective, kind, length=TARGET_LENGTH):
    """``; the floors allow at most N×``: the LSTM's training time over the layer's floor (its
    matmuls plus two exp passes), or "" when they were not timed."""
    row = selective_row(selective, length, "training")
    names = ("lstm", f"floor matmul of {kind}", "floor exp(Δ⊗A) pass")
    if row is None or any(n not in row["times"] for n in names):
        return ""
    lstm, matmul, exp = (row["times"][n].median for n in names)
    return f"; the floors (matmul + 2 exp passes) allow at most {lstm / (matmul + 2 * exp):.2f}×"


def mamba_default_name(row):
    """The name of the mamba row that runs mamba's default method, or None."""
    return next((n for n in row["times"] if n.startswith("mamba ") and row["default"].get(n)), None)


def not_measured(names, why):
    """Target rows that could not be measured, and why."""
    return [(name, f"not measured: {why}", "", "not measured") for name in names]


def mamba_targets(selective):
    """The Mamba block's speed and memory targets at (8, 4096, 64), default method."""
    name_speed = (
        f"Mamba block training step ({SELECTIVE_BATCH},{TARGET_LENGTH},{SELECTIVE_WIDTH}; d_state "
        f"{D_STATE}, expand {EXPAND}; default method) ≥0.7× the LSTM layer's speed"
    )
    name_memory = (
        "Mamba block training step (same): peak temporary memory below one (B,T,E,N) float32 "
        f"array ({STATE_ARRAY_MIB:.0f} MiB)"
    )
    if selective is None:
        return not_measured((name_speed, name_memory), "selective section not run")
    row = selective_row(selective, TARGET_LENGTH, "training")
    name = mamba_default_name(row) if row else None
    if name is None:
        why = (
            f"no selective training row at T={TARGET_LENGTH}"
            if row is None
            else "mamba's default method was not timed"
        )
        return not_measured((name_speed, name_memory), why)
    r, why = selective_against_lstm(selective, name)
    speed = (
        (
            name_speed,
            f"{ratio_interval_text(r)} ({name}){floor_text(selective, 'mamba')}",
            "",
            verdict(r, 0.7),
        )
        if r
        else (name_speed, why, "", "not measured")
    )
    temp = row["memory"][name][0]
    if temp is None:
        memory = (name_memory, "not measured: no memory analysis", "", "not measured")
    else:
        status = (
            "met"
            if temp < STATE_ARRAY_MIB
            else f"missed by {temp - STATE_ARRAY_MIB:.0f} MiB ({temp / STATE_ARRAY_MIB:.2f}×)"
        )
        memory = (name_memory, f"{temp:.1f} MiB temp ({name})", "", status)
    return [speed, memory]


def mamba2_targets(selective):
    """Mamba-2 chunked: speed against the LSTM layer, and memory growth from T=4096 to 16384."""
    name_speed = (
        f"Mamba-2 chunked training step (T={TARGET_LENGTH}, same width and state) ≥2× faster "
        "than the LSTM layer"
    )
    growth = LONG_TARGET_LENGTH / TARGET_LENGTH
    name_memory = (
        f"Mamba-2 chunked training step: peak temporary memory at T={LONG_TARGET_LENGTH} over "
        f"T={TARGET_LENGTH} (linear in T: ≈{growth:g})"
    )
    if selective is None:
        return not_measured((name_speed, name_memory), "selective section not run")
    r, why = selective_against_lstm(selective, "mamba2 chunked")
    speed = (
        (
            name_speed,
            f"{ratio_interval_text(r)}{floor_text(selective, 'mamba2')}",
            "",
            verdict(r, 2.0),
        )
        if r
        else (name_speed, why, "", "not measured")
    )
    temps = []
    for length in (TARGET_LENGTH, LONG_TARGET_LENGTH):
        row = selective_row(selective, length, "training")
        temps.append(None if row is None else row["memory"].get("mamba2 chunked", (None,))[0])
    if None in temps or temps[0] == 0:
        memory = not_measured([name_memory], "no memory of mamba2 chunked at both lengths")[0]
    else:
        memory_ratio = temps[1] / temps[0]
        status = (
            "linear"
            if memory_ratio <= growth * LINEAR_IN_T_SLACK
            else f"above linear by {100 * (memory_ratio / growth - 1):.0f}%"
        )
        measured = f"{memory_ratio:.2f}× ({temps[1]:.1f} MiB / {temps[0]:.1f} MiB temp)"
        memory = (name_memory, measured, "", status)
    return [speed, memory]


# The ratios that must not regress: (name, metric(results) -> Ratio or None).
def _cells_metric(regime, mode, rival):
    def metric(results):
        found = worst_ratio(results.get("cells"), regime, mode, rival)
        return None if found is None else found[0]

    return metric


def _remat_memory(results):
    long = results.get("long")
    if long is None or any(m[1] is None for m in long["memory"].values()):
        return None
    value = long["memory"]["no remat"][1] / long["memory"]["remat"][1]
    return Ratio(value, value, value)


def _remat_speed(results):
    long = results.get("long")
    return None if long is None else ratio(long["times"]["no remat"], long["times"]["remat"])


def _lru_speed(results):
    return selective_against_lstm(results.get("selective"), "lru")[0]


REGRESSION_METRICS = (
    ("training flax/recurrax, long-range (worst row)", _cells_metric("long-range", "training", "flax")),
    ("training flax/recurrax, throughput (worst row)", _cells_metric("throughput", "training", "flax")),
    ("training torch/recurrax, long-range (worst row)", _cells_metric("long-range", "training", "torch")),
    ("inference flax/recurrax, long-range (worst row)", _cells_metric("long-range", "inference", "flax")),
    ("remat: peak memory without / with (LSTM, long length, default method)", _remat_memory),
    ("remat: time without / with (LSTM, long length, default method)", _remat_speed),
)  # fmt: skip
# Ratios shown beside the previous run's without a verdict: the old "an LRU layer ≥5× faster than
# the LSTM layer" compares two recurrax layers, so its ratio also falls when the LSTM gets faster.
REFERENCE_METRICS = (
    (f"LRU layer speed over the LSTM layer's (training, T={TARGET_LENGTH})", _lru_speed),
)


def regression_status(now: Ratio | None, before: Ratio | None) -> str:
    """``kept`` (not lower), ``kept within noise`` (lower, but the intervals overlap) or
    ``regressed by N%``; ``not measured`` / ``no previous value`` when one side is missing."""
    if now is None:
        return "not measured"
    if before is None:
        return "no previous value"
    if now.value >= before.value:
        return "kept"
    if now.hi >= before.lo:
        return "kept within noise"
    return f"regressed by {shortfall(now.value, before.value)}"


def in_common(results, previous):
    """Both runs' results cut to what both measured: the cells rows of the same (regime, shape,
    cell, mode), and the long section where its shape is the same, so that a no-regression metric
    compares like with like."""

    def key(r):
        return r["regime"], tuple(r["shape"]), r["cell"], r["mode"]

    cells = [results.get("cells") or [], previous.get("cells") or []]
    shared = {key(r) for r in cells[0]} & {key(r) for r in cells[1]}
    long = [results.get("long"), previous.get("long")]
    same_long = None not in long and tuple(long[0]["shape"]) == tuple(long[1]["shape"])
    return [
        run | {"cells": [r for r in run_cells if key(r) in shared] or None,
               "long": run_long if same_long else None}
        for run, run_cells, run_long in zip((results, previous), cells, long, strict=True)
    ]  # fmt: skip


def regression_rows(results, previous):
    """One ``(target, measured, previous, status)`` per ``REGRESSION_METRICS`` entry (and per
    ``REFERENCE_METRICS`` entry, without a verdict). Where the
    previous run gives a value, both sides are cut to the rows both runs measured
    (:func:`in_common`); elsewhere the measured value is this run's over all its rows."""
    shared = in_common(results, previous) if previous is not None else None
    rows = []
    for (name, metric), reference in [
        *((entry, False) for entry in REGRESSION_METRICS),
        *((entry, True) for entry in REFERENCE_METRICS),
    ]:
        before = metric(shared[1]) if shared else None
        now = metric(shared[0]) if before is not None else metric(results)
        status = regression_status(now, before)
        rows.append((
            f"{'for reference' if reference else 'no regression'}: {name}",
            "not measured" if now is None else ratio_interval_text(now),
            "" if before is None else ratio_interval_text(before),
            "reference only" if reference and now is not None else status,
        ))  # fmt: skip
    return rows


def targets(results, previous):
    """One ``(target, measured, previous, status)`` per target; ``results`` holds the sections'
    results by name (None where not run), ``previous`` those read from the previous CSV (or None)."""
    cells = results.get("cells")
    measured, status = cell_target(cells, None, "inference", "flax", 1.0)
    found = worst_ratio(previous.get("cells"), None, "inference", "flax") if previous else None
    rows = [(
        "inference ≥1.0× Flax's speed at every cell shape (within the spread)",
        measured,
        "" if found is None else ratio_interval_text(found[0]),
        status,
    )]  # fmt: skip
    rows += mamba_targets(results.get("selective"))
    rows += mamba2_targets(results.get("selective"))
    return rows + regression_rows(results, previous)


# --------------------------------------------------------------------------------------------
# Previous run


def timing_from_csv(row):
    """The Timing of one CSV row (a single-median Timing for CSVs without spreads), or None."""
    if not row.get("median_ms"):
        return None
    median = float(row["median_ms"]) / 1e3
    q1 = float(row["q1_ms"]) / 1e3 if row.get("q1_ms") else median
    q3 = float(row["q3_ms"]) / 1e3 if row.get("q3_ms") else median
    return Timing(median, q1, q3, int(row["rounds"]) if row.get("rounds") else 0)


def selective_name(cell, candidate):
    """The selective layer name of a CSV row (the old ``linear`` section's rows included)."""
    return cell if candidate in ("default", "recurrax") else f"{cell} {candidate}"


def results_from_csv(rows):
    """The cells, long and selective results of a CSV written by this script (or by its earlier
    versions), as far as the no-regression metrics need them."""
    cells, selective, long = {}, {}, None
    for row in rows:
        timing = timing_from_csv(row)
        shape = tuple(int(v) for v in row["shape"].split(","))
        memory = tuple(float(row[k]) if row.get(k) else None for k in ("temp_mib", "peak_mib"))
        if row["section"] == "cells" and timing is not None:
            key = (row["regime"], shape, row["cell"], row["mode"])
            entry = {"regime": row["regime"], "shape": shape, "cell": row["cell"],
                     "mode": row["mode"], "times": {}}  # fmt: skip
            cells.setdefault(key, entry)["times"][row["candidate"]] = timing
        elif row["section"] == "long" and timing is not None:
            long = long or {"shape": shape, "times": {}, "memory": {}}
            long["times"][row["candidate"]] = timing
            long["memory"][row["candidate"]] = memory
        elif row["section"] in ("selective", "linear"):
            mode = row["mode"]
            entry = {"shape": shape, "mode": mode, "times": {}, "memory": {}, "notes": {},
                     "default": {}}  # fmt: skip
            entry = selective.setdefault((shape, mode), entry)
            name = selective_name(row["cell"], row["candidate"])
            entry["memory"][name] = memory
            if timing is not None:
                entry["times"][name] = timing
    return {"cells": list(cells.values()) or None, "long": long,
            "selective": list(selective.values()) or None}  # fmt: skip


def load_previous(path):
    """The results of the CSV at ``path`` (None when there is none)."""
    if path is None or not path.is_file():
        return None
    with open(path, newline="") as f:
        return results_from_csv(list(csv.DictReader(f)))


# --------------------------------------------------------------------------------------------
# Report


def shape_text(shape):
    return ",".join(map(str, shape))


def ms(seconds):
    return f"{seconds * 1e3:.3f}"


def short_ms(seconds):
    return f"{seconds * 1e3:.4g}"


def timing_text(t: Timing):
    """``median [q1–q3]`` in milliseconds."""
    return f"{ms(t.median)} [{short_ms(t.q1)}–{short_ms(t.q3)}]"


def ratio_text(numerator: Timing | None, denominator: Timing | None, target=1.0):
    """``numerator/denominator [lo–hi]``, with "within noise" where the interval holds ``target``."""
    if numerator is None or denominator is None:
        return ""
    r = ratio(numerator, denominator)
    noise = target is not None and within_noise(r, target)
    return interval_text(r) + (" within noise" if noise else "")


def plain_ratio(numerator, denominator):
    return "" if numerator is None or denominator is None else f"{numerator / denominator:.2f}"


def rounds_of(times):
    return max((t.rounds for t in times.values()), default="")


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def cells_table(results, previous=None):
    header = ["regime", "shape B,T,D,H", "cell", "mode", "default path"]
    header += [f"{c} ms" for c in CANDIDATES]
    header += ["rounds", "flax/recurrax", "torch/recurrax", "step/recurrax", "matmul/recurrax"]
    header += ["previous flax/recurrax"]
    before = {
        (r["regime"], tuple(r["shape"]), r["cell"], r["mode"]): r
        for r in (previous or {}).get("cells") or []
    }
    rows = []
    for r in results:
        t = r["times"]
        base = t["recurrax"]
        row = [r["regime"], shape_text(r["shape"]), r["cell"], r["mode"], r["path"]]
        row += [timing_text(t[c]) if c in t else "" for c in CANDIDATES]
        row += [rounds_of(t)]
        row += [ratio_text(t.get(c), base) for c in ("flax", "torch", "recurrax-step")]
        row += [ratio_text(t.get("matmul"), base, target=None)]
        old = before.get((r["regime"], tuple(r["shape"]), r["cell"], r["mode"]))
        old_times = old["times"] if old else {}
        row += [ratio_text(old_times.get("flax"), old_times.get("recurrax"), target=None)]
        rows.append(row)
    return markdown_table(header, rows)


def long_table(result):
    t, m = result["times"], result["memory"]
    header = ["shape B,T,D,H", "run", "median ms [IQR]", "rounds", "temp MiB",
              "temp+args+outputs MiB"]  # fmt: skip
    rows = [
        [shape_text(result["shape"]), label, timing_text(t[label]), t[label].rounds]
        + [f"{v:.1f}" if v is not None else "n/a" for v in m[label]]
        for label in LONG_RUNS
    ]
    ratios = (
        f"Default method: memory(no remat)/memory(remat): temp "
        f"{plain_ratio(m['no remat'][0], m['remat'][0])}, temp+args+outputs "
        f"{plain_ratio(m['no remat'][1], m['remat'][1])}; time(remat)/time(no remat): "
        f"{ratio_text(t['remat'], t['no remat'], None)}. Step path: memory(no remat)/memory(remat):"
        f" temp+args+outputs {plain_ratio(m['step, no remat'][1], m['step, remat'][1])}; "
        f"time(remat)/time(no remat): {ratio_text(t['step, remat'], t['step, no remat'], None)}. "
        f"Step path without remat against the default with remat: memory "
        f"{plain_ratio(m['step, no remat'][1], m['remat'][1])}, time "
        f"{ratio_text(t['remat'], t['step, no remat'], None)}."
    )
    return markdown_table(header, rows) + "\n\n" + ratios


def seconds_text(t: Timing):
    """``median [q1–q3]`` in seconds."""
    return f"{t.median:.2f} [{t.q1:.2f}–{t.q3:.2f}]"


def compile_table(results):
    rows = [
        [r["shape"][1], seconds_text(r["times"]["recurrax"]), seconds_text(r["times"]["flax"]),
         ratio_text(r["times"]["flax"], r["times"]["recurrax"])]
        for r in results
    ]  # fmt: skip
    return markdown_table(["length", "recurrax s", "flax s", "flax/recurrax"], rows)


def mib_text(value):
    return "n/a" if value is None else f"{value:.1f}"


def selective_table(results):
    header = ["shape B,T,D,H", "mode", "layer", "path", "median ms [IQR]", "rounds",
              "lstm/layer", "temp MiB", "temp+args+outputs MiB", "note"]  # fmt: skip
    rows = []
    for r in results:
        t, lstm = r["times"], r["times"].get("lstm")
        for name in [*SELECTIVE_LAYERS, *FLOORS]:
            if name not in r["memory"]:
                continue
            temp, total = r["memory"][name]
            path = r["paths"].get(name, "") + (" (default)" if r["default"].get(name) else "")
            timed = name in t
            rows.append([shape_text(r["shape"]), r["mode"], name, path,
                         timing_text(t[name]) if timed else "", t[name].rounds if timed else "",
                         ratio_text(lstm, t.get(name), target=None), mib_text(temp),
                         mib_text(total), r["notes"].get(name, "")])  # fmt: skip
    note = (
        "\n\n`lstm/layer` is the LSTM layer's time over the layer's: above 1 when the layer is "
        "faster. `mamba sequential` (the earlier parallel form, which holds `(T, E·N)` arrays) is "
        "timed in rounds of its own, after the others: interleaved with them, its allocations "
        "slowed the other layers by up to 2×. `path` is the concrete method `recurrax.unroll` "
        "runs (`recurrax.paths.resolve`), "
        "`(default)` where it is the cell's default. Memory is the compiled function's "
        "(`memory_analysis()`): temporaries, and temporaries plus arguments and outputs. The "
        "`floor` rows are what the machine sets: one product with the layer's matmul FLOPs (three "
        "times them for training), and one pass of `exp(Δ⊗A)` over `(B, T, E, N)`, summed as it "
        "is formed. A selective layer's training step needs its matmuls and at least two exp "
        "passes (forward, and the states recomputed in the backward pass), so `lstm/layer` above "
        "`lstm / (matmul + 2·exp)` is out of reach on this machine."
    )
    return markdown_table(header, rows) + note


def chunks_table(result):
    t = result["times"]
    fastest = min(t.values(), key=lambda v: v.median) if t else None
    rows = []
    for name, (temp, total) in result["memory"].items():
        timed = name in t
        size = name.split()[1]
        rows.append([size + (" (default)" if str(result["default"]) == size else ""),
                     timing_text(t[name]) if timed else "", t[name].rounds if timed else "",
                     ratio_text(t.get(name), fastest, target=None), mib_text(temp),
                     mib_text(total), result["notes"].get(name, "")])  # fmt: skip
    header = ["chunk_size", "median ms [IQR]", "rounds", "time/fastest", "temp MiB",
              "temp+args+outputs MiB", "note"]  # fmt: skip
    return markdown_table(header, rows)


def paths_table(results):
    header = [
        "shape B,T,D,H",
        "batch·hidden",
        "cell",
        "fused ms",
        "step ms",
        "rounds",
        "step/fused",
        "default",
    ]
    rows = []
    for r in results:
        (B, _, _, H), t = r["shape"], r["times"]
        rows.append([shape_text(r["shape"]), B * H, r["cell"], timing_text(t["fused"]),
                     timing_text(t["step"]), rounds_of(t), ratio_text(t["step"], t["fused"]),
                     r["default"]])  # fmt: skip
    note = (
        "\n\n`step/fused` above 1: the fused path trains faster. `default` is the path "
        "`recurrax.unroll` takes at that shape (`recurrax.paths.gated_method`)."
    )
    return markdown_table(header, rows) + note


def targets_table(rows):
    note = (
        "\n\n`met within noise`: the median misses the target but the interval from the spreads "
        "reaches it. `missed by N%`: the median ratio is N% below the target. The no-regression "
        "rows compare with the previous run's CSV, over the rows both runs measured: `regressed` "
        "only where the two intervals do not overlap (a CSV from before spreads were recorded gives "
        "a point). The `for reference` rows have no verdict: they compare two recurrax layers."
    )
    return markdown_table(["target", "measured", "previous", "status"], rows) + note


CSV_FIELDS = ["section", "regime", "shape", "cell", "mode", "candidate", "median_ms", "q1_ms",
              "q3_ms", "rounds", "temp_mib", "peak_mib", "note"]  # fmt: skip


def csv_rows(results):
    """One CSV row per measurement (and per selective layer not timed, with its note)."""
    rows = []

    def add(section, regime, shape, cell, mode, candidate, timing, memory=(None, None), note=""):
        row = dict(section=section, regime=regime, shape=shape_text(shape), cell=cell, mode=mode,
                   candidate=candidate, note=note)  # fmt: skip
        for column, value in zip(("median_ms", "q1_ms", "q3_ms"), timing or (), strict=False):
            row[column] = ms(value)
        row["rounds"] = "" if timing is None else timing.rounds
        for column, mib in zip(("temp_mib", "peak_mib"), memory, strict=True):
            row[column] = "" if mib is None else f"{mib:.2f}"
        rows.append(row)

    for r in results.get("cells") or []:
        for candidate, timing in r["times"].items():
            add("cells", r["regime"], r["shape"], r["cell"], r["mode"], candidate, timing)
    long = results.get("long")
    if long is not None:
        for label, timing in long["times"].items():
            add("long", "", long["shape"], "lstm", "training", label, timing, long["memory"][label])
    for r in results.get("compile") or []:
        for kind, timing in r["times"].items():
            add("compile", "", r["shape"], "lstm", "compile training step", kind, timing)
    for r in results.get("selective") or []:
        for name, memory in r["memory"].items():
            cell, _, method = name.partition(" ")
            add("selective", "", r["shape"], cell, r["mode"], method or "default",
                r["times"].get(name), memory, r["notes"].get(name, ""))  # fmt: skip
    chunks = results.get("chunks")
    if chunks is not None:
        for name, memory in chunks["memory"].items():
            add("chunks", "", chunks["shape"], "mamba2", "training", name,
                chunks["times"].get(name), memory, chunks["notes"].get(name, ""))  # fmt: skip
    for r in results.get("paths") or []:
        for method, timing in r["times"].items():
            add("paths", "", r["shape"], r["cell"], "training", method, timing)
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


def header_text(torch_info, previous_path):
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
    previous = f"`{previous_path}`" if previous_path else "none"
    return "\n".join([
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Device: {device.platform} ({device.device_kind}), {jax.device_count()} device(s); "
        f"machine: {machine_description()}",
        f"- Versions: Python {platform.python_version()}, {versions}, {torch_text}",
        f"- Timing: float32, median of at least {FLAGS.rounds} interleaved rounds after "
        f"{WARMUP_CALLS} warm-up calls, up to {FLAGS.max_rounds} rounds for a row where a "
        f"candidate's interquartile range is above {FLAGS.spread_limit:g} × its median; spread "
        f"shown as `[q1–q3]`, the interquartile range; compile times: median of {COMPILE_REPEATS}",
        f"- Previous run (no-regression rows): {previous}",
        f"- Command: `{command}`",
    ])  # fmt: skip


READING = (
    "Ratios are time ratios: `flax/recurrax`, `torch/recurrax` and `step/recurrax` above 1 mean "
    "recurrax (default method) is faster. `matmul/recurrax` is the time of one `x @ w` with the "
    "cell's matmul FLOPs (3× for training) over recurrax's time: the fraction of this machine's "
    "matmul rate that recurrax reaches. `default path` is the method `recurrax.unroll` takes by "
    "default at that shape (`recurrax.paths.gated_method`); where it is `step`, `recurrax` and "
    "`recurrax-step` run the same program, and their ratio shows the run's noise. Regimes: the "
    "first default shape is `throughput`, the other two `long-range`; other shapes are `custom`.\n\n"
    "Spreads: `median [q1–q3]` is the median and the interquartile range of the timed rounds, in "
    "ms; `rounds` is how many rounds the row took (more than the base where a spread was wide). "
    "A ratio's `[lo–hi]` goes from one spread's far end to the other's (q1 over q3, q3 over q1); "
    "`within noise` marks a ratio whose interval contains 1: the run cannot tell which is faster."
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
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def section(blocks, title, body):
    blocks.append((title, body))
    print(f"\n## {title}\n\n{body}\n", flush=True)


def previous_csv_path(csv_path):
    """The CSV that the no-regression rows compare with (None for none)."""
    if FLAGS.previous is None:
        return csv_path if csv_path.is_file() else None
    return Path(FLAGS.previous) if FLAGS.previous else None


def main(argv):
    del argv
    out = Path(FLAGS.out) if FLAGS.out else REPO / "BENCHMARKS.md"
    csv_path = Path(FLAGS.csv) if FLAGS.csv else out.with_suffix(".csv")
    previous_path = previous_csv_path(csv_path)
    previous = load_previous(previous_path)  # read before this run overwrites it
    sections = set(FLAGS.sections)
    plan = Plan(FLAGS.rounds, FLAGS.max_rounds, FLAGS.spread_limit)
    limits = (FLAGS.selective_call_limit, FLAGS.selective_memory_limit)
    dims = (FLAGS.long_batch, FLAGS.long_input, FLAGS.long_hidden)
    torch_info = load_torch() if "cells" in sections else (None, None, "cells section not run")
    header = header_text(torch_info, previous_path if previous is not None else None)
    print(header, flush=True)
    blocks, results = [], {}
    if "cells" in sections:
        results["cells"] = run_cells(parse_shapes(FLAGS.shapes), FLAGS.cells, plan, torch_info)
        note = f"\n\ntorch: not measured ({torch_info[2]})." if torch_info[0] is None else ""
        section(blocks, "Cells", cells_table(results["cells"], previous) + note)
    if "long" in sections:
        results["long"] = run_long(FLAGS.long_length, *dims, plan)
        section(blocks, "Long sequences (LSTM training step)", long_table(results["long"]))
    if "compile" in sections:
        results["compile"] = run_compile([int(v) for v in FLAGS.compile_lengths], *dims)
        title = "Compile time vs length (LSTM training step)"
        section(blocks, title, compile_table(results["compile"]))
    if "selective" in sections:
        lengths = [int(v) for v in FLAGS.selective_lengths]
        results["selective"] = run_selective(lengths, plan, limits)
        title = (
            f"Selective state spaces vs LSTM and LRU (width {SELECTIVE_WIDTH}, batch "
            f"{SELECTIVE_BATCH}; Mamba d_state {D_STATE}, expand {EXPAND}; Mamba-2 headdim "
            f"{HEADDIM})"
        )
        section(blocks, title, selective_table(results["selective"]))
        if FLAGS.chunk_sizes:
            sizes = [int(v) for v in FLAGS.chunk_sizes]
            results["chunks"] = run_chunks(FLAGS.chunk_length, sizes, plan, limits)
            title = f"Mamba-2 chunk size (chunked training step, T={FLAGS.chunk_length})"
            section(blocks, title, chunks_table(results["chunks"]))
    if "paths" in sections:
        results["paths"] = run_paths(parse_shapes(FLAGS.path_shapes), plan)
        section(blocks, "Fused or step path (training step)", paths_table(results["paths"]))
    section(blocks, "Targets", targets_table(targets(results, previous)))
    write_report(out, header, blocks)
    write_csv(csv_path, csv_rows(results))
    print(f"wrote {out} and {csv_path}")


if __name__ == "__main__":
    app.run(main)
