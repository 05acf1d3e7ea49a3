"""Encoder–decoder: teacher forcing == a loop over decode_step, padding, the bridge over every cell,
scheduled sampling, the loss, shift_right, errors, the Flax adapters and a short training run."""

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import recurrax
import recurrax.decoding
import recurrax.seq2seq
from conftest import assert_trees_close
from recurrax.seq2seq import (
    DecoderState,
    encoder_decoder,
    flatten_carry,
    sequence_loss,
    shift_right,
    unflatten_carry,
)
from recurrax.text.special_tokens import EOS, PAD, SOS

V_SRC, V_TGT, E, H = 9, 8, 4, 4
SRC = jnp.array([[4, 5, 6, 7, 8], [5, 4, 0, 0, 0], [8, 6, 7, 0, 0]], jnp.int32)
SRC_LENGTHS = jnp.array([5, 2, 3], jnp.int32)
TARGETS = jnp.array([[4, 5, 6, EOS], [7, EOS, PAD, PAD], [6, 6, 5, EOS]], jnp.int32)
TGT_IN = shift_right(TARGETS)
B, S = SRC.shape
T = TARGETS.shape[1]


def model_of(encoder=None, decoder=None, **options):
    options = {"attention": "bahdanau", **options}
    return encoder_decoder(
        encoder=recurrax.gru(H) if encoder is None else encoder,
        decoder_cells=recurrax.gru(H) if decoder is None else decoder,
        src_vocab_size=V_SRC,
        tgt_vocab_size=V_TGT,
        embed_size=E,
        **options,
    )


def loop_over_decode_step(model, params, src, src_lengths, tgt_in):
    """Teacher forcing as a plain Python loop over ``decode_step``."""
    state = jax.jit(model.encode)(params, src, src_lengths)
    step = jax.jit(model.decode_step)
    logits, weights = [], []
    for t in range(tgt_in.shape[1]):
        state, lg, w = step(params, state, tgt_in[:, t])
        logits.append(lg)
        weights.append(w)
    logits = jnp.stack(logits, axis=1)
    return logits, (None if weights[0] is None else jnp.stack(weights, axis=1))


