"""Composing recurrax as research code does: day-one programs in miniature.

Export with symbolic shapes, layers that pass driver options, carries threaded through truncated
BPTT with one compilation, a custom cell, forward-mode autodiff, and the package's surface.
"""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import recurrax
from conftest import REPO, assert_trees_close
from recurrax import paths

D = 3

CELLS = {
    "rnn": recurrax.rnn(4),
    "lstm": recurrax.lstm(4),
    "gru": recurrax.gru(4),
    "lru": recurrax.lru(4, D),
    "s5": recurrax.s5(4, D),
    "mamba": recurrax.mamba(D, d_state=2),
    "mamba2": recurrax.mamba2(4, d_state=2, headdim=4),
    "rglru": recurrax.rglru(D),
    "mingru": recurrax.mingru(4),
    "minlstm": recurrax.minlstm(4),
}
WIDTH = {"mamba2": 4}  # input features; the others take D
PATHS = [(name, m) for name, cell in CELLS.items() for m in paths.methods(cell)]


def example_inputs(batch, length, width, seed=0):
    """Inputs, lengths (some sequences padded) and resets (packed segments)."""
    k_x, k_r = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(k_x, (batch, length, width), jnp.float32)
    lengths = jnp.asarray(length - np.arange(batch) % 3, jnp.int32)
    resets = jax.random.bernoulli(k_r, 0.25, (batch, length))
    return xs, lengths, resets


def export_with_symbolic_batch_and_time(fn, params, width):
    """``fn(params, xs, lengths, resets)`` exported for ``xs (b, t, width)``, serialised and
    deserialised."""
    b, t = export.symbolic_shape("b, t")
    exported = export.export(jax.jit(fn))(
        jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),
        jax.ShapeDtypeStruct((b, t, width), jnp.float32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
        jax.ShapeDtypeStruct((b, t), jnp.bool_),
    )
    return export.deserialize(exported.serialize())


# --- export ---------------------------------------------------------------------------------------


def test_classifier_built_with_defaults_exports_with_symbolic_batch_and_time():
    vocab, width, classes = 11, 6, 3
    emb = recurrax.embedding(vocab, width)
    encoder = recurrax.bidirectional(recurrax.lstm(8))  # default path: chosen from the shape
    pool = recurrax.attention_pooling(5)
    head = recurrax.dense(classes)
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "emb": emb.init(keys[0], vocab),
        "encoder": encoder.init(keys[1], width),
        "pool": pool.init(keys[2], encoder.output_size),
        "head": head.init(keys[3], encoder.output_size),
    }

    def classify(params, tokens, lengths):
        xs = emb.apply(params["emb"], tokens)
        _, ys = encoder.apply(params["encoder"], xs, lengths=lengths)
        return head.apply(params["head"], pool.apply(params["pool"], ys, lengths))

    b, t = export.symbolic_shape("b, t")
    exported = export.export(jax.jit(classify))(
        jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params),
        jax.ShapeDtypeStruct((b, t), jnp.int32),
        jax.ShapeDtypeStruct((b,), jnp.int32),
    )
    restored = export.deserialize(exported.serialize())
    assert str(restored.in_avals[-2].shape) == "(b, t)"
    for batch in (2, 5):
        for length in (7, 12):
            key = jax.random.key(batch * length)
            tokens = jax.random.randint(key, (batch, length), 0, vocab, jnp.int32)
            lengths = jnp.asarray(length - np.arange(batch) % 4, jnp.int32)
            got = restored.call(params, tokens, lengths)
            assert got.shape == (batch, classes)
            assert_trees_close(got, classify(params, tokens, lengths))


@pytest.mark.parametrize("name, method", PATHS, ids=[f"{n}-{m}" for n, m in PATHS])
def test_every_path_exports_with_symbolic_batch_and_time(name, method):
    cell, width = CELLS[name], WIDTH.get(name, D)
    params = cell.init(jax.random.key(0), width)

    def run(params, xs, lengths, resets):
        return recurrax.unroll(
            cell, params, xs, lengths=lengths, resets=resets, reverse=True, method=method
        )

    if method == "associative":  # lax.associative_scan needs the length while tracing
        with pytest.raises(ValueError, match="method='associative' needs a concrete"):
            export_with_symbolic_batch_and_time(run, params, width)
        return
    restored = export_with_symbolic_batch_and_time(run, params, width)
    for batch, length in ((2, 5), (3, 9)):
        args = example_inputs(batch, length, width, seed=length)
        assert_trees_close(restored.call(params, *args), run(params, *args), atol=1e-5)


