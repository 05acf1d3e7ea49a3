"""The comparison suites: which runs ``experiments/compare.py`` makes, and with which overrides.

A suite is a list of :class:`Variant` values. A variant is one row of the results table: one task
at one setting (``adding-T200``), with the model, optimiser and training overrides shared by every
family, per-family model overrides where a family needs them, the families and the number of
seeds. :func:`runs` expands a suite into :class:`RunSpec` values, one per (variant, family, seed),
and :meth:`RunSpec.config` builds the run's config from ``experiments/configs/common.make_config``
plus the overrides, so that a run of the suite is exactly ``experiments/main.py`` with
``--config=experiments/configs/<task>.py:<family>[,full]`` and the same ``--config.*`` overrides.

Five suites (the times are wall seconds per run, measured on the 2-core CPU this was written on,
with ``train_and_evaluate`` in one process, one run after another; "cheap" families are rnn, lstm,
gru, mingru, rglru, lru, s5, minlstm, and mamba the most expensive, see below):

``quick`` — the README's main job, about 10 minutes. The adding problem at T = 100 and T = 200, copy
memory with delay 50, and parity (train lengths 1–40, tested on 41–256 and at fixed lengths up to
512), for all nine families, one seed, width 32. Enough steps for the classic orderings to show:
the tanh RNN stays at the adding baseline while gated and linear models go below it, the linear
recurrences learn copy memory where the LSTM stalls, and LSTM/GRU solve parity where the
positive-real diagonal recurrences (Mamba, minGRU) stay at chance.

``small`` — every task of the suite (``recurrax.tasks``) at its small configuration, every family,
three seeds, within about 90 minutes here (the per-run wall times are in RESULTS.md). Each family
runs its recipe (``experiments/recipes.py``: the papers' initialisation and learning rate, or the
rate ``experiments/sweep.py`` chose on the validation split when a sweep file exists). Runs train
up to a step budget with ten validations and stop early after four validations without a new best
validation loss; the test scores the best checkpoint. Test sets: 256 generated examples for the
synthetic tasks (128 for induction heads and the char-LM), the whole MNIST-1D test set (1000) and
the small Fashion-MNIST test split (2000). It also holds parity with ``negative_transitions`` on the
input-dependent diagonal recurrences (``parity-negative``), the MQAR state-size curve (MQAR at
(64, 4) for widths 16…128 for a subset of families, one seed), induction heads evaluated at test
lengths 64…1024, and parity / S5 evaluated at fixed lengths. Like ``medium``, it can be run a task at a
time (``--tasks=...``, e.g. right after that task's sweep): each row is kept in
``experiments/results/small/<row>.json`` and ``RESULTS.md`` is assembled from every part.

``medium`` — the papers' configurations where a CPU can, for the families each claim is about:
selective copying at L + 2M = 256 and induction heads trained at 256 (tested up to 1024) with
two-layer width-64 models, MNIST-1D at its reference settings (batch 100, lr 1e-2 for the classic
RNNs, 8000 steps), adding at T = 1000, parity and the S5 word problem tested up to length 1000
with and without negative transitions, sequential and permuted Fashion-MNIST, and a 3-layer
char-LM. Three seeds, twenty validations, patience five (none for induction heads, whose loss
stays at chance for long before it drops). It is run a part at a time
(``--tasks=...``); each row is kept in ``experiments/results/medium/<row>.json`` and the report
(``RESULTS-medium.md``) is assembled from every part (``experiments/parts.py``).

``seq2seq`` — the encoder–decoders (:data:`SEQ2SEQ_FAMILIES`: LSTM, GRU, LRU, Mamba; width 64,
batch 64) on the transduction tasks, each with Bahdanau attention and without: date normalisation
(held-out dates), reversal trained on lengths 1–20 and tested at length 20, reversal trained on
1–50 and tested on 40–50 (where a fixed-size carry must hold the whole string without attention),
sorting and addition; three seeds, ten validations, patience four, the metric the exact match of
greedy decoding. Its rows are kept in ``experiments/results/seq2seq/`` and its report is
``RESULTS-seq2seq.md``, with the targets and orderings of ``experiments/checks.py``. A row can be
run a family or a seed at a time (``--families=mamba --seeds=2``): each run's record keeps the
command, date and machine that made it.

``full`` — the published settings (each task's full configuration, widths 128–256, tens of
thousands of steps, three seeds), for an accelerator. Not run here.

Mamba runs at its standard size in every suite: ``d_state = 16`` and ``expand = 2`` (Gu & Dao
2023's defaults). It trains on the fused selective scan, which keeps the ``(expand·D, d_state)``
state inside the loop (``recurrax.kernels.selective_scan``); no family is shrunk for speed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from experiments.configs.common import make_config
from experiments.recipes import recipe

from recurrax.models import CLASSIC, FAMILIES, LINEAR

# The family list and its classic / linear split live in recurrax.models (FAMILIES, CLASSIC, LINEAR);
# the groups below split the linear families by how their transition depends on the input.
SELECTIVE = ("mamba", "rglru", "mingru", "minlstm")
"""Families whose recurrence coefficients depend on the input (content-dependent selection)."""
TIME_INVARIANT = tuple(f for f in LINEAR if f not in SELECTIVE)  # ("lru", "s5")
"""Linear recurrences whose transition does not depend on the input (LRU, S4D/S5)."""

SUITE_NAMES = ("quick", "small", "medium", "full", "seq2seq")
"""The suites, cheapest first (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the results table: a task at one setting, run for some families and seeds.

    Attributes:
      name: the row's name and its directory under the workdir (``"adding-T200"``).
      task: the registry name of the task.
      size: ``"small"`` or ``"full"``: which of the task's configurations to start from.
      task_config: overrides of ``config.task`` fields.
      model: overrides of ``config.model`` fields for every family (``cell_options`` is a dict).
      train: overrides of ``config.train`` fields (``num_steps``, ``batch_size``, ...).
      optimizer: overrides of ``config.optimizer`` fields.
      family_model: per-family overrides of ``config.model``, applied after ``model``.
      family_optimizer: per-family overrides of ``config.optimizer``, applied after ``optimizer``.
      families: the families run (``None``: all of :data:`recurrax.models.FAMILIES`).
      seeds: how many seeds (0, 1, ...), unless the command line overrides them.
      group: ``"main"`` rows go into the results table and the ordering checks; ``"curve"`` rows
        only feed a curve (the MQAR state-size sweep).
      curve: the name of the curve a row contributes a point to (``"mqar-L128P8"``), if any.
      length_eval: lengths at which ``compare.py`` re-evaluates the final parameters with
        ``test_min_length = test_max_length = L`` (parity, S5: accuracy vs length).
      seq2seq: overrides of ``config.seq2seq`` fields (transduction tasks only: ``attention``,
        ``input_feeding``, the teacher schedule, ...).
    """

    name: str
    task: str
    size: str = "small"
    task_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    optimizer: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    family_model: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    family_optimizer: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    families: tuple[str, ...] | None = None
    seeds: int = 2
    group: str = "main"
    curve: str | None = None
    length_eval: tuple[int, ...] = ()
    seq2seq: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: a variant, a family and a seed."""

    variant: Variant
    family: str
    seed: int

    @property
    def task(self) -> str:
        return self.variant.task

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.variant.name, self.family, self.seed)

    def relpath(self) -> str:
        """The run's directory relative to the workdir: ``<variant>/<family>/seed<k>``."""
        return f"{self.variant.name}/{self.family}/seed{self.seed}"

    def config(self) -> ml_collections.ConfigDict:
        """The run's config: ``make_config(task, "family[,full]")`` plus the variant's overrides."""
        v = self.variant
        arg = self.family if v.size == "small" else f"{self.family},{v.size}"
        config = make_config(v.task, arg, **dict(v.train), seed=self.seed)
        for field, value in v.task_config.items():
            config.task[field] = value
        model = dict(v.model)
        for field, value in v.family_model.get(self.family, {}).items():
            if field == "cell_options":
                value = {**model.get("cell_options", {}), **value}
            model[field] = value
        for field, value in model.items():
            if field == "cell_options":
                config.model.cell_options = ml_collections.ConfigDict(dict(value))
            else:
                config.model[field] = value
        for field, value in {**v.optimizer, **v.family_optimizer.get(self.family, {})}.items():
            config.optimizer[field] = value
        for field, value in v.seq2seq.items():
            config.seq2seq[field] = value
        return config


