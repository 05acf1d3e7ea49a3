"""One training run: ``train_and_evaluate(config, workdir)``, resumable and safe to kill.

What happens, in order:

1. The config is resolved and checked (task, model, optimiser, training fields) before anything
   is written; a bad value raises ``ValueError`` naming the field.
2. The run's directory holds ``checkpoints/`` (Orbax: the latest few and the best by validation
   loss, plus ``run.json``, the resolved config and task spec), ``metrics.jsonl``,
   ``tensorboard/`` event files and, at the end, ``results.json``.
3. If checkpoints exist, the run resumes from the latest complete one. Batches depend only on
   ``(seed, split, step)`` and the step key is ``fold_in(key, step)``, so a resumed run computes
   exactly what an uninterrupted one would (a run killed at any moment, even mid-save, included).
4. A NaN or infinite loss stops the run with ``FloatingPointError`` naming the step; the last good
   checkpoint is kept.
5. With several local devices, batches are split over them (data parallelism with
   ``jax.sharding``); parameters are replicated and the numbers are those of one device.
6. With ``config.train.patience > 0`` the run stops early once that many validations in a row
   bring no new best validation loss; the final validation and test evaluate the best checkpoint
   (``evaluate_on="best"``, the default) or the last step (``"last"``). ``results.json`` records
   the steps trained, whether the run stopped early and the step it evaluated.
7. ``results.json`` records the resolved config and its hash (:func:`config_hash`), so that a
   stored run can be matched to the config that made it.

The config schema has one source of truth, here: :func:`default_config` builds every section from
the defaults of :class:`recurrax.models.ModelConfig`, :class:`recurrax.train.OptimizerConfig` and
:class:`TrainConfig` (plus the per-family defaults of :data:`LINEAR_DEFAULTS`; transduction tasks
also get :class:`Seq2SeqConfig`), and :class:`Experiment` accepts exactly those fields.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import recurrax.tasks as tasks
from recurrax.checkpoint import Checkpoints
from recurrax.metrics import MetricWriter, ProgressLine
from recurrax.models import (
    FAMILIES,
    LINEAR,
    DecoderOptions,
    ModelConfig,
    SequenceModel,
    check_config,
    sequence_model,
)
from recurrax.scheduled_sampling import teacher_schedule
from recurrax.seq2seq import SAMPLINGS
from recurrax.tasks.spec import Batch
from recurrax.train import (
    OptimizerConfig,
    init_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    summarize,
)
from recurrax.validation import check_choice, check_positive_int, check_probability


class TrainConfig(NamedTuple):
    """Training-loop settings (``config.train``) and their defaults.

    Attributes:
      seed: the seed of the initialisation, the batches and dropout.
      batch_size: examples per step (a multiple of the local device count).
      num_steps: training steps (also the length of the learning-rate schedule).
      log_every, eval_every: steps between training-metric lines / validations (and checkpoints).
      eval_batches, test_batches: batches in a validation / the final test evaluation.
      keep_checkpoints: how many of the latest checkpoints to keep (the best is kept as well).
      truncated_bptt: carry the recurrent state from one batch to the next (per-step targets).
      patience: early stopping: stop once this many validations in a row have not improved on the
        best validation loss (0: never stop early; train all ``num_steps``).
      evaluate_on: which parameters the final validation and test evaluations use: ``"best"``, the
        checkpoint with the lowest validation loss, or ``"last"``, the final step's.
    """

    seed: int = 0
    batch_size: int = 32
    num_steps: int = 1000
    log_every: int = 50
    eval_every: int = 250
    eval_batches: int = 8
    test_batches: int = 16
    keep_checkpoints: int = 2
    truncated_bptt: bool = False
    patience: int = 0
    evaluate_on: str = "best"


class Seq2SeqConfig(NamedTuple):
    """The encoder–decoder's settings (``config.seq2seq``), a section that only the configs of
    transduction tasks have.

    Attributes:
      attention, input_feeding: the decoder (:class:`recurrax.models.DecoderOptions`).
      teacher_schedule, teacher_k, teacher_c, teacher_min: the probability of feeding the decoder
        the gold previous token at training step ``i`` (scheduled sampling, Bengio et al. 2015;
        :mod:`recurrax.scheduled_sampling`): ``"constant"`` (``teacher_k``; 1.0 is teacher
        forcing), ``"linear"`` (``max(teacher_min, teacher_k - teacher_c·i)``),
        ``"exponential"`` (``teacher_k**i``, ``teacher_k < 1``) or ``"inverse_sigmoid"``
        (``teacher_k / (teacher_k + exp(i / teacher_k))``, ``teacher_k >= 1``).
      fed_token: how the decoder's own token is chosen when it is fed: ``"greedy"`` or
        ``"sample"``.
      label_smoothing: ε of the loss (:func:`recurrax.seq2seq.sequence_loss`).
    """

    attention: str = "none"
    input_feeding: bool = False
    teacher_schedule: str = "constant"
    teacher_k: float = 1.0
    teacher_c: float = 0.0
    teacher_min: float = 0.0
    fed_token: str = "greedy"
    label_smoothing: float = 0.0


TRAIN_FIELDS = TrainConfig._fields
EVALUATE_ON = ("best", "last")
SECTIONS = ("task", "model", "optimizer", "train")
"""The sections of every config; transduction tasks' configs also have ``seq2seq``."""
SIZES = ("small", "full")
LINEAR_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"num_layers": 2},
    "optimizer": {"learning_rate": 2e-3, "weight_decay": 0.01},
}
"""Defaults of the linear-recurrence families (:data:`recurrax.models.LINEAR`) that differ from the
section defaults: two residual blocks, a lower peak rate and some weight decay."""