CONFIGS = {
    "no attention, lstm": dict(attention=None, decoder=recurrax.lstm(H)),
    "bahdanau": dict(attention="bahdanau", attention_size=3),
    "dot": dict(attention="dot", encoder=recurrax.lstm(H)),
    "general, input feeding": dict(attention="general", input_feeding=True),
    "concat, stacked decoder": dict(
        attention="concat", decoder=[recurrax.lstm(H), recurrax.gru(H)]
    ),
    "luong, zeros bridge": dict(attention="general", bridge="zeros"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_teacher_forced_apply_equals_a_loop_over_decode_step(name):
    model = model_of(**CONFIGS[name])
    params = model.init(jax.random.key(0))
    expected_logits, expected_weights = loop_over_decode_step(
        model, params, SRC, SRC_LENGTHS, TGT_IN
    )
    apply = jax.jit(model.apply, static_argnames=("fast",))
    for fast in (True, False):  # the unrolled fast path (where it applies) and the scan
        logits, weights = apply(params, SRC, SRC_LENGTHS, TGT_IN, fast=fast)
        assert logits.shape == (B, T, V_TGT)
        assert_trees_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
        if model.attention is None:
            assert weights is None and expected_weights is None
        else:
            assert weights.shape == (B, T, S)
            assert_trees_close(weights, expected_weights, rtol=1e-5, atol=1e-6)
            # no attention on the padding of the source
            for b, L in enumerate(SRC_LENGTHS.tolist()):
                assert np.all(np.asarray(weights[b, :, L:]) == 0.0)
            np.testing.assert_allclose(jnp.sum(weights, axis=-1), 1.0, rtol=1e-5)


def test_the_state_is_a_cache_with_the_batch_first_and_step_fn_drops_the_weights():
    model = model_of(attention="bahdanau", input_feeding=True, decoder=recurrax.lstm(H))
    params = model.init(jax.random.key(0))
    state = model.encode(params, SRC, SRC_LENGTHS)
    assert isinstance(state, DecoderState)
    for leaf in jax.tree.leaves(state):
        assert leaf.shape[0] == B
    assert state.memory.shape == (B, S, H) and state.mask.shape == (B, S)
    assert state.feed.shape == (B, H)
    step = model.step_fn(params)
    cache, logits = step(state, TGT_IN[:, 0])
    expected_state, expected_logits, _ = model.decode_step(params, state, TGT_IN[:, 0])
    assert_trees_close((cache, logits), (expected_state, expected_logits))
    # a tiny greedy loop over step_fn is what recurrax.decoding.greedy decodes with it
    tokens, cache, out = jnp.full((B,), SOS, jnp.int32), state, []
    for _ in range(4):
        cache, logits = step(cache, tokens)
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        out.append(tokens)
    out = np.stack(out, axis=1)
    ended = np.cumsum(out == EOS, axis=1) - (out == EOS) > 0  # after the first <eos>
    expected_tokens = np.where(ended, PAD, out)
    decoded = recurrax.decoding.greedy(step, state, max_length=4)
    np.testing.assert_array_equal(decoded.tokens, expected_tokens)
    # reordering the cache along its leading axis (as a beam search does) reorders the outputs
    order = jnp.array([2, 0, 1])
    reordered = jax.tree.map(lambda a: a[order], state)
    _, logits_reordered = step(reordered, TGT_IN[order, 0])
    _, logits_plain = step(state, TGT_IN[:, 0])
    assert_trees_close(logits_reordered, logits_plain[order])


def test_padded_source_equals_each_example_alone():
    encoder = recurrax.bidirectional(recurrax.lstm(H), recurrax.gru(H))
    model = model_of(encoder=encoder, attention="concat", decoder=recurrax.lstm(H))
    params = model.init(jax.random.key(0))
    apply = jax.jit(model.apply)
    logits, weights = apply(params, SRC, SRC_LENGTHS, TGT_IN)
    more_padding = jnp.pad(SRC, ((0, 0), (0, 3)))  # three extra PAD columns
    logits_p, weights_p = apply(params, more_padding, SRC_LENGTHS, TGT_IN)
    assert_trees_close(logits_p, logits, rtol=1e-5, atol=1e-6)
    assert_trees_close(weights_p[:, :, :S], weights)
    assert np.all(np.asarray(weights_p[:, :, S:]) == 0.0)
    for b, L in enumerate(SRC_LENGTHS.tolist()):
        alone_logits, alone_weights = apply(
            params, SRC[b : b + 1, :L], SRC_LENGTHS[b : b + 1], TGT_IN[b : b + 1]
        )
        assert_trees_close(logits[b : b + 1], alone_logits, rtol=1e-5, atol=1e-6)
        assert_trees_close(weights[b : b + 1, :, :L], alone_weights, rtol=1e-5, atol=1e-6)


CELLS = {
    "lstm": lambda: recurrax.lstm(E),
    "gru": lambda: recurrax.gru(E),
    "lru": lambda: recurrax.lru(6, E),  # complex carry
    "mamba": lambda: recurrax.mamba(E, d_state=3, d_conv=3, expand=1),  # (h, conv window)
    "mingru": lambda: recurrax.mingru(E),
}
PAIRS = [  # every cell once as the encoder and once as the decoder
    ("lstm", "lru"),
    ("lru", "mamba"),
    ("mamba", "mingru"),
    ("mingru", "gru"),
    ("gru", "lstm"),
]


def bridged(params, final):
    """The dense bridge in numpy: tanh(z W_b + b_b) of the flattened carry (complex as re, im)."""
    parts = []
    for leaf in jax.tree.leaves(final):
        leaf = np.asarray(leaf).reshape(leaf.shape[0], -1)
        parts += [leaf.real, leaf.imag] if np.iscomplexobj(leaf) else [leaf]
    z = np.concatenate(parts, axis=1)
    if "U" in params["bridge"]:  # the factored bridge: z U_b W_b
        z = z @ np.asarray(params["bridge"]["U"])
    return np.tanh(z @ np.asarray(params["bridge"]["W"]) + np.asarray(params["bridge"]["b"]))


@pytest.mark.parametrize("encoder_name, decoder_name", PAIRS)
def test_the_bridge_reads_the_final_carry_of_the_last_real_step(encoder_name, decoder_name):
    encoder, decoder = CELLS[encoder_name](), CELLS[decoder_name]()
    model = model_of(encoder=encoder, decoder=decoder, attention="general")
    params = model.init(jax.random.key(0))
    state = jax.jit(model.encode)(params, SRC, SRC_LENGTHS)
    # The decoder's carries are the bridge of the encoder's carry after the last real step: for
    # the example of length 2 (padded to 5), the carry of its two tokens run alone.
    b, L = 1, int(SRC_LENGTHS[1])
    x = params["src_embed"]["E"][SRC[b : b + 1, :L]]
    final, _ = jax.jit(recurrax.recurrent(encoder).apply)(params["encoder"], x)
    zeros = (decoder.initial_carry((1,)),)
    expected = unflatten_carry(jnp.asarray(bridged(params, final), jnp.float32), zeros)
    assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], state.carries), expected, atol=1e-6)
    for got, want in zip(jax.tree.leaves(state.carries), jax.tree.leaves(zeros), strict=True):
        assert got.dtype == want.dtype  # complex carries come back complex
    # the whole model: the padded batch gives what the example gives alone
    apply = jax.jit(model.apply, static_argnames="fast")
    logits, _ = apply(params, SRC, SRC_LENGTHS, TGT_IN)
    assert np.all(np.isfinite(logits))
    alone, _ = apply(params, SRC[b : b + 1, :L], SRC_LENGTHS[b : b + 1], TGT_IN[b : b + 1])
    assert_trees_close(logits[b : b + 1], alone, rtol=1e-5, atol=1e-5)
    # the unrolled teacher-forcing path equals the stepped one for this decoder
    stepped, _ = apply(params, SRC, SRC_LENGTHS, TGT_IN, fast=False)
    assert_trees_close(logits, stepped, rtol=1e-5, atol=1e-5)


