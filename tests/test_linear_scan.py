"""The linear-recurrence engine: every method equals a plain loop, with every semantic rule."""

import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import recurrax
from conftest import assert_trees_close
from recurrax.kernels.linear_scan import METHODS
from recurrax.paths import choose_linear_method

B, T, N = 3, 11, 2
LENGTHS = np.array([11, 6, 0])


def coefficients(dtype, seed=0):
    """Decays with |a| < 1 and arbitrary inputs, real or complex."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.3, 0.95, (B, T, N))
    b = rng.normal(size=(B, T, N))
    if np.issubdtype(dtype, np.complexfloating):
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, (B, T, N)))
        b = b + 1j * rng.normal(size=(B, T, N))
    return jnp.asarray(a, dtype), jnp.asarray(b, dtype)


def reference(a, b, h0, lengths, mask, resets, reverse):
    """The semantics as a Python loop over each example's real steps (numpy, float64/complex128)."""
    a, b = np.asarray(a, np.complex128), np.asarray(b, np.complex128)
    h0 = np.broadcast_to(np.asarray(h0, np.complex128), (B, N))
    hs = np.zeros((B, T, N), np.complex128)
    final = np.zeros((B, N), np.complex128)
    for e in range(B):
        L = int(lengths[e])
        h = h0[e].copy()
        steps = range(L - 1, -1, -1) if reverse else range(L)
        for t in steps:
            starts = (t + 1 < L and resets[e, t + 1]) if reverse else resets[e, t]
            if starts:
                h = h0[e].copy()
            if mask[e, t]:
                h = a[e, t] * h + b[e, t]
            hs[e, t] = h
        for t in range(L, T):
            hs[e, t] = h
        final[e] = h
    return final, hs


def flags(seed):
    rng = np.random.default_rng(seed)
    return rng.random((B, T)) < 0.75, rng.random((B, T)) < 0.2


CASES = list(
    itertools.product(
        [np.float32, np.complex64, np.float64, np.complex128],
        [False, True],
        [None, "shared", "batched"],
    )
)


@pytest.mark.parametrize("dtype,reverse,h0_kind", CASES)
def test_every_method_equals_the_reference_loop(dtype, reverse, h0_kind):
    a, b = coefficients(dtype)
    mask, resets = flags(1)
    h0 = {None: None, "shared": jnp.asarray(b[0, 0] * 0.5), "batched": jnp.asarray(b[:, 0] * 0.5)}[
        h0_kind
    ]
    ref_final, ref_hs = reference(a, b, 0.0 if h0 is None else h0, LENGTHS, mask, resets, reverse)
    tol = 1e-5 if dtype in (np.float32, np.complex64) else 1e-12
    for method, remat in itertools.product(METHODS, [False, True]):
        final, hs = recurrax.linear_scan(
            a,
            b,
            h0=h0,
            lengths=LENGTHS,
            mask=mask,
            resets=resets,
            reverse=reverse,
            method=method,
            chunk_size=4,
            remat=remat,
        )
        assert hs.dtype == jnp.result_type(b) or hs.dtype in (jnp.float32, jnp.complex64)
        np.testing.assert_allclose(hs, ref_hs, rtol=tol, atol=tol, err_msg=method)
        np.testing.assert_allclose(final, ref_final, rtol=tol, atol=tol, err_msg=method)


def test_masked_steps_hold_the_state_and_padding_holds_the_final_state():
    a, b = coefficients(np.float32)
    mask = np.ones((B, T), bool)
    mask[:, 3] = False
    final, hs = recurrax.linear_scan(a, b, lengths=LENGTHS, mask=mask, method="associative")
    np.testing.assert_array_equal(hs[0, 3], hs[0, 2])
    np.testing.assert_array_equal(hs[1, 6:], np.broadcast_to(final[1], (T - 6, N)))
    np.testing.assert_array_equal(hs[2], 0.0)  # length 0: the initial state everywhere


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_agree_across_methods_and_check_grads(dtype, reverse):
    a, b = coefficients(dtype, seed=2)
    h0 = b[:, 1] * 0.3
    mask, resets = flags(3)

    def loss(a, b, h0, method):
        final, hs = recurrax.linear_scan(
            a,
            b,
            h0=h0,
            lengths=LENGTHS,
            mask=mask,
            resets=resets,
            reverse=reverse,
            method=method,
            chunk_size=3,
        )
        weights = jnp.linspace(0.5, 1.5, T * N, dtype=jnp.float64).reshape(1, T, N)
        return jnp.sum(jnp.abs(hs) ** 2 * weights) + jnp.sum(jnp.abs(final))

    grads = {m: jax.grad(loss, argnums=(0, 1, 2))(a, b, h0, m) for m in METHODS}
    for m in METHODS:
        assert_trees_close(grads[m], grads["sequential"], rtol=1e-10, atol=1e-12)
    for m in METHODS:
        check_grads(
            jax.jit(partial(loss, method=m)),
            (a, b, h0),
            order=1,
            modes=["rev"],
            atol=1e-6,
            rtol=1e-6,
        )


