"""Decoding: greedy, sampling and beam search against Python-loop references and brute force.

The models are tiny and written here, each with a numpy twin that gives the next-token
log-probabilities of one sequence: a random bigram table (the cache is a dummy), one bigram table
per example (carried in the cache), a random tanh RNN whose cache is a real carry plus a
per-example context (as an encoder–decoder's would be, so beam search must reorder it), and a table
indexed by position and previous token for hand-made cases.
Beam search with a beam wide enough to hold every hypothesis must find what enumerating every
sequence finds.
"""

import doctest
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax import decoding
from recurrax.decoding import beam_search, decode, filter_logits, greedy, sample
from recurrax.text.special_tokens import EOS, PAD, SOS
from test_docstrings import default_jax_settings

V = 5  # tokens 0..4: PAD, UNK, SOS, EOS and one more; none is forbidden to the models


def log_softmax(x):
    x = np.asarray(x, np.float64)
    finite_max = np.max(x)
    with np.errstate(divide="ignore"):
        return x - finite_max - np.log(np.sum(np.exp(x - finite_max)))


class Bigram:
    """logits = table[previous token]; the cache is a dummy ``(N, 1)`` array."""

    def __init__(self, seed, eos_bias=0.0, vocab=V):
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(vocab, vocab))
        self.table[:, EOS] += eos_bias

    @classmethod
    def from_table(cls, table):
        model = cls(seed=0, vocab=len(table))
        model.table = np.asarray(table)
        return model

    def step_fn(self, cache, tokens):
        return cache, jnp.asarray(self.table)[tokens]

    def cache(self, batch):
        return jnp.zeros((batch, 1))

    def start(self):
        return None

    def next(self, state, token, position):
        return None, log_softmax(self.table[token])


class Tables:
    """A bigram model per example: the cache holds each row's own table ``(N, V, V)``."""

    def __init__(self, seed, batch, eos_bias=0.0, vocab=V):
        rng = np.random.default_rng(seed)
        self.tables = rng.normal(size=(batch, vocab, vocab))
        self.tables[:, :, EOS] += eos_bias

    def step_fn(self, cache, tokens):
        rows = jnp.take_along_axis(cache["table"], tokens[:, None, None], axis=1)
        return cache, rows[:, 0]

    def cache(self, batch):
        return {"table": jnp.asarray(self.tables[:batch])}


class TinyRNN:
    """``h' = tanh(E[token] + h U + b)``, logits ``(h' + context) O``; cache {"h", "context"}."""

    def __init__(self, seed, hidden=3, batch=3, eos_bias=0.0, vocab=V):
        rng = np.random.default_rng(seed)
        self.E = rng.normal(size=(vocab, hidden))
        self.U = rng.normal(size=(hidden, hidden))
        self.b = rng.normal(size=hidden)
        self.O = 2 * rng.normal(size=(hidden, vocab))
        self.O[:, EOS] = 0.0
        self.eos_bias = np.zeros(vocab)
        self.eos_bias[EOS] = eos_bias
        self.h0 = rng.normal(size=(batch, hidden))
        self.context = rng.normal(size=(batch, hidden))

    def step_fn(self, cache, tokens):
        E, U, b, O = (jnp.asarray(a) for a in (self.E, self.U, self.b, self.O))
        h = jnp.tanh(E[tokens] + cache["h"] @ U + b[None, :])
        logits = (h + cache["context"]) @ O + jnp.asarray(self.eos_bias)[None, :]
        return {"h": h, "context": cache["context"]}, logits

    def cache(self, batch):
        return {"h": jnp.asarray(self.h0[:batch]), "context": jnp.asarray(self.context[:batch])}


class RNNExample:
    """The numpy twin of one example of a TinyRNN."""

    def __init__(self, rnn, b):
        self.rnn, self.b = rnn, b

    def start(self):
        return self.rnn.h0[self.b]

    def next(self, h, token, position):
        r = self.rnn
        h = np.tanh(r.E[token] + h @ r.U + r.b)
        return h, log_softmax((h + r.context[self.b]) @ r.O + r.eos_bias)


def twin(model, b):
    """The numpy reference of example ``b``."""
    if isinstance(model, TinyRNN):
        return RNNExample(model, b)
    if isinstance(model, Tables):
        return Bigram.from_table(model.tables[b])
    return model


