"""Which path runs a cell over time: the methods each cell has, and the one each shape defaults to.

This is the one place where :func:`recurrax.unroll` (and :func:`recurrax.linear_scan`) choose a
path. A cell's methods follow from the forms it carries:

=============================  ===============================================================
form                           methods (default first where it does not depend on the shape)
=============================  ===============================================================
every cell                     ``"step"``: ``cell.step`` in a ``lax.scan``, differentiated by
                               autodiff (the reference path)
:class:`ProjectedForm`         ``"fused"``: the gated cells' forward loop with a blocked
(rnn, lstm, gru)               custom VJP (:mod:`recurrax.kernels.fused_gated`); the default
                               except for large gated steps on a CPU (:func:`gated_method`)
:class:`SelectiveForm`         ``"fused"``: the fused selective scan
(mamba, mamba2)                (:mod:`recurrax.kernels.selective_scan`), the default for mamba;
                               with a scalar decay per head (mamba2) also ``"chunked"``: the
                               state-space-dual chunks (:mod:`recurrax.kernels.ssd`), its default
:class:`LinearForm`            ``"sequential"``, ``"associative"``, ``"chunked"`` and ``"auto"``
(lru, s5, rglru, mingru, ...)  (:func:`recurrax.linear_scan`); ``"auto"`` is the default
                               unless the cell also has a selective form
=============================  ===============================================================

Every method gives the same numbers under every semantic of the driver; they differ in speed and
memory only. Where a default depends on the shape and the shape is symbolic (``jax.export`` with
a batch or length such as ``"b"``), the choice follows a fixed rule instead of a comparison:
gated cells take ``"fused"`` and the linear ``"auto"`` takes what it takes for long sequences
(see :func:`gated_method` and :func:`choose_linear_method`), so every default path exports. ``return_carries`` asks for the carry at every step, which the fused selective scan
and the chunked state-space-dual form never hold, so selective cells default to the step path (or
their linear form, for mamba) when carries are returned.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from recurrax.array_types import Params
from recurrax.cells.base import Cell, ProjectedForm
from recurrax.kernels.time_loop import is_known

LINEAR_METHODS = ("sequential", "associative", "chunked")

STEP_PATH_MIN_BATCH_HIDDEN = 8192
"""From this batch·hidden on, gated cells with three or more gate blocks default to the step path."""

DEFAULT_LINEAR_CHUNK = 64
"""Chunk length of the linear scan's ``"chunked"`` method when none is given."""


SELECTIVE_SPAN = 256
"""Steps per checkpointed span of the selective paths (see :func:`recurrax.unroll`'s ``remat``).

Measured on the 2-core CPU (training step of a Mamba and a Mamba-2 block, B = 8, T = 4096,
width 64): spans of 256 steps were fastest, 0-10% ahead of 512 and 15-40% ahead of the whole
sequence at once, whose temporaries (300+ MiB) the CPU spends page faults on; below 256 the
per-span overhead grows."""


class Path(NamedTuple):
    """A concrete path: ``method`` and the chunk length it uses (None where it has none)."""

    method: str
    chunk_size: int | None


def methods(cell: Cell) -> tuple[str, ...]:
    """The methods ``unroll`` accepts for ``cell`` (``"auto"`` included for linear forms)."""
    out = ["step"]
    if cell.projected or cell.selective:
        out.append("fused")
    if cell.linear:
        out += [*LINEAR_METHODS, "auto"]
    elif cell.selective and cell.selective.heads:
        out.append("chunked")
    return tuple(out)


def is_selective(cell: Cell, method: str) -> bool:
    """Whether ``method`` runs ``cell`` through its :class:`SelectiveForm` (the fused selective
    scan, or the state-space-dual chunks of a cell without a linear form)."""
    if not cell.selective:
        return False
    return method == "fused" or (method == "chunked" and not cell.linear)


def default_method(
    cell: Cell,
    params: Params,
    batch: int,
    length: int,
    return_carries: bool = False,
    backend: str | None = None,
) -> str:
    """The method ``unroll`` takes for ``cell`` at a ``(batch, length)`` input when none is given."""
    if cell.selective:
        if return_carries:
            return "auto" if cell.linear else "step"
        return "chunked" if cell.selective.heads and not cell.linear else "fused"
    if cell.linear:
        return "auto"
    if cell.projected:
        return gated_method(cell.projected, params, batch, backend)
    return "step"