def default_config(
    task: str, family: str = "lstm", size: str = "small"
) -> ml_collections.ConfigDict:
    """The full config of ``task`` (its ``small`` or ``full`` settings) for ``family``, with every
    field at its default. ``config.optimizer.total_steps`` is a reference to
    ``config.train.num_steps``, so that overriding the steps also sets the schedule's length."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}; got {size!r}")
    task_def = tasks.get(task)
    sections = {
        "model": ModelConfig(cell=family)._asdict(),
        "optimizer": OptimizerConfig()._asdict(),
        "train": TrainConfig()._asdict(),
    }
    if family in LINEAR:
        for section, values in LINEAR_DEFAULTS.items():
            sections[section].update(values)
    config = ml_collections.ConfigDict()
    config.task = task_def.small_config() if size == "small" else task_def.full_config()
    config.task.name = task
    if task_def.spec(config.task).target == "transduction":
        sections["seq2seq"] = Seq2SeqConfig()._asdict()
    sections["model"]["cell_options"] = ml_collections.ConfigDict(
        dict(sections["model"]["cell_options"])
    )
    for section, values in sections.items():
        config[section] = ml_collections.ConfigDict(values)
    config.optimizer.total_steps = config.train.get_ref("num_steps")
    return config


def unknown_field(config: Mapping[str, Any], path: str) -> str | None:
    """``None`` when the dotted ``path`` (``"model.width"``) names a field of ``config``; else a
    one-line message naming the unknown field and the valid fields where it was looked up."""
    node: Any = config
    parts = path.split(".")
    for i, part in enumerate(parts):
        where = ".".join(["config", *parts[:i]])
        if not isinstance(node, Mapping | ml_collections.ConfigDict):
            return f"config.{path}: {where} is a value, not a section with fields"
        if part not in node:
            valid = ", ".join(sorted(node)) or "(none)"
            return f"unknown config field config.{path}; the fields of {where} are: {valid}"
        node = node[part]
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping | ml_collections.ConfigDict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def resolved_config(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain JSON values (references resolved, tuples as lists)."""
    data = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return _jsonable(data)


