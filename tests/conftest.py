"""Test configuration: strict dtype and rank promotion, float64 available, and a tree comparison helper."""

import gc
import os
import sys
from pathlib import Path

# The tests check numbers, not speed, and most of their time is compiling: XLA's backend
# optimisation level 0 skips LLVM's optimisation of the generated code (the HLO passes, fusion and
# buffer assignment, which the memory and program-structure tests read, are unchanged). Set before
# JAX starts its backend; subprocesses started by the tests inherit it.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax
import numpy as np
import pytest

# The experiment scripts and configs live at the top level, outside the package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    """``np.testing.assert_allclose`` leaf by leaf; the two trees must have the same structure."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), (
        f"tree structures differ: {jax.tree.structure(actual)} vs {jax.tree.structure(expected)}"
    )
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drops JAX's compiled programs after each test module.

    Each CPU executable keeps its own memory mappings until it is freed. One process compiling the
    whole suite's programs would pass the kernel's per-process limit (``vm.max_map_count``, 65530
    by default) and crash inside the compiler; clearing per module keeps the count to what one
    module compiles.
    """
    yield
    jax.clear_caches()
    gc.collect()
