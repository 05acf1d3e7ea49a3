r"""The real-valued input and output maps of a diagonal complex state-space layer (LRU, S5).

With a complex state :math:`h \in \mathbb{C}^N`, real inputs :math:`x \in \mathbb{R}^H`, complex
matrices :math:`B = B^{re} + i B^{im}` ``(N, H)`` and :math:`C = C^{re} + i C^{im}` ``(H, N)`` and
an input coefficient :math:`\kappa \in \mathbb{C}^N` (or real):

.. math::

    \kappa \odot (B x) = (\kappa B)\, x, \qquad
    s\, \mathrm{Re}(C h) + D \odot x
        = s\, [C^{re},\ -C^{im}] \begin{bmatrix} \mathrm{Re}\, h \\ \mathrm{Im}\, h \end{bmatrix}
        + D \odot x.

Each side is one real product over the long ``(T, ·)`` axis, with ``2N`` rows or columns: the
complex arithmetic is folded into the ``(N, H)`` parameters once, not done per time step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax.array_types import Array
from recurrax.kernels.blocked_dense import project


def complex_input(params, xs: Array, coef: Array, dtype) -> Array:
    """``coef ⊙ (B x)`` ``(..., N)`` complex, for real ``xs`` ``(..., H)``, ``B`` ``(N, H)`` from
    ``params["B_re"]`` and ``params["B_im"]``, and ``coef`` ``(N,)`` real or complex."""
    b_re, b_im = params["B_re"].astype(dtype), params["B_im"].astype(dtype)
    n = b_re.shape[0]
    coef_re, coef_im = jnp.real(coef)[:, None], jnp.imag(coef)[:, None]
    w_re = coef_re * b_re - coef_im * b_im  # Re(κ B)
    w_im = coef_re * b_im + coef_im * b_re  # Im(κ B)
    u = project(xs, jnp.concatenate([w_re, w_im]))
    return jax.lax.complex(u[..., :n], u[..., n:])


def real_output(params, hs: Array, xs: Array, dtype, scale=1.0) -> Array:
    """``scale · Re(C h) + D ⊙ x`` ``(..., H)`` for complex ``hs`` ``(..., N)`` and ``xs``
    ``(..., H)``, with ``C`` from ``params["C_re"]``, ``params["C_im"]`` and ``D`` ``params["D"]``."""
    parts = jnp.concatenate([jnp.real(hs), jnp.imag(hs)], axis=-1)
    w = jnp.concatenate([params["C_re"], -params["C_im"]], axis=1).astype(dtype)
    d = jnp.broadcast_to(params["D"].astype(dtype), xs.shape)
    return project(parts, scale * w) + d * xs
