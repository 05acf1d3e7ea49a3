"""Each family's training recipe per task: initialisation and learning rate, and where they come from.

The defaults of ``recurrax.run.default_config`` are one recipe for every task. The papers train
each family differently per task, and a family run at another family's recipe can fail for
reasons that have nothing to do with its architecture (the LRU at its default ring cannot hold a
number for 100 steps: 0 of 64 states have ``|λ|¹⁰⁰ > 0.5``). :func:`recipe` returns the per-family
overrides of ``config.model`` and ``config.optimizer`` that a suite applies to a task.

=========  ==============================================================  =========================
family     initialisation                                                  learning rate
=========  ==============================================================  =========================
rnn, lstm  Glorot / orthogonal, forget-gate bias 1 (library defaults)       3e-3 (Adam, clip 1)
gru
lru        memory tasks (adding, copy memory): ring ``r ∈ [0.999,          5e-3 on memory tasks,
           0.9999]``, phases ``≤ 0.01`` (the paper's long-range ring);       2e-3 elsewhere; the
           other tasks: ``r ∈ [0.9, 0.999]``, phases ``≤ π/10`` (its LRA    ring at 0.5× (its
           ring). Orvieto et al. 2023, §3.3 and App. D.                      recurrence group)
s5         HiPPO-LegS eigenbasis, ``Δ ∈ [0.001, 0.1]`` (Smith et al.         1e-2 on memory tasks,
           2023; library default)                                           2e-3 elsewhere
mamba      ``Δ ∈ [0.001, 0.1]``, S4D-real ``A``, ``d_state`` 16, expand 2    2e-3
           (Gu & Dao 2023; library defaults)
rglru,     library defaults (De et al. 2024; Feng et al. 2024)               2e-3
mingru,
minlstm
=========  ==============================================================  =========================

The memory-task learning rates of LRU and S5 are measured, not published: on the adding problem
at T = 100 (1000 steps, three seeds) LRU at 5e-3 with the long-range ring reaches test MSE 0.0001
/ 0.0010 / 0.0010 and S5 at 1e-2 reaches 0.0133 / 0.0107 / 0.0003, where both stay near the
0.167 baseline at the shared 2e-3. The long-range ring also keeps LRU's ``theta_log`` gradient from
dominating the clipping norm at initialisation: ``∂L/∂log θ = θ ∂L/∂θ``, and phases ``≤ 0.01``
make that factor small (``experiments/init_gradients.py`` reports the per-parameter shares).
"""

from __future__ import annotations

import math
from typing import Any

MEMORY_TASKS = ("adding", "copy_memory")
"""Tasks whose answer depends on inputs hundreds of steps back with nothing in between to use."""

LRU_LONG_RANGE_RING = {"r_min": 0.999, "r_max": 0.9999, "max_phase": 0.01}
LRU_LRA_RING = {"r_min": 0.9, "r_max": 0.999, "max_phase": math.pi / 10}


def recipe(task: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(family_model, family_optimizer)`` overrides of ``task``'s recipe (see the table above).

    ``family_model[f]`` holds ``cell_options`` for family ``f``; ``family_optimizer[f]`` holds
    ``config.optimizer`` fields. Families absent from a dict keep the library defaults.
    """
    memory = task in MEMORY_TASKS
    family_model = {
        "lru": {"cell_options": LRU_LONG_RANGE_RING if memory else LRU_LRA_RING},
    }
    family_optimizer: dict[str, dict[str, Any]] = {}
    if memory:
        family_optimizer = {"lru": {"learning_rate": 5e-3}, "s5": {"learning_rate": 1e-2}}
    return family_model, family_optimizer


def apply_recipe(config, family: str) -> None:
    """Applies ``family``'s recipe for ``config.task.name`` to ``config`` in place."""
    family_model, family_optimizer = recipe(config.task.name)
    for field, value in family_model.get(family, {}).get("cell_options", {}).items():
        config.model.cell_options[field] = value
    for field, value in family_optimizer.get(family, {}).items():
        config.optimizer[field] = value


def init_alternative(task: str, family: str) -> dict[str, Any] | None:
    """The one initialisation choice the sweep tries besides the recipe's (``cell_options``), or
    ``None`` for a family without one (its sweep tries a finer learning-rate grid instead).

    Each alternative moves the family's memory timescales at initialisation, the knob its papers
    tune per task: LRU the other ring; S5 and Mamba a ten times smaller ``Δ`` range (slower
    dynamics); RG-LRU its ``a`` range closer to 1; the LSTM a forget-gate bias of 3 instead of 1;
    the tanh RNN an identity recurrent matrix (Le et al. 2015); the GRU Glorot input weights.
    minGRU and minLSTM have no initialisation option.
    """
    if family == "lru":
        return dict(LRU_LRA_RING if task in MEMORY_TASKS else LRU_LONG_RANGE_RING)
    return {
        "s5": {"dt_min": 1e-4, "dt_max": 1e-2},
        "mamba": {"dt_min": 1e-4, "dt_max": 1e-2},
        "rglru": {"a_min": 0.99, "a_max": 0.9999},
        "lstm": {"forget_bias": 3.0},
        "rnn": {"recurrent_init": "identity"},
        "gru": {"kernel_init": "glorot"},
    }.get(family)
