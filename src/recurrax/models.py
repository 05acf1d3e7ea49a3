"""Models built from the cells and layers: a sequence classifier / regressor, a per-step model and
an encoder–decoder.

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

Tasks with ``target="transduction"`` get an encoder–decoder (:mod:`recurrax.seq2seq`) built from
the same pieces: the encoder is ``num_layers`` layers of the family (bidirectional if asked; the
linear families in their residual blocks), the decoder ``num_layers`` cells of the family (the
linear families as :func:`recurrax.layers.residual_cell`, the block's one-step form), with the
attention and input feeding of :class:`DecoderOptions`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import cells as cell_lib
from recurrax.array_types import Array, Key, Params
from recurrax.cells.base import Cell
from recurrax.layers import bidirectional as make_bidirectional
from recurrax.layers import recurrent, residual_block, residual_cell, stacked
from recurrax.pooling import attention_pooling, pool_last, pool_mean
from recurrax.readout import dense, embedding
from recurrax.seq2seq import encoder_decoder, shift_right
from recurrax.tasks.spec import TaskSpec
from recurrax.validation import check_choice, check_positive_int, check_probability, check_rank

CLASSIC = ("rnn", "lstm", "gru")
LINEAR = ("lru", "s5", "mamba", "rglru", "mingru", "minlstm")
FAMILIES = CLASSIC + LINEAR
POOLINGS = ("last", "mean", "attention")
ATTENTIONS = ("none", "bahdanau", "dot", "general", "concat")
LOG_SPACE = ("mingru", "minlstm")
"""Families whose default state lives in log space (non-negative): an encoder–decoder starts their
decoder from the zero carry (the dense bridge's outputs can be negative)."""


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


class DecoderOptions(NamedTuple):
    """The decoder of an encoder–decoder (transduction tasks only).

    Attributes:
      attention: the decoder's attention over the encoder's outputs: ``"none"``, ``"bahdanau"``,
        ``"dot"``, ``"general"`` or ``"concat"`` (:mod:`recurrax.attention`).
      input_feeding: feed the previous attentional vector to the decoder (Luong et al. 2015).
    """

    attention: str = "none"
    input_feeding: bool = False


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

    For transduction targets ``apply(params, inputs, *, lengths, targets, teacher_probability=1.0,
    key=None, sampling="greedy") -> (logits (B, T', V), attention weights (B, T', S) or None)``
    trains the decoder on ``targets`` (:func:`recurrax.seq2seq.shift_right` of them as its
    inputs), and ``encoder_decoder`` is the :class:`recurrax.seq2seq.EncoderDecoder` whose
    ``encode`` and ``step_fn`` the decoders of :mod:`recurrax.decoding` take.
    """

    init: Any
    apply: Any
    config: ModelConfig
    spec: TaskSpec
    encoder_decoder: Any = None


def check_config(
    config: ModelConfig, spec: TaskSpec, decoder: DecoderOptions | None = None
) -> None:
    """Rejects a configuration that cannot work for ``spec``, before any work. ``decoder`` must be
    given exactly for transduction tasks (``config.seq2seq`` in the experiments' configs)."""
    check_choice("model.cell", config.cell, FAMILIES)
    check_positive_int("model.width", config.width)
    check_positive_int("model.state_size", config.state_size)
    check_positive_int("model.num_layers", config.num_layers)
    check_probability("model.dropout", config.dropout)
    check_choice("model.pooling", config.pooling, POOLINGS)
    if (decoder is not None) != (spec.target == "transduction"):
        raise ValueError(
            f"decoder options (config.seq2seq) must be given exactly for transduction tasks; task "
            f"{spec.name!r} has target {spec.target!r} and they were "
            f"{'given' if decoder is not None else 'not given'}"
        )
    if decoder is not None:
        _check_decoder(config, spec, decoder)
    if config.bidirectional and spec.target == "step":
        raise ValueError(
            f"model.bidirectional must be False for task {spec.name!r}: its targets are per step "
            "and a causal model must not see the future; got True"
        )
    if config.cell == "s5" and config.state_size % 2:
        raise ValueError(f"model.state_size must be even for s5; got {config.state_size}")


def _check_decoder(config: ModelConfig, spec: TaskSpec, decoder: DecoderOptions) -> None:
    check_choice("seq2seq.attention", decoder.attention, ATTENTIONS)
    if not isinstance(decoder.input_feeding, bool):
        raise ValueError(f"seq2seq.input_feeding must be a bool; got {decoder.input_feeding!r}")
    if config.dropout:
        raise ValueError(
            f"model.dropout must be 0 for task {spec.name!r}: the encoder–decoder has no dropout; "
            f"got {config.dropout!r}"
        )
    if decoder.input_feeding and decoder.attention == "none":
        raise ValueError(
            "seq2seq.input_feeding must be False when seq2seq.attention is 'none'; got True"
        )
    if decoder.input_feeding and config.cell in LINEAR:
        raise ValueError(
            f"seq2seq.input_feeding must be False for {config.cell!r}: the decoder block's input "
            "must have the block's width, and feeding widens it; got True"
        )


def sequence_model(
    config: ModelConfig, spec: TaskSpec, decoder: DecoderOptions | None = None
) -> SequenceModel:
    """Builds the model of ``config`` for the task ``spec`` (see the module docstring); a
    transduction task's encoder–decoder takes ``decoder`` (default: no attention)."""
    if spec.target == "transduction" and decoder is None:
        decoder = DecoderOptions()
    check_config(config, spec, decoder)
    if spec.target == "transduction":
        return _translation_model(config, spec, decoder)
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


def _translation_model(
    config: ModelConfig, spec: TaskSpec, decoder: DecoderOptions
) -> SequenceModel:
    """The encoder–decoder of ``config`` for a transduction task (see the module docstring)."""
    d, linear = config.width, config.cell in LINEAR
    glu = config.cell != "mamba"

    def encoder_layer():
        cell = make_cell(config)
        if config.bidirectional:
            layer = make_bidirectional(cell, merge="sum" if linear else "concat")
        else:
            layer = recurrent(cell)
        return residual_block(layer, d, glu=glu) if linear else layer

    layers = [encoder_layer() for _ in range(config.num_layers)]
    cells = [
        residual_cell(make_cell(config), d, glu=glu) if linear else make_cell(config)
        for _ in range(config.num_layers)
    ]
    model = encoder_decoder(
        encoder=layers[0] if len(layers) == 1 else stacked(layers),
        decoder_cells=cells,
        src_vocab_size=spec.vocab_size,
        tgt_vocab_size=spec.num_outputs,
        embed_size=d,
        attention=None if decoder.attention == "none" else decoder.attention,
        input_feeding=decoder.input_feeding,
        bridge="zeros" if config.cell in LOG_SPACE else "dense",
        # Mamba's carry (its (expand·d, d_state) state and convolution window) is 38× its width
        # at d_state 16: a full bridge would be most of the model's parameters and time.
        bridge_rank=d if config.cell == "mamba" else None,
    )

    def apply(
        params,
        inputs,
        *,
        lengths=None,
        targets=None,
        teacher_probability=1.0,
        key=None,
        sampling="greedy",
    ):
        for name, value in (("lengths", lengths), ("targets", targets)):
            if value is None:
                raise ValueError(
                    f"{name} must be an array for the encoder–decoder of {spec.name!r}; got None"
                )
        return model.apply(
            params,
            inputs,
            lengths,
            shift_right(targets),
            teacher_probability=teacher_probability,
            key=key,
            sampling=sampling,
        )

    return SequenceModel(model.init, apply, config, spec, model)


def _dropout(key: Key, rate: float, y: Array) -> Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, y.shape)
    return jnp.where(keep, y / jnp.asarray(1.0 - rate, y.dtype), jnp.zeros_like(y))


def language_model_step(model: SequenceModel, params: Params):
    """The step function of a causal token model for :mod:`recurrax.decoding`:
    ``step_fn(carries, tokens (N,)) -> (carries, logits (N, V))``, the cache being the per-layer
    carries (every leaf with the batch first).

    Example:
        >>> from recurrax import decoding
        >>> from recurrax.models import ModelConfig, language_model_step, prompt_cache
        >>> spec = recurrax.tasks.TaskSpec("lm", "tokens", "step", "cross_entropy", 7, vocab_size=7)
        >>> model = recurrax.models.sequence_model(ModelConfig(cell="gru", width=8), spec)
        >>> params = model.init(jax.random.key(0))
        >>> prompt = jnp.array([[4, 5, 6]])
        >>> out = decoding.greedy(language_model_step(model, params),
        ...                       prompt_cache(model, params, prompt), max_length=5,
        ...                       sos_id=6, min_length=5)   # starts from the prompt's last token
        >>> out.tokens.shape                                  # a model without <eos>: min = max
        (1, 5)
    """
    if model.spec.target != "step" or model.spec.input != "tokens":
        raise ValueError(f"model must be a token-to-token step model; got {model.spec}")

    def step_fn(carries, tokens):
        logits, carries = model.apply(params, tokens[:, None], carries=carries)
        return carries, logits[:, -1]

    return step_fn


def prompt_cache(model: SequenceModel, params: Params, prompt: Array):
    """The carries after every token of ``prompt`` ``(B, P)`` but the last, which the decoder
    feeds first (as its start token): the cache that :func:`language_model_step` continues."""
    prompt = jnp.asarray(prompt, jnp.int32)
    check_rank("prompt", prompt, 2, "(batch, prompt length)")
    if prompt.shape[1] == 1:  # nothing to read: the zero carries, shaped by a one-token call
        _, carries = jax.eval_shape(lambda: model.apply(params, prompt))
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), carries)
    return model.apply(params, prompt[:, :-1])[1]


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