def resolve(
    cell: Cell,
    params: Params,
    batch: int,
    length: int,
    method,
    chunk_size,
    *,
    return_carries: bool = False,
) -> Path:
    """The concrete :class:`Path` for ``method`` (None: the default) and ``chunk_size``."""
    if method is None:
        method = default_method(cell, params, batch, length, return_carries)
    if method == "auto" or (method in LINEAR_METHODS and not is_selective(cell, method)):
        state_size = cell.linear.state(cell.initial_carry(())).shape[-1]
        return Path(*linear_method(method, chunk_size, batch, length, state_size))
    # (the state-space-dual form's chunk length defaults to the kernel's, measured there)
    return Path(method, chunk_size)


def gated_method(form: ProjectedForm, params: Params, batch: int, backend: str | None = None):
    """``"fused"`` or ``"step"``: the default path of a gated (projected) cell.

    The fused backward recomputes each block's two products (a third more matmul FLOPs than
    autodiff of the step loop). That pays while the steps are overhead-bound and costs once they
    are compute-bound. Measured by the paths section of ``experiments/benchmark.py`` on two 2-core
    CPUs (AMD EPYC and Intel Xeon, 2026-12-01; training steps, T = 256 and 512): at
    ``batch·hidden = 8192`` the step path took 0.80-1.05× the fused path's time for LSTM and GRU,
    against 1.01-1.89× at 2048 and 4096; for the one-block rnn it took 1.29-1.41× at 8192. Hence
    the step path for cells of three or more gate blocks from ``STEP_PATH_MIN_BATCH_HIDDEN`` on.
    On accelerators the crossover is not measured, and the fused path is kept.

    A symbolic batch (``jax.export`` with a shape such as ``"b, t, d"``) cannot be compared with
    the threshold, so it takes the fused path: the one the crossover gives below it and on
    accelerators. Both paths compute the same numbers; only the speed differs.
    """
    backend = backend or jax.default_backend()
    hidden, width = jax.eval_shape(form.kernel, params).shape
    gate_blocks = width // hidden
    large = is_known(batch) and batch * hidden >= STEP_PATH_MIN_BATCH_HIDDEN
    return "step" if backend == "cpu" and gate_blocks >= 3 and large else "fused"


def choose_linear_method(batch: int, length: int, state_size: int, backend: str | None = None):
    """The linear-scan method (and chunk length) that ``"auto"`` uses for a ``(batch, length,
    state)`` scan. Returns ``(method, chunk_size)``; ``chunk_size`` is None unless chunked."""
    backend = backend or jax.default_backend()
    if backend == "cpu":
        # Measured by experiments/benchmark_linear_scan.py on this project's 2-core x86 machine
        # (table: experiments/results/linear_scan.md): at every shape from 16x1024x64 to
        # 4x65536x16, forward+backward, the plain sequential scan was the fastest, 2-10x ahead of
        # the associative and chunked scans, which do about twice the work and gain nothing from
        # parallel depth on two cores. There is no crossover on this CPU.
        del batch, length, state_size
        return "sequential", None
    # Accelerators: depth matters more than work, so scan in parallel; chunks bound the memory of
    # very long sequences, and of sequences of a symbolic length (jax.export), which may be long.
    # Not measured by this project yet (no accelerator was available).
    short = is_known(length) and length <= 8192
    return ("associative", None) if short else ("chunked", 1024)


def linear_method(method, chunk_size, batch, length, state_size):
    """Replaces ``"auto"`` by a concrete linear-scan method and fills in a chunk length where
    the method needs one."""
    if method == "auto":
        method, auto_chunk = choose_linear_method(batch, length, state_size)
        chunk_size = chunk_size or auto_chunk
    if method == "chunked" and chunk_size is None:
        chunk_size = DEFAULT_LINEAR_CHUNK
    if method == "associative" and not is_known(length):
        # (lax.associative_scan unrolls its levels in Python, one per halving of the length)
        raise ValueError(
            "method='associative' needs a concrete sequence length; got the symbolic length "
            f"{length} (jax.export): use method='chunked', 'sequential' or 'auto'"
        )
    return method, chunk_size