def test_bidirectional_bridge_reads_both_directions():
    encoder = recurrax.bidirectional(
        recurrax.lru(6, E), recurrax.recurrent(recurrax.gru(E), reverse=True)
    )
    model = model_of(encoder=encoder, decoder=recurrax.lru(3, E), attention=None)
    params = model.init(jax.random.key(0))
    state = jax.jit(model.encode)(params, SRC, SRC_LENGTHS)
    b, L = 2, int(SRC_LENGTHS[2])
    x = params["src_embed"]["E"][SRC[b : b + 1, :L]]
    final, _ = jax.jit(encoder.apply)(params["encoder"], x)
    assert isinstance(final, recurrax.BidirectionalState)
    zeros = (recurrax.lru(3, E).initial_carry((1,)),)
    expected = unflatten_carry(jnp.asarray(bridged(params, final), jnp.float32), zeros)
    assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], state.carries), expected, atol=1e-6)


def test_stacked_encoder_and_decoder_of_the_other_cells():
    encoder = recurrax.stacked([recurrax.s5(4, E), recurrax.minlstm(E)])
    decoder = [recurrax.rnn(E), recurrax.rglru(E), recurrax.minlstm(E)]
    model = model_of(encoder=encoder, decoder=decoder, attention="dot")
    params = model.init(jax.random.key(0))
    assert len(params["decoder"]) == 3
    apply = jax.jit(model.apply)
    logits, weights = apply(params, SRC, SRC_LENGTHS, TGT_IN)
    expected_logits, expected_weights = loop_over_decode_step(
        model, params, SRC, SRC_LENGTHS, TGT_IN
    )
    assert_trees_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert_trees_close(weights, expected_weights, rtol=1e-5, atol=1e-6)
    b, L = 1, int(SRC_LENGTHS[1])
    alone, _ = apply(params, SRC[b : b + 1, :L], SRC_LENGTHS[b : b + 1], TGT_IN[b : b + 1])
    assert_trees_close(logits[b : b + 1], alone, rtol=1e-5, atol=1e-5)


