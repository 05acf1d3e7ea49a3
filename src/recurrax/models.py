"""Models built from the cells and layers: a sequence classifier / regressor and a per-step model.

One architecture serves every task of the suite, with the body chosen by the cell family:

* classic cells (``rnn``, ``lstm``, ``gru``) form a plain deep RNN: layer ``l`` reads layer
  ``l-1``'s outputs, with dropout between layers (and optional residuals);
* linear recurrences (``lru``, ``s5``, ``rglru``, ``mingru``, ``minlstm``) form residual blocks, as
  in the LRU and S5 papers: :math:`x \\leftarrow x + \\mathrm{GLU}(\\mathrm{RNN}(\\mathrm{LN}(x)))`,
  because a stack of linear recurrences alone is a linear map; ``mamba`` blocks already gate and
  project, so they are :math:`x \\leftarrow x + \\mathrm{Mamba}(\\mathrm{LN}(x))`.

Inputs are embedded (tokens) or projected (features) to ``width``; the head reads either one pooled
vector per sequence (``target="sequence"``) or every step (``target="step"``). Every model is causal
unless ``bidirectional``; causal models take and return the recurrent carries, so a language model
can be run over chunks (truncated BPTT) or one token at a time (sampling).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import cells as cell_lib
from recurrax.array_types import Array, Key, Params
from recurrax.cells.base import Cell
from recurrax.layers import bidirectional as make_bidirectional
from recurrax.layers import recurrent, residual_block
from recurrax.pooling import attention_pooling, pool_last, pool_mean
from recurrax.readout import dense, embedding
from recurrax.tasks.spec import TaskSpec
from recurrax.validation import check_choice, check_positive_int, check_probability

CLASSIC = ("rnn", "lstm", "gru")
LINEAR = ("lru", "s5", "mamba", "rglru", "mingru", "minlstm")
FAMILIES = CLASSIC + LINEAR
POOLINGS = ("last", "mean", "attention")


class ModelConfig(NamedTuple):
    """Architecture of a :func:`sequence_model`.

    Attributes:
      cell: the cell family, one of :data:`FAMILIES`.
      width: features of every layer (``d``; the hidden size of classic cells).
      state_size: state size ``N`` of ``lru``/``s5`` and ``d_state`` of ``mamba`` (ignored otherwise).
      num_layers: recurrent layers.
      bidirectional: run every layer both ways (sequence targets only: a step model is causal).
      residual: residual connections between classic layers (linear families always have them).
      dropout: dropout rate between layers / on block outputs, in training only.
      pooling: ``"last"``, ``"mean"`` or ``"attention"``, for sequence targets.
      cell_options: extra keyword arguments for the cell constructor (e.g. ``forget_bias``).
    """

    cell: str = "lstm"
    width: int = 64
    state_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    residual: bool = False
    dropout: float = 0.0
    pooling: str = "last"
    cell_options: dict = {}  # noqa: RUF012 — never mutated; NamedTuple fields cannot use factories


def make_cell(config: ModelConfig) -> Cell:
    """The cell of one layer of ``config``."""
    name, d, n, options = config.cell, config.width, config.state_size, dict(config.cell_options)
    if name in ("rnn", "lstm", "gru", "mingru", "minlstm"):
        return getattr(cell_lib, name)(d, **options)
    if name in ("lru", "s5"):
        return getattr(cell_lib, name)(n, d, **options)
    if name == "mamba":
        return cell_lib.mamba(d, d_state=n, **options)
    return cell_lib.rglru(d, **options)


class SequenceModel(NamedTuple):
    """``init(key) -> params``; ``apply(params, inputs, *, lengths=None, resets=None,
    carries=None, key=None, train=False) -> (outputs, carries)``.

    ``inputs`` are ``(B, T)`` tokens or ``(B, T, F)`` features. ``outputs`` are ``(B, K)`` for
    sequence targets and ``(B, T, K)`` for step targets (logits or regression values). ``carries``
    is one carry per layer (``None`` means the zero carry); causal models return the carries after
    the last real step, which a later call can continue from.
    """

    init: Any
    apply: Any
    config: ModelConfig
    spec: TaskSpec


def check_config(config: ModelConfig, spec: TaskSpec) -> None:
    """Rejects a configuration that cannot work for ``spec``, before any work."""
    check_choice("model.cell", config.cell, FAMILIES)
    check_positive_int("model.width", config.width)
    check_positive_int("model.state_size", config.state_size)
    check_positive_int("model.num_layers", config.num_layers)
    check_probability("model.dropout", config.dropout)
    check_choice("model.pooling", config.pooling, POOLINGS)
    if config.bidirectional and spec.target == "step":
        raise ValueError(
            f"model.bidirectional must be False for task {spec.name!r}: its targets are per step "
            "and a causal model must not see the future; got True"
        )
    if config.cell == "s5" and config.state_size % 2:
        raise ValueError(f"model.state_size must be even for s5; got {config.state_size}")


def sequence_model(config: ModelConfig, spec: TaskSpec) -> SequenceModel:
    """Builds the model of ``config`` for the task ``spec`` (see the module docstring)."""
    check_config(config, spec)
    d, L = config.width, config.num_layers
    cell = make_cell(config)
    linear = config.cell in LINEAR
    if config.bidirectional:
        layer = make_bidirectional(cell, merge="sum" if linear else "concat")
    else:
        layer = recurrent(cell)
    if linear:  # x <- x + Dropout(GLU(RNN(LN(x)))), without the GLU for mamba
        layer = residual_block(layer, d, glu=config.cell != "mamba", dropout=config.dropout)
    if spec.input == "tokens":
        encoder = embedding(spec.vocab_size, d)
    else:
        encoder = dense(d)
    head = dense(spec.num_outputs)
    attention = attention_pooling(d) if config.pooling == "attention" else None
    input_size = spec.vocab_size if spec.input == "tokens" else spec.input_features

    def init(key: Key) -> Params:
        keys = jax.random.split(key, L + 3)
        layers, size = [], d
        for i in range(L):
            if linear:
                layers.append(layer.init(keys[1 + i], size))
            else:  # (the first half of the key, as a block gives its recurrence)
                layers.append({"rnn": layer.init(jax.random.split(keys[1 + i])[0], size)})
            size = layer.output_size
        params = {
            "encoder": encoder.init(keys[0], input_size),
            "layers": layers,
            "head": head.init(keys[L + 1], size),
        }
        if attention is not None:
            params["pool"] = attention.init(keys[L + 2], size)
        return params

    def apply(params, inputs, *, lengths=None, resets=None, carries=None, key=None, train=False):
        use_dropout = train and config.dropout > 0
        if use_dropout and key is None:
            raise ValueError("key must be a PRNG key when train=True and dropout > 0; got None")
        x = encoder.apply(params["encoder"], inputs)
        carries = [None] * L if carries is None else list(carries)
        new_carries = []
        for i in range(L):
            p = params["layers"][i] if linear else params["layers"][i]["rnn"]
            layer_key = jax.random.fold_in(key, i) if use_dropout else None
            # Carried-in state (truncated BPTT, decoding) starts the chunk; a document boundary
            # inside it still returns to the zero state, as in one pass over the whole stream.
            reset_to = None if carries[i] is None else layer.initial_carry((x.shape[0],))
            carry, y = layer.apply(
                p,
                x,
                lengths=lengths,
                resets=resets,
                initial_carry=carries[i],
                reset_carry=reset_to,
                key=layer_key,
                train=use_dropout,
            )
            new_carries.append(carry)
            if not linear:
                if use_dropout and i < L - 1:
                    y = _dropout(layer_key, config.dropout, y)
                if config.residual and y.shape[-1] == x.shape[-1]:
                    y = x + y
            x = y
        if spec.target == "sequence":
            if config.pooling == "last":
                x = pool_last(x, lengths)
            elif config.pooling == "mean":
                x = pool_mean(x, lengths)
            else:
                x = attention.apply(params["pool"], x, lengths)
        return head.apply(params["head"], x), new_carries

    return SequenceModel(init, apply, config, spec)


def _dropout(key: Key, rate: float, y: Array) -> Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, y.shape)
    return jnp.where(keep, y / jnp.asarray(1.0 - rate, y.dtype), jnp.zeros_like(y))


def sample(
    model: SequenceModel,
    params: Params,
    prompt: Array,
    num_tokens: int,
    key: Key,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> Array:
    """Continues ``prompt`` ``(B, P)`` tokens by ``num_tokens`` sampled tokens, one at a time.

    The prompt is read once; after that each step feeds only the newest token and carries the
    recurrent state (the cost per token does not grow with the length). Tokens are drawn from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely ones.

    Returns:
      ``(B, num_tokens)`` int32 tokens.
    """
    if model.spec.target != "step" or model.spec.input != "tokens":
        raise ValueError(f"model must be a token-to-token step model to sample; got {model.spec}")
    check_positive_int("num_tokens", num_tokens)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    if top_k is not None:
        check_positive_int("top_k", top_k)
    prompt = jnp.asarray(prompt, jnp.int32)
    logits, carries = model.apply(params, prompt)

    def draw(key, logits):
        logits = logits / jnp.asarray(temperature, logits.dtype)
        if top_k is not None and top_k < logits.shape[-1]:
            threshold = jax.lax.top_k(logits, top_k)[0][..., -1:]
            logits = jnp.where(logits < threshold, -jnp.inf, logits)
        return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)

    def step(state, key):
        carries, last = state
        token = draw(key, last)
        logits, carries = model.apply(params, token[:, None], carries=carries)
        return (carries, logits[:, -1]), token

    keys = jax.random.split(key, num_tokens)
    _, tokens = jax.lax.scan(step, (carries, logits[:, -1]), keys)
    return tokens.T