def test_float32_gradients_agree_across_methods():
    a, b = coefficients(np.complex64, seed=4)
    mask, resets = flags(5)

    def loss(a, b, method, remat):
        _, hs = recurrax.linear_scan(
            a,
            b,
            lengths=LENGTHS,
            mask=mask,
            resets=resets,
            method=method,
            chunk_size=4,
            remat=remat,
        )
        return jnp.sum(jnp.real(hs) ** 2)

    expected = jax.grad(loss, argnums=(0, 1))(a, b, "sequential", False)
    for method, remat in itertools.product(METHODS, [False, True]):
        got = jax.grad(loss, argnums=(0, 1))(a, b, method, remat)
        assert_trees_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_log_space_equals_ordinary_arithmetic(reverse):
    a, b = coefficients(np.float64, seed=6)
    b = jnp.abs(b) + 0.1
    h0 = jnp.full((N,), 0.7, jnp.float64)
    mask, resets = flags(7)
    kw = dict(lengths=LENGTHS, mask=mask, resets=resets, reverse=reverse)
    final, hs = recurrax.linear_scan(a, b, h0=h0, method="sequential", **kw)

    def log_loss(log_a, method):
        _, log_hs = recurrax.linear_scan(
            log_a, jnp.log(b), h0=jnp.log(h0), log_space=True, method=method, chunk_size=4, **kw
        )
        return jnp.sum(jnp.exp(log_hs))

    def loss(a):
        return jnp.sum(recurrax.linear_scan(a, b, h0=h0, method="sequential", **kw)[1])

    for method in METHODS:
        log_final, log_hs = recurrax.linear_scan(
            jnp.log(a),
            jnp.log(b),
            h0=jnp.log(h0),
            log_space=True,
            method=method,
            chunk_size=4,
            **kw,
        )
        np.testing.assert_allclose(jnp.exp(log_hs), hs, rtol=1e-12)
        np.testing.assert_allclose(jnp.exp(log_final), final, rtol=1e-12)
        # d/d(log a) = a * d/da, and finite although zero states (log = -inf) occur
        np.testing.assert_allclose(
            jax.grad(log_loss)(jnp.log(a), method), a * jax.grad(loss)(a), rtol=1e-10, atol=1e-12
        )


def test_remat_bounds_training_memory():
    a = jnp.full((1, 2048, 64), 0.9, jnp.float32)
    b = jnp.ones((1, 2048, 64), jnp.float32)

    def temp_bytes(method, remat):
        def loss(a, b):
            return jnp.sum(
                recurrax.linear_scan(a, b, method=method, chunk_size=128, remat=remat)[1] ** 2
            )

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(a, b).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    # Chunked + remat keeps one state per chunk plus one chunk's intermediates: about the size of
    # the inputs and outputs themselves, well under the associative tree's O(T log T).
    bounded = temp_bytes("chunked", True)
    tree = temp_bytes("associative", False)
    assert bounded * 2 < temp_bytes("chunked", False)
    assert bounded * 2 < tree
    assert temp_bytes("sequential", False) * 2 < tree


@pytest.mark.slow  # ~25 s; every linear cell checks bfloat16 at length 4096 by default
def test_bfloat16_coefficients_give_a_float32_state_at_length_4096():
    a = jnp.full((1, 4096, 8), 0.999, jnp.bfloat16)
    b = jax.random.normal(jax.random.key(0), (1, 4096, 8), jnp.bfloat16)
    for method in METHODS:
        _final, hs = recurrax.linear_scan(a, b, method=method, chunk_size=128)
        assert hs.dtype == jnp.float32 and np.all(np.isfinite(hs))
        g = jax.grad(lambda b: jnp.sum(recurrax.linear_scan(a, b, method=method)[1]))(b)
        assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_auto_picks_a_known_method():
    for shape in [(1, 16, 4), (8, 4096, 64), (1, 65536, 16)]:
        method, chunk = choose_linear_method(*shape)
        assert method in METHODS and (chunk is None) == (method != "chunked")
    a, b = coefficients(np.float32)
    assert_trees_close(
        recurrax.linear_scan(a, b, method="auto"), recurrax.linear_scan(a, b, method="sequential")
    )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(a=np.ones((B, T), np.float32)), ValueError, r"a must have rank 3"),
        (dict(b=np.ones((B, T, N + 1), np.float32)), ValueError, r"b must have shape \(3, 11, 2\)"),
        (dict(a=np.ones((B, T, N), np.int32)), TypeError, "a must be a floating or complex array"),
        (dict(method="parallel"), ValueError, "method must be one of"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive integer; got 0"),
        (dict(h0=np.zeros((B, N + 1), np.float32)), ValueError, r"h0 must have shape \(2,\)"),
        (dict(lengths=np.array([1, 2, 12])), ValueError, r"lengths must lie in \[0, 11\]"),
        (dict(mask=np.ones((B, T), np.float32)), TypeError, "mask must be a boolean"),
        (dict(resets=np.ones((B, T + 1), bool)), ValueError, r"resets must have shape \(3, 11\)"),
        (
            dict(a=np.ones((B, T, N), np.complex64), log_space=True),
            TypeError,
            "a and b must be real with log_space=True",
        ),
    ],
)
def test_bad_input_is_rejected(kwargs, error, match):
    a, b = coefficients(np.float32)
    args = dict(a=a, b=b) | kwargs
    with pytest.raises(error, match=match):
        recurrax.linear_scan(args.pop("a"), args.pop("b"), **args)
