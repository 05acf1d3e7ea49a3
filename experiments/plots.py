"""Plots of a comparison (learning curves, accuracy against length, MQAR against state size) and
the gradient norm ``‖∂L/∂h_t‖`` of freshly initialised cells against the distance from the loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from experiments.checks import mqar_curves, variants_of
from experiments.stats import Summaries, metric_key
from experiments.suites import TIME_INVARIANT

from recurrax import cells as cell_lib
from recurrax.diagnostics import state_gradient_norms
from recurrax.models import CLASSIC, FAMILIES

# Gradient norms at initialisation


class _RealView(NamedTuple):
    """A complex state ``h`` (N,) seen as the real vector ``[Re h, Im h]`` (2N,)."""

    h: jax.Array


def real_view(cell: cell_lib.Cell) -> cell_lib.Cell:
    """``cell`` (complex carry field ``h``, e.g. LRU) with its state as ``[Re h, Im h]``.

    ``state_gradient_norms`` takes real states only; the norm of the gradient with respect to
    ``(Re h, Im h)`` is the natural one for a complex state (that of its real coordinates).
    """
    template = cell.initial_carry()

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        h = cell.initial_carry(batch_shape, dtype).h
        return _RealView(jnp.concatenate([h.real, h.imag], axis=-1))

    def step(params, carry, x):
        n = carry.h.shape[-1] // 2
        h = jax.lax.complex(carry.h[:n], carry.h[n:])
        new, y = cell.step(params, template._replace(h=h), x)
        return _RealView(jnp.concatenate([new.h.real, new.h.imag], axis=-1)), y

    return cell._replace(
        name=f"{cell.name}+real_view",
        hidden_size=2 * cell.hidden_size,
        initial_carry=initial_carry,
        step=step,
        linear=None,
    )


def gradient_norm_curves(
    length: int = 100, hidden: int = 64, batch: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    """Mean over a batch of ``‖∂L/∂h_t‖``, ``L = Σ y_T²`` (the last output only), for freshly
    initialised cells, indexed by the distance ``T - 1 - t`` from the loss.

    Cells (inputs and ``h`` of size ``hidden``): tanh RNN (orthogonal recurrent init), LSTM
    (forget bias 1), LRU with its complex state seen as ``[Re h, Im h]`` (:func:`real_view`), and
    two real-state linear recurrences, RG-LRU and minGRU.
    """
    key_x, key_p = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(key_x, (batch, length, hidden), jnp.float32)
    cells = {
        "rnn (tanh)": cell_lib.rnn(hidden),
        "lstm": cell_lib.lstm(hidden),
        "lru (Re, Im of h)": real_view(cell_lib.lru(hidden, hidden)),
        "rglru": cell_lib.rglru(hidden),
        "mingru": cell_lib.mingru(hidden),
    }

    def loss_fn(ys, carry):
        return jnp.sum(jnp.square(ys[:, -1]))

    curves = {}
    for name, cell in cells.items():
        params = cell.init(key_p, hidden)
        norms = np.asarray(state_gradient_norms(cell, params, xs, loss_fn))  # (B, T)
        curves[name] = norms.mean(axis=0)[::-1]  # index = distance from the loss
    return curves


# ------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _family_style(family: str) -> dict[str, Any]:
    index = FAMILIES.index(family) if family in FAMILIES else 0
    return {
        "color": f"C{index}",
        "linestyle": "-" if family in CLASSIC else ("--" if family in TIME_INVARIANT else ":"),
        "marker": "os^vD<>px"[index % 9],
        "markersize": 3,
    }


def _learning_curve(outcomes: Sequence[Any]) -> tuple[list[int], list[float]]:
    """Mean over seeds of the valid headline metric at each eval step."""
    by_step: dict[int, list[float]] = {}
    for outcome in outcomes:
        for step, record in outcome.valid_curve or ():
            value = record.get(metric_key(outcome.metric))
            if value is not None:
                by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    return steps, [float(np.mean(by_step[s])) for s in steps]


def plot_learning_curves(outcomes: Sequence[Any], plots_dir: Path) -> list[Path]:
    """One PNG per task: the valid headline metric against the step, one line per family
    (mean over seeds), one panel per main variant."""
    plt = _pyplot()
    done = [o for o in outcomes if o.results is not None and o.spec.variant.group == "main"]
    by_task: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for o in done:
        by_task.setdefault(o.spec.task, {}).setdefault(o.spec.variant.name, {}).setdefault(
            o.spec.family, []
        ).append(o)
    paths = []
    for task, variants in by_task.items():
        fig, axes = plt.subplots(1, len(variants), figsize=(5 * len(variants), 3.8), squeeze=False)
        for ax, (variant, families) in zip(axes[0], variants.items(), strict=True):
            metric = None
            for family, runs in families.items():
                steps, values = _learning_curve(runs)
                metric = runs[0].metric
                if steps:
                    ax.plot(steps, values, label=family, **_family_style(family))
            baseline = next(iter(families.values()))[0].baseline
            if baseline is not None:
                ax.axhline(baseline, color="gray", linewidth=0.8, linestyle="--", label="baseline")
            ax.set_title(variant)
            ax.set_xlabel("step")
            ax.set_ylabel(f"valid {metric_key(metric or '')}")
            if metric in ("mse",):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        paths.append(
            _save(fig, plots_dir / f"learning-curves-{task}.png", legend_axes=[axes[0][-1]])
        )
    return paths


def _length_plot(
    rows: Mapping[str, Mapping[int, float]],
    title: str,
    path: Path,
    *,
    train_range: tuple[float, float] | None = None,
    baseline: float | None = None,
) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, points in rows.items():
        lengths = sorted(points)
        ax.plot(lengths, [points[L] for L in lengths], label=family, **_family_style(family))
    if train_range is not None:
        ax.axvspan(*train_range, color="gray", alpha=0.15, label="train lengths")
    if baseline is not None:
        ax.axhline(baseline, color="gray", linewidth=0.8, linestyle="--", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test length")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path, legend_axes=[ax])


def _save(fig, path: Path, legend_axes) -> Path:
    """Puts each axis's legend outside it on the right, writes ``fig`` to ``path`` and closes it."""
    plt = _pyplot()
    for ax in legend_axes:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_lengths(summaries: Summaries, plots_dir: Path) -> list[Path]:
    """Accuracy against test length: induction heads (``test_by_length``), parity and S5 (fixed
    lengths from :func:`evaluate_at_lengths`)."""
    paths = []
    for variant in variants_of(summaries, "induction_heads"):
        row = summaries[variant]
        rows = {f: dict(c.by_length) for f, c in row.items() if c.by_length}
        if rows:
            cell = next(iter(row.values()))
            L = cell.task_config.get("length")
            paths.append(
                _length_plot(
                    rows,
                    f"{variant}: accuracy vs test length (trained at {L})",
                    plots_dir / f"{variant}-length.png",
                    train_range=(L * 0.95, L * 1.05) if L else None,
                    baseline=cell.baseline,
                )
            )
    for task in ("parity", "s5_word"):
        for variant in variants_of(summaries, task):
            row = summaries[variant]
            rows = {f: dict(c.length_eval) for f, c in row.items() if c.length_eval}
            if rows:
                cell = next(iter(row.values()))
                tc = cell.task_config
                train = (tc.get("train_min_length", 1), tc.get("train_max_length", 40))
                paths.append(
                    _length_plot(
                        rows,
                        f"{variant}: accuracy vs sequence length",
                        plots_dir / f"{variant}-length.png",
                        train_range=train,
                        baseline=cell.baseline,
                    )
                )
    return paths