class ByPosition:
    """Next-token probabilities ``probs[position, previous token]`` (zeros allowed: -inf logits);
    the cache is each row's position."""

    def __init__(self, probs):
        self.probs = np.asarray(probs, np.float64)
        with np.errstate(divide="ignore"):
            self.logits = np.log(self.probs)

    def step_fn(self, cache, tokens):
        position = cache["position"]
        logits = jnp.asarray(self.logits)[position, tokens]
        return {"position": position + 1}, logits

    def cache(self, batch):
        return {"position": jnp.zeros((batch,), jnp.int32)}

    def start(self):
        return None

    def next(self, state, token, position):
        return None, log_softmax(self.logits[position, token])


def by_position(max_length, rows, vocab=V):
    """``rows[t]`` maps previous token -> {next token: probability}; missing tokens get 0."""
    probs = np.zeros((max_length, vocab, vocab))
    for t, row in enumerate(rows):
        for previous, distribution in row.items():
            for token, p in distribution.items():
                probs[t, previous, token] = p
    return ByPosition(probs)


# ----------------------------------------------------------------------------- references


def length_divisor(length, penalty, alpha):
    if penalty == "none":
        return 1.0
    if penalty == "average":
        return length**alpha
    return ((5 + length) / 6) ** alpha


def every_hypothesis(reference, max_length, min_length=0):
    """Every complete hypothesis of non-zero probability: (tokens, log-probability), ending in
    EOS or cut at max_length."""
    found = []

    def grow(prefix, state, fed, total):
        state, log_probs = reference.next(state, fed, len(prefix))
        for token in range(len(log_probs)):
            if not np.isfinite(log_probs[token]) or (token == EOS and len(prefix) < min_length):
                continue
            sequence, score = (*prefix, token), total + log_probs[token]
            if token == EOS or len(sequence) == max_length:
                found.append((sequence, score))
            else:
                grow(sequence, state, token, score)

    grow((), reference.start(), SOS, 0.0)
    return found


def brute_force_best(reference, max_length, n, penalty, alpha, min_length=0):
    """The n best (tokens, log-probability, normalised score), best first."""
    scored = [
        (sequence, total, total / length_divisor(len(sequence), penalty, alpha))
        for sequence, total in every_hypothesis(reference, max_length, min_length)
    ]
    return sorted(scored, key=lambda item: -item[2])[:n]


def greedy_reference(reference, max_length, min_length=0):
    state, fed, tokens, total = reference.start(), SOS, [], 0.0
    for t in range(max_length):
        state, log_probs = reference.next(state, fed, t)
        allowed = log_probs.copy()
        if t < min_length:
            allowed[EOS] = -np.inf
        fed = int(np.argmax(allowed))
        tokens.append(fed)
        total += log_probs[fed]
        if fed == EOS:
            break
    return tokens, total


def sequence_log_prob(reference, tokens):
    state, fed, total = reference.start(), SOS, 0.0
    for t, token in enumerate(tokens):
        state, log_probs = reference.next(state, fed, t)
        total += log_probs[token]
        fed = token
    return total


def padded(tokens, max_length):
    return list(tokens) + [PAD] * (max_length - len(tokens))


def assert_hypotheses_equal(output, b, expected, max_length):
    """``output`` (a BeamOutput) for example b holds ``expected`` (brute_force_best) in order."""
    for i, (sequence, total, score) in enumerate(expected):
        assert output.tokens[b, i].tolist() == padded(sequence, max_length), (i, sequence)
        assert int(output.lengths[b, i]) == len(sequence)
        np.testing.assert_allclose(float(output.log_probs[b, i]), total, rtol=1e-10)
        np.testing.assert_allclose(float(output.scores[b, i]), score, rtol=1e-10)


# ----------------------------------------------------------------------------- greedy


@pytest.mark.parametrize("min_length", [0, 3])
def test_greedy_equals_a_python_loop_per_example(min_length):
    model, max_length = TinyRNN(seed=1, eos_bias=1.5), 6
    out = greedy(model.step_fn, model.cache(3), max_length=max_length, min_length=min_length)
    assert out.tokens.shape == (3, max_length) and out.tokens.dtype == jnp.int32
    for b in range(3):
        tokens, total = greedy_reference(twin(model, b), max_length, min_length)
        assert out.tokens[b].tolist() == padded(tokens, max_length)
        assert int(out.lengths[b]) == len(tokens)
        np.testing.assert_allclose(float(out.scores[b]), total, rtol=1e-10)
        assert EOS not in tokens[:min_length]
    assert int(out.steps) == max(int(length) for length in out.lengths)