def train_settings(
    steps: int,
    batch_size: int,
    *,
    evals: int = 5,
    logs: int = 25,
    test_examples: int = 256,
    patience: int = 0,
) -> dict[str, int]:
    """``config.train`` overrides: at most ``steps`` steps, ``evals`` validations (learning-curve
    points), ``logs`` train-metric lines, about ``test_examples`` examples in the test evaluation
    (exactly, when ``batch_size`` divides it) and early stopping after ``patience`` validations
    without a new best (0: off); the test uses the best checkpoint by validation loss."""
    return {
        "num_steps": steps,
        "batch_size": batch_size,
        "eval_every": max(steps // evals, 1),
        "log_every": max(steps // logs, 1),
        "eval_batches": max(math.ceil(test_examples / 2 / batch_size), 1),
        "test_batches": max(math.ceil(test_examples / batch_size), 1),
        "patience": patience,
    }


def _small_model(width: int, state_size: int | None = None) -> dict[str, Any]:
    return {"width": width, "state_size": state_size or width}


# Mamba at its standard size in every suite: d_state 16 (state_size is d_state for mamba) and
# the cell's default expand 2.
FAMILY_MODEL = {"mamba": {"state_size": 16}}

PARITY_LENGTHS = (8, 16, 32, 40, 64, 128, 256, 512)
S5_LENGTHS = (16, 40, 64, 128, 256)
INDUCTION_TEST_LENGTHS = (64, 128, 256, 512, 1024)
MQAR_CURVE_FAMILIES = ("lstm", "gru", "lru", "rglru", "mingru")
MQAR_CURVE_SETTING = (64, 4)  # (L, P): the small setting where some families learn in budget
NEGATIVE_FAMILIES = ("mamba", "rglru", "mingru", "minlstm")
"""The input-dependent diagonal recurrences that take ``negative_transitions`` (Grazzi et al. 2024)."""
NEGATIVE_SUFFIX = "-negative"
"""Variant name suffix of the rows run with ``negative_transitions=True``."""


def family_overrides(task: str) -> tuple[dict, dict]:
    """``(family_model, family_optimizer)`` of a task: each family's recipe
    (``experiments/recipes.py``) plus :data:`FAMILY_MODEL`."""
    family_model, family_optimizer = recipe(task)
    for family, values in FAMILY_MODEL.items():
        family_model[family] = {**family_model.get(family, {}), **values}
    return family_model, family_optimizer


def _variant(name: str, task: str, steps: int, batch_size: int, width: int, **kwargs) -> Variant:
    test_examples = kwargs.pop("test_examples", 256)
    model = {**_small_model(width), **kwargs.pop("model", {})}
    family_model, family_optimizer = family_overrides(task)
    for family, values in kwargs.pop("family_optimizer", {}).items():
        family_optimizer[family] = {**family_optimizer.get(family, {}), **values}
    return Variant(
        name=name,
        task=task,
        model=model,
        train=train_settings(
            steps,
            batch_size,
            test_examples=test_examples,
            evals=kwargs.pop("evals", 5),
            patience=kwargs.pop("patience", 0),
        ),
        family_model=kwargs.pop("family_model", family_model),
        family_optimizer=family_optimizer,
        **kwargs,
    )


def with_negative_transitions(variant: Variant) -> Variant:
    """The variant run by :data:`NEGATIVE_FAMILIES` with ``negative_transitions=True``."""
    family_model = {
        f: {
            **variant.family_model.get(f, {}),
            "cell_options": {
                **variant.family_model.get(f, {}).get("cell_options", {}),
                "negative_transitions": True,
            },
        }
        for f in NEGATIVE_FAMILIES
    }
    return dataclasses.replace(
        variant,
        name=variant.name + NEGATIVE_SUFFIX,
        family_model={**variant.family_model, **family_model},
        families=NEGATIVE_FAMILIES,
    )


QUICK: tuple[Variant, ...] = (
    _variant("adding-T100", "adding", 1000, 32, 32, seeds=1, task_config={"length": 100}),
    _variant("adding-T200", "adding", 1000, 32, 32, seeds=1, task_config={"length": 200}),
    _variant("copy_memory-T50", "copy_memory", 800, 32, 32, seeds=1, task_config={"delay": 50}),
    _variant("parity", "parity", 800, 32, 32, seeds=1, length_eval=PARITY_LENGTHS),
)
"""The quick suite (about 10 minutes on a 2-core CPU; see the module docstring)."""

# The small suite's rows share these: three seeds, ten validations per run, and early stopping
# once four validations in a row bring no new best validation loss.
SMALL_RUNS = {"seeds": 3, "evals": 10, "patience": 4}
CLASSIC_MNIST1D_LR = {f: {"learning_rate": 1e-2} for f in CLASSIC}
"""The ``mnist1d`` reference setting (Greydanus 2020: batch 100, lr 1e-2) for the classic RNNs."""


def _small() -> tuple[Variant, ...]:
    def variant(name, task, steps, batch, width, **kwargs):
        return _variant(name, task, steps, batch, width, **SMALL_RUNS, **kwargs)

    variants = [
        variant(f"adding-T{T}", "adding", 1500, 32, 32, task_config={"length": T})
        for T in (100, 200)
    ]
    variants += [
        variant(f"copy_memory-T{T}", "copy_memory", steps, batch, 32, task_config={"delay": T})
        for T, steps, batch in ((50, 1200, 32), (200, 600, 16))
    ]
    variants.append(variant("selective_copy", "selective_copy", 1000, 16, 32))
    variants.append(
        variant(
            "induction_heads",
            "induction_heads",
            500,
            32,
            32,
            task_config={"test_lengths": INDUCTION_TEST_LENGTHS},
            test_examples=128,
        )
    )
    length, pairs = MQAR_CURVE_SETTING
    name = f"mqar-L{length}P{pairs}"
    task_config = {"length": length, "num_pairs": pairs}
    variants.append(variant(name, "mqar", 800, 32, 64, task_config=task_config, curve=name))
    # The state-size curve: the main row is the width-64 point; these add 16, 32, 128.
    variants += [
        _variant(
            f"{name}-w{width}",
            "mqar",
            800,
            32,
            width,
            task_config=task_config,
            families=MQAR_CURVE_FAMILIES,
            seeds=1,
            evals=10,
            patience=4,
            group="curve",
            curve=name,
        )
        for width in (16, 32, 128)
    ]
    variants.append(variant("listops", "listops", 400, 16, 32))
    parity = variant("parity", "parity", 1000, 32, 32, length_eval=PARITY_LENGTHS)
    variants += [parity, with_negative_transitions(parity)]
    variants.append(variant("s5_word", "s5_word", 600, 32, 64, length_eval=S5_LENGTHS))
    variants.append(
        variant(
            "mnist1d",
            "mnist1d",
            1000,
            100,
            32,
            test_examples=1000,
            family_optimizer=CLASSIC_MNIST1D_LR,
        )
    )
    # The small Fashion-MNIST split's whole test set (2000 images); the permuted variant is in
    # the medium suite.
    variants.append(
        variant("seq_fashion_mnist", "seq_fashion_mnist", 200, 32, 32, test_examples=2000)
    )
    variants.append(variant("char_lm", "char_lm", 500, 16, 64, test_examples=128))
    return tuple(variants)


RESULTS_DIR = Path(__file__).resolve().parent / "results"
SWEEP_FILES = {
    "small": RESULTS_DIR / "sweep-small.json",
    "medium": RESULTS_DIR / "sweep-medium.json",
}
"""Where ``experiments/sweep.py`` records each family's chosen learning rate and init per task."""


def apply_sweep(variants: Sequence[Variant], path: Path) -> tuple[Variant, ...]:
    """``variants`` with each family at the learning rate and initialisation its sweep chose for
    the variant's task (``path``, written by ``experiments/sweep.py``, which sweeps one row per
    task: every row of the task runs at its choice); tasks or families the sweep has not covered
    keep their recipe."""
    if not Path(path).exists():
        return tuple(variants)
    tasks = json.loads(Path(path).read_text())["tasks"]
    out = []
    for v in variants:
        optimizer = {f: dict(values) for f, values in v.family_optimizer.items()}
        model = {f: dict(values) for f, values in v.family_model.items()}
        for family, record in tasks.get(v.task, {}).get("families", {}).items():
            chosen = record["chosen"]
            optimizer.setdefault(family, {})["learning_rate"] = chosen["learning_rate"]
            if chosen.get("cell_options"):
                options = {
                    **model.get(family, {}).get("cell_options", {}),
                    **chosen["cell_options"],
                }
                model.setdefault(family, {})["cell_options"] = options
        out.append(dataclasses.replace(v, family_optimizer=optimizer, family_model=model))
    return tuple(out)


SMALL: tuple[Variant, ...] = apply_sweep(_small(), SWEEP_FILES["small"])
"""The small suite: every task of the suite at its small configuration (see the module docstring)."""


def _medium() -> tuple[Variant, ...]:
    """Settings that follow the papers where a CPU can (see the module docstring)."""

    def variant(name, task, steps, batch, width, families, **kwargs):
        layers = kwargs.pop("layers", None)
        model = {"num_layers": layers} if layers else {}
        return _variant(
            name,
            task,
            steps,
            batch,
            width,
            families=families,
            model=model,
            **{**MEDIUM_RUNS, **kwargs},
        )

    selective = ("mamba", "rglru", "mingru")
    parity_families = ("lstm", "gru", *TIME_INVARIANT, *NEGATIVE_FAMILIES)
    variants = [
        # Mamba §4.1 at the small field: L + 2M = 256, M = 8 of vocab 16, 2 layers, d = 64. Mamba
        # was still improving at 2000 steps (validation accuracy 0.87, loss falling).
        variant(
            "selective_copy",
            "selective_copy",
            4000,
            32,
            64,
            (*TIME_INVARIANT, *selective),
            layers=2,
        ),
        # Mamba §4.1: induction heads trained at 256, 2 layers, d = 64; tested up to 4×. Its loss
        # sits at chance for a long stretch before it drops (Olsson et al.'s phase change; Mamba
        # was still at chance at step 1300 of 2000, and patience stopped it there), so this row
        # trains its whole budget without early stopping.
        variant(
            "induction_heads",
            "induction_heads",
            6000,
            32,
            64,
            ("lstm", "lru", *selective),
            layers=2,
            task_config={"length": 256, "test_lengths": (256, 512, 1024)},
            patience=0,
        ),
        # The mnist1d reference: batch 100, lr 1e-2 (classic RNNs), 8000 steps; the whole test set.
        variant(
            "mnist1d",
            "mnist1d",
            8000,
            100,
            128,
            ("lstm", "gru", *TIME_INVARIANT, "mamba", "mingru"),
            test_examples=1000,
            family_optimizer=CLASSIC_MNIST1D_LR,
        ),
        variant(
            "adding-T1000",
            "adding",
            2000,
            32,
            64,
            ("rnn", "lstm", "gru", *TIME_INVARIANT, "mamba"),
            task_config={"length": 1000},
        ),
    ]
    for name, task, lengths in (
        ("parity", "parity", (*PARITY_LENGTHS, 1000)),
        ("s5_word", "s5_word", (*S5_LENGTHS, 512, 1000)),
    ):
        base = variant(
            name,
            task,
            2000,
            32,
            64,
            parity_families,
            length_eval=lengths,
            task_config={"test_max_length": 1000},
        )
        variants += [base, with_negative_transitions(base)]
    variants += [
        variant(
            f"seq_fashion_mnist{suffix}",
            "seq_fashion_mnist",
            1000,
            32,
            64,
            ("lstm", "gru", *TIME_INVARIANT),
            test_examples=2000,
            task_config={"permuted": permuted},
        )
        for suffix, permuted in (("", False), ("-permuted", True))
    ]
    # minGRU/minLSTM §4.3 train 3-layer models at context 256 on tiny Shakespeare; here the first
    # 1M characters of the complete works (not comparable in absolute value).
    variants.append(
        variant(
            "char_lm",
            "char_lm",
            2000,
            32,
            128,
            ("lstm", "mamba", "mingru", "minlstm"),
            layers=3,
            test_examples=256,
        )
    )
    return tuple(variants)  # fmt: skip


# The medium suite's rows: three seeds, twenty validations, patience of five validations.
MEDIUM_RUNS = {"seeds": 3, "evals": 20, "patience": 5}
MEDIUM: tuple[Variant, ...] = apply_sweep(_medium(), SWEEP_FILES["medium"])
"""The medium suite: the papers' configurations where a CPU can (see the module docstring)."""


def _full() -> tuple[Variant, ...]:
    """Published settings for an accelerator: full task configs, wider models, long training."""

    def variant(name, task, steps, batch, width, layers=None, **kwargs):
        model = {"width": width, "state_size": kwargs.pop("state_size", width)}
        if layers is not None:
            model["num_layers"] = layers
        return Variant(
            name=name,
            task=task,
            size="full",
            model=model,
            train=train_settings(
                steps, batch, evals=20, logs=200, test_examples=kwargs.pop("test_examples", 2048)
            ),
            seeds=kwargs.pop("seeds", 3),
            family_model=FAMILY_MODEL,
            **kwargs,
        )

    variants = [
        variant(f"adding-T{T}", "adding", 20_000, 64, 128, task_config={"length": T})
        for T in (1000, 2000, 5000)
    ]
    variants += [
        variant(f"copy_memory-T{T}", "copy_memory", 20_000, 64, 128, task_config={"delay": T})
        for T in (500, 1000)
    ]
    # Mamba §4.1: 2 layers, d = 64, L = 4096, 16 tokens.
    variants.append(variant("selective_copy", "selective_copy", 50_000, 64, 64, layers=2))
    variants.append(
        variant("induction_heads", "induction_heads", 50_000, 64, 64, layers=2, test_examples=256)
    )
    for length, pairs in ((256, 16), (512, 64)):
        name = f"mqar-L{length}P{pairs}"
        task_config = {"length": length, "num_pairs": pairs}
        variants.append(variant(name, "mqar", 20_000, 64, 128, task_config=task_config, curve=name))
        variants += [
            variant(
                f"{name}-w{width}",
                "mqar",
                20_000,
                64,
                width,
                task_config=task_config,
                families=MQAR_CURVE_FAMILIES,
                seeds=1,
                group="curve",
                curve=name,
            )
            for width in (64, 256, 512)
        ]
    variants.append(variant("listops", "listops", 50_000, 32, 128, layers=6))
    variants.append(
        variant("parity", "parity", 20_000, 64, 128, length_eval=(*PARITY_LENGTHS, 1000))
    )
    variants.append(variant("s5_word", "s5_word", 20_000, 64, 128, length_eval=(*S5_LENGTHS, 1000)))
    variants.append(variant("mnist1d", "mnist1d", 10_000, 64, 128))
    variants.append(variant("seq_fashion_mnist", "seq_fashion_mnist", 50_000, 64, 128, layers=4))
    variants.append(
        variant(
            "seq_fashion_mnist-permuted",
            "seq_fashion_mnist",
            50_000,
            64,
            128,
            layers=4,
            task_config={"permuted": True},
        )
    )
    variants.append(variant("char_lm", "char_lm", 50_000, 32, 256, layers=3))
    return tuple(variants)


FULL: tuple[Variant, ...] = _full()
"""The full suite: the published settings, for an accelerator (see the module docstring)."""

SEQ2SEQ_FAMILIES = ("lstm", "gru", "lru", "mamba")
"""The encoders–decoders the ``seq2seq`` suite compares: two classic RNNs, a linear recurrence and
a selective SSM."""
SEQ2SEQ_ATTENTION = "bahdanau"
"""The attention of the suite's rows with attention (additive, Bahdanau et al. 2015)."""
LONG_REVERSAL = {"max_length": 50, "eval_min_length": 40, "eval_max_length": 50}
"""Reversal trained on lengths 1..50 and tested on 40..50: where a fixed-size carry must hold a
whole long string without attention."""


def _seq2seq() -> tuple[Variant, ...]:
    """Every transduction task with and without attention, for :data:`SEQ2SEQ_FAMILIES`."""
    rows = (
        # (row, task, task fields, steps)
        ("dates", "dates", {}, 1500),
        ("reverse-L20", "reverse", {"eval_min_length": 20}, 4000),
        ("reverse-L40-50", "reverse", LONG_REVERSAL, 2000),
        ("sort", "sort", {}, 2000),
        ("addition", "addition", {}, 2000),
    )
    return tuple(
        _variant(
            f"{name}-{attention}",
            task,
            steps,
            64,
            64,
            families=SEQ2SEQ_FAMILIES,
            task_config=task_config,
            seq2seq={"attention": attention},
            **SEQ2SEQ_RUNS,
        )
        for name, task, task_config, steps in rows
        for attention in (SEQ2SEQ_ATTENTION, "none")
    )


# The seq2seq suite's rows: three seeds, ten validations, patience of four validations.
SEQ2SEQ_RUNS = {"seeds": 3, "evals": 10, "patience": 4}
SEQ2SEQ: tuple[Variant, ...] = _seq2seq()
"""The seq2seq suite: encoder–decoders on the transduction tasks (see the module docstring)."""

SUITES: dict[str, tuple[Variant, ...]] = {
    "quick": QUICK,
    "small": SMALL,
    "medium": MEDIUM,
    "full": FULL,
    "seq2seq": SEQ2SEQ,
}

DEFAULT_REPORTS = {
    "quick": "workdirs/compare-quick/RESULTS.md",
    "small": "RESULTS.md",
    "medium": "RESULTS-medium.md",
    "full": "RESULTS-full.md",
    "seq2seq": "RESULTS-seq2seq.md",
}


SWEPT_SUITES = {"small": _small, "medium": _medium}
"""The suites ``experiments/sweep.py`` tunes, as builders of their rows at the recipes' rates."""

DEFAULT_PARTS = {
    "small": "experiments/results/small",
    "medium": "experiments/results/medium",
    "seq2seq": "experiments/results/seq2seq",
}
"""Suites whose rows are kept per row in committed part files (``experiments/parts.py``), so that
a task can be rerun alone (after its sweep, say) and the report still covers every row."""


def variants(suite: str) -> tuple[Variant, ...]:
    """The variants of ``suite`` (one of :data:`SUITE_NAMES`)."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITE_NAMES}; got {suite!r}")
    return SUITES[suite]


def runs(
    suite: str | Sequence[Variant],
    *,
    families: Iterable[str] | None = None,
    tasks: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
) -> list[RunSpec]:
    """The runs of ``suite`` (a name or a list of variants), in order: variant, family, seed.

    Args:
      families: keep only these families (each variant still runs only its own families).
      tasks: keep only variants whose task name or variant name is listed.
      seeds: run exactly these seeds, in place of each variant's ``range(seeds)``.
    """
    chosen = variants(suite) if isinstance(suite, str) else tuple(suite)
    if families is not None:
        families = tuple(families)
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"families must be among {FAMILIES}; got unknown {unknown}")
    if tasks is not None:
        tasks = tuple(tasks)
        known = {v.task for v in chosen} | {v.name for v in chosen}
        unknown = sorted(set(tasks) - known)
        if unknown:
            raise ValueError(
                f"tasks must be task or variant names of the suite ({sorted(known)}); "
                f"got unknown {unknown}"
            )
    if seeds is not None:
        seeds = tuple(int(s) for s in seeds)
    specs = []
    for v in chosen:
        if tasks is not None and v.task not in tasks and v.name not in tasks:
            continue
        for family in v.families or FAMILIES:
            if families is not None and family not in families:
                continue
            for seed in seeds if seeds is not None else range(v.seeds):
                specs.append(RunSpec(v, family, seed))
    return specs