def plot_mqar(summaries: Summaries, plots_dir: Path) -> list[Path]:
    curves = mqar_curves(summaries)
    if not curves:
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (setting, families) in zip(axes[0], curves.items(), strict=True):
        for family, points in families.items():
            ax.plot(*zip(*points, strict=True), label=family, **_family_style(family))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("recurrent state per example (real numbers, all layers)")
        ax.set_ylabel("query accuracy")
        ax.set_title(f"{setting}: accuracy vs state size")
        ax.grid(alpha=0.3)
    return [_save(fig, plots_dir / "mqar-state-size.png", legend_axes=list(np.ravel(axes)))]


def plot_gradient_norms(curves: Mapping[str, np.ndarray], path: Path) -> Path:
    """``‖∂L/∂h_t‖`` relative to its value one step before the loss, against the distance.

    Distance 0 is left out: with the loss on the last output, the state after the last step gets
    a gradient only where the output is the state itself (rnn, lstm, gru, minGRU), not where a
    readout follows the state update (LRU, RG-LRU's ``y`` is ``h`` but LRU's is ``Re(C h) + D x``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for index, (name, values) in enumerate(curves.items()):
        distance = np.arange(1, values.size)
        ratio = np.where(values[1:] > 0, values[1:] / values[1], np.nan)
        ax.plot(distance, ratio, label=name, color=f"C{index}")
    ax.set_yscale("log")
    ax.set_xlabel("distance from the loss (T − 1 − t)")
    ax.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_(T−2)‖")
    ax.set_title(f"gradient norm at initialisation (T = {next(iter(curves.values())).size})")
    ax.grid(alpha=0.3)
    return _save(fig, path, legend_axes=[ax])