def test_flatten_and_unflatten_carry_round_trip_with_complex_leaves():
    carry = (
        recurrax.LSTMState(jnp.ones((2, 3)), 2 * jnp.ones((2, 3))),
        recurrax.LRUState(jax.lax.complex(jnp.ones((2, 4)), -jnp.ones((2, 4)))),
        recurrax.MambaState(jnp.full((2, 2, 3), 3.0), jnp.full((2, 1, 2), 4.0)),
    )
    carry = jax.tree.map(
        lambda a: a.astype(jnp.complex64 if jnp.iscomplexobj(a) else jnp.float32), carry
    )
    flat = flatten_carry(carry, jnp.float32)
    assert flat.shape == (2, 3 + 3 + 8 + 6 + 2)
    np.testing.assert_array_equal(flat[0, 6:14], [1, 1, 1, 1, -1, -1, -1, -1])
    back = unflatten_carry(flat, carry)
    assert_trees_close(back, carry)
    assert back[1].h.dtype == jnp.complex64


def test_factored_bridge_is_tanh_of_z_U_W_with_rank_r():
    encoder, decoder = recurrax.mamba(E, d_state=4), recurrax.mamba(E, d_state=4)
    full = model_of(encoder=encoder, decoder=decoder, attention=None)
    model = model_of(encoder=encoder, decoder=decoder, attention=None, bridge_rank=3)
    params = model.init(jax.random.key(0))
    F = full.init(jax.random.key(0))["bridge"]["W"].shape[0]
    G = params["bridge"]["W"].shape[1]
    assert params["bridge"]["U"].shape == (F, 3) and params["bridge"]["W"].shape == (3, G)
    state = jax.jit(model.encode)(params, SRC, SRC_LENGTHS)
    b, L = 1, int(SRC_LENGTHS[1])
    x = params["src_embed"]["E"][SRC[b : b + 1, :L]]
    final, _ = jax.jit(recurrax.recurrent(encoder).apply)(params["encoder"], x)
    expected = unflatten_carry(
        jnp.asarray(bridged(params, final), jnp.float32), (decoder.initial_carry((1,)),)
    )
    assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], state.carries), expected, atol=1e-6)
    with pytest.raises(ValueError, match="bridge_rank must be a positive integer; got 0"):
        model_of(bridge_rank=0)
    with pytest.raises(ValueError, match="bridge_rank must be None with bridge='zeros'; got 3"):
        model_of(bridge="zeros", bridge_rank=3)


def test_zeros_bridge_gives_zero_carries():
    model = model_of(bridge="zeros", decoder=[recurrax.lstm(H), recurrax.lru(3, H)])
    params = model.init(jax.random.key(0))
    assert "bridge" not in params
    state = model.encode(params, SRC, SRC_LENGTHS)
    for leaf in jax.tree.leaves(state.carries):
        np.testing.assert_array_equal(leaf, 0.0)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_probability_one_equals_teacher_forcing(input_feeding):
    model = model_of(attention="general", input_feeding=input_feeding)
    params = model.init(jax.random.key(0))
    apply = jax.jit(model.apply, static_argnames=("fast", "sampling"))
    forced, forced_w = apply(params, SRC, SRC_LENGTHS, TGT_IN, fast=False)
    key = jax.random.key(3)
    for sampling in ("greedy", "sample"):  # a traced probability 1.0 always feeds the gold token
        ss, ss_w = apply(
            params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=jnp.float32(1.0), key=key,
            sampling=sampling,
        )  # fmt: skip
        np.testing.assert_array_equal(ss, forced)
        np.testing.assert_array_equal(ss_w, forced_w)