def test_greedy_stops_once_every_sequence_has_ended_and_pads_after_eos():
    model = by_position(
        6,
        [
            {SOS: {4: 0.9, EOS: 0.1}},
            {4: {EOS: 0.8, 4: 0.2}},
            *[{4: {4: 1.0}, EOS: {4: 1.0}, PAD: {4: 1.0}}] * 4,
        ],
    )
    out = greedy(model.step_fn, model.cache(2), max_length=6)
    assert out.tokens.tolist() == [[4, EOS, PAD, PAD, PAD, PAD]] * 2
    assert out.lengths.tolist() == [2, 2] and int(out.steps) == 2
    np.testing.assert_allclose(out.scores, np.log(0.9 * 0.8) * np.ones(2), rtol=1e-12)
    # Without <eos> the sequence runs to max_length and its length is max_length.
    out = greedy(model.step_fn, model.cache(1), max_length=6, min_length=6)
    assert out.tokens.tolist() == [[4] * 6] and out.lengths.tolist() == [6]
    assert int(out.steps) == 6


# ----------------------------------------------------------------------------- filtering


def filter_reference(logits, temperature, top_k, top_p):
    """Which tokens survive, computed one rule at a time in plain numpy."""
    logits = np.asarray(logits, np.float64)
    kept = np.ones(len(logits), bool)
    if temperature == 0:
        kept[:] = False
        kept[int(np.argmax(logits))] = True
        return kept
    z = logits / temperature
    order = sorted(range(len(z)), key=lambda v: (-z[v], v))
    if top_k is not None:
        kept[:] = False
        kept[order[:top_k]] = True
    if top_p is not None:
        q = np.where(kept, np.exp(z - z.max()), 0.0)
        q /= q.sum()
        mass, nucleus = 0.0, np.zeros_like(kept)
        for v in order:
            if mass >= top_p - 1e-12 or not kept[v]:
                break
            nucleus[v] = True
            mass += q[v]
        kept = nucleus
    return kept


PROBS = np.array([0.125, 0.5, 0.0625, 0.25, 0.0625])  # sorted: 1 (.5), 3 (.25), 0 (.125), 2, 4


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize(
    "top_k, top_p, kept",
    [
        (None, 0.01, {1}),
        (None, 0.5, {1}),  # 0.5 reaches 0.5 exactly: nothing after it
        (None, 0.5001, {1, 3}),  # the token that crosses p is kept
        (None, 0.75, {1, 3}),
        (None, 0.8, {1, 3, 0}),
        (None, 0.875, {1, 3, 0}),
        (None, 0.9, {0, 1, 2, 3}),  # the tie between 2 and 4 goes to the lower id
        (None, 1.0, {0, 1, 2, 3, 4}),
        (2, None, {1, 3}),
        (2, 0.6, {1}),  # top-k first: renormalised, token 1 alone has 2/3 >= 0.6
        (3, 0.6, {1, 3}),  # 0.5 / 0.875 = 0.571 < 0.6
        (5, 1.0, {0, 1, 2, 3, 4}),
    ],
)
def test_filter_logits_keeps_exactly_the_smallest_set_reaching_p(top_k, top_p, kept, dtype):
    logits = jnp.log(jnp.asarray(PROBS, dtype))
    filtered = filter_logits(logits, top_k=top_k, top_p=top_p)
    assert set(np.flatnonzero(np.isfinite(filtered)).tolist()) == kept
    assert filtered.dtype == dtype
    finite = np.isfinite(filtered)
    np.testing.assert_array_equal(np.asarray(filtered)[finite], np.asarray(logits)[finite])


def test_filter_logits_matches_a_reference_on_random_logits():
    rng = np.random.default_rng(0)
    settings = [(1.0, None, None), (0.5, None, 0.7), (2.0, 3, None), (0.7, 4, 0.8), (0.0, 2, 0.5)]
    for temperature, top_k, top_p in settings:
        logits = rng.normal(size=(8, 7)) * 2
        filtered = filter_logits(
            jnp.asarray(logits), temperature=temperature, top_k=top_k, top_p=top_p
        )
        for row in range(8):
            expected = filter_reference(logits[row], temperature, top_k, top_p)
            np.testing.assert_array_equal(np.isfinite(filtered[row]), expected)
            scale = 1.0 if temperature == 0 else temperature
            np.testing.assert_allclose(filtered[row][expected], logits[row][expected] / scale)


