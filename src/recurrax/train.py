"""Pure training and evaluation steps, losses over real tokens, and the optimiser chain.

``train_step(state, batch, key) -> (state, metrics)`` and ``eval_step(params, batch) -> sums`` are
pure functions of arrays, jit-compiled once per shape. Losses and metrics count only real steps:
``loss_mask`` and ``lengths`` remove padding and unscored positions, and evaluation returns sums and
counts so that averages over many batches are exact.

Conventions: perplexity is ``exp(mean NLL per real token)`` and bits per character is
``NLL / ln 2``; global-norm clipping scales gradients by ``min(1, τ/‖g‖)`` and never scales small
gradients up; the step key is ``fold_in(key, step)``.

Transduction tasks (an encoder–decoder, :mod:`recurrax.seq2seq`) train on the output tokens with
teacher forcing, or with scheduled sampling when a teacher schedule is given (the probability of
feeding the gold token at training step ``i``, :mod:`recurrax.scheduled_sampling`), and with optional
label smoothing. Their evaluation decodes greedily (:func:`recurrax.decoding.greedy`) and counts the
sequences generated exactly (``exact_match``), beside the teacher-forced loss and perplexity.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recurrax import decoding
from recurrax.array_types import Array, Key, Params
from recurrax.models import SequenceModel, make_cell
from recurrax.optim import grouped
from recurrax.seq2seq import sequence_loss
from recurrax.tasks.spec import Batch

LN2 = math.log(2.0)


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly: step, params, optimiser state, and the recurrent
    carries that truncated BPTT passes from one batch to the next (``None`` otherwise)."""

    step: Array
    params: Params
    opt_state: Any
    carries: Any = None


class OptimizerConfig(NamedTuple):
    """AdamW with linear warmup and cosine decay, global-norm clipping, and a recurrence group.

    Attributes:
      learning_rate: peak learning rate.
      recurrence_learning_rate_ratio: the recurrence parameters' peak rate over ``learning_rate``;
        they get no weight decay (see :mod:`recurrax.optim`).
      weight_decay: decoupled weight decay of the other parameters.
      warmup_steps, total_steps: the schedule: linear warmup, then cosine decay to
        ``final_ratio * learning_rate`` at ``total_steps``.
      clip_norm: global-norm clipping threshold τ (``None``: off).

    These defaults are the experiments' defaults (``recurrax.run.default_config`` builds
    ``config.optimizer`` from them; the linear families override a few, see
    ``recurrax.run.LINEAR_DEFAULTS``).
    """

    learning_rate: float = 3e-3
    recurrence_learning_rate_ratio: float = 0.5
    weight_decay: float = 0.0
    warmup_steps: int = 50
    total_steps: int = 1000
    final_ratio: float = 0.1
    clip_norm: float | None = 1.0
    b1: float = 0.9
    b2: float = 0.999


def make_optimizer(config: OptimizerConfig, model: SequenceModel) -> optax.GradientTransformation:
    """``clip_by_global_norm(τ)`` then AdamW (default group) / Adam (recurrence group)."""

    def schedule(peak):
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if config.warmup_steps else peak,
            peak_value=peak,
            warmup_steps=config.warmup_steps,
            decay_steps=max(config.total_steps, config.warmup_steps + 1),
            end_value=peak * config.final_ratio,
        )

    default = optax.adamw(
        schedule(config.learning_rate), b1=config.b1, b2=config.b2, weight_decay=config.weight_decay
    )
    recurrence = optax.adam(
        schedule(config.learning_rate * config.recurrence_learning_rate_ratio),
        b1=config.b1,
        b2=config.b2,
    )
    tx = grouped(default, recurrence, [make_cell(model.config)])
    if config.clip_norm is not None:
        # optax.clip_by_global_norm multiplies by τ / max(‖g‖, τ) = min(1, τ/‖g‖).
        tx = optax.chain(optax.clip_by_global_norm(config.clip_norm), tx)
    return tx