def greedy_feedback_loop(model, params, src, src_lengths, tgt_in):
    """Feeding back the argmax, as a Python loop: step 0 reads tgt_in[:, 0] (<sos>)."""
    state = jax.jit(model.encode)(params, src, src_lengths)
    step = jax.jit(model.decode_step)
    tokens, logits = tgt_in[:, 0], []
    for _ in range(tgt_in.shape[1]):
        state, lg, _ = step(params, state, tokens)
        logits.append(lg)
        tokens = jnp.argmax(lg, axis=-1).astype(tgt_in.dtype)
    return jnp.stack(logits, axis=1)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_teacher_probability_zero_feeds_back_the_argmax(input_feeding):
    model = model_of(attention="bahdanau", input_feeding=input_feeding, decoder=recurrax.lstm(H))
    params = model.init(jax.random.key(1))
    expected = greedy_feedback_loop(model, params, SRC, SRC_LENGTHS, TGT_IN)
    logits, _ = jax.jit(functools.partial(model.apply, teacher_probability=0.0))(
        params, SRC, SRC_LENGTHS, TGT_IN
    )
    assert_trees_close(logits, expected, rtol=1e-5, atol=1e-5)
    # a traced 0.0 with a key does the same
    traced, _ = jax.jit(model.apply)(
        params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=jnp.float32(0.0),
        key=jax.random.key(0),
    )  # fmt: skip
    assert_trees_close(traced, expected, rtol=1e-5, atol=1e-5)
    # the model's own tokens differ from the gold ones somewhere, so the check can fail
    forced, _ = model.apply(params, SRC, SRC_LENGTHS, TGT_IN)
    assert not np.allclose(forced, expected, atol=1e-3)


def test_scheduled_sampling_mixes_gold_and_own_tokens_per_example():
    """With 0 < p < 1 each step of each example matches either the gold-fed or the own-fed run
    given the same history; over many draws both choices occur."""
    model = model_of(attention="dot", decoder=recurrax.gru(H), encoder=recurrax.gru(H))
    params = model.init(jax.random.key(2))
    apply = jax.jit(model.apply)
    forced, _ = apply(params, SRC, SRC_LENGTHS, TGT_IN)
    own = greedy_feedback_loop(model, params, SRC, SRC_LENGTHS, TGT_IN)
    seen_gold = seen_own = False
    for seed in range(6):
        logits, _ = apply(
            params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=jnp.float32(0.5),
            key=jax.random.key(seed),
        )  # fmt: skip
        np.testing.assert_allclose(logits[:, 0], forced[:, 0], rtol=1e-6)  # <sos> always
        for b in range(B):
            if np.allclose(logits[b], forced[b], atol=1e-6):
                seen_gold = True
            elif np.allclose(logits[b], own[b], atol=1e-6):
                seen_own = True
    assert seen_gold and seen_own


def test_fed_back_tokens_carry_no_gradient():
    """The scheduled-sampling loss has the gradient of teacher forcing on the tokens it fed, held
    fixed: nothing flows through the choice of the fed token."""
    model = model_of(attention="concat", input_feeding=True)
    params = model.init(jax.random.key(0))
    mask = TARGETS != PAD

    def ss_loss(params):
        logits, _ = model.apply(params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=0.0)
        return sequence_loss(logits, TARGETS, mask)[0], logits

    (loss, logits), grads = jax.jit(jax.value_and_grad(ss_loss, has_aux=True))(params)
    fed = jnp.concatenate(
        [TGT_IN[:, :1], jnp.argmax(logits[:, :-1], axis=-1).astype(jnp.int32)], axis=1
    )

    def forced_loss(params):
        logits, _ = model.apply(params, SRC, SRC_LENGTHS, fed, fast=False)
        return sequence_loss(logits, TARGETS, mask)[0]

    forced, forced_grads = jax.jit(jax.value_and_grad(forced_loss))(params)
    np.testing.assert_allclose(loss, forced, rtol=1e-6)
    assert_trees_close(grads, forced_grads, rtol=1e-4, atol=1e-6)
    # sampling: the gradient exists and is finite
    sampled = jax.jit(jax.grad(
        lambda p: sequence_loss(
            model.apply(
                p, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=jnp.float32(0.3),
                key=jax.random.key(1), sampling="sample",
            )[0], TARGETS, mask,
        )[0]
    ))(params)  # fmt: skip
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(sampled))