@pytest.mark.parametrize("name", list(CELLS))
def test_default_path_training_step_exports(name):
    """The gradient (custom VJPs included) also exports with symbolic shapes, with remat on."""
    cell, width = CELLS[name], WIDTH.get(name, D)
    params = cell.init(jax.random.key(0), width)

    def grads(params, xs, lengths, resets):
        def loss(p):
            _, ys = recurrax.unroll(cell, p, xs, lengths=lengths, resets=resets, remat=True)
            return jnp.sum(ys**2)

        return jax.grad(loss)(params)

    restored = export_with_symbolic_batch_and_time(grads, params, width)
    args = example_inputs(3, 9, width)  # (one shape: the forward test covers several)
    assert_trees_close(restored.call(params, *args), jax.jit(grads)(params, *args), atol=1e-4)


# --- layers pass driver options and accept layers -------------------------------------------------


def jaxpr_text(layer, params, xs):
    return str(jax.make_jaxpr(lambda p, x: layer.apply(p, x))(params, xs))


def test_layers_pass_driver_options_down():
    xs = example_inputs(2, 8, D)[0]
    plain = recurrax.bidirectional(recurrax.gru(4))
    params = plain.init(jax.random.key(0), D)
    options = recurrax.bidirectional(recurrax.gru(4), method="step", remat=2, unroll=2)
    # remat=2 checkpoints chunks of 2 steps in both directions: same numbers, other program
    assert "remat" not in jaxpr_text(plain, params, xs)
    assert jaxpr_text(options, params, xs).count("remat") >= 2
    assert_trees_close(options.apply(params, xs), plain.apply(params, xs))
    with pytest.raises(ValueError, match="method must be one of"):
        recurrax.stacked([recurrax.lstm(4)], method="chunked")
    with pytest.raises(ValueError, match="remat must be None, False, True or a positive"):
        recurrax.bidirectional(recurrax.lstm(4), remat=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'chunks'"):
        recurrax.stacked([recurrax.lstm(4)], chunks=4)


def test_bidirectional_takes_a_layer_per_direction():
    xs, lengths, _ = example_inputs(3, 7, D)
    forward = recurrax.recurrent(recurrax.lstm(4), method="step")
    backward = recurrax.stacked([recurrax.gru(4), recurrax.gru(5)], reverse=True, remat=3)
    layer = recurrax.bidirectional(forward, backward)
    params = layer.init(jax.random.key(0), D)
    carry, ys = layer.apply(params, xs, lengths=lengths)
    f_carry, f_ys = recurrax.unroll(
        recurrax.lstm(4), params["forward"]["cell"], xs, lengths=lengths
    )
    b_params = params["backward"]["layers"]
    b1_carry, b1 = recurrax.unroll(
        recurrax.gru(4), b_params[0]["cell"], xs, lengths=lengths, reverse=True
    )
    b2_carry, b2 = recurrax.unroll(
        recurrax.gru(5), b_params[1]["cell"], b1, lengths=lengths, reverse=True
    )
    assert layer.output_size == ys.shape[-1] == 9
    assert_trees_close(ys, jnp.concatenate([f_ys, b2], -1))
    assert_trees_close(carry, recurrax.BidirectionalState(f_carry, [b1_carry, b2_carry]))
    with pytest.raises(ValueError, match=r"backward must run backwards \(reverse=True\)"):
        recurrax.bidirectional(forward, recurrax.recurrent(recurrax.gru(4)))
    with pytest.raises(ValueError, match=r"forward must run forwards \(reverse=False\)"):
        recurrax.bidirectional(backward, backward)
    with pytest.raises(TypeError, match="backward must be given when forward is a SequenceLayer"):
        recurrax.bidirectional(forward)


def test_stacked_mixes_cells_and_layers():
    xs, lengths, resets = example_inputs(2, 6, D)
    first = recurrax.recurrent(recurrax.lru(4, D), method="chunked", chunk_size=2)
    layer = recurrax.stacked([first, recurrax.gru(4)], residual=True, method="step")
    params = layer.init(jax.random.key(0), D)
    carries, ys = layer.apply(params, xs, lengths=lengths, resets=resets)
    c0, y0 = recurrax.unroll(
        recurrax.lru(4, D), params["layers"][0]["cell"], xs, lengths=lengths, resets=resets
    )
    c1, y1 = recurrax.unroll(  # (the residual: lru keeps the width, gru changes it)
        recurrax.gru(4), params["layers"][1]["cell"], xs + y0, lengths=lengths, resets=resets
    )
    assert_trees_close(ys, y1, atol=1e-5)
    assert_trees_close(carries, [c0, c1], atol=1e-5)
    with pytest.raises(ValueError, match=r"layers\[0\] must be a cell when variational.recurrent"):
        recurrax.stacked([first], variational=recurrax.VariationalDropout(recurrent=0.1))


def test_residual_block_is_layer_norm_recurrence_glu_and_skip():
    xs, lengths, _ = example_inputs(2, 6, 4)
    block = recurrax.residual_block(recurrax.lru(8, 4), 4, method="sequential")
    params = block.init(jax.random.key(0), 4)
    carry, ys = block.apply(params, xs, lengths=lengths)
    x = np.asarray(xs, np.float64)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    inner_carry, inner = recurrax.unroll(
        recurrax.lru(8, 4), params["rnn"]["cell"], jnp.asarray(normed, jnp.float32),
        lengths=lengths,
    )  # fmt: skip
    glu = params["glu"]
    value = np.asarray(inner) @ np.asarray(glu["value"]["W"]) + np.asarray(glu["value"]["b"])
    gate = np.asarray(inner) @ np.asarray(glu["gate"]["W"]) + np.asarray(glu["gate"]["b"])
    expected = x + value / (1 + np.exp(-gate))
    np.testing.assert_allclose(np.asarray(ys), expected, rtol=1e-4, atol=1e-5)
    assert_trees_close(carry, inner_carry)
    with pytest.raises(ValueError, match=r"input_size must equal features \(4\)"):
        block.init(jax.random.key(0), 5)
    with pytest.raises(ValueError, match="layer must output features"):
        recurrax.residual_block(recurrax.gru(5), 4, glu=False)


# --- initial carries and truncated BPTT -----------------------------------------------------------

LAYERS = {
    "recurrent": recurrax.recurrent(recurrax.lstm(4)),
    "learned": recurrax.recurrent(recurrax.gru(4), learn_initial_carry=True),
    "bidirectional": recurrax.bidirectional(recurrax.lstm(4), recurrax.lru(4, 3)),
    "stacked": recurrax.stacked([recurrax.gru(4), recurrax.mingru(5)]),
    "stacked_bidirectional": recurrax.stacked(
        [recurrax.gru(4), recurrax.gru(4)],
        bidirectional_merge="concat",
        variational=recurrax.VariationalDropout(0.1, 0.1, 0.2),
    ),
    "residual_block": recurrax.residual_block(recurrax.mamba(D, d_state=2), D, glu=False),
}


def shapes_and_dtypes(tree):
    return jax.tree.structure(tree), [(a.shape, a.dtype) for a in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", list(LAYERS))
def test_initial_carry_has_the_structure_that_apply_takes_and_returns(name):
    layer = LAYERS[name]
    xs = example_inputs(2, 5, D)[0]
    params = layer.init(jax.random.key(0), D)
    carry0 = layer.initial_carry((2,))
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(carry0))
    carry, _ = layer.apply(params, xs, initial_carry=carry0, key=jax.random.key(1), train=True)
    assert shapes_and_dtypes(carry) == shapes_and_dtypes(carry0)
    assert shapes_and_dtypes(layer.initial_carry((2,), jnp.float64))[1][0][1] == jnp.float64
    if name != "learned":  # (a learned carry starts elsewhere when none is given)
        assert_trees_close(layer.apply(params, xs, initial_carry=carry0), layer.apply(params, xs))


def test_stacked_bidirectional_gru_threads_truncated_bptt_with_one_compilation():
    layer = recurrax.stacked([recurrax.gru(4), recurrax.gru(4)], bidirectional_merge="concat")
    params = layer.init(jax.random.key(0), D)
    xs, _, resets = example_inputs(2, 5 * 4, D)

    @jax.jit
    def train_chunk(params, carry, xs, resets):
        def loss(params):
            new_carry, ys = layer.apply(
                params, xs, resets=resets, initial_carry=carry, reset_carry=zeros
            )
            return jnp.mean(ys**2), new_carry

        (value, new_carry), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return value, grads, jax.lax.stop_gradient(new_carry)

    zeros = layer.initial_carry((2,))
    carry = zeros
    for chunk in range(5):
        steps = slice(4 * chunk, 4 * chunk + 4)
        value, _, carry = train_chunk(params, carry, xs[:, steps], resets[:, steps])
        assert np.isfinite(float(value))
    assert train_chunk._cache_size() == 1


def test_truncated_chunks_of_a_causal_stack_equal_one_pass():
    layer = recurrax.stacked([recurrax.lstm(4), recurrax.lru(4, 4)], residual=True)
    params = layer.init(jax.random.key(0), D)
    xs, _, resets = example_inputs(2, 12, D)
    whole_carry, whole = layer.apply(params, xs, resets=resets)
    apply = jax.jit(layer.apply)
    carry, zeros, outputs = layer.initial_carry((2,)), layer.initial_carry((2,)), []
    for start in range(0, 12, 3):
        carry, ys = apply(
            params, xs[:, start : start + 3], resets=resets[:, start : start + 3],
            initial_carry=carry, reset_carry=zeros,
        )  # fmt: skip
        outputs.append(ys)
    assert_trees_close(jnp.concatenate(outputs, axis=1), whole, atol=1e-5)
    assert_trees_close(carry, whole_carry, atol=1e-5)


# --- a custom cell --------------------------------------------------------------------------------


def build_md_example():
    """Runs the custom-cell example of BUILD.md and returns its namespace."""
    text = (REPO / "BUILD.md").read_text()
    section = text.split("### A cell of your own", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(compile(code, "BUILD.md", "exec"), namespace)
    return namespace


def indrnn_loop(params, xs, length, reverse):
    """IndRNN over one sequence's real steps, in a Python loop."""
    W, u, b = (np.asarray(params[k], np.float64) for k in ("W", "u", "b"))
    h, ys = np.zeros(u.shape), np.zeros((xs.shape[0], u.shape[0]))
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        h = np.maximum(xs[t] @ W + u * h + b, 0.0)
        ys[t] = h
    return h, ys


def test_custom_cell_example_of_build_md_equals_a_python_loop():
    example = build_md_example()
    cell, params, xs = example["cell"], example["params"], np.asarray(example["xs"], np.float64)
    lengths = [20, 15, 9, 1]
    for reverse in (False, True):
        h, ys = recurrax.unroll(
            cell, params, jnp.asarray(xs), lengths=jnp.array(lengths), reverse=reverse
        )
        for b, length in enumerate(lengths):
            h_b, ys_b = indrnn_loop(params, xs[b], length, reverse)
            np.testing.assert_allclose(np.asarray(h[b]), h_b, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.asarray(ys[b]), ys_b, rtol=1e-5, atol=1e-6)
    assert_trees_close(example["h"], recurrax.unroll(
        cell, params, example["xs"], lengths=jnp.array(lengths), reverse=True
    )[0])  # fmt: skip
    assert recurrax.param_count(cell, 8) == 8 * 32 + 32 + 32
    with pytest.raises(ValueError, match=r"xs must have 8 features \(the cell's input size\)"):
        recurrax.unroll(cell, params, jnp.ones((1, 3, 5), jnp.float32))


def test_custom_cell_errors_name_the_missing_piece():
    example = build_md_example()
    cell = example["cell"]
    with pytest.raises(ValueError, match="hidden_size must be given when initial_carry is not"):
        recurrax.custom_cell(cell.step, cell.init, output_size=4)
    with pytest.raises(TypeError, match="initial_carry must return a pytree of floating"):
        recurrax.custom_cell(
            cell.step, cell.init, output_size=4, initial_carry=lambda shape=(), dtype=None:
            jnp.zeros((*shape, 4), jnp.int32),
        )  # fmt: skip
    broken = cell._replace(step=None)
    with pytest.raises(TypeError, match=r"cell.step must be a function step\(params, carry, x\)"):
        recurrax.unroll(broken, example["params"], example["xs"])
    with pytest.raises(TypeError, match=r"cell.init must be a function"):
        recurrax.recurrent(cell._replace(init=None))
    # The optional pieces may be left out of a Cell built directly.
    bare = recurrax.Cell("bare", 32, 32, cell.init, cell.initial_carry, cell.step)
    assert_trees_close(
        recurrax.unroll(bare, example["params"], example["xs"]),
        recurrax.unroll(cell, example["params"], example["xs"]),
    )
    with pytest.raises(ValueError, match="cell must define recurrent_matrices"):
        recurrax.recurrent_spectrum(bare, example["params"])


# --- forward-mode autodiff ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "lru", "mamba2"])
def test_jvp_through_the_step_path_and_a_clear_error_on_custom_vjp_paths(name):
    cell, width = CELLS[name], WIDTH.get(name, D)
    params = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a,
                          cell.init(jax.random.key(0), width))  # fmt: skip
    xs, lengths, resets = example_inputs(2, 6, width)
    xs = xs.astype(jnp.float64)
    tangent = jax.random.normal(jax.random.key(7), xs.shape, jnp.float64)

    def outputs(xs, method):
        ys = recurrax.unroll(cell, params, xs, lengths=lengths, resets=resets, method=method)[1]
        return jnp.real(ys)

    _, jvp = jax.jvp(lambda x: outputs(x, "step"), (xs,), (tangent,))
    eps = 1e-6
    numeric = (outputs(xs + eps * tangent, "step") - outputs(xs - eps * tangent, "step")) / (
        2 * eps
    )
    np.testing.assert_allclose(np.asarray(jvp), np.asarray(numeric), rtol=1e-5, atol=1e-7)
    default = paths.resolve(cell, params, 2, 6, None, None).method
    with pytest.raises(
        TypeError, match=f"method={default!r} has a custom VJP.*needs method='step'"
    ):
        jax.jvp(lambda x: outputs(x, None), (xs,), (tangent,))


# --- the package's surface ------------------------------------------------------------------------


def test_submodules_are_attributes_and_import_lazily():
    for name in ("nn", "optim", "models", "train", "tasks", "paths", "kernels", "checkpoint"):
        assert name in dir(recurrax)
    assert recurrax.nn.Recurrent is not None and recurrax.optim.recurrence_param_labels
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        recurrax.nope
    probe = (
        "import sys, recurrax\n"
        "assert 'flax' not in sys.modules and 'optax' not in sys.modules, 'eager heavy import'\n"
        "assert 'orbax' not in sys.modules\n"
        "recurrax.nn.NNXRecurrent; recurrax.train\n"
        "assert 'flax' in sys.modules and 'optax' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


def test_masks_and_resets_must_be_boolean():
    cell = recurrax.gru(4)
    params = cell.init(jax.random.key(0), D)
    xs = example_inputs(2, 4, D)[0]
    for name in ("mask", "resets"):
        with pytest.raises(TypeError, match=f"{name} must be a boolean array; got dtype int32"):
            recurrax.unroll(cell, params, xs, **{name: jnp.ones((2, 4), jnp.int32)})
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        recurrax.pool_mean(xs, mask=jnp.ones((2, 4), jnp.int32))


def test_embedding_and_dense_init_take_the_input_size():
    emb = recurrax.embedding(7, 3)
    assert_trees_close(emb.init(jax.random.key(0)), emb.init(jax.random.key(0), 7))
    with pytest.raises(ValueError, match=r"input_size must equal vocab_size \(7\)"):
        emb.init(jax.random.key(0), 8)
    assert recurrax.dense(2).init(jax.random.key(0), 5)["W"].shape == (5, 2)
    assert recurrax.attention_pooling(4).init(jax.random.key(0), 6)["W"].shape == (6, 4)


@pytest.mark.parametrize("name", ["lstm", "lru", "mamba", "mamba2", "mingru"])
def test_bfloat16_params_and_inputs_give_float32_outputs_and_carries(name):
    """As the unroll docstring says: the recurrence runs in float32 (complex64 for lru)."""
    cell, width = CELLS[name], WIDTH.get(name, D)
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16) if a.dtype == jnp.float32 else a,
                          cell.init(jax.random.key(0), width))  # fmt: skip
    xs = example_inputs(2, 4, width)[0].astype(jnp.bfloat16)
    with jax.numpy_dtype_promotion("standard"):  # (bfloat16 params meet the float32 carry)
        carry, ys = jax.jit(lambda p, x: recurrax.unroll(cell, p, x))(params, xs)
    assert ys.dtype == jnp.float32
    expected = jnp.complex64 if name == "lru" else jnp.float32
    assert {leaf.dtype for leaf in jax.tree.leaves(carry)} == {jnp.dtype(expected)}


def test_export_example_of_the_readme_runs():
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text.split("## Export", 1)[1], re.DOTALL).group(1)
    namespace = {}
    with jax.numpy_dtype_promotion("standard"), jax.enable_x64(False):
        exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["ys"].shape == (3, 50, 64)