def init_state(
    model: SequenceModel, tx: optax.GradientTransformation, key: Key, carries: Any = None
) -> TrainState:
    params = model.init(key)
    with jax.numpy_dtype_promotion("standard"):  # see make_train_step
        opt_state = tx.init(params)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, carries)


def loss_and_sums(
    model: SequenceModel,
    params: Params,
    batch: Batch,
    *,
    carries=None,
    key=None,
    train=False,
    teacher_probability=1.0,
    fed_token: str = "greedy",
    label_smoothing: float = 0.0,
):
    """Mean loss over real scored positions, the sums that evaluation adds up, and new carries.

    Returns ``(loss, sums, carries)`` with ``sums = {"loss": Σ per-position loss, "count": number of
    scored positions, "correct": Σ correct predictions}`` (``correct`` for classification only).
    Transduction tasks add ``"nll"`` (Σ NLL without label smoothing) and have no carries;
    ``teacher_probability``, ``fed_token`` and ``label_smoothing`` apply to them only (see
    :func:`recurrax.seq2seq.sequence_loss`).
    """
    spec = model.spec
    if spec.target == "transduction":
        logits, _ = model.apply(
            params,
            batch.inputs,
            lengths=batch.lengths,
            targets=batch.targets,
            teacher_probability=teacher_probability,
            key=key,
            sampling=fed_token,
        )
        loss, sums = sequence_loss(
            logits, batch.targets, batch.loss_mask, label_smoothing=label_smoothing
        )
        names = ("loss", "nll", "count", "correct")
        return loss, {k: sums[k].astype(jnp.float32) for k in names}, None
    outputs, new_carries = model.apply(
        params,
        batch.inputs,
        lengths=batch.lengths,
        resets=batch.resets,
        carries=carries,
        key=key,
        train=train,
    )
    outputs = outputs.astype(jnp.float32)
    if spec.target == "sequence":
        weights = jnp.ones(outputs.shape[:1], jnp.float32)
    else:
        weights = _step_weights(batch, outputs.shape[:2])
    if spec.loss == "mse":
        per_position = jnp.mean(jnp.square(outputs - batch.targets.astype(jnp.float32)), axis=-1)
        correct = None
    else:
        labels = batch.targets.astype(jnp.int32)
        per_position = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        predicted = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
        correct = jnp.sum((predicted == labels).astype(jnp.float32) * weights)
    total = jnp.sum(per_position * weights)
    count = jnp.sum(weights)
    sums = {"loss": total, "count": count}
    if correct is not None:
        sums["correct"] = correct
    return total / jnp.maximum(count, 1.0), sums, new_carries


def _step_weights(batch: Batch, shape) -> Array:
    """1.0 at scored real steps: inside the length and inside the loss mask."""
    weights = jnp.ones(shape, jnp.float32)
    if batch.loss_mask is not None:
        weights = weights * jnp.asarray(batch.loss_mask).astype(jnp.float32)
    if batch.lengths is not None:
        steps = jnp.arange(shape[1], dtype=jnp.int32)[None, :]
        real = steps < jnp.asarray(batch.lengths, jnp.int32)[:, None]
        weights = weights * real.astype(jnp.float32)
    return weights


def summarize(sums: dict, spec) -> dict[str, float]:
    """Metrics from accumulated sums: ``loss``, and ``accuracy`` / ``mse`` / ``bits_per_char`` and
    ``perplexity`` as the task's metric asks."""
    count = max(float(sums["count"]), 1.0)
    loss = float(sums["loss"]) / count
    metrics = {"loss": loss}
    if "correct" in sums:
        metrics["accuracy"] = float(sums["correct"]) / count
    if spec.loss == "mse":
        metrics["mse"] = loss
    if spec.metric in ("bits_per_char", "cross_entropy"):
        metrics["bits_per_char"] = loss / LN2
        metrics["perplexity"] = math.exp(min(loss, 700.0))
    if "nll" in sums:
        metrics["perplexity"] = math.exp(min(float(sums["nll"]) / count, 700.0))
    if "exact" in sums:
        metrics["exact_match"] = float(sums["exact"]) / max(float(sums["sequences"]), 1.0)
        metrics["generated_token_accuracy"] = float(sums["generated_correct"]) / count
    return metrics