def config_hash(config: ml_collections.ConfigDict | Mapping[str, Any]) -> str:
    """SHA-256 of the full resolved config (canonical JSON): equal exactly when every field is."""
    text = json.dumps(resolved_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def data_sharding() -> jax.sharding.NamedSharding:
    """Batches split over the local devices along their first axis (data parallelism)."""
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def replicated_sharding() -> jax.sharding.NamedSharding:
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


class Experiment:
    """The resolved pieces of a config: task, spec, model, optimiser and training settings."""

    def __init__(self, config: ml_collections.ConfigDict):
        for section in SECTIONS:
            if section not in config:
                raise ValueError(f"config must have a '{section}' section; got {sorted(config)}")
        self.config = config
        self.task = tasks.get(config.task.get("name"))
        self.task_config = config.task
        self.spec = self.task.spec(self.task_config)
        model_fields = config.model.to_dict()
        unknown = set(model_fields) - set(ModelConfig._fields)
        if unknown:
            raise ValueError(
                f"config.model has unknown fields {sorted(unknown)}; "
                f"expected some of {ModelConfig._fields}"
            )
        self.model_config = ModelConfig(**model_fields)
        self.seq2seq = _seq2seq_config(config, self.spec)
        self.decoder = None
        if self.seq2seq is not None:
            self.decoder = DecoderOptions(self.seq2seq.attention, self.seq2seq.input_feeding)
        check_config(self.model_config, self.spec, self.decoder)
        optimizer_fields = config.optimizer.to_dict()
        unknown = set(optimizer_fields) - set(OptimizerConfig._fields)
        if unknown:
            raise ValueError(
                f"config.optimizer has unknown fields {sorted(unknown)}; "
                f"expected some of {OptimizerConfig._fields}"
            )
        self.optimizer_config = OptimizerConfig(**optimizer_fields)
        if not self.optimizer_config.learning_rate > 0:
            raise ValueError(
                "config.optimizer.learning_rate must be > 0; got "
                f"{self.optimizer_config.learning_rate}"
            )
        train = config.train
        unknown = set(train) - set(TRAIN_FIELDS)
        if unknown:
            raise ValueError(
                f"config.train has unknown fields {sorted(unknown)}; "
                f"expected some of {TRAIN_FIELDS}"
            )
        for name in (
            "batch_size",
            "num_steps",
            "log_every",
            "eval_every",
            "eval_batches",
            "test_batches",
            "keep_checkpoints",
        ):
            check_positive_int(f"config.train.{name}", train[name])
        if (
            not isinstance(train.patience, int)
            or isinstance(train.patience, bool)
            or train.patience < 0
        ):
            raise ValueError(
                f"config.train.patience must be an int >= 0 (0: no early stopping); "
                f"got {train.patience!r}"
            )
        check_choice("config.train.evaluate_on", train.evaluate_on, EVALUATE_ON)
        devices = jax.local_device_count()
        if train.batch_size % devices:
            raise ValueError(
                f"config.train.batch_size must be a multiple of the {devices} local "
                f"devices; got {train.batch_size}"
            )
        if train.truncated_bptt and self.spec.target != "step":
            raise ValueError(
                "config.train.truncated_bptt needs a task with per-step targets; "
                f"task {self.spec.name!r} has target {self.spec.target!r}"
            )
        self.teacher_schedule = None if self.seq2seq is None else _teacher_schedule(self.seq2seq)
        self.train = train
        self.model: SequenceModel = sequence_model(self.model_config, self.spec, self.decoder)
        self.tx = make_optimizer(self.optimizer_config, self.model)
        # Fail now, not after the first checkpoint, if one batch cannot be made.
        self.task.batch(self.task_config, train.seed, "train", 0, 1)

    def batch(
        self, split: str, step: int, batch_size: int | None = None, task_config=None
    ) -> Batch:
        return self.task.batch(
            task_config or self.task_config,
            self.train.seed,
            split,
            step,
            batch_size or self.train.batch_size,
        )

    def decoder_training(self) -> dict[str, Any]:
        """The keyword arguments of :func:`recurrax.train.make_train_step` for the decoder of a
        transduction task (none for other tasks)."""
        if self.seq2seq is None:
            return {}
        return {
            "teacher_schedule": self.teacher_schedule,
            "fed_token": self.seq2seq.fed_token,
            "label_smoothing": self.seq2seq.label_smoothing,
        }

    def run_spec(self) -> dict:
        """What defines the run: saved with its checkpoints and checked on resume."""
        spec = {k: v for k, v in self.spec._asdict().items()}
        return {"config": self.config.to_dict(), "task_spec": spec}


def _seq2seq_config(config, spec) -> Seq2SeqConfig | None:
    """``config.seq2seq`` checked: present exactly for transduction tasks, known fields only."""
    if spec.target != "transduction":
        if "seq2seq" in config:
            raise ValueError(
                f"config.seq2seq applies to transduction tasks only; task {spec.name!r} has "
                f"target {spec.target!r}"
            )
        return None
    fields = config.seq2seq.to_dict() if "seq2seq" in config else {}
    unknown = set(fields) - set(Seq2SeqConfig._fields)
    if unknown:
        raise ValueError(
            f"config.seq2seq has unknown fields {sorted(unknown)}; "
            f"expected some of {Seq2SeqConfig._fields}"
        )
    seq2seq = Seq2SeqConfig(**fields)
    check_choice("config.seq2seq.fed_token", seq2seq.fed_token, SAMPLINGS)
    check_probability("config.seq2seq.label_smoothing", seq2seq.label_smoothing)
    return seq2seq


def _teacher_schedule(seq2seq: Seq2SeqConfig):
    """The teacher-probability schedule (None: teacher forcing), checked now."""
    kind, k = seq2seq.teacher_schedule, seq2seq.teacher_k
    if kind == "constant":
        params = {"probability": k}
    elif kind == "linear":
        params = {"k": k, "c": seq2seq.teacher_c, "minimum": seq2seq.teacher_min}
    else:
        params = {"k": k}
    try:
        schedule = teacher_schedule(kind, **params)
    except ValueError as error:
        raise ValueError(f"config.seq2seq.teacher_schedule={kind!r}: {error}") from None
    return None if kind == "constant" and k == 1.0 else schedule


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _device_batch(batch: Batch, sharding) -> Batch:
    return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), batch)