def test_sequence_loss_ignores_padding_and_counts():
    key = jax.random.key(0)
    logits = jax.random.normal(key, (B, T, V_TGT), jnp.float32)
    mask = TARGETS != PAD
    loss, sums = sequence_loss(logits, TARGETS, mask, label_smoothing=0.1)
    changed = logits.at[1, 2:].set(
        1e4 * jax.random.normal(jax.random.key(1), (2, V_TGT), jnp.float32)
    )
    loss_c, sums_c = sequence_loss(changed, TARGETS, mask, label_smoothing=0.1)
    np.testing.assert_array_equal(loss, loss_c)
    assert_trees_close(sums, sums_c)
    # numpy reference
    lp = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float64)))
    m = np.asarray(mask)
    nll = -np.take_along_axis(lp, np.asarray(TARGETS)[..., None], -1)[..., 0]
    smooth = 0.9 * nll + 0.1 * -lp.mean(-1)
    np.testing.assert_allclose(sums["nll"], nll[m].sum(), rtol=1e-5)
    np.testing.assert_allclose(sums["loss"], smooth[m].sum(), rtol=1e-5)
    np.testing.assert_allclose(loss, smooth[m].mean(), rtol=1e-5)
    assert int(sums["count"]) == m.sum() == 10 and int(sums["sequences"]) == B


