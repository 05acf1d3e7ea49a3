r"""A dense projection :math:`y = x W^\top` whose weight gradient is a sum of row-block products.

For ``x`` ``(..., K)`` and ``W`` ``(M, K)`` over ``R`` rows (the product of the leading axes),

.. math::

    \bar x = \bar y\, W, \qquad
    \bar W = \bar y^\top x = \sum_{c} \bar y_c^\top x_c,

where :math:`\bar y_c, x_c` are ``n`` consecutive blocks of ``R / n`` rows. The sum over blocks is
the same number as the single product, up to rounding. It is there for XLA:CPU: it forms
:math:`\bar y^\top x` over a long row axis by first transposing :math:`\bar y` and :math:`x` into
``(K, R)`` layouts, and when that transpose is fused into the elementwise work that produces
:math:`\bar y` it runs 3-5x slower than the product itself (measured in the LRU's training step,
``experiments/benchmark.py``, linear section). A batched product over blocks contracts each block's
rows in place and leaves no transpose to fuse.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from recurrax.array_types import Array

WEIGHT_GRADIENT_BLOCKS = 64
"""Most row blocks of the weight gradient (fewer when the row count has fewer factors of two)."""


@jax.custom_jvp
def project(x: Array, w: Array) -> Array:
    """``x @ w.T``: ``x`` ``(..., K)``, ``w`` ``(M, K)``, result ``(..., M)``."""
    return x @ w.T


@project.defjvp
def _project_jvp(primals, tangents):
    # Linear in (dx, dw). Reverse mode transposes it: the dw term, a product batched over row
    # blocks against copies of dw, transposes into the per-block products summed over blocks.
    x, w = primals
    dx, dw = tangents
    rows = math.prod(x.shape[:-1])
    # (a symbolic dimension, under jax.export, counts as 1: the blocks divide the known ones)
    known_rows = math.prod(d for d in x.shape[:-1] if isinstance(d, int))
    blocks = math.gcd(known_rows, WEIGHT_GRADIENT_BLOCKS)
    x_blocks = x.reshape(blocks, rows // blocks, x.shape[-1])
    dw_blocks = jnp.broadcast_to(dw, (blocks, *dw.shape))
    dy_w = jnp.einsum("cri,cji->crj", x_blocks, dw_blocks).reshape(*x.shape[:-1], w.shape[0])
    return x @ w.T, dx @ w.T + dy_w