def evaluate(
    experiment: Experiment,
    params,
    split: str,
    num_batches: int,
    eval_step,
    sharding,
    task_config=None,
) -> dict[str, float]:
    """Metrics of ``params`` on ``num_batches`` batches of ``split`` (exact sums over real steps).

    With truncated BPTT the batches are consecutive chunks of contiguous streams, so the recurrent
    state is carried from one batch to the next (starting from zeros, reset where a stream starts
    over), as in training: each character is predicted from all of its stream before it, not only
    from its own chunk.
    """
    totals: dict[str, float] = {}
    carries = None
    if experiment.train.truncated_bptt:
        carries = _zero_carries(experiment, experiment.train.batch_size)
    for i in range(num_batches):
        batch = _device_batch(experiment.batch(split, i, task_config=task_config), sharding)
        sums, carries = eval_step(params, batch, carries)
        if not experiment.train.truncated_bptt:
            carries = None
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    return summarize(totals, experiment.spec)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints) and returns the results.

    Returns the content of ``workdir/results.json``: final validation and test metrics, extra
    evaluations (e.g. accuracy at other test lengths), parameter count, steps and wall time.
    """
    experiment = Experiment(config)
    workdir = Path(workdir)
    train = experiment.train
    checkpoints = Checkpoints(
        workdir / "checkpoints", keep=train.keep_checkpoints, run_spec=experiment.run_spec()
    )
    sharding = data_sharding()
    replicated = replicated_sharding()

    key = jax.random.key(train.seed)
    init_key, train_key = jax.random.split(key)
    carries = None
    if train.truncated_bptt:
        carries = _zero_carries(experiment, train.batch_size)
    template = init_state(experiment.model, experiment.tx, init_key, carries)
    start = checkpoints.latest_step()
    state = template if start is None else checkpoints.restore(start, template)
    state = jax.device_put(state, replicated)
    start = int(state.step)

    train_step = jax.jit(
        make_train_step(
            experiment.model,
            experiment.tx,
            truncated_bptt=train.truncated_bptt,
            **experiment.decoder_training(),
        ),
        out_shardings=(replicated, replicated),
    )
    eval_step = jax.jit(make_eval_step(experiment.model))
    writer = MetricWriter(workdir)
    line = ProgressLine(train.num_steps, every=train.log_every) if progress else None
    started = time.perf_counter()
    stopped_early = _patience_spent(checkpoints, start, train)
    try:
        for step in range(start, train.num_steps if not stopped_early else start):
            batch = _device_batch(experiment.batch("train", step), sharding)
            state, metrics = train_step(state, batch, train_key)
            loss = float(metrics["loss"])
            if not _finite(loss):
                raise FloatingPointError(
                    f"loss is {loss} at step {step + 1}; stopped. The last good checkpoint "
                    f"(step {checkpoints.latest_step()}) is kept in {workdir / 'checkpoints'}"
                )
            done = step + 1
            if done % train.log_every == 0 or done == train.num_steps:
                values = {k: float(v) for k, v in metrics.items()}
                writer.write(done, "train", values)
                if line is not None:
                    line.update(done, values)
            if done % train.eval_every == 0 or done == train.num_steps:
                valid = evaluate(
                    experiment, state.params, "valid", train.eval_batches, eval_step, sharding
                )
                writer.write(done, "valid", valid)
                checkpoints.save(done, state, {"valid_loss": valid["loss"]})
                if done < train.num_steps and _patience_spent(checkpoints, done, train):
                    stopped_early = True
                    break
    finally:
        if line is not None:
            line.close()
        writer.close()
    return _finish(
        experiment,
        checkpoints,
        state,
        eval_step,
        sharding,
        workdir,
        time.perf_counter() - started,
        start,
        stopped_early,
    )


def _patience_spent(checkpoints: Checkpoints, step: int, train) -> bool:
    """Early stopping: whether ``train.patience`` validations have passed since the best one.

    Validations happen every ``eval_every`` steps, so ``patience`` validations without a new best
    are ``patience * eval_every`` steps after the best checkpoint's step. Checked after every
    validation and, on resume, before the loop (a run that had stopped stays stopped).
    """
    best = checkpoints.best_step()
    if train.patience == 0 or best is None:
        return False
    return step - best >= train.patience * train.eval_every


def _zero_carries(experiment: Experiment, batch_size: int):
    """The per-layer zero carries of a batch (truncated BPTT starts every stream from them)."""
    spec = experiment.spec
    shape = (batch_size, 1) if spec.input == "tokens" else (batch_size, 1, spec.input_features)
    dummy = jnp.zeros(shape, jnp.int32 if spec.input == "tokens" else jnp.float32)
    params = jax.eval_shape(experiment.model.init, jax.random.key(0))
    _, carries = jax.eval_shape(lambda p: experiment.model.apply(p, dummy), params)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), carries)


def _finish(
    experiment, checkpoints, state, eval_step, sharding, workdir, seconds, start, stopped_early
):
    train = experiment.train
    steps = int(state.step)
    evaluated_step = steps
    if train.evaluate_on == "best" and checkpoints.best_step() is not None:
        evaluated_step = checkpoints.best_step()
        if evaluated_step != steps:
            state = checkpoints.restore(evaluated_step, state)
    valid = evaluate(experiment, state.params, "valid", train.eval_batches, eval_step, sharding)
    test = evaluate(experiment, state.params, "test", train.test_batches, eval_step, sharding)
    extra = {}
    for length in experiment.task_config.get("test_lengths", ()):
        task_config = ml_collections.ConfigDict(experiment.task_config.to_dict())
        task_config.length = int(length)
        extra[str(length)] = evaluate(
            experiment, state.params, "test", train.test_batches, eval_step, sharding, task_config
        )
    results = {
        "task": experiment.spec.name,
        "cell": experiment.model_config.cell,
        "metric": experiment.spec.metric,
        "steps": steps,
        "stopped_early": stopped_early,
        "evaluated_step": evaluated_step,
        "resumed_from": start,
        "train_seconds": seconds,
        "param_count": int(sum(x.size for x in jax.tree.leaves(state.params))),
        "valid": valid,
        "test": test,
        "test_by_length": extra,
        "best_step": checkpoints.best_step(),
        "config": resolved_config(experiment.config),
        "config_hash": config_hash(experiment.config),
    }
    path = Path(workdir) / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return results


def evaluate_at_lengths(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, lengths: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Test metrics of a finished run's parameters at each fixed length ``L``.

    Restores the checkpoint that :func:`train_and_evaluate` evaluated (the best by validation loss
    with ``config.train.evaluate_on == "best"``, else the latest, which is the final step) and
    evaluates ``config.train.test_batches`` test batches of a task
    config with ``test_min_length = test_max_length = L`` (the length fields of parity and the S5
    word problem). Returns ``{str(L): metrics}``.
    """
    experiment, params = restore_evaluated(config, workdir)
    eval_step = jax.jit(make_eval_step(experiment.model))
    sharding = data_sharding()
    out = {}
    for length in lengths:
        task_config = ml_collections.ConfigDict(config.task.to_dict())
        task_config.test_min_length = int(length)
        task_config.test_max_length = int(length)
        out[str(int(length))] = evaluate(
            experiment,
            params,
            "test",
            config.train.test_batches,
            eval_step,
            sharding,
            task_config,
        )
    return out


