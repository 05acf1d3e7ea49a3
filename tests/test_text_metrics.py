"""Text-generation metrics: BLEU and ROUGE against their reference packages, token scores by hand.

sacreBLEU and rouge-score are the oracles: corpus BLEU, sentence BLEU and the 13a tokeniser must
agree with sacreBLEU 2.6.0, ROUGE with rouge-score 0.1.2, on a generated corpus full of the cases
their rules single out (punctuation, numbers, hyphens, entities, empty and identical outputs).
"""

import contextlib
import doctest
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from recurrax.text import bleu as bleu_module
from recurrax.text import rouge as rouge_module
from recurrax.text import scores as scores_module
from recurrax.text.bleu import SIGNATURE_VERSION, corpus_bleu, sentence_bleu, tokenize_13a
from recurrax.text.rouge import corpus_rouge, rouge_per_pair, rouge_tokenize, sentence_rouge
from recurrax.text.scores import (
    PerplexitySums,
    bits_per_token,
    exact_match,
    exact_match_counts,
    nll_sums,
    perplexity,
    token_accuracy,
    token_accuracy_counts,
)

# --------------------------------------------------------------------------------------------------
# A deterministic corpus

WORDS = [
    "the", "The", "THE", "cat", "cats", "running", "runs", "ran", "dog", "Dogs", "sat", "on",
    "mat", "a", "quickly", "generously", "happiness", "studies", "studying", "state-of-the-art",
    "don't", "it's", "U.S.", "e.g.", "3.5", "1,000", "12-3", "2024", "7-", "$5", "50%", "(", ")",
    '"', "'", "&quot;", "&amp;", "&lt;", "&gt;", "&amp;lt;", "<skipped>", "café", "naïve", "Über",
    "line-\nbreak", "two\nlines", "-", "--", "...", ",", ".", "!", "?", ";", ":", "@home", "a/b",
    "C++", "[x]", "{y}", "#tag", "~", "_", "`", "^", "|", "\\", "x.y", "1.", ".5", "4,", ",6",
]  # fmt: skip
GLUED = {",", ".", "!", "?", ";", ":", "...", ")", "'", '"'}


def random_sentence(rng, length):
    text = ""
    for i in range(length):
        word = WORDS[rng.integers(len(WORDS))]
        # Punctuation often follows a word without a space, as in detokenised text.
        glue = i > 0 and ((word in GLUED and rng.random() < 0.7) or rng.random() < 0.05)
        text += word if glue or i == 0 else " " + word
    u = rng.random()
    if u < 0.1:
        text += " " * int(rng.integers(1, 3))
    elif u < 0.15:
        text += "-\n"  # trailing whitespace is stripped before "-\n" would join lines
    return text


def mutate(rng, sentence):
    """A hypothesis derived from a reference: words dropped, replaced, inserted, swapped."""
    words = sentence.split(" ")
    out = []
    for word in words:
        u = rng.random()
        if u < 0.12:
            continue
        if u < 0.25:
            out.append(WORDS[rng.integers(len(WORDS))])
        elif u < 0.3:
            out.extend([word, WORDS[rng.integers(len(WORDS))]])
        elif u < 0.35:
            out.append(word.lower() if rng.random() < 0.5 else word.upper())
        else:
            out.append(word)
    if len(out) > 2 and rng.random() < 0.3:
        i = int(rng.integers(len(out) - 1))
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def make_corpus(n=300, seed=0):
    """(hypotheses, references stream 1, references stream 2)."""
    rng = np.random.default_rng(seed)
    hyps, refs, refs2 = [], [], []
    for _ in range(n):
        ref = random_sentence(rng, int(rng.integers(1, 25)))
        u = rng.random()
        if u < 0.05:
            hyp = ""
        elif u < 0.12:
            hyp = " ".join(ref.split(" ")[: int(rng.integers(1, 3))])
        elif u < 0.22:
            hyp = ref
        else:
            hyp = mutate(rng, ref)
        hyps.append(hyp)
        refs.append(ref)
        refs2.append(mutate(rng, ref) if rng.random() < 0.9 else ref)
    return hyps, refs, refs2


HYPS, REFS, REFS2 = make_corpus()