def test_filter_logits_ties_and_temperature_zero_keep_the_argmax():
    logits = jnp.array([1.0, 2.0, 2.0, 0.0])
    assert np.isfinite(filter_logits(logits, top_k=1)).tolist() == [False, True, False, False]
    zero = filter_logits(logits, temperature=0.0, top_p=0.9)
    assert np.isfinite(zero).tolist() == [False, True, False, False]
    assert float(zero[1]) == 2.0
    np.testing.assert_allclose(filter_logits(logits, temperature=2.0), logits / 2)


# ----------------------------------------------------------------------------- sampling


def test_top_k_one_and_temperature_zero_sample_equal_greedy():
    model, max_length = TinyRNN(seed=2, eos_bias=1.0), 7
    expected = greedy(model.step_fn, model.cache(3), max_length=max_length, min_length=2)
    for options in ({"top_k": 1}, {"temperature": 0.0}, {"top_k": 1, "temperature": 3.0}):
        out = sample(
            model.step_fn,
            model.cache(3),
            jax.random.key(5),
            max_length=max_length,
            min_length=2,
            **options,
        )
        for a, e in zip(out, expected, strict=True):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize(
    "temperature, top_k, top_p", [(0.7, 3, None), (1.0, None, 0.8), (1.5, 4, 0.9)]
)
def test_sampling_frequencies_match_the_truncated_distribution(temperature, top_k, top_p):
    draws = 20000
    logits = np.array([0.3, 1.2, -0.4, 0.8, 0.1, 1.0])
    model = by_position(1, [{}], vocab=6)
    model.logits[0, SOS] = logits

    def first_token(key):
        out = sample(
            model.step_fn,
            model.cache(1),
            key,
            max_length=1,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        return out.tokens[0, 0]

    keys = jax.random.split(jax.random.key(0), draws)
    tokens = jax.jit(jax.vmap(first_token))(keys)
    frequencies = np.bincount(np.asarray(tokens), minlength=6) / draws
    kept = filter_reference(logits, temperature, top_k, top_p)
    expected = np.where(kept, np.exp(logits / temperature), 0.0)
    expected /= expected.sum()
    assert np.all(frequencies[~kept] == 0)
    assert np.max(np.abs(frequencies - expected)) < 0.015, (frequencies, expected)


def test_a_fixed_key_repeats_and_different_keys_differ():
    model = Bigram(seed=3)
    cache = model.cache(4)
    run = jax.jit(lambda key: sample(model.step_fn, cache, key, max_length=8, top_p=0.95))
    first, again, other = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.tokens, other.tokens)


def test_samples_end_at_eos_with_pad_after_and_their_model_scores():
    model, max_length, min_length = TinyRNN(seed=4, batch=40, eos_bias=1.0), 6, 2
    out = sample(
        model.step_fn,
        model.cache(40),
        jax.random.key(7),
        max_length=max_length,
        min_length=min_length,
        temperature=1.3,
        top_k=4,
    )
    ended = 0
    for b in range(40):
        row = out.tokens[b].tolist()
        length = int(out.lengths[b])
        if EOS in row:
            ended += 1
            assert row.index(EOS) + 1 == length
            assert row[length:] == [PAD] * (max_length - length)
        else:
            assert length == max_length
        assert EOS not in row[:min_length]
        # Scores are the model's log-probabilities, not the filtered distribution's.
        expected = sequence_log_prob(twin(model, b), row[:length])
        np.testing.assert_allclose(float(out.scores[b]), expected, rtol=1e-10)
    assert 0 < ended < 40


# ----------------------------------------------------------------------------- beam search


@pytest.mark.parametrize("model", [Bigram(seed=5, eos_bias=0.5), TinyRNN(seed=6, eos_bias=1.0)])
def test_beam_size_one_equals_greedy(model):
    for min_length in (0, 2):
        expected = greedy(model.step_fn, model.cache(3), max_length=6, min_length=min_length)
        out = beam_search(
            model.step_fn, model.cache(3), beam_size=1, max_length=6, min_length=min_length
        )
        np.testing.assert_array_equal(out.tokens[:, 0], expected.tokens)
        np.testing.assert_array_equal(out.lengths[:, 0], expected.lengths)
        np.testing.assert_allclose(out.log_probs[:, 0], expected.scores, rtol=1e-12)
        np.testing.assert_allclose(out.scores[:, 0], expected.scores, rtol=1e-12)


MAX_LENGTH = 4
# Every prefix of V=5 tokens fits: (V - 1)^3 * V = 320 candidates at the last step.
WIDE = 320


