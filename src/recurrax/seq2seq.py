r"""An encoder–decoder (sequence to sequence) model with optional attention, and its loss.

The source tokens are embedded and read by the encoder (any recurrax cell, or a
:class:`recurrax.SequenceLayer`: a bidirectional or stacked encoder, with lengths); a bridge maps
its final carry to the initial carries of the decoder, a stack of cells stepped one token at a
time (Sutskever et al. 2014; Cho et al. 2014). With attention the decoder's top output
:math:`h_t` queries the encoder's outputs (the memory) at every step, in the global attention
architecture of Luong et al. 2015 ("Effective Approaches to Attention-based Neural Machine
Translation"):

.. math::

    x_t = E_{tgt}[y_{t-1}] \;\;\big(\text{or } [E_{tgt}[y_{t-1}];\, \tilde h_{t-1}]
          \text{ with input feeding}\big), \qquad
    h_t = \mathrm{Dec}(x_t, \text{carries}_{t-1}),

    (c_t, w_t) = \mathrm{Attention}(h_t, \text{memory}), \qquad
    \tilde h_t = \tanh\big(W_c [c_t; h_t]\big), \qquad
    \text{logits}_t = W_s \tilde h_t + b_s,

and without attention :math:`\text{logits}_t = W_s h_t + b_s`. Every kind of attention
(``"bahdanau"``, ``"dot"``, ``"general"``, ``"concat"``; see :mod:`recurrax.attention`) enters
the same way: the kinds differ in their score function only, as in Luong et al.'s comparison of
score functions. Bahdanau et al. 2015 score with the *previous* state and feed the context into
the recurrence; here the additive score is used with the current state and the attentional layer
:math:`\tilde h_t`, and input feeding (Luong's Section 3.3) is the way the context of step
``t - 1`` reaches the recurrence of step ``t``. The attentional vector :math:`\tilde h_t` has the
size of the top decoder output.

The first decoder cell reads ``embed_size`` features (``embed_size`` plus the top decoder output
size with input feeding) and every further cell the previous cell's output. Cells whose input
size must equal their width (``lru``, ``s5``, ``mamba``, ``rglru``) must be built with that width;
the constructor checks every size before any work.

The bridge maps the encoder's final carry (after the last real step of each sequence; both
directions of a bidirectional encoder, every layer of a stacked one) to the decoder's initial
carries:

* ``"dense"``: every leaf of the encoder's carry is flattened (complex leaves as their real and
  imaginary parts) into one vector :math:`z \in \mathbb{R}^F`; one dense layer
  :math:`\tanh(z W_b + b_b) \in \mathbb{R}^G` gives the flattened decoder carries, which are cut
  into the decoders' carry structure and dtypes (complex leaves from real and imaginary halves).
  Values lie in :math:`(-1, 1)`; a log-space minGRU/minLSTM decoder, whose state must be
  non-negative, needs ``bridge="zeros"``. With ``bridge_rank = r`` the matrix is factored,
  :math:`\tanh(z U_b W_b + b_b)` with :math:`U_b \in \mathbb{R}^{F \times r}`: for cells whose
  carry is far wider than their output (Mamba's carry holds its ``(expand·D, N)`` state and
  convolution window, 2432 numbers at ``D = 64``, where a full ``F × G`` matrix would hold
  5.9M parameters, most of the model, and most of its training time).
* ``"zeros"``: the decoders' zero carries (the source then reaches the decoder only through
  attention).

Training runs ``decode_step`` over the target in a ``lax.scan`` (teacher forcing, or scheduled
sampling, Bengio et al. 2015); under teacher forcing without input feeding the decoder runs
through :func:`recurrax.unroll` (in parallel over time where the cell allows) and attends every
step at once, with the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax import driver
from recurrax.array_types import Array, Key, Params
from recurrax.attention import KINDS as ATTENTION_KINDS
from recurrax.attention import attention as make_attention
from recurrax.cells.base import Cell, check_cell, real_dtype
from recurrax.layers import SequenceLayer, recurrent
from recurrax.readout import dense, embedding
from recurrax.text.special_tokens import PAD, SOS
from recurrax.validation import (
    check_bool,
    check_choice,
    check_integer,
    check_positive_int,
    check_probability,
    check_range,
    check_rank,
)

BRIDGES = ("dense", "zeros")
SAMPLINGS = ("greedy", "sample")


class DecoderState(NamedTuple):
    """The decoder's cache between steps; a pytree whose every leaf has the batch first.

    Attributes:
      carries: one carry per decoder cell (each a cell carry with ``(B, ...)`` leaves).
      memory: ``(B, S, M)`` the encoder's outputs (zero at padding), or None without attention.
      keys: the attention's precomputed keys of the memory (``(B, S, ·)``), or None (no attention,
        or ``"dot"`` attention, which scores the memory itself).
      mask: ``(B, S)`` booleans, True at the real source positions, or None without attention.
      feed: ``(B, H)`` the previous attentional vector :math:`\\tilde h_{t-1}` (zeros before the
        first step) with input feeding, else None.
    """

    carries: tuple
    memory: Array | None
    keys: Any
    mask: Array | None
    feed: Array | None


class EncoderDecoder(NamedTuple):
    """An encoder–decoder built by :func:`encoder_decoder`; pure functions over a params dict.

    Attributes:
      init: ``init(key) -> params``.
      encode: ``encode(params, src (B, S) int, src_lengths (B,) int) -> DecoderState``.
      decode_step: ``decode_step(params, state, tokens (B,) int) -> (state, logits (B, V),
        weights (B, S) or None)``.
      step_fn: ``step_fn(params) -> (lambda cache, tokens: (cache, logits))``, the step function
        that greedy, sampling and beam search decoding take.
      apply: ``apply(params, src, src_lengths, tgt_in (B, T) int, *, teacher_probability=1.0,
        key=None, sampling="greedy", fast=True) -> (logits (B, T, V), weights (B, T, S) or
        None)``: the whole target in one call. Step 0 always reads ``tgt_in[:, 0]`` (``<sos>``).
        With ``teacher_probability`` the Python ``1.0``, every step reads the gold
        ``tgt_in[:, t]`` (teacher forcing; with ``fast`` and no input feeding through
        :func:`recurrax.unroll`, else a ``lax.scan`` over ``decode_step``). Otherwise (a float
        in ``[0, 1)`` or a scalar array, e.g. a traced schedule value) scheduled sampling: at
        each step ``t >= 1`` each example reads the gold token with that probability and else
        the model's own token from step ``t - 1``'s logits, under ``stop_gradient`` (the argmax
        with ``sampling="greedy"``, a draw from the softmax with ``"sample"``); the draws use
        ``key`` (needed unless the probability is ``0.0`` with greedy feeding).
      src_vocab_size, tgt_vocab_size, embed_size: the vocabularies and the embedding width.
      attention: the attention kind, or None.
      input_feeding: whether :math:`\\tilde h_{t-1}` is fed to the next step.
      bridge: ``"dense"`` or ``"zeros"``.
    """

    init: Callable[[Key], Params]
    encode: Callable[..., DecoderState]
    decode_step: Callable[..., tuple[DecoderState, Array, Array | None]]
    step_fn: Callable[[Params], Callable]
    apply: Callable[..., tuple[Array, Array | None]]
    src_vocab_size: int
    tgt_vocab_size: int
    embed_size: int
    attention: str | None
    input_feeding: bool
    bridge: str


def _flat_size(template) -> int:
    """Features of a carry with ``(B, ...)`` leaves flattened per example (complex counts twice)."""
    return sum(
        math.prod(leaf.shape[1:]) * (2 if jnp.issubdtype(leaf.dtype, jnp.complexfloating) else 1)
        for leaf in jax.tree.leaves(template)
    )


def flatten_carry(carry, dtype) -> Array:
    """Every leaf of a carry with ``(B, ...)`` leaves as one ``(B, F)`` array of ``dtype``;
    a complex leaf contributes its real parts, then its imaginary parts."""
    parts = []
    for leaf in jax.tree.leaves(carry):
        flat = leaf.reshape(leaf.shape[0], -1)
        if jnp.iscomplexobj(flat):
            parts += [jnp.real(flat).astype(dtype), jnp.imag(flat).astype(dtype)]
        else:
            parts.append(flat.astype(dtype))
    return jnp.concatenate(parts, axis=-1)


def unflatten_carry(z: Array, template):
    """The inverse of :func:`flatten_carry`: ``z (B, F)`` cut into ``template``'s structure,
    shapes and dtypes (complex leaves rebuilt from their real and imaginary halves)."""
    leaves, treedef = jax.tree.flatten(template)
    out, offset = [], 0
    for leaf in leaves:
        n = math.prod(leaf.shape[1:])
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            part = real_dtype(leaf.dtype)
            re = z[:, offset : offset + n].astype(part)
            im = z[:, offset + n : offset + 2 * n].astype(part)
            value, offset = jax.lax.complex(re, im), offset + 2 * n
        else:
            value, offset = z[:, offset : offset + n].astype(leaf.dtype), offset + n
        out.append(value.reshape(leaf.shape))
    return treedef.unflatten(out)


def _encoder_layer(encoder) -> SequenceLayer:
    if isinstance(encoder, Cell):
        check_cell(encoder, "encoder")
        return recurrent(encoder)
    if isinstance(encoder, SequenceLayer):
        return encoder
    raise TypeError(
        f"encoder must be a recurrax.Cell or SequenceLayer; got {type(encoder).__name__}"
    )


def _decoder_cells(decoder_cells) -> tuple[Cell, ...]:
    if isinstance(decoder_cells, Cell):
        cells = (decoder_cells,)
    elif isinstance(decoder_cells, Sequence) and not isinstance(decoder_cells, str):
        cells = tuple(decoder_cells)
    else:
        raise TypeError(
            "decoder_cells must be a recurrax.Cell or a sequence of Cells; got "
            f"{type(decoder_cells).__name__}"
        )
    if not cells:
        raise ValueError("decoder_cells must hold at least one cell; got an empty sequence")
    for i, cell in enumerate(cells):
        check_cell(cell, f"decoder_cells[{i}]")
    return cells


def _check_reads(name: str, init: Callable, input_size: int, why: str) -> None:
    """Builds the params abstractly, so that a size a cell cannot read fails now, named."""
    try:
        jax.eval_shape(lambda key: init(key, input_size), jax.random.key(0))
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} must read {input_size} input features ({why}); {error}") from None


def _check_tokens(name: str, tokens, vocab_size: int, layout: str, rank: int) -> None:
    check_integer(name, tokens)
    check_rank(name, tokens, rank, layout)
    check_range(name, tokens, 0, vocab_size - 1)


def _teacher_probability(value):
    """``(python_value, array)``: the Python number (checked in [0, 1]) or None, and the value as
    a float32 scalar array."""
    if isinstance(value, bool):
        raise TypeError(f"teacher_probability must be a float in [0, 1]; got {value!r}")
    if isinstance(value, int | float):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"teacher_probability must lie in [0, 1]; got {value!r}")
        return float(value), jnp.float32(value)
    if not hasattr(value, "dtype") or jnp.ndim(value) != 0:
        raise ValueError(
            f"teacher_probability must be a float or a scalar array; got {value!r}"
            if not hasattr(value, "shape")
            else f"teacher_probability must be a scalar; got shape {jnp.shape(value)}"
        )
    if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
        raise TypeError(
            f"teacher_probability must be a floating scalar; got dtype {jnp.result_type(value)}"
        )
    return None, jnp.asarray(value).astype(jnp.float32)


def encoder_decoder(
    *,
    encoder: Cell | SequenceLayer,
    decoder_cells: Cell | Sequence[Cell],
    src_vocab_size: int,
    tgt_vocab_size: int,
    embed_size: int,
    attention: str | None = None,
    input_feeding: bool = False,
    bridge: str = "dense",
    attention_size: int | None = None,
    bridge_rank: int | None = None,
) -> EncoderDecoder:
    r"""Builds an encoder–decoder (see the module docstring for the equations).

    Params::

        src_embed    {"E": (V_src, E)}       source embedding
        tgt_embed    {"E": (V_tgt, E)}       target embedding
        encoder      the encoder layer's params (a cell is wrapped with recurrax.recurrent)
        bridge       {"W": (F, G), "b": (G,)}  the dense bridge (absent with bridge="zeros";
                     with bridge_rank r: {"U": (F, r), "W": (r, G), "b": (G,)})
        decoder      [params of each decoder cell]
        attention    the attention's params (with attention)
        attentional  {"W_c": (M + H, H)}     Luong's attentional layer (with attention)
        readout      {"W": (H, V_tgt), "b": (V_tgt,)}   W_s, b_s

    (``M`` the encoder's output size, ``H`` the top decoder output size, ``F`` and ``G`` the
    flattened sizes of the encoder's and the decoders' carries.)

    Args:
      encoder: a :class:`recurrax.Cell` (run forwards with :func:`recurrax.recurrent`) or a
        :class:`recurrax.SequenceLayer` (``recurrent``, ``bidirectional``, ``stacked``, ...).
      decoder_cells: one cell, or a sequence of cells stepped layer by layer.
      src_vocab_size: ``V_src``.
      tgt_vocab_size: ``V_tgt``, the logits' width.
      embed_size: ``E``, the width of both embeddings.
      attention: None, ``"bahdanau"``, ``"dot"``, ``"general"`` or ``"concat"``.
      input_feeding: feed :math:`\tilde h_{t-1}` to the first decoder cell (needs attention).
      bridge: ``"dense"`` or ``"zeros"``.
      attention_size: the hidden size of the additive scores (``"bahdanau"``, ``"concat"``);
        default ``H``.
      bridge_rank: ``None`` (a full ``F × G`` dense bridge) or the rank ``r`` of its factored
        matrix ``U_b W_b`` (``bridge="dense"`` only).

    Returns:
      An :class:`EncoderDecoder`.

    Example:
        >>> from recurrax.seq2seq import encoder_decoder, sequence_loss, shift_right
        >>> model = encoder_decoder(
        ...     encoder=recurrax.gru(8), decoder_cells=recurrax.lstm(8),
        ...     src_vocab_size=12, tgt_vocab_size=10, embed_size=6, attention="bahdanau")
        >>> params = model.init(jax.random.key(0))
        >>> src = jnp.array([[5, 6, 7, 0], [8, 9, 0, 0]])                  # (batch, source time)
        >>> targets = jnp.array([[4, 5, 3], [6, 3, 0]])                    # ... <eos>=3, <pad>=0
        >>> logits, weights = model.apply(params, src, jnp.array([3, 2]), shift_right(targets))
        >>> logits.shape, weights.shape, weights[1, 0, 2:].tolist()
        ((2, 3, 10), (2, 3, 4), [0.0, 0.0])
        >>> loss, sums = sequence_loss(logits, targets, targets != 0)
        >>> int(sums["count"])
        5
    """
    layer = _encoder_layer(encoder)
    cells = _decoder_cells(decoder_cells)
    check_positive_int("src_vocab_size", src_vocab_size)
    check_positive_int("tgt_vocab_size", tgt_vocab_size)
    check_positive_int("embed_size", embed_size)
    check_choice("attention", attention, (None, *ATTENTION_KINDS))
    check_choice("bridge", bridge, BRIDGES)
    if not isinstance(input_feeding, bool):
        raise TypeError(f"input_feeding must be a bool; got {input_feeding!r}")
    if input_feeding and attention is None:
        raise ValueError(
            "input_feeding must be False without attention (it feeds the attentional vector); "
            "got True"
        )
    if bridge_rank is not None:
        check_positive_int("bridge_rank", bridge_rank)
        if bridge != "dense":
            raise ValueError(f"bridge_rank must be None with bridge={bridge!r}; got {bridge_rank}")
    if attention is None and attention_size is not None:
        raise ValueError(f"attention_size must be None without attention; got {attention_size!r}")
    E, M, H, V = embed_size, layer.output_size, cells[-1].output_size, tgt_vocab_size
    att = (
        None
        if attention is None
        else make_attention(attention, query_size=H, memory_size=M, attention_size=attention_size)
    )
    src_embed, tgt_embed = embedding(src_vocab_size, E), embedding(tgt_vocab_size, E)
    readout = dense(V)

    # Every size is checked now, abstractly: a cell that cannot read its input fails here, named.
    _check_reads("encoder", layer.init, E, "embed_size")
    input_sizes = [E + (H if input_feeding else 0)]
    for cell in cells[:-1]:
        input_sizes.append(cell.output_size)
    for i, (cell, size) in enumerate(zip(cells, input_sizes, strict=True)):
        why = (
            "embed_size plus the top decoder output size, with input feeding"
            if i == 0 and input_feeding
            else ("embed_size" if i == 0 else f"the output size of decoder_cells[{i - 1}]")
        )
        _check_reads(f"decoder_cells[{i}]", cell.init, size, why)
    encoder_carry = jax.eval_shape(lambda: layer.initial_carry((1,)))
    F = _flat_size(encoder_carry)
    G = _flat_size(jax.eval_shape(lambda: [cell.initial_carry((1,)) for cell in cells]))
    bridge_layer = dense(G)

    def init(key: Key) -> Params:
        keys = jax.random.split(key, 7 + len(cells))
        params = {
            "src_embed": src_embed.init(keys[0]),
            "tgt_embed": tgt_embed.init(keys[1]),
            "encoder": layer.init(keys[2], E),
            "decoder": [
                cell.init(k, size)
                for cell, k, size in zip(cells, keys[7:], input_sizes, strict=True)
            ],
            "readout": readout.init(keys[3], H),
        }
        if bridge == "dense" and bridge_rank is None:
            params["bridge"] = bridge_layer.init(keys[4], F)
        elif bridge == "dense":
            k_u, k_w = jax.random.split(keys[4])
            U = jax.nn.initializers.glorot_uniform()(k_u, (F, bridge_rank), jnp.float32)
            params["bridge"] = {"U": U, **bridge_layer.init(k_w, bridge_rank)}
        if att is not None:
            params["attention"] = att.init(keys[5])
            W_c = jax.nn.initializers.glorot_uniform()(keys[6], (M + H, H), jnp.float32)
            params["attentional"] = {"W_c": W_c}
        return params

    def decoder_zero_carries(params, batch):
        dtype = driver.carry_dtype_for(params["decoder"])
        return tuple(cell.initial_carry((batch,), dtype) for cell in cells)

    def encode(params: Params, src: Array, src_lengths: Array) -> DecoderState:
        _check_tokens("src", src, src_vocab_size, "(batch, source time)", 2)
        check_integer("src_lengths", src_lengths)
        B, S = src.shape
        if jnp.shape(src_lengths) != (B,):
            raise ValueError(
                f"src_lengths must have shape ({B},) (one length per example of src); got shape "
                f"{jnp.shape(src_lengths)}"
            )
        check_range("src_lengths", src_lengths, 0, S)
        lengths = jnp.clip(jnp.asarray(src_lengths), 0, S)
        carry, memory = layer.apply(
            params["encoder"], src_embed.apply(params["src_embed"], src), lengths=lengths
        )
        zeros = decoder_zero_carries(params, B)
        if bridge == "dense":
            W = params["bridge"]["W"]
            z = flatten_carry(carry, W.dtype)
            if "U" in params["bridge"]:
                z = z @ params["bridge"]["U"]
            z = jnp.tanh(bridge_layer.apply({"W": W, "b": params["bridge"]["b"]}, z))
            carries = unflatten_carry(z, zeros)
        else:
            carries = zeros
        feed = jnp.zeros((B, H), params["readout"]["W"].dtype) if input_feeding else None
        if att is None:
            return DecoderState(carries, None, None, None, feed)
        mask = jnp.arange(S, dtype=lengths.dtype)[None, :] < lengths[:, None]
        keys = att.keys(params["attention"], memory)
        return DecoderState(carries, memory, keys, mask, feed)

    def attend(params, h, state):
        """Logits (and weights) from the top decoder outputs ``h (B, H)``."""
        if att is None:
            return readout.apply(params["readout"], h), None, None
        context, weights = att.apply(params["attention"], h, state.keys, state.memory, state.mask)
        W_c = params["attentional"]["W_c"]
        both = jnp.concatenate([context.astype(W_c.dtype), h.astype(W_c.dtype)], axis=-1)
        h_tilde = jnp.tanh(both @ W_c)
        return readout.apply(params["readout"], h_tilde), weights, h_tilde

    def check_state(state):
        if not isinstance(state, DecoderState):
            raise TypeError(
                f"state must be a recurrax.seq2seq.DecoderState (from encode); got "
                f"{type(state).__name__}"
            )
        return jax.tree.leaves(state.carries)[0].shape[0]

    def decode_step(params: Params, state: DecoderState, tokens: Array):
        B = check_state(state)
        check_integer("tokens", tokens)
        if jnp.shape(tokens) != (B,):
            raise ValueError(
                f"tokens must have shape ({B},) (one token per example of the state); got shape "
                f"{jnp.shape(tokens)}"
            )
        x = tgt_embed.apply(params["tgt_embed"], tokens)
        if input_feeding:
            x = jnp.concatenate([x, state.feed.astype(x.dtype)], axis=-1)
        carries = []
        for cell, p, carry in zip(cells, params["decoder"], state.carries, strict=True):
            carry, x = jax.vmap(cell.step, in_axes=(None, 0, 0))(p, carry, x)
            carries.append(carry)
        logits, weights, h_tilde = attend(params, x, state)
        feed = h_tilde.astype(state.feed.dtype) if input_feeding else None
        return state._replace(carries=tuple(carries), feed=feed), logits, weights

    def step_fn(params: Params):
        def step(cache: DecoderState, tokens: Array):
            cache, logits, _ = decode_step(params, cache, tokens)
            return cache, logits

        return step

    def teacher_forced_unroll(params, state, tgt_in):
        """Teacher forcing without input feeding: each decoder cell over the whole target at
        once (:func:`recurrax.unroll`), then attention at every step."""
        xs = tgt_embed.apply(params["tgt_embed"], tgt_in)
        for cell, p, carry in zip(cells, params["decoder"], state.carries, strict=True):
            _, xs = driver.unroll(cell, p, xs, initial_carry=carry)
        # attention over time: vmap the per-step readout over the target axis
        per_step = jax.vmap(lambda h: attend(params, h, state)[:2], in_axes=1, out_axes=1)
        return per_step(xs)

    def stepped(params, state, tgt_in, p_python, p, key, sampling):
        """``decode_step`` in a ``lax.scan``; teacher forcing, or scheduled sampling."""
        B, T = tgt_in.shape
        teacher = p_python == 1.0
        coin = not teacher and p_python != 0.0  # p = 0: always the model's token (after <sos>)

        def body(carry, inputs):
            state, previous = carry
            t, gold = inputs
            if teacher:
                token = gold
            else:
                # (keys only where something is drawn: p = 0 with greedy feeding needs none)
                if coin or sampling == "sample":
                    k_coin, k_sample = jax.random.split(jax.random.fold_in(key, t))
                previous = jax.lax.stop_gradient(previous)
                if sampling == "greedy":
                    own = jnp.argmax(previous, axis=-1)
                else:
                    own = jax.random.categorical(k_sample, previous, axis=-1)
                use_gold = jnp.broadcast_to(t == 0, (B,))
                if coin:
                    use_gold = use_gold | (jax.random.uniform(k_coin, (B,), jnp.float32) < p)
                token = jnp.where(use_gold, gold, jax.lax.stop_gradient(own).astype(gold.dtype))
            state, logits, weights = decode_step(params, state, token)
            return (state, logits), (logits, weights)

        first = jnp.zeros((B, V), params["readout"]["W"].dtype)
        steps = jnp.arange(T, dtype=jnp.int32)
        _, (logits, weights) = jax.lax.scan(body, (state, first), (steps, tgt_in.T))
        logits = jnp.swapaxes(logits, 0, 1)
        weights = None if weights is None else jnp.swapaxes(weights, 0, 1)
        return logits, weights

    def apply(
        params: Params,
        src: Array,
        src_lengths: Array,
        tgt_in: Array,
        *,
        teacher_probability=1.0,
        key: Key | None = None,
        sampling: str = "greedy",
        fast: bool = True,
    ):
        _check_tokens("tgt_in", tgt_in, tgt_vocab_size, "(batch, target time)", 2)
        if jnp.shape(src)[:1] != jnp.shape(tgt_in)[:1]:
            raise ValueError(
                f"tgt_in must have the batch of src ({jnp.shape(src)[:1]}); got shape "
                f"{jnp.shape(tgt_in)}"
            )
        check_choice("sampling", sampling, SAMPLINGS)
        p_python, p = _teacher_probability(teacher_probability)
        needs_key = p_python != 1.0 and (p_python != 0.0 or sampling == "sample")
        if needs_key and key is None:
            raise ValueError(
                "key must be a PRNG key when teacher_probability < 1 (scheduled sampling draws "
                "which steps are fed the model's own tokens, and samples them with "
                "sampling='sample'); got None"
            )
        state = encode(params, src, src_lengths)
        if p_python == 1.0 and fast and not input_feeding:
            return teacher_forced_unroll(params, state, tgt_in)
        return stepped(params, state, tgt_in, p_python, p, key, sampling)

    return EncoderDecoder(
        init,
        encode,
        decode_step,
        step_fn,
        apply,
        src_vocab_size,
        tgt_vocab_size,
        embed_size,
        attention,
        input_feeding,
        bridge,
    )


def shift_right(targets: Array, sos_id: int = SOS, pad_id: int = PAD) -> Array:
    """The decoder's inputs for teacher forcing: ``[<sos>, y_0, ..., y_{T-2}]`` per row.

    Positions whose target is ``pad_id`` (after the end of the sequence) get ``pad_id`` as input
    too, so that no token after a sequence's end (its ``<eos>``) is ever fed; a row with no real
    target is all padding.

    Args:
      targets: ``(B, T)`` integer targets, padded with ``pad_id``.
      sos_id: the start token (default ``<sos>`` = 2).
      pad_id: the padding token (default ``<pad>`` = 0).

    Returns:
      ``(B, T)`` decoder inputs, of ``targets``' dtype.

    Example:
        >>> from recurrax.seq2seq import shift_right
        >>> shift_right(jnp.array([[7, 8, 3, 0], [9, 3, 0, 0]])).tolist()
        [[2, 7, 8, 0], [2, 9, 0, 0]]
    """
    check_integer("targets", targets)
    check_rank("targets", targets, 2, "(batch, target time)")
    targets = jnp.asarray(targets)
    start = jnp.full((targets.shape[0], 1), sos_id, targets.dtype)
    shifted = jnp.concatenate([start, targets[:, :-1]], axis=1)
    return jnp.where(targets == pad_id, jnp.full_like(targets, pad_id), shifted)


def sequence_loss(
    logits: Array, targets: Array, mask: Array, *, label_smoothing: float = 0.0
) -> tuple[Array, dict[str, Array]]:
    r"""Token-level cross-entropy of ``logits`` against ``targets`` over the real (masked-in) tokens.

    With :math:`p = \mathrm{softmax}(\text{logits}_{b,t})` (in float32), label smoothing
    :math:`\epsilon` and vocabulary size ``V``, each real token costs

    .. math::

        \ell_{b,t} = -\sum_v q_v \log p_v, \qquad
        q = (1 - \epsilon)\,\mathrm{onehot}(y_{b,t}) + \epsilon / V,

    i.e. :math:`(1 - \epsilon)\,\mathrm{NLL} + \epsilon \cdot \mathrm{mean}_v(-\log p_v)`. The
    uniform part spreads over the whole vocabulary, ``<pad>`` and the other specials included
    (the plain mixture of Szegedy et al. 2016, as ``optax.smooth_labels``); padded positions cost
    nothing whatever their logits.

    Args:
      logits: ``(B, T, V)`` floating.
      targets: ``(B, T)`` integers in ``[0, V)``.
      mask: ``(B, T)`` booleans, True at the real target tokens.
      label_smoothing: :math:`\epsilon` in ``[0, 1)``.

    Returns:
      ``(loss, sums)``: ``loss`` the mean of :math:`\ell` over real tokens (0 when there are none)
      and ``sums`` to aggregate over batches: ``"loss"`` :math:`\sum \ell` (with smoothing),
      ``"nll"`` the summed negative log-likelihood (without smoothing), ``"count"`` real tokens,
      ``"correct"`` real tokens whose argmax is the target, ``"exact"`` sequences whose every real
      token is correct (a row without real tokens counts as exact), ``"sequences"`` ``B``. Float
      sums are float32 (float64 for float64 logits), counts int32.

    Example:
        >>> from recurrax.seq2seq import sequence_loss
        >>> logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]]]))
        >>> loss, sums = sequence_loss(logits, jnp.array([[0, 1]]), jnp.array([[True, False]]))
        >>> round(float(loss), 4), int(sums["count"]), int(sums["exact"])
        (0.6931, 1, 1)
    """
    if jnp.ndim(logits) != 3:
        raise ValueError(
            f"logits must have rank 3 (batch, time, vocabulary); got shape {jnp.shape(logits)}"
        )
    if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
        raise TypeError(
            f"logits must be a floating-point array; got dtype {jnp.result_type(logits)}"
        )
    B, T, V = jnp.shape(logits)
    check_integer("targets", targets)
    if jnp.shape(targets) != (B, T):
        raise ValueError(
            f"targets must have shape {(B, T)} (batch, time) like logits; got shape "
            f"{jnp.shape(targets)}"
        )
    check_bool("mask", mask)
    if jnp.shape(mask) != (B, T):
        raise ValueError(
            f"mask must have shape {(B, T)} (batch, time) like logits; got shape {jnp.shape(mask)}"
        )
    if label_smoothing != 0.0:
        check_probability("label_smoothing", label_smoothing)
    check_range("targets", targets, 0, V - 1)
    dt = jnp.float64 if jnp.result_type(logits) == jnp.float64 else jnp.float32
    log_p = jax.nn.log_softmax(logits.astype(dt), axis=-1)
    nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    if label_smoothing:
        eps = label_smoothing
        per_token = (1.0 - eps) * nll + eps * -jnp.mean(log_p, axis=-1)
    else:
        per_token = nll
    zero = jnp.zeros((), dt)
    loss_sum = jnp.sum(jnp.where(mask, per_token, zero))
    nll_sum = jnp.sum(jnp.where(mask, nll, zero))
    count = jnp.sum(mask, dtype=jnp.int32)
    right = jnp.argmax(logits, axis=-1).astype(targets.dtype) == targets
    correct = jnp.sum(right & mask, dtype=jnp.int32)
    exact = jnp.sum(jnp.all(right | ~mask, axis=-1), dtype=jnp.int32)
    loss = loss_sum / jnp.maximum(count, 1).astype(dt)
    sums = {
        "loss": loss_sum,
        "nll": nll_sum,
        "count": count,
        "correct": correct,
        "exact": exact,
        "sequences": jnp.asarray(B, jnp.int32),
    }
    return loss, sums


__all__ = [
    "DecoderState",
    "EncoderDecoder",
    "encoder_decoder",
    "flatten_carry",
    "sequence_loss",
    "shift_right",
    "unflatten_carry",
]
