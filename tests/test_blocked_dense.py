"""recurrax.kernels.blocked_dense.project and recurrax.cells.base.computed_once: the same numbers and
derivatives as the plain expressions they stand for."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_close
from recurrax.cells.base import computed_once
from recurrax.kernels.blocked_dense import project


# 8 x 16 rows split into 64 blocks; 3 x 5 rows (odd) into one; a single row vector.
@pytest.mark.parametrize("lead", [(8, 16), (3, 5), ()])
def test_project_equals_the_plain_product_with_its_gradients(lead, key):
    kx, kw, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (*lead, 4), jnp.float64)
    w = jax.random.normal(kw, (6, 4), jnp.float64)
    g = jax.random.normal(kg, (*lead, 6), jnp.float64)
    np.testing.assert_allclose(project(x, w), np.asarray(x) @ np.asarray(w).T, rtol=1e-12)

    def loss(fn):
        return lambda x, w: jnp.sum(jnp.tanh(fn(x, w)) * g)

    plain = loss(lambda x, w: x @ w.T)
    assert_trees_close(
        jax.jit(jax.grad(loss(project), argnums=(0, 1)))(x, w),
        jax.grad(plain, argnums=(0, 1))(x, w),
        rtol=1e-12,
        atol=1e-12,
    )
    tangents = (jnp.cos(x), jnp.sin(w))  # forward mode too: the custom JVP is the linear map
    assert_trees_close(
        jax.jit(partial(jax.jvp, loss(project)))((x, w), tangents),
        jax.jit(partial(jax.jvp, plain))((x, w), tangents),
        rtol=1e-12,
    )


def test_computed_once_is_the_identity_with_its_derivatives(key):
    nu, theta = jax.random.normal(key, (2, 5), jnp.float64)

    def coefficients(nu, theta, once):
        lam, gamma = jnp.exp(jax.lax.complex(-jnp.exp(nu), theta)), jnp.exp(nu)
        return computed_once((lam, gamma)) if once else (lam, gamma)

    def loss(once):
        def fn(nu, theta):
            lam, gamma = coefficients(nu, theta, once)
            spread = jnp.broadcast_to(jnp.real(lam) * gamma + jnp.imag(lam), (7, 5))
            return jnp.sum(jnp.sin(spread * jnp.arange(7.0)[:, None]))

        return fn

    assert_trees_close(
        coefficients(nu, theta, True), coefficients(nu, theta, False), rtol=0, atol=0
    )
    assert_trees_close(
        jax.grad(loss(True), argnums=(0, 1))(nu, theta),
        jax.grad(loss(False), argnums=(0, 1))(nu, theta),
        rtol=1e-12,
        atol=1e-12,
    )
    tangents = (jnp.cos(nu), jnp.sin(theta))
    assert_trees_close(
        jax.jvp(loss(True), (nu, theta), tangents),
        jax.jvp(loss(False), (nu, theta), tangents),
        rtol=1e-12,
    )
    # NaN is no exception: the conditional's predicate holds for every value.
    nan = computed_once(jnp.array([jnp.nan, 1.0]))
    assert np.isnan(nan[0]) and nan[1] == 1.0
    # Batched by vmap, it is still the identity.
    batched = jax.vmap(lambda v: computed_once((v, 2 * v)))(jnp.arange(6.0).reshape(3, 2))
    assert_trees_close(batched, (jnp.arange(6.0).reshape(3, 2), 2 * jnp.arange(6.0).reshape(3, 2)))


def test_computed_once_keeps_its_conditional_in_the_compiled_program():
    # The point of computed_once: XLA must not simplify the conditional away, or it would fuse the
    # coefficients back into every element of the broadcast.
    def fn(nu):
        lam = computed_once(jnp.exp(jax.lax.complex(-jnp.exp(nu), nu)))
        return jnp.broadcast_to(jnp.real(lam), (64, 8)) * jnp.arange(64.0)[:, None]

    compiled = jax.jit(fn).lower(jnp.zeros(8)).compile().as_text()
    assert "conditional(" in compiled