@pytest.mark.parametrize("model_name", ["bigram", "rnn"])
@pytest.mark.parametrize(
    "length_penalty, alpha, min_length",
    [
        ("none", None, 0),
        ("average", None, 0),
        ("gnmt", None, 0),
        ("average", 0.5, 2),
        ("gnmt", 2.0, 1),
    ],
)
def test_a_wide_beam_finds_the_brute_force_n_best(model_name, length_penalty, alpha, min_length):
    model = Bigram(seed=7, eos_bias=1.0) if model_name == "bigram" else TinyRNN(seed=8)
    n = 12
    out = beam_search(
        model.step_fn,
        model.cache(2),
        beam_size=WIDE,
        max_length=MAX_LENGTH,
        length_penalty=length_penalty,
        alpha=alpha,
        min_length=min_length,
        num_return=n,
    )
    assert out.tokens.shape == (2, n, MAX_LENGTH)
    a = decoding.DEFAULT_ALPHA[length_penalty] if alpha is None else alpha
    for b in range(2):
        expected = brute_force_best(twin(model, b), MAX_LENGTH, n, length_penalty, a, min_length)
        assert_hypotheses_equal(out, b, expected, MAX_LENGTH)
    # The brute force ranks some hypotheses cut at max_length and some ended by EOS.
    assert {int(x) for x in out.lengths.ravel()} != {MAX_LENGTH}


@pytest.mark.parametrize(
    "model", [Tables(seed=9, batch=4, eos_bias=0.5), TinyRNN(seed=10, batch=4, eos_bias=0.5)]
)
def test_a_batch_decodes_as_each_example_alone_and_under_jit(model):
    batch = 4
    options = {"beam_size": 3, "max_length": 6, "length_penalty": "gnmt", "num_return": 2}
    together = beam_search(model.step_fn, model.cache(batch), **options)
    run = jax.jit(lambda cache: beam_search(model.step_fn, cache, **options))
    for a, e in zip(run(model.cache(batch)), together, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-12)
    for b in range(batch):
        alone = run(jax.tree.map(lambda x: x[b : b + 1], model.cache(batch)))
        for field in ("tokens", "lengths", "scores", "log_probs"):
            np.testing.assert_allclose(
                getattr(alone, field)[0], getattr(together, field)[b], rtol=1e-12
            )
        for i in range(2):
            length = int(together.lengths[b, i])
            tokens = together.tokens[b, i, :length].tolist()
            expected = sequence_log_prob(twin(model, b), tokens)
            np.testing.assert_allclose(float(together.log_probs[b, i]), expected, rtol=1e-10)


def test_greedy_and_sample_decode_a_batch_as_each_example_alone_under_jit():
    model = TinyRNN(seed=11, batch=3, eos_bias=0.8)
    run_greedy = jax.jit(lambda cache: greedy(model.step_fn, cache, max_length=5))
    run_sample = jax.jit(
        lambda cache, key: sample(model.step_fn, cache, key, max_length=5, top_k=3)
    )
    together = run_greedy(model.cache(3))
    drawn = run_sample(model.cache(3), jax.random.key(0))
    for b in range(3):
        alone = run_greedy(jax.tree.map(lambda x: x[b : b + 1], model.cache(3)))
        np.testing.assert_array_equal(alone.tokens[0], together.tokens[b])
        np.testing.assert_allclose(alone.scores[0], together.scores[b], rtol=1e-12)
        length = int(drawn.lengths[b])
        expected = sequence_log_prob(twin(model, b), drawn.tokens[b, :length].tolist())
        np.testing.assert_allclose(float(drawn.scores[b]), expected, rtol=1e-10)


def short_or_long_model():
    """(EOS) has probability 0.4, (4, EOS) 0.6 * 0.55 = 0.33, (4, 4, EOS) 0.6 * 0.45 * 0.55."""
    return by_position(
        3,
        [
            {SOS: {EOS: 0.4, 4: 0.6}},
            {4: {EOS: 0.55, 4: 0.45}},
            {4: {EOS: 0.55, 4: 0.45}},
        ],
    )


