"""The driver: equality with plain loops, padding, masks, resets, reversal, carries, remat, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from conftest import assert_trees_close

CELLS = {"rnn": recurrax.rnn(4), "lstm": recurrax.lstm(4), "gru": recurrax.gru(4)}
B, T, D = 3, 7, 2
LENGTHS = np.array([7, 4, 0])


def setup(name, key=0, batch=B, time=T):
    cell = CELLS[name]
    params = cell.init(jax.random.key(key), D)
    xs = jax.random.normal(jax.random.key(key + 1), (batch, time, D), jnp.float32)
    return cell, params, xs


def reference(cell, params, xs, length, mask, resets, h0, reverse=False, reset_to=None):
    """Semantics written as a plain Python loop over one example's real steps.

    Returns outputs (T, H), the carry after every step (T, ...) and the final carry.
    """
    T = xs.shape[0]
    order = range(length - 1, -1, -1) if reverse else range(length)
    carry, ys, carries = h0, [jnp.zeros((cell.output_size,), jnp.float32)] * T, [None] * T
    for t in order:
        # Forward: a segment starts at a reset. Backward: it is entered at its last step.
        starts = (t + 1 < length and resets[t + 1]) if reverse else resets[t]
        if starts:
            carry = h0 if reset_to is None else reset_to
        if mask[t]:
            carry, ys[t] = cell.step(params, carry, xs[t])
        carries[t] = carry
    carries = [carry if c is None else c for c in carries]
    return jnp.stack(ys), jax.tree.map(lambda *a: jnp.stack(a), *carries), carry


def reference_batch(cell, params, xs, lengths, mask, resets, reverse=False):
    out = [
        reference(
            cell, params, xs[b], int(lengths[b]), mask[b], resets[b], cell.initial_carry(), reverse
        )
        for b in range(xs.shape[0])
    ]
    ys = jnp.stack([o[0] for o in out])
    carries = jax.tree.map(lambda *a: jnp.stack(a), *[o[1] for o in out])
    final = jax.tree.map(lambda *a: jnp.stack(a), *[o[2] for o in out])
    return final, ys, carries


def random_flags(seed, p):
    return np.random.default_rng(seed).random((B, T)) < p


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_driver_equals_python_loop_with_all_semantics(name, reverse):
    cell, params, xs = setup(name)
    mask, resets = random_flags(1, 0.8), random_flags(2, 0.25)
    final, ys, carries = recurrax.unroll(
        cell,
        params,
        xs,
        lengths=LENGTHS,
        mask=mask,
        resets=resets,
        reverse=reverse,
        return_carries=True,
    )
    ref_final, ref_ys, ref_carries = reference_batch(
        cell, params, xs, LENGTHS, mask, resets, reverse
    )
    assert_trees_close(ys, ref_ys)
    assert_trees_close(final, ref_final)
    assert_trees_close(carries, ref_carries)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_batch_equals_each_sequence_alone(name, reverse):
    cell, params, xs = setup(name)
    lengths = np.array([7, 4, 1])
    # Garbage in the padding must not matter.
    xs = xs.at[1, 4:].set(100.0).at[2, 1:].set(-100.0)
    final, ys = recurrax.unroll(cell, params, xs, lengths=lengths, reverse=reverse)
    for b, L in enumerate(lengths):
        alone_final, alone_ys = recurrax.unroll(cell, params, xs[b : b + 1, :L], reverse=reverse)
        assert_trees_close(ys[b : b + 1, :L], alone_ys)
        np.testing.assert_array_equal(ys[b, L:], 0.0)
        assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], final), alone_final)


@pytest.mark.parametrize("name", CELLS)
def test_mask_equals_loop_that_skips_masked_steps(name):
    cell, params, xs = setup(name)
    mask = random_flags(3, 0.6)
    final, ys = recurrax.unroll(cell, params, xs, mask=mask)
    for b in range(B):
        kept = np.flatnonzero(mask[b])
        carry = cell.initial_carry()
        for t in range(T):
            if mask[b, t]:
                carry, y = cell.step(params, carry, xs[b, t])
                np.testing.assert_allclose(ys[b, t], y, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(ys[b, t], 0.0)
        assert_trees_close(jax.tree.map(lambda a: a[b], final), carry)
        # and the same as running only the kept steps
        f2, _ = recurrax.unroll(cell, params, xs[b : b + 1, kept]) if kept.size else (None, None)
        if kept.size:
            assert_trees_close(jax.tree.map(lambda a: a[b : b + 1], final), f2)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_packed_segments_equal_segments_alone(name, reverse):
    cell, params, xs = setup(name)
    starts = [0, 3, 4]  # segments [0, 3), [3, 4), [4, 7)
    resets = np.zeros((B, T), bool)
    resets[:, starts] = True
    _, ys = recurrax.unroll(cell, params, xs, resets=resets, reverse=reverse)
    for lo, hi in zip(starts, [*starts[1:], T], strict=False):
        _, alone = recurrax.unroll(cell, params, xs[:, lo:hi], reverse=reverse)
        assert_trees_close(ys[:, lo:hi], alone)


@pytest.mark.parametrize("name", CELLS)
def test_bidirectional_padding_lengths_and_reverse_of_padded_array_differ(name):
    """Length-aware reversal is not the reversal of the padded array."""
    cell, params, xs = setup(name)
    _, ys = recurrax.unroll(cell, params, xs, lengths=np.array([7, 4, 2]), reverse=True)
    _, naive = recurrax.unroll(cell, params, xs[:, ::-1])
    assert not np.allclose(ys[1, :4], naive[1, ::-1][:4])


@pytest.mark.parametrize("name", CELLS)
def test_gradients_wrt_padded_and_masked_inputs_are_exactly_zero(name):
    cell, params, xs = setup(name)
    mask = random_flags(4, 0.7)

    def loss(xs, reverse):
        final, ys = recurrax.unroll(cell, params, xs, lengths=LENGTHS, mask=mask, reverse=reverse)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))

    for reverse in (False, True):
        g = jax.grad(loss)(xs, reverse)
        dead = (np.arange(T)[None, :] >= LENGTHS[:, None]) | ~mask
        assert np.all(np.asarray(g)[dead] == 0.0)
        assert np.any(np.asarray(g)[~dead] != 0.0)


@pytest.mark.parametrize("name", CELLS)
def test_step_by_step_from_carried_state_equals_whole_sequence(name):
    cell, params, xs = setup(name)
    final, ys = recurrax.unroll(cell, params, xs)
    carry, pieces = None, []
    for lo, hi in [(0, 3), (3, 4), (4, 7)]:
        carry, y = recurrax.unroll(cell, params, xs[:, lo:hi], initial_carry=carry)
        pieces.append(y)
    assert_trees_close(jnp.concatenate(pieces, axis=1), ys)
    assert_trees_close(carry, final)


def test_time_major_unroll_factor_and_remat_give_the_same_numbers():
    cell, params, xs = setup("lstm", time=10)
    kw = dict(lengths=np.array([10, 6, 3]), mask=np.ones((B, 10), bool), reverse=True)
    final, ys = recurrax.unroll(cell, params, xs, **kw)
    tm_final, tm_ys = recurrax.unroll(
        cell,
        params,
        jnp.swapaxes(xs, 0, 1),
        time_major=True,
        lengths=kw["lengths"],
        mask=kw["mask"].T,
        reverse=True,
    )
    assert_trees_close(jnp.swapaxes(tm_ys, 0, 1), ys)
    assert_trees_close(tm_final, final)
    for options in (dict(unroll=4), dict(remat=3), dict(remat=True), dict(remat=10)):
        assert_trees_close(recurrax.unroll(cell, params, xs, **kw, **options), (final, ys))


def test_remat_gradients_equal_and_memory_bounded():
    cell = recurrax.gru(8)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 2048, 4), jnp.float32)

    # The step path keeps every step's residuals unless rematerialised; the fused path's
    # own (smaller) saving is tested in test_fused.py.
    def loss(params, remat):
        _final, ys = recurrax.unroll(cell, params, xs, remat=remat, method="step")
        return jnp.mean(ys**2)

    plain, remat = (
        jax.jit(jax.grad(loss), static_argnums=1).lower(params, chunk).compile()
        for chunk in (None, 64)
    )
    assert_trees_close(remat(params), plain(params), rtol=1e-4, atol=1e-6)
    # Residuals of every step (T * per-step) versus T/chunk carries + one chunk's residuals.
    temp_bytes = [c.memory_analysis().temp_size_in_bytes for c in (plain, remat)]
    assert temp_bytes[1] * 4 < temp_bytes[0]


def test_initial_carry_given_shared_and_learned():
    cell, params, xs = setup("lstm")
    h0 = recurrax.LSTMState(jnp.full((4,), 0.3, jnp.float32), jnp.full((4,), -0.2, jnp.float32))
    batched = jax.tree.map(lambda a: jnp.broadcast_to(a, (B, 4)), h0)
    resets = random_flags(5, 0.3)
    shared = recurrax.unroll(cell, params, xs, initial_carry=h0, resets=resets)
    per_example = recurrax.unroll(cell, params, xs, initial_carry=batched, resets=resets)
    assert_trees_close(shared, per_example)
    ref = reference(cell, params, xs[0], T, np.ones(T, bool), resets[0], h0)
    assert_trees_close(shared[1][0], ref[0])

    def loss(h0):
        _, ys = recurrax.unroll(cell, params, xs, initial_carry=h0, resets=resets)
        return jnp.sum(ys)

    grads = jax.grad(loss)(h0)
    assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


def test_zero_lengths_give_initial_carry_and_zero_outputs():
    cell, params, xs = setup("gru")
    h0 = recurrax.GRUState(jnp.full((B, 4), 0.5, jnp.float32))
    final, ys = recurrax.unroll(cell, params, xs, lengths=np.zeros(B, np.int32), initial_carry=h0)
    assert_trees_close(final, h0)
    np.testing.assert_array_equal(ys, 0.0)


def test_bfloat16_inputs_keep_float32_carry():
    cell, params, xs = setup("lstm")
    final, ys = recurrax.unroll(cell, params, xs.astype(jnp.bfloat16))
    assert final.h.dtype == jnp.float32 and final.c.dtype == jnp.float32
    assert_trees_close(
        ys, recurrax.unroll(cell, params, xs.astype(jnp.bfloat16).astype(jnp.float32))[1]
    )


def test_jit_does_not_recompile_and_trace_size_is_independent_of_length():
    cell, params, xs = setup("lstm")
    run = jax.jit(lambda p, x, n: recurrax.unroll(cell, p, x, lengths=n, reverse=True))
    run(params, xs, jnp.asarray(LENGTHS))
    run(params, xs + 1.0, jnp.asarray(LENGTHS - 0))
    assert run._cache_size() == 1

    def count(jaxpr):
        n = len(jaxpr.eqns)
        for eqn in jaxpr.eqns:
            for value in eqn.params.values():
                sub = getattr(value, "jaxpr", value)
                if hasattr(sub, "eqns"):
                    n += count(sub)
        return n

    def equations(time, remat):
        x = jnp.zeros((B, time, D), jnp.float32)
        return count(
            jax.make_jaxpr(lambda p, x: recurrax.unroll(cell, p, x, remat=remat))(params, x).jaxpr
        )

    assert equations(10, None) == equations(10_000, None)
    assert equations(10, 3) == equations(10_000, 3)  # both padded up to a multiple of 3


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(xs=np.zeros((B, T, D), np.int32)), TypeError, "xs must be a floating-point array"),
        (dict(xs=np.zeros((T, D), np.float32)), ValueError, r"xs must have rank 3 .*got shape"),
        (dict(xs=np.zeros((B, T, D + 1), np.float32)), ValueError, "xs must have 2 features"),
        (dict(lengths=np.array([1, 2])), ValueError, r"lengths must have shape \(3,\)"),
        (dict(lengths=np.array([1, 2, 8])), ValueError, r"lengths must lie in \[0, 7\]"),
        (dict(lengths=np.array([1.0, 2.0, 3.0])), TypeError, "lengths must be an integer array"),
        (dict(mask=np.ones((B, T + 1), bool)), ValueError, r"mask must have shape \(3, 7\)"),
        (dict(mask=np.ones((B, T), np.float32)), TypeError, "mask must be a boolean"),
        (dict(resets=np.ones((T, B), bool)), ValueError, r"resets must have shape \(3, 7\)"),
        (dict(remat="yes"), ValueError, "remat must be None, False, True or a positive"),
        (dict(unroll=0), ValueError, "unroll must be a positive integer; got 0"),
        (
            dict(initial_carry=recurrax.RNNState(np.zeros(4, np.float32))),
            ValueError,
            "initial_carry must have the cell's carry structure",
        ),
        (
            dict(
                initial_carry=recurrax.LSTMState(np.zeros(5, np.float32), np.zeros(5, np.float32))
            ),
            ValueError,
            r"initial_carry leaves must have shape \(4,\) or \(3, 4\)",
        ),
        (dict(cell=lambda *a: a), TypeError, "cell must be a recurrax.Cell"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs, error, match):
    cell, params, xs = setup("lstm")
    args = dict(cell=cell, params=params, xs=xs) | kwargs
    with pytest.raises(error, match=match):
        recurrax.unroll(args.pop("cell"), args.pop("params"), args.pop("xs"), **args)


@pytest.mark.parametrize("reverse", [False, True])
def test_resets_can_return_to_a_carry_other_than_the_initial_one(reverse):
    """Truncated BPTT: a chunk starts from the carried state; a boundary returns to zeros."""
    cell, params, xs = setup("lstm")
    mask, resets = random_flags(8, 0.8), random_flags(9, 0.3)
    start = recurrax.LSTMState(jnp.full((4,), 0.5, jnp.float32), jnp.full((4,), -1.0, jnp.float32))
    zero = cell.initial_carry()
    final, ys = recurrax.unroll(
        cell,
        params,
        xs,
        lengths=LENGTHS,
        mask=mask,
        resets=resets,
        reverse=reverse,
        initial_carry=start,
        reset_carry=zero,
    )
    for b in range(B):
        ref_ys, _, ref_final = reference(
            cell, params, xs[b], int(LENGTHS[b]), mask[b], resets[b], start, reverse, reset_to=zero
        )
        assert_trees_close(ys[b], ref_ys)
        assert_trees_close(jax.tree.map(lambda a: a[b], final), ref_final)


@pytest.mark.parametrize(
    "make", [lambda: recurrax.mamba(2, d_state=3, d_conv=3), lambda: recurrax.lru(4, 2)]
)
def test_linear_cells_honour_a_separate_reset_carry_in_every_method(make):
    cell = make()
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float32)
    mask, resets = random_flags(10, 0.8), random_flags(11, 0.3)
    start = jax.tree.map(lambda a: a + 0.3, cell.initial_carry())
    outs = [
        recurrax.unroll(
            cell,
            params,
            xs,
            lengths=LENGTHS,
            mask=mask,
            resets=resets,
            initial_carry=start,
            reset_carry=cell.initial_carry(),
            method=m,
            chunk_size=3,
        )
        for m in ("step", "sequential", "associative", "chunked")
    ]
    for out in outs[1:]:
        assert_trees_close(out, outs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["sequential", "associative", "chunked"])
def test_remat_chunks_of_k_steps_give_the_same_numbers_on_every_linear_method(method):
    """``remat=k`` runs each linear-scan method over checkpointed chunks of ``k`` steps (``k``
    neither a multiple nor a divisor of the method's own chunks): same values and gradients."""
    cell = recurrax.lru(state_size=8, features=4)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (2, 50, 4), jnp.float32)
    lengths = jnp.array([50, 31])

    def loss(params, remat):
        ys = recurrax.unroll(
            cell, params, xs, lengths=lengths, method=method, chunk_size=4, remat=remat
        )[1]
        return jnp.mean(ys**2)

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    assert_trees_close(grad(params, 7), grad(params, None), rtol=1e-5, atol=1e-7)