TRICKY = [
    "",
    "   ",
    "Hello, world!",
    "It costs $3.50 (or 1,000.5 yen), i.e. 3.5% less.",
    "state-of-the-art 12-3 7- 3-a a-3 -5 5- -",
    "don't it's 'quoted' \"double\" ``tex''",
    "&quot;entities&quot; &amp; &lt;tags&gt; &amp;lt; &AMP; &quot",
    "<skipped> removed<skipped>here",
    "line-\nbreak and two\nlines\n",
    "end with period. and comma, here.",
    "1.2.3 a.b.c 1,2,3 a,b,c .5 5. ,5 5, ..., ,,,",
    "U.S.A. e.g. x.y 10.0.0.1",
    "tabs\tand\u00a0nbsp\u2003em-space",
    "brackets [x] {y} (z) <w> a/b c\\d e|f g^h i_j k`l m~n @o #p",
    "café naïve Über straße",
    "trailing dash- and -leading",
]


def test_tokenize_13a_matches_sacrebleu_token_for_token():
    oracle = Tokenizer13a()
    for text in TRICKY + HYPS + REFS:
        assert tokenize_13a(text) == oracle(text).split(), repr(text)
    assert tokenize_13a("3.5, not 1,000-ish.") == ["3.5", ",", "not", "1,000", "-", "ish", "."]
    with pytest.raises(TypeError, match="text must be a string; got int"):
        tokenize_13a(3)


# --------------------------------------------------------------------------------------------------
# BLEU against sacreBLEU


def oracle_signature(streams=1, **options):
    """sacreBLEU's signature for ``options`` (it is known after scoring), our version field."""
    metric = BLEU(**options)
    metric.corpus_score(["a"], [["a"]] * streams)
    signature = str(metric.get_signature())
    assert signature.endswith(f"|version:{sacrebleu.__version__}")
    return signature.replace(f"version:{sacrebleu.__version__}", f"version:{SIGNATURE_VERSION}")