@pytest.mark.parametrize(
    "length_penalty, alpha, best",
    [
        ("none", None, [(EOS,), (4, EOS)]),
        ("average", 1.0, [(4, EOS), (4, 4, EOS)]),
        ("gnmt", 2.0, [(4, EOS), (EOS,)]),
        ("gnmt", 0.6, [(EOS,), (4, EOS)]),  # too weak to overturn 0.4 vs 0.33
    ],
)
def test_length_penalties_rank_by_their_formulas(length_penalty, alpha, best):
    model = short_or_long_model()
    out = beam_search(
        model.step_fn,
        model.cache(1),
        beam_size=2,
        max_length=3,
        length_penalty=length_penalty,
        alpha=alpha,
    )
    probability = {(EOS,): 0.4, (4, EOS): 0.33, (4, 4, EOS): 0.6 * 0.45 * 0.55}
    a = decoding.DEFAULT_ALPHA[length_penalty] if alpha is None else alpha
    for i, sequence in enumerate(best):
        length = len(sequence)
        assert out.tokens[0, i].tolist() == padded(sequence, 3)
        log_prob = np.log(probability[sequence])
        divisor = {"none": 1.0, "average": length**a, "gnmt": ((5 + length) / 6) ** a}
        np.testing.assert_allclose(float(out.log_probs[0, i]), log_prob, rtol=1e-12)
        np.testing.assert_allclose(
            float(out.scores[0, i]), log_prob / divisor[length_penalty], rtol=1e-12
        )


def test_early_stopping_bounds_a_live_beam_by_the_penalty_at_max_length():
    """With K=1 and "average", (4, EOS) finishes at step 2 with log(.33)/2 = -0.554 while the
    live (4, 4) has log(.27) = -1.309: divided by its current length that bound (-0.654) would
    stop the search, but divided by lp(max_length) = 3 it is -0.436, and indeed
    (4, 4, EOS) at log(.27 * .999)/3 = -0.437 wins."""
    model = by_position(
        3,
        [
            {SOS: {EOS: 0.4, 4: 0.6}},
            {4: {EOS: 0.55, 4: 0.45}},
            {4: {EOS: 0.999, 4: 0.001}},
        ],
    )
    out = beam_search(
        model.step_fn, model.cache(1), beam_size=1, max_length=3, length_penalty="average"
    )
    assert out.tokens[0, 0].tolist() == [4, 4, EOS]
    assert int(out.steps) == 3
    np.testing.assert_allclose(float(out.scores[0, 0]), np.log(0.6 * 0.45 * 0.999) / 3)


@pytest.mark.parametrize(
    "length_penalty, alpha", [("none", None), ("average", 0.5), ("gnmt", 1.0), ("gnmt", 1.5)]
)
def test_early_stopping_changes_nothing_but_the_number_of_steps(length_penalty, alpha):
    model, max_length = Tables(seed=20, batch=4, eos_bias=2.5, vocab=6), 10
    results = [
        beam_search(
            model.step_fn,
            model.cache(4),
            beam_size=3,
            max_length=max_length,
            length_penalty=length_penalty,
            alpha=alpha,
            early_stopping=early_stopping,
        )
        for early_stopping in (True, False)
    ]
    for field in ("tokens", "lengths", "scores", "log_probs"):
        np.testing.assert_array_equal(getattr(results[0], field), getattr(results[1], field))
    assert int(results[1].steps) == max_length
    assert int(results[0].steps) < max_length
    for b in range(4):
        for i in range(3):
            length = int(results[0].lengths[b, i])
            expected = sequence_log_prob(twin(model, b), results[0].tokens[b, i, :length].tolist())
            np.testing.assert_allclose(float(results[0].log_probs[b, i]), expected, rtol=1e-10)


def test_the_loop_stops_as_soon_as_no_live_beam_can_win():
    model = Bigram(seed=0)
    model.table[:, :] = 0.0
    model.table[:, EOS] = 5.0  # <eos> is 0.97 likely after every token
    out = beam_search(model.step_fn, model.cache(2), beam_size=2, max_length=8)
    # Step 1 finishes (<eos>); step 2 finishes the second hypothesis, and every live beam, two
    # tokens of 0.0066 each, is far below both.
    assert int(out.steps) == 2
    assert out.lengths.tolist() == [[1, 2], [1, 2]]


