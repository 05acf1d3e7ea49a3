"""The shared shape of every experiment config: task, model, optimizer and training settings.

A task's config file calls :func:`make_config` with the task name and the model family given after
the colon on the command line (``--config=experiments/configs/adding.py:lstm``); any field can then
be overridden (``--config.model.width=128 --config.task.length=500``).

The fields and their defaults have one source of truth, :func:`recurrax.run.default_config` (the
defaults of ``ModelConfig``, ``OptimizerConfig`` and ``TrainConfig``, and the linear families'
``LINEAR_DEFAULTS``); the families are :data:`recurrax.models.FAMILIES`.
"""

from __future__ import annotations

import ml_collections

from recurrax.models import FAMILIES
from recurrax.run import SIZES, default_config

__all__ = ["FAMILIES", "SIZES", "make_config"]


def make_config(task: str, arg: str | None, **train_overrides) -> ml_collections.ConfigDict:
    """``arg`` is ``"<family>"`` or ``"<family>,<size>"`` with size ``small`` (default) or ``full``."""
    family, _, size = (arg or "lstm").partition(",")
    size = size or "small"
    if family not in FAMILIES:
        raise ValueError(f"config argument family must be one of {FAMILIES}; got {family!r}")
    if size not in SIZES:
        raise ValueError(f"config argument size must be one of {SIZES}; got {size!r}")
    config = default_config(task, family, size)
    unknown = sorted(set(train_overrides) - set(config.train))
    if unknown:
        raise ValueError(
            f"unknown config.train fields {unknown}; the fields are {sorted(config.train)}"
        )
    config.train.update(train_overrides)
    return config