def assert_same_bleu(ours, theirs, smooth_method="exp", smooth_value=None):
    np.testing.assert_allclose(ours.score, theirs.score, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(ours.precisions, theirs.precisions, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(ours.brevity_penalty, theirs.bp, rtol=1e-9, atol=1e-9)
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    # sacreBLEU reports add-k's counts and totals with k added for n >= 2; ours are the raw ones.
    k = (1.0 if smooth_value is None else smooth_value) if smooth_method == "add-k" else 0.0
    added = np.array([0.0, k, k, k]) if any(theirs.counts) else np.zeros(4)
    np.testing.assert_allclose(np.array(ours.counts) + added, theirs.counts)
    np.testing.assert_allclose(np.array(ours.totals) + added, theirs.totals)


SMOOTHING = [("exp", None), ("none", None), ("floor", None), ("floor", 0.3), ("add-k", None), ("add-k", 2)]  # fmt: skip


@pytest.mark.parametrize("smooth_method, smooth_value", SMOOTHING)
@pytest.mark.parametrize("streams", [1, 2])
def test_corpus_bleu_matches_sacrebleu(smooth_method, smooth_value, streams):
    references = [REFS, REFS2][:streams]
    for lowercase, tokenize, effective_order in [
        (False, "13a", False),
        (True, "13a", True),
        (False, "none", False),
    ]:
        options = dict(
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            lowercase=lowercase,
            tokenize=tokenize,
        )
        ours = corpus_bleu(HYPS, references, effective_order=effective_order, **options)
        theirs = sacrebleu.corpus_bleu(
            HYPS, references, use_effective_order=effective_order, **options
        )
        assert 0 < ours.score < 100
        assert_same_bleu(ours, theirs, smooth_method, smooth_value)
        assert ours.signature == oracle_signature(
            streams, effective_order=effective_order, **options
        )


EDGE_CORPORA = [
    (["", ""], [["a b c", "d e"]]),  # no output at all
    (["x y", "z"], [["a b c", "d e"]]),  # no match at all
    (["a b", "c"], [["a b c", "c d"]]),  # no 3- or 4-grams in the hypotheses
    (["a b c x", "b"], [["a b c d", "b"]]),  # matches up to trigrams only
    (["a b c d e f"], [["a b c"]]),  # longer than the reference: BP = 1
    (["a"], [[""]]),  # empty reference
    (["a b c d", "e f g h"], [["a b c d", "e f g h"], ["a b", "e f g h i"]]),
]


@pytest.mark.parametrize("hyps, refs", EDGE_CORPORA)
def test_corpus_bleu_edge_cases_match_sacrebleu(hyps, refs):
    for smooth_method, smooth_value in SMOOTHING:
        for effective_order in (False, True):
            ours = corpus_bleu(
                hyps,
                refs,
                smooth_method=smooth_method,
                smooth_value=smooth_value,
                effective_order=effective_order,
            )
            theirs = sacrebleu.corpus_bleu(
                hyps,
                refs,
                smooth_method=smooth_method,
                smooth_value=smooth_value,
                use_effective_order=effective_order,
            )
            assert_same_bleu(ours, theirs, smooth_method, smooth_value)


def test_sentence_bleu_matches_sacrebleu():
    rng = np.random.default_rng(1)
    for i in rng.choice(len(HYPS), size=60, replace=False):
        references = [REFS[i], REFS2[i]][: 1 + i % 2]
        ours = sentence_bleu(HYPS[i], references)
        theirs = sacrebleu.sentence_bleu(HYPS[i], references)
        assert_same_bleu(ours, theirs)
        assert ours.signature == oracle_signature(len(references), effective_order=True)
        ours = sentence_bleu(HYPS[i], references, smooth_method="floor", effective_order=False)
        theirs = sacrebleu.sentence_bleu(
            HYPS[i], references, smooth_method="floor", use_effective_order=False
        )
        assert_same_bleu(ours, theirs, "floor")


def test_variable_number_of_references():
    refs2 = [None if i % 3 == 0 else r for i, r in enumerate(REFS2)]
    ours = corpus_bleu(HYPS, [REFS, refs2])
    theirs = sacrebleu.corpus_bleu(HYPS, [REFS, refs2])
    assert_same_bleu(ours, theirs)
    assert ours.signature.startswith("nrefs:var|")


def test_bleu_hand_examples():
    # Identical text scores exactly 100 whatever the smoothing.
    for method in ("exp", "none", "floor", "add-k"):
        result = corpus_bleu(
            ["The cat sat on the mat."], [["The cat sat on the mat."]], smooth_method=method
        )
        np.testing.assert_allclose(result.score, 100.0, rtol=1e-12)
    # p = 5/6, 3/5, 2/4, 1/3 ("the" is clipped to its one reference count); BP = 1.
    result = corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert result.counts == (5, 3, 2, 1) and result.totals == (6, 5, 4, 3)
    np.testing.assert_allclose(result.score, 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # exp smoothing: the first order with no match gets 100 / (2 t_n) = 50.
    result = corpus_bleu(["a b c x"], [["a b c d"]])
    np.testing.assert_allclose(result.precisions, [75.0, 200 / 3, 50.0, 50.0])
    # Closest reference length: 4 and 6 are equally close to 5; the shorter wins. BP = 1 (5 > 4).
    result = corpus_bleu(["a b c d e"], [["a b c d"], ["a b c d e f"]])
    assert result.ref_len == 4 and result.brevity_penalty == 1.0
    # BP = exp(1 - r / c) for a short output.
    result = corpus_bleu(["a b c d"], [["a b c d e f g h"]])
    np.testing.assert_allclose(result.brevity_penalty, math.exp(1 - 8 / 4))
    assert corpus_bleu(["A B C D"], [["a b c d"]], lowercase=True).score == pytest.approx(100.0)
    assert corpus_bleu(["A B C D"], [["a b c d"]]).score == 0.0


def test_bleu_rejects_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"references\[1\] must have one reference per hypothesis, length 3 \(as "
        r"hypotheses\); got length 2",
    ):
        corpus_bleu(["a", "b", "c"], [["a", "b", "c"], ["a", "b"]])
    with pytest.raises(TypeError, match=r"references\[0\] must be a reference stream"):
        corpus_bleu(["a", "b"], ["a", "b"])  # one stream passed without its list
    with pytest.raises(TypeError, match="hypotheses must be a sequence of strings; got str"):
        corpus_bleu("a b", [["a b"]])
    with pytest.raises(ValueError, match="hypotheses must be a non-empty sequence"):
        corpus_bleu([], [[]])
    with pytest.raises(TypeError, match=r"hypotheses\[1\] must be a string; got NoneType"):
        corpus_bleu(["a", None], [["a", "b"]])
    with pytest.raises(ValueError, match="references must hold at least one reference stream"):
        corpus_bleu(["a"], [])
    with pytest.raises(ValueError, match="references must give hypothesis 0 at least one"):
        corpus_bleu(["a"], [[None]])
    with pytest.raises(ValueError, match="smooth_method must be one of"):
        corpus_bleu(["a"], [["a"]], smooth_method="add-one")
    with pytest.raises(ValueError, match="smooth_value must be None for smooth_method='exp'"):
        corpus_bleu(["a"], [["a"]], smooth_value=0.1)
    with pytest.raises(ValueError, match="smooth_value must be a positive number; got -1"):
        corpus_bleu(["a"], [["a"]], smooth_method="floor", smooth_value=-1)
    with pytest.raises(ValueError, match="tokenize must be one of"):
        corpus_bleu(["a"], [["a"]], tokenize="intl")
    with pytest.raises(TypeError, match="lowercase must be a bool"):
        corpus_bleu(["a"], [["a"]], lowercase="yes")
    with pytest.raises(TypeError, match="references must be a sequence of reference strings"):
        sentence_bleu("a", "a")
    with pytest.raises(ValueError, match="references must hold at least one reference string"):
        sentence_bleu("a", [])


# --------------------------------------------------------------------------------------------------
# ROUGE against rouge-score

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def multi_line(texts, seed):
    """Joins runs of 1-3 consecutive texts with newlines, so ROUGE-Lsum sees several sentences.

    The runs depend only on ``seed`` and ``len(texts)``: hypotheses and references are grouped
    alike.
    """
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(texts):
        k = int(rng.integers(1, 4))
        out.append("\n".join(texts[i : i + k]))
        i += k
    return out


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_matches_rouge_score(use_stemmer):
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    predictions, references = multi_line(HYPS, seed=2), multi_line(REFS, seed=2)
    assert len(predictions) == len(references)
    per_pair = rouge_per_pair(predictions, references, types=ROUGE_TYPES, use_stemmer=use_stemmer)
    means = corpus_rouge(predictions, references, types=ROUGE_TYPES, use_stemmer=use_stemmer)
    expected = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
    for name in ROUGE_TYPES:
        for field in range(3):
            theirs = np.array([pair[name][field] for pair in expected])
            np.testing.assert_allclose(per_pair[name][field], theirs, atol=1e-12)
            np.testing.assert_allclose(means[name][field], theirs.mean(), atol=1e-9)
        assert 0.1 < means[name].fmeasure < 0.95
    for text in HYPS[:50] + TRICKY:
        assert rouge_tokenize(text, use_stemmer=use_stemmer) == scorer._tokenizer.tokenize(text)


def test_rouge_multiple_references_keep_the_best_per_type():
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    for i in range(40):
        references = [REFS[i], REFS2[i], REFS[i + 1]]
        ours = sentence_rouge(HYPS[i], references, types=ROUGE_TYPES, use_stemmer=True)
        theirs = scorer.score_multi(references, HYPS[i])
        for name in ROUGE_TYPES:
            np.testing.assert_allclose(tuple(ours[name]), tuple(theirs[name]), atol=1e-12)


def test_rouge_hand_examples():
    # LCS("a b c d", "a c b d") = 3 ("a b d" or "a c d").
    s = sentence_rouge("a b c d", "a c b d", types=("rougeL",))["rougeL"]
    assert tuple(s) == (0.75, 0.75, 0.75)
    # Prediction 3 tokens, reference 5, LCS "a c e" = 3: P = 1, R = 3/5, F = 2 * 0.6 / 1.6.
    s = sentence_rouge("a c e", "a b c d e", types=("rougeL",))["rougeL"]
    np.testing.assert_allclose(tuple(s), (1.0, 0.6, 0.75))
    # ROUGE-2: bigrams "a b", "b c" vs "a b", "b d": one shared.
    s = sentence_rouge("A, b c!", "a b d", types=("rouge2",))["rouge2"]
    assert tuple(s) == (0.5, 0.5, 0.5)
    # Clipping: "the" twice in the prediction, once in the reference.
    s = sentence_rouge("the the cat", "the cat", types=("rouge1",))["rouge1"]
    np.testing.assert_allclose(tuple(s), (2 / 3, 1.0, 0.8))
    # Empty sides score 0; the corpus figure is the mean of per-pair scores.
    assert tuple(sentence_rouge("", "a b")["rougeL"]) == (0.0, 0.0, 0.0)
    means = corpus_rouge(["a b", "a b c d"], ["a b", "a x y z"], types=("rouge1",))
    np.testing.assert_allclose(tuple(means["rouge1"]), ((1 + 1 / 4) / 2,) * 3)
    # Stemming only touches tokens longer than 3 characters.
    assert rouge_tokenize("Running runs ran cats", use_stemmer=True) == ["run", "run", "ran", "cat"]


def test_rouge_stemming_without_nltk_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk.stem.porter", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'recurrax\[text\]'"):
        corpus_rouge(["a"], ["a"], use_stemmer=True)
    assert corpus_rouge(["a"], ["a"])["rouge1"].fmeasure == 1.0  # no stemming needs no NLTK


def test_rouge_rejects_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"references must have one entry per prediction, length 2 \(as predictions\); "
        "got length 1",
    ):
        corpus_rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="types must hold only"):
        corpus_rouge(["a"], ["a"], types=("rouge0",))
    with pytest.raises(TypeError, match="types must be a non-empty sequence of ROUGE types"):
        corpus_rouge(["a"], ["a"], types="rougeL")
    with pytest.raises(ValueError, match="predictions must be a non-empty sequence"):
        corpus_rouge([], [])
    with pytest.raises(TypeError, match=r"references\[0\] must be a string or a non-empty"):
        corpus_rouge(["a"], [[]])
    with pytest.raises(TypeError, match=r"predictions\[0\] must be a string; got int"):
        corpus_rouge([1], ["a"])
    with pytest.raises(TypeError, match="use_stemmer must be a bool"):
        corpus_rouge(["a"], ["a"], use_stemmer=1)


