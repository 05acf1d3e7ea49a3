"""Weight initialisers for the classic cells, selectable by name.

Input kernels: ``"lecun"`` (LeCun normal, var 1/D; the Flax default), ``"glorot"`` (Glorot/Xavier
uniform, var 2/(D+H)), ``"he"`` (He normal, var 2/D, for ReLU units).

Recurrent kernels: ``"orthogonal"`` (Saxe et al. 2014; each ``(H, H)`` gate block is drawn
separately, so every block is exactly orthogonal) or ``"identity"`` (scaled identity, the IRNN of
Le et al. 2015).

Step sizes of the selective state spaces: :func:`inverse_softplus` sets a bias so that
``softplus`` of it starts at a drawn step size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax.array_types import Array, Key
from recurrax.validation import check_choice

INPUT_INITS = {
    "lecun": jax.nn.initializers.lecun_normal(),
    "glorot": jax.nn.initializers.glorot_uniform(),
    "he": jax.nn.initializers.he_normal(),
}
RECURRENT_INITS = ("orthogonal", "identity")


def check_inits(kernel_init: str, recurrent_init: str) -> None:
    check_choice("kernel_init", kernel_init, INPUT_INITS)
    check_choice("recurrent_init", recurrent_init, RECURRENT_INITS)


def input_kernel(
    key: Key, kind: str, input_size: int, hidden_size: int, gates: int, dtype
) -> Array:
    """A packed ``(D, G*H)`` input kernel; each gate block is initialised as its own ``(D, H)`` layer."""
    keys = jax.random.split(key, gates)
    init = INPUT_INITS[kind]
    return jnp.concatenate([init(k, (input_size, hidden_size), dtype) for k in keys], axis=-1)


def recurrent_kernel(
    key: Key, kind: str, hidden_size: int, gates: int, dtype, identity_scale: float = 1.0
) -> Array:
    """A packed ``(H, G*H)`` recurrent kernel made of ``G`` orthogonal or scaled-identity blocks."""
    if kind == "identity":
        block = identity_scale * jnp.eye(hidden_size, dtype=dtype)
        return jnp.concatenate([block] * gates, axis=-1)
    orthogonal = jax.nn.initializers.orthogonal()
    keys = jax.random.split(key, gates)
    return jnp.concatenate(
        [orthogonal(k, (hidden_size, hidden_size), dtype) for k in keys], axis=-1
    )


def inverse_softplus(y: Array) -> Array:
    """The ``x`` with ``softplus(x) = y`` (initialises a bias so that a step size starts at ``y``)."""
    # softplus(x) = log(1 + e^x) = y  <=>  x = log(e^y - 1) = y + log(1 - e^{-y}); the second
    # form does not overflow for large y and keeps precision for small y (expm1).
    return y + jnp.log(-jnp.expm1(-y))