def test_label_smoothing_on_a_hand_example():
    """V = 4, p = (0.4, 0.3, 0.2, 0.1), target 1, ε = 0.2: q = (0.05, 0.85, 0.05, 0.05)."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    logits = jnp.log(jnp.asarray(p, jnp.float32))[None, None, :]
    targets = jnp.array([[1]], jnp.int32)
    loss, sums = sequence_loss(logits, targets, jnp.array([[True]]), label_smoothing=0.2)
    q = np.array([0.05, 0.85, 0.05, 0.05])
    np.testing.assert_allclose(loss, -(q * np.log(p)).sum(), rtol=1e-6)
    np.testing.assert_allclose(sums["nll"], -np.log(0.3), rtol=1e-6)


def test_exact_match_and_correct_counts():
    targets = jnp.array([[4, 5, EOS], [6, EOS, PAD], [7, 7, EOS], [PAD, PAD, PAD]], jnp.int32)
    predicted = jnp.array([[4, 5, EOS], [6, EOS, 5], [7, 6, EOS], [1, 1, 1]], jnp.int32)
    logits = 5.0 * jax.nn.one_hot(predicted, V_TGT, dtype=jnp.float32)
    _, sums = sequence_loss(logits, targets, targets != PAD)
    # rows 0 and 1 right (row 1's mistake is on padding), row 2 wrong, row 3 has no real token
    assert int(sums["correct"]) == 3 + 2 + 2
    assert int(sums["count"]) == 8
    assert int(sums["exact"]) == 3
    assert int(sums["sequences"]) == 4
    assert sums["count"].dtype == jnp.int32
    empty_loss, _ = sequence_loss(logits[3:], targets[3:], targets[3:] != PAD)
    assert float(empty_loss) == 0.0


def test_shift_right_on_a_hand_example():
    targets = jnp.array([[7, 8, 9, EOS], [5, EOS, PAD, PAD], [PAD, PAD, PAD, PAD]], jnp.int32)
    expected = [[SOS, 7, 8, 9], [SOS, 5, PAD, PAD], [PAD, PAD, PAD, PAD]]
    assert shift_right(targets).tolist() == expected
    assert shift_right(targets, sos_id=1).tolist()[0] == [1, 7, 8, 9]
    assert shift_right(targets).dtype == jnp.int32


def test_bad_inputs_raise_errors_naming_the_argument():
    model = model_of()
    params = model.init(jax.random.key(0))
    with pytest.raises(TypeError, match="src must be an integer array"):
        model.apply(params, SRC.astype(jnp.float32), SRC_LENGTHS, TGT_IN)
    with pytest.raises(TypeError, match="tgt_in must be an integer array"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN.astype(jnp.float32))
    with pytest.raises(ValueError, match="src must have rank 2"):
        model.encode(params, SRC[0], SRC_LENGTHS)
    with pytest.raises(ValueError, match=r"src_lengths must have shape \(3,\)"):
        model.apply(params, SRC, SRC_LENGTHS[:2], TGT_IN)
    with pytest.raises(ValueError, match="src_lengths must lie in"):
        model.apply(params, SRC, SRC_LENGTHS + 3, TGT_IN)
    with pytest.raises(ValueError, match="tgt_in must have the batch of src"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN[:2])
    with pytest.raises(ValueError, match="tgt_in must lie in"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN + V_TGT)
    with pytest.raises(ValueError, match="sampling must be one of"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN, sampling="beam")
    with pytest.raises(ValueError, match=r"teacher_probability must lie in \[0, 1\]"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=1.5)
    with pytest.raises(ValueError, match="teacher_probability must be a scalar"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=jnp.ones(2))
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        model.apply(params, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=0.5)
    state = model.encode(params, SRC, SRC_LENGTHS)
    with pytest.raises(ValueError, match=r"tokens must have shape \(3,\)"):
        model.decode_step(params, state, TGT_IN[:2, 0])
    with pytest.raises(TypeError, match="tokens must be an integer array"):
        model.decode_step(params, state, TGT_IN[:, 0].astype(jnp.float32))
    with pytest.raises(TypeError, match=r"state must be a recurrax\.seq2seq\.DecoderState"):
        model.decode_step(params, state.carries, TGT_IN[:, 0])
    with pytest.raises(ValueError, match="attention must be one of"):
        model_of(attention="luong")
    with pytest.raises(ValueError, match="bridge must be one of"):
        model_of(bridge="mean")
    with pytest.raises(ValueError, match=r"query_size must equal memory_size.*=4.*=8"):
        model_of(attention="dot", encoder=recurrax.bidirectional(recurrax.gru(H)))
    with pytest.raises(ValueError, match="input_feeding must be False without attention"):
        model_of(attention=None, input_feeding=True)
    with pytest.raises(ValueError, match=r"decoder_cells\[0\] must read 8 input features"):
        model_of(attention="general", input_feeding=True, decoder=recurrax.lru(3, H))
    with pytest.raises(ValueError, match="encoder must read 4 input features"):
        model_of(encoder=recurrax.rglru(H + 1))
    with pytest.raises(TypeError, match=r"encoder must be a recurrax\.Cell or SequenceLayer"):
        model_of(encoder="gru")
    with pytest.raises(ValueError, match="decoder_cells must hold at least one cell"):
        model_of(decoder=[])
    with pytest.raises(TypeError, match=r"decoder_cells\[1\] must be a recurrax.Cell"):
        model_of(decoder=[recurrax.gru(H), "gru"])
    with pytest.raises(ValueError, match="embed_size must be a positive integer"):
        encoder_decoder(
            encoder=recurrax.gru(H), decoder_cells=recurrax.gru(H), src_vocab_size=5,
            tgt_vocab_size=5, embed_size=0,
        )  # fmt: skip
    logits = jnp.zeros((B, T, V_TGT))
    with pytest.raises(ValueError, match="targets must have shape"):
        sequence_loss(logits, TARGETS[:, :2], TARGETS[:, :2] != PAD)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        sequence_loss(logits, TARGETS, (TARGETS != PAD).astype(jnp.int32))
    with pytest.raises(ValueError, match=r"label_smoothing must be a float in \[0, 1\)"):
        sequence_loss(logits, TARGETS, TARGETS != PAD, label_smoothing=1.0)
    with pytest.raises(ValueError, match="logits must have rank 3"):
        sequence_loss(logits[0], TARGETS, TARGETS != PAD)
    with pytest.raises(TypeError, match="targets must be an integer array"):
        shift_right(TARGETS.astype(jnp.float32))


def test_flax_adapters_give_the_pure_logits():
    from flax import nnx

    import recurrax.nn

    model = model_of(attention="bahdanau", input_feeding=True)
    params = model.init(jax.random.key(0))
    expected, expected_w = model.apply(params, SRC, SRC_LENGTHS, TGT_IN)

    linen_module = recurrax.nn.Seq2Seq(model)
    variables = linen_module.init(jax.random.key(0), SRC, SRC_LENGTHS, TGT_IN)
    assert jax.tree.structure(variables["params"]["model"]) == jax.tree.structure(params)
    logits, weights = linen_module.apply({"params": {"model": params}}, SRC, SRC_LENGTHS, TGT_IN)
    assert_trees_close((logits, weights), (expected, expected_w))
    state = linen_module.apply({"params": {"model": params}}, SRC, SRC_LENGTHS, method="encode")
    _, step_logits, _ = linen_module.apply(
        {"params": {"model": params}}, state, TGT_IN[:, 0], method="decode_step"
    )
    assert_trees_close(step_logits, expected[:, 0])
    sampled, _ = linen_module.apply(
        {"params": {"model": params}}, SRC, SRC_LENGTHS, TGT_IN, teacher_probability=0.5,
        rngs={"sampling": jax.random.key(1)},
    )  # fmt: skip
    assert sampled.shape == expected.shape

    nnx_module = recurrax.nn.NNXSeq2Seq.from_params(model, params, rngs=nnx.Rngs(sampling=1))
    assert_trees_close(nnx_module(SRC, SRC_LENGTHS, TGT_IN), (expected, expected_w))
    assert_trees_close(nnx_module.pure_params(), params)
    state = nnx_module.encode(SRC, SRC_LENGTHS)
    _, step_logits = nnx_module.step_fn()(state, TGT_IN[:, 0])
    assert_trees_close(step_logits, expected[:, 0])
    assert nnx_module(SRC, SRC_LENGTHS, TGT_IN, teacher_probability=0.5)[0].shape == expected.shape
    fresh = recurrax.nn.NNXSeq2Seq(model, rngs=nnx.Rngs(0))
    assert jax.tree.structure(fresh.pure_params()) == jax.tree.structure(params)
    with pytest.raises(TypeError, match=r"model must be a recurrax\.seq2seq\.EncoderDecoder"):
        recurrax.nn.NNXSeq2Seq(recurrax.gru(H), rngs=nnx.Rngs(0))


def test_training_learns_to_copy():
    """A GRU encoder–decoder with attention learns to copy 4-token sequences in 200 Adam steps."""
    vocab, length, batch = 8, 4, 32
    model = encoder_decoder(
        encoder=recurrax.gru(16), decoder_cells=recurrax.gru(16), src_vocab_size=vocab,
        tgt_vocab_size=vocab, embed_size=8, attention="bahdanau",
    )  # fmt: skip
    params = model.init(jax.random.key(0))
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    def batch_of(key):
        src = jax.random.randint(key, (batch, length), 4, vocab, jnp.int32)
        targets = jnp.concatenate([src, jnp.full((batch, 1), EOS, jnp.int32)], axis=1)
        return src, targets

    def loss_fn(params, src, targets):
        lengths = jnp.full((batch,), length, jnp.int32)
        logits, _ = model.apply(params, src, lengths, shift_right(targets))
        return sequence_loss(logits, targets, targets != PAD)

    @jax.jit
    def train_step(params, opt_state, key):
        src, targets = batch_of(key)
        (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, src, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, sums

    losses = []
    with jax.numpy_dtype_promotion("standard"):  # (optax mixes Python floats and int32 counts)
        for i in range(200):
            params, opt_state, loss, sums = train_step(params, opt_state, jax.random.key(i + 1))
            losses.append(float(loss))
    assert np.mean(losses[:5]) > 1.5
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
    _, sums = loss_fn(params, *batch_of(jax.random.key(10_000)))
    assert int(sums["correct"]) > 0.9 * int(sums["count"])


def test_docstring_examples_run():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"jax": jax, "jnp": jnp, "np": np, "recurrax": recurrax}
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for test in finder.find(recurrax.seq2seq, globs=globs):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