# --------------------------------------------------------------------------------------------------
# Token scores


def numpy_nll(logits, targets, mask):
    """Σ -log softmax(logits)[target] over real positions, and their number, by a Python loop."""
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if mask[b, t]:
                row = logits[b, t].astype(np.float64)
                log_z = row.max() + np.log(np.sum(np.exp(row - row.max())))
                total += log_z - row[targets[b, t]]
                count += 1
    return total, count


def random_batch(seed, batch, time, vocab, lengths):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, time, vocab)).astype(np.float32) * 2
    targets = rng.integers(0, vocab, size=(batch, time)).astype(np.int32)
    mask = np.arange(time)[None, :] < np.asarray(lengths)[:, None]
    return logits, targets, mask


def test_uniform_model_has_perplexity_v():
    for vocab in (2, 7, 1000):
        logits = jnp.zeros((3, 4, vocab), jnp.float32)
        targets = jnp.asarray(np.arange(12).reshape(3, 4) % vocab, jnp.int32)
        mask = jnp.array([[True] * 4, [True, True, False, False], [False] * 4])
        total_nll, total_tokens = nll_sums(logits, targets, mask)
        assert total_nll.dtype == jnp.float32 and int(total_tokens) == 6
        np.testing.assert_allclose(perplexity(total_nll, total_tokens), vocab, rtol=1e-5)
        np.testing.assert_allclose(bits_per_token(total_nll, total_tokens), np.log2(vocab), 1e-6)