def make_train_step(
    model: SequenceModel,
    tx: optax.GradientTransformation,
    *,
    truncated_bptt: bool = False,
    teacher_schedule=None,
    fed_token: str = "greedy",
    label_smoothing: float = 0.0,
):
    """``train_step(state, batch, key) -> (state, metrics)``.

    With ``truncated_bptt`` the carries in ``state`` start the batch and the carries at its end
    (with ``stop_gradient``: no gradient flows into earlier batches) go into the new state.
    For transduction tasks, ``teacher_schedule(step)`` (None: teacher forcing) is the probability
    of feeding the gold token at this step, and ``fed_token`` how the model's own token is chosen
    otherwise (``"greedy"`` or ``"sample"``); ``label_smoothing`` is ε of the loss.
    """

    def train_step(state: TrainState, batch: Batch, key: Key):
        step_key = jax.random.fold_in(key, state.step)
        carries = jax.lax.stop_gradient(state.carries) if truncated_bptt else None
        teacher = 1.0 if teacher_schedule is None else teacher_schedule(state.step)

        def loss_fn(params):
            loss, sums, new_carries = loss_and_sums(
                model,
                params,
                batch,
                carries=carries,
                key=step_key,
                train=True,
                teacher_probability=teacher,
                fed_token=fed_token,
                label_smoothing=label_smoothing,
            )
            return loss, (sums, new_carries)

        (loss, (sums, new_carries)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        # optax mixes Python floats with int32 step counts (bias correction, schedules), which
        # strict dtype promotion (as the test suite runs) rejects; the library itself stays strict.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        if teacher_schedule is not None:
            metrics["teacher_probability"] = jnp.asarray(teacher, jnp.float32)
        if "correct" in sums:
            metrics["accuracy"] = sums["correct"] / jnp.maximum(sums["count"], 1.0)
        new_state = TrainState(
            state.step + 1,
            params,
            opt_state,
            jax.lax.stop_gradient(new_carries) if truncated_bptt else None,
        )
        return new_state, metrics

    return train_step


def make_eval_step(model: SequenceModel):
    """``eval_step(params, batch, carries=None) -> (sums, carries)``; no dropout.

    For transduction tasks the sums also count what greedy decoding generates, with the targets'
    width as its maximum length: ``"exact"`` sequences equal to their target (every token up to
    and including ``<eos>``, nothing after it), ``"generated_correct"`` real target positions
    generated right, and ``"sequences"``.
    """

    def eval_step(params: Params, batch: Batch, carries=None):
        _, sums, new_carries = loss_and_sums(model, params, batch, carries=carries)
        if model.spec.target == "transduction":
            sums.update(generated_sums(model, params, batch))
        return sums, new_carries

    return eval_step


def generated_sums(model: SequenceModel, params: Params, batch: Batch) -> dict[str, Array]:
    """Greedy decoding of a transduction batch scored against its targets (see
    :func:`make_eval_step`)."""
    seq2seq = model.encoder_decoder
    state = seq2seq.encode(params, batch.inputs, batch.lengths)
    targets = jnp.asarray(batch.targets, jnp.int32)
    out = decoding.greedy(seq2seq.step_fn(params), state, max_length=targets.shape[1])
    same = out.tokens == targets
    real = jnp.asarray(batch.loss_mask, bool)
    return {
        "exact": jnp.sum(jnp.all(same, axis=1).astype(jnp.float32)),
        "generated_correct": jnp.sum((same & real).astype(jnp.float32)),
        "sequences": jnp.asarray(targets.shape[0], jnp.float32),
    }