def test_simultaneous_eos_keeps_k_live_beams():
    """At step 2 the two best candidates both end in <eos>, yet the beam keeps two live beams,
    which lead to the two best hypotheses under "average"."""
    model = by_position(
        3,
        [
            {SOS: {0: 0.35, 1: 0.25, 2: 0.2, 4: 0.2}},
            {v: {EOS: 0.6, 4: 0.4} for v in (0, 1, 2, 4)},
            {4: {EOS: 1.0}},
        ],
    )
    out = beam_search(
        model.step_fn, model.cache(1), beam_size=2, max_length=3, length_penalty="average"
    )
    assert out.tokens[0].tolist() == [[0, 4, EOS], [1, 4, EOS]]
    expected = brute_force_best(model, 3, 2, "average", 1.0)
    assert_hypotheses_equal(out, 0, expected, 3)
    # With "none" the two that ended together are the best.
    out = beam_search(model.step_fn, model.cache(1), beam_size=2, max_length=3)
    assert out.tokens[0].tolist() == [[0, EOS, PAD], [1, EOS, PAD]]
    assert_hypotheses_equal(out, 0, brute_force_best(model, 3, 2, "none", 0.0), 3)


def test_hypotheses_cut_at_max_length_fill_the_n_best():
    model = Bigram(seed=1)
    model.table[:, EOS] = -50.0  # <eos> practically never comes
    # 64 beams hold every prefix, so the 4 best are exactly the brute force's.
    out = beam_search(
        model.step_fn, model.cache(2), beam_size=64, max_length=3, min_length=3, num_return=4
    )
    assert out.lengths.tolist() == [[3] * 4] * 2
    assert np.all(np.asarray(out.tokens) != EOS)
    assert np.all(np.diff(np.asarray(out.scores), axis=1) <= 0)
    expected = brute_force_best(model, 3, 4, "none", 0.0, min_length=3)
    assert_hypotheses_equal(out, 0, expected, 3)


def test_fewer_hypotheses_than_slots_leave_empty_slots():
    # Only (4, EOS) and (EOS,) have non-zero probability.
    model = by_position(2, [{SOS: {EOS: 0.3, 4: 0.7}}, {4: {EOS: 1.0}}])
    out = beam_search(model.step_fn, model.cache(1), beam_size=4, max_length=2)
    assert out.tokens[0].tolist() == [[4, EOS], [EOS, PAD], [PAD, PAD], [PAD, PAD]]
    assert out.lengths[0].tolist() == [2, 1, 0, 0]
    assert np.isneginf(np.asarray(out.scores[0, 2:])).all()


def test_min_length_forbids_early_eos_in_beam_search():
    model = Bigram(seed=12, eos_bias=3.0)
    out = beam_search(model.step_fn, model.cache(2), beam_size=3, max_length=6, min_length=3)
    for b, i in itertools.product(range(2), range(3)):
        row = out.tokens[b, i].tolist()
        assert EOS not in row[:3]
        assert int(out.lengths[b, i]) >= 4


# ----------------------------------------------------------------------------- decode


def test_decode_dispatches_by_strategy():
    model = Bigram(seed=13, eos_bias=0.5)
    cache = model.cache(2)
    for strategy, direct in (
        ("greedy", greedy(model.step_fn, cache, max_length=5)),
        ("sample", sample(model.step_fn, cache, jax.random.key(3), max_length=5, top_p=0.9)),
        ("beam", beam_search(model.step_fn, cache, beam_size=2, max_length=5)),
    ):
        options = {"max_length": 5}
        options |= {"sample": {"top_p": 0.9}, "beam": {"beam_size": 2}}.get(strategy, {})
        out = decode(model.step_fn, cache, strategy=strategy, key=jax.random.key(3), **options)
        assert type(out) is type(direct)
        for a, e in zip(out, direct, strict=True):
            np.testing.assert_array_equal(a, e)


# ----------------------------------------------------------------------------- errors


class CountingStep:
    """A bigram step function that counts how often it is traced."""

    def __init__(self):
        self.calls = 0
        self.model = Bigram(seed=0)

    def __call__(self, cache, tokens):
        self.calls += 1
        return self.model.step_fn(cache, tokens)