def test_corpus_perplexity_is_from_sums_not_a_mean_of_batch_perplexities():
    vocab = 11
    batches = [random_batch(3, 2, 6, vocab, [6, 5]), random_batch(4, 2, 6, vocab, [2, 0])]
    sums, batch_perplexities = PerplexitySums(), []
    for logits, targets, mask in batches:
        total_nll, total_tokens = jax.jit(nll_sums)(logits, targets, mask)
        expected_nll, expected_tokens = numpy_nll(logits, targets, mask)
        np.testing.assert_allclose(total_nll, expected_nll, rtol=1e-5)
        assert int(total_tokens) == expected_tokens
        sums = sums.add(total_nll, total_tokens)
        batch_perplexities.append(float(perplexity(total_nll, total_tokens)))
    # The numpy loop over every real token of the corpus at once.
    all_nll = sum(numpy_nll(*batch)[0] for batch in batches)
    all_tokens = sum(numpy_nll(*batch)[1] for batch in batches)
    assert (sums.total_tokens, all_tokens) == (13, 13)
    expected = math.exp(all_nll / all_tokens)
    np.testing.assert_allclose(sums.perplexity(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        perplexity(jnp.float32(sums.total_nll), sums.total_tokens), expected, rtol=1e-5
    )
    np.testing.assert_allclose(sums.bits_per_token(), all_nll / all_tokens / math.log(2), 1e-5)
    # Averaging the two batch perplexities weights 2 tokens like 11: a different number.
    assert abs(np.mean(batch_perplexities) - expected) > 1e-2 * expected


def test_perplexity_rejects_bad_totals():
    with pytest.raises(ValueError, match="total_tokens must be positive; got 0"):
        perplexity(1.0, 0)
    with pytest.raises(ValueError, match=r"total_nll must be a scalar; got shape \(2,\)"):
        perplexity(jnp.ones(2), 3)
    with pytest.raises(ValueError, match="total_tokens must be positive to average over; got 0"):
        PerplexitySums().perplexity()
    logits, targets, mask = random_batch(0, 2, 3, 5, [3, 1])
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        nll_sums(logits, targets, mask.astype(np.int32))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\]; got values in"):
        nll_sums(logits, targets + 5, mask)
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 3\)"):
        nll_sums(logits, targets[:, :2], mask)
    with pytest.raises(ValueError, match="logits must have rank 3"):
        nll_sums(logits[0], targets, mask)