def restore_evaluated(config: ml_collections.ConfigDict, workdir: str | os.PathLike):
    """``(experiment, params)`` of the checkpoint a finished run of ``config`` in ``workdir``
    evaluated: the best by validation loss with ``config.train.evaluate_on == "best"``, else the
    latest."""
    experiment = Experiment(config)
    checkpoints = Checkpoints(
        Path(workdir) / "checkpoints",
        keep=config.train.keep_checkpoints,
        run_spec=experiment.run_spec(),
    )
    carries = None
    if experiment.train.truncated_bptt:  # (the state then holds the carries, as in training)
        carries = _zero_carries(experiment, experiment.train.batch_size)
    template = init_state(
        experiment.model, experiment.tx, jax.random.key(config.train.seed), carries
    )
    step = checkpoints.latest_step()
    if step is None:
        raise FileNotFoundError(f"workdir {workdir} holds no checkpoint of a run")
    if experiment.train.evaluate_on == "best" and checkpoints.best_step() is not None:
        step = checkpoints.best_step()
    return experiment, checkpoints.restore(step, template).params


def stored_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The resolved config of the finished run in ``workdir`` (from its ``results.json``)."""
    path = Path(workdir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(
            f"workdir {workdir} holds no results.json: train it first (experiments/main.py)"
        )
    return ml_collections.ConfigDict(json.loads(path.read_text())["config"])


def state_size(config: ml_collections.ConfigDict) -> int:
    """Recurrent state per example: the carries of all layers, in real numbers (a complex entry
    counts twice; Mamba's convolution window counts, as it is carried state too)."""
    spec = tasks.get(config.task.name).spec(config.task)
    model = sequence_model(ModelConfig(**config.model.to_dict()), spec)
    if spec.input == "tokens":
        dummy = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    else:
        dummy = jax.ShapeDtypeStruct((1, 1, spec.input_features), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0))
    _, carries = jax.eval_shape(model.apply, params, dummy)
    total = 0
    for leaf in jax.tree.leaves(carries):
        total += math.prod(leaf.shape[1:]) * (
            2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else 1
        )
    return int(total)