KEY = jax.random.key(0)
BAD_INPUTS = [
    # (function, keyword arguments, name in the message, needs the vocabulary size)
    (greedy, {"max_length": 0}, "max_length", False),
    (greedy, {"max_length": 4, "min_length": 5}, "min_length", False),
    (greedy, {"max_length": 4, "min_length": -1}, "min_length", False),
    (greedy, {"max_length": 4, "eos_id": V}, "eos_id", True),
    (greedy, {"max_length": 4, "sos_id": -1}, "sos_id", False),
    (beam_search, {"beam_size": 0, "max_length": 4}, "beam_size", False),
    (beam_search, {"beam_size": 2, "max_length": 4, "num_return": 3}, "num_return", False),
    (
        beam_search,
        {"beam_size": 2, "max_length": 4, "length_penalty": "mean"},
        "length_penalty",
        False,
    ),
    (beam_search, {"beam_size": 2, "max_length": 4, "alpha": -0.5}, "alpha", False),
    (beam_search, {"beam_size": 2, "max_length": 0}, "max_length", False),
    (
        beam_search,
        {"beam_size": 2, "max_length": 4, "early_stopping": "yes"},
        "early_stopping",
        False,
    ),
    (sample, {"max_length": 4, "top_p": 0.0}, "top_p", False),
    (sample, {"max_length": 4, "top_p": 1.5}, "top_p", False),
    (sample, {"max_length": 4, "top_k": 0}, "top_k", False),
    (sample, {"max_length": 4, "top_k": V + 1}, "top_k", True),
    (sample, {"max_length": 4, "temperature": -1.0}, "temperature", False),
    (sample, {"max_length": 4, "min_length": 9}, "min_length", False),
]


@pytest.mark.parametrize(
    "function, options, name, needs_vocabulary",
    BAD_INPUTS,
    ids=[f"{f.__name__}-{n}-{i}" for i, (f, _, n, _) in enumerate(BAD_INPUTS)],
)
def test_bad_options_raise_naming_the_argument_before_any_work(
    function, options, name, needs_vocabulary
):
    step_fn = CountingStep()
    arguments = (step_fn, jnp.zeros((2, 1))) + ((KEY,) if function is sample else ())
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        function(*arguments, **options)
    # Only the checks that need V trace step_fn (on shapes), and none runs the decoding loop.
    assert step_fn.calls == (1 if needs_vocabulary else 0)


def test_filter_logits_and_decode_errors_name_the_argument():
    logits = jnp.zeros(4)
    with pytest.raises(ValueError, match=r"^top_k must be"):
        filter_logits(logits, top_k=5)
    with pytest.raises(ValueError, match=r"^top_p must be"):
        filter_logits(logits, top_p=0.0)
    with pytest.raises(ValueError, match=r"^temperature must be"):
        filter_logits(logits, temperature=-0.1)
    step_fn, cache = Bigram(seed=0).step_fn, jnp.zeros((1, 1))
    with pytest.raises(ValueError, match=r"^strategy must be one of"):
        decode(step_fn, cache, strategy="nucleus", max_length=3)
    with pytest.raises(
        ValueError,
        match=r"^decode\(strategy='greedy'\) got unknown option top_q; valid: max_length, "
        r"sos_id, eos_id, min_length$",
    ):
        decode(step_fn, cache, max_length=3, top_q=0.9)
    with pytest.raises(ValueError, match=r"got unknown option beam_size; valid: max_length"):
        decode(step_fn, cache, strategy="sample", key=KEY, max_length=3, beam_size=2)
    with pytest.raises(ValueError, match=r"^key must be"):
        decode(step_fn, cache, strategy="sample", max_length=3)


def test_a_bad_cache_or_step_function_is_named():
    model = Bigram(seed=0)
    with pytest.raises(ValueError, match=r"^cache (leaves )?must"):
        greedy(model.step_fn, {"a": jnp.zeros((2, 1)), "b": jnp.zeros((3, 1))}, max_length=3)
    with pytest.raises(ValueError, match=r"^cache (leaves )?must"):
        greedy(model.step_fn, {}, max_length=3)

    def grows_the_cache(cache, tokens):
        return jnp.concatenate([cache, cache], axis=1), jnp.asarray(model.table)[tokens]

    with pytest.raises(ValueError, match=r"^step_fn must return a cache"):
        beam_search(grows_the_cache, jnp.zeros((2, 1)), beam_size=2, max_length=3)

    def flat_logits(cache, tokens):
        return cache, jnp.asarray(model.table)[tokens].ravel()

    with pytest.raises(ValueError, match=r"^step_fn must return logits of shape \(N=2"):
        greedy(flat_logits, jnp.zeros((2, 1)), max_length=3)


# ----------------------------------------------------------------------------- docs


@pytest.mark.parametrize(
    "name", ["greedy", "sample", "filter_logits", "beam_search", "length_penalty_divisor", "decode"]
)
def test_docstring_examples_run(name):
    function = getattr(decoding, name)
    tests = doctest.DocTestFinder(recurse=False).find(
        function, name, globs={"jax": jax, "jnp": jnp, "np": np, "recurrax": recurrax}
    )
    assert any(t.examples for t in tests)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with default_jax_settings():
        for test in tests:
            runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