def test_token_accuracy_and_exact_match_by_hand():
    predictions = jnp.array([[5, 6, 7, 9], [5, 6, 8, 0], [4, 4, 4, 4]], jnp.int32)
    targets = jnp.array([[5, 6, 7, 0], [5, 6, 7, 0], [1, 4, 0, 0]], jnp.int64)
    lengths = jnp.array([3, 3, 0], jnp.int32)
    mask = jnp.arange(4, dtype=jnp.int32)[None, :] < lengths[:, None]
    # Real positions: row 0 all right (its padded 9 does not count), row 1 one wrong, row 2 none.
    correct, total = token_accuracy_counts(predictions, targets, mask)
    assert (int(correct), int(total)) == (5, 6)
    np.testing.assert_allclose(token_accuracy(predictions, targets, mask), 5 / 6, rtol=1e-6)
    for given in (dict(mask=mask), dict(lengths=lengths)):
        matched, sequences = exact_match_counts(predictions, targets, **given)
        assert (int(matched), int(sequences)) == (2, 3)  # an empty row matches vacuously
        np.testing.assert_allclose(exact_match(predictions, targets, **given), 2 / 3, rtol=1e-6)
    jitted = jax.jit(lambda p, t, n: exact_match(p, t, lengths=n))
    np.testing.assert_allclose(jitted(predictions, targets, lengths), 2 / 3, rtol=1e-6)
    assert np.isnan(token_accuracy(predictions, targets, jnp.zeros((3, 4), bool)))


def test_token_scores_reject_bad_inputs():
    predictions = jnp.zeros((2, 3), jnp.int32)
    mask = jnp.ones((2, 3), bool)
    with pytest.raises(ValueError, match="exactly one of mask or lengths must be given; got both"):
        exact_match(predictions, predictions, mask=mask, lengths=jnp.array([3, 3]))
    with pytest.raises(
        ValueError, match="exactly one of mask or lengths must be given; got neither"
    ):
        exact_match(predictions, predictions)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 3\]; got values in \[0, 4\]"):
        exact_match(predictions, predictions, lengths=jnp.array([0, 4]))
    with pytest.raises(TypeError, match="predictions must be an integer array"):
        token_accuracy(predictions.astype(jnp.float32), predictions, mask)
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 3\)"):
        token_accuracy(predictions, predictions[:1], mask)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        token_accuracy(predictions, predictions, mask.astype(jnp.int32))


# --------------------------------------------------------------------------------------------------
# Docstring examples


@contextlib.contextmanager
def default_jax_settings():
    names = ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion")
    saved = {name: getattr(jax.config, name) for name in names}
    try:
        for name, value in zip(names, (False, "standard", "allow"), strict=True):
            jax.config.update(name, value)
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


@pytest.mark.parametrize("module", [bleu_module, rouge_module, scores_module])
def test_docstring_examples_run_as_written(module):
    globs = {**vars(module), "jax": jax, "jnp": jnp, "np": np}
    with default_jax_settings():
        result = doctest.testmod(
            module, globs=globs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        )
    assert result.attempted > 0 and result.failed == 0
