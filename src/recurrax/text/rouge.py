"""ROUGE-N, ROUGE-L and ROUGE-Lsum with the conventions of Google's ``rouge-score`` 0.1.2.

ROUGE (Lin, 2004) measures how much of a reference a prediction recovers. For a prediction with
tokens ``x`` and a reference with tokens ``y``:

* ROUGE-N: ``o = Σ_g min(count_x(g), count_y(g))`` over n-grams ``g``;
  ``P = o / max(#n-grams(x), 1)``, ``R = o / max(#n-grams(y), 1)``;
* ROUGE-L: ``P = LCS(x, y) / |x|``, ``R = LCS(x, y) / |y|`` (0 if either is empty), with
  ``LCS`` the length of a longest common subsequence (not necessarily contiguous);
* ROUGE-Lsum: the summary-level LCS of the ROUGE paper (section 3.2) over sentences separated by
  ``"\\n"``: for each reference sentence, the union of its tokens on an LCS with each prediction
  sentence, each token credited at most as often as it occurs in both texts; ``P`` and ``R``
  divide those hits by the total prediction and reference token counts;

and ``F = 2PR / (P + R)`` (0 when ``P + R = 0``) for each. Text is tokenised as rouge-score's
default tokeniser does (:func:`rouge_tokenize`): lowercase, every run of characters outside
``[a-z0-9]`` becomes a space, split, and optionally Porter-stem tokens longer than 3 characters
(NLTK's ``PorterStemmer``, the optional extra ``recurrax[text]``).

A corpus figure (:func:`corpus_rouge`) is the mean over pairs of each per-pair ``P``, ``R`` and
``F`` (what rouge-score users report; the ``mid`` of its ``BootstrapAggregator`` estimates that
mean), so the mean ``F`` is not the ``F`` of the mean ``P`` and ``R``. :func:`rouge_per_pair` gives
the per-pair scores and :func:`sentence_rouge` one pair's. With several references for a
prediction, each ROUGE type keeps the reference with the highest ``F`` (the first on ties), as
``RougeScorer.score_multi`` does.

Arguments are in the order ``(predictions, references)`` like BLEU's, the reverse of
``RougeScorer.score(target, prediction)``.

Example::

    >>> from recurrax.text.rouge import corpus_rouge
    >>> scores = corpus_rouge(["the cat sat on the mat"], ["the cat lay on the mat"])
    >>> [round(scores[t].fmeasure, 4) for t in ("rouge1", "rouge2", "rougeL")]
    [0.8333, 0.6, 0.8333]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL")

_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"[a-z0-9]+")
_ROUGE_N = re.compile(r"rouge([1-9])")


class RougeScore(NamedTuple):
    """Precision, recall and F-measure of one ROUGE type, each in ``[0, 1]``.

    Floats for one pair or a corpus mean; ``(N,)`` float64 arrays from :func:`rouge_per_pair`.
    """

    precision: Any
    recall: Any
    fmeasure: Any


def rouge_tokenize(text: str, *, use_stemmer: bool = False) -> list[str]:
    """Tokens of ``text`` as rouge-score's default tokeniser makes them.

    Lowercase; replace every run of characters outside ``[a-z0-9]`` by a space; split on spaces;
    with ``use_stemmer``, replace each token longer than 3 characters by its Porter stem (NLTK's
    ``PorterStemmer`` in its default mode); keep the non-empty tokens made only of ``[a-z0-9]``.

    Args:
      text: any string.
      use_stemmer: stem as ``RougeScorer(use_stemmer=True)`` does (needs ``recurrax[text]``).

    Returns:
      The tokens.

    Example:
        >>> rouge_tokenize("The runners' 2nd race: RUNNING fast!")
        ['the', 'runners', '2nd', 'race', 'running', 'fast']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string; got {type(text).__name__}")
    _check_flag("use_stemmer", use_stemmer)
    return _tokenizer(use_stemmer)(text)


def sentence_rouge(
    prediction: str,
    reference: str | Sequence[str],
    *,
    types: Sequence[str] = DEFAULT_TYPES,
    use_stemmer: bool = False,
) -> dict[str, RougeScore]:
    """ROUGE scores of one prediction against its reference(s), as ``RougeScorer.score``.

    Args:
      prediction: the generated text.
      reference: the reference text, or a non-empty sequence of them (then each type keeps the
        reference with the highest F-measure, as ``RougeScorer.score_multi``).
      types: any of ``"rouge1"`` .. ``"rouge9"``, ``"rougeL"``, ``"rougeLsum"``.
      use_stemmer: Porter-stem tokens longer than 3 characters (needs ``recurrax[text]``).

    Returns:
      ``{type: RougeScore(precision, recall, fmeasure)}`` with float fields.

    Example:
        >>> s = sentence_rouge("a b c d", "a c b d", types=("rougeL",))["rougeL"]
        >>> s.precision, s.recall, s.fmeasure                    # LCS "a b d" or "a c d": 3
        (0.75, 0.75, 0.75)
    """
    if not isinstance(prediction, str):
        raise TypeError(f"prediction must be a string; got {type(prediction).__name__}")
    _check_reference("reference", reference)
    types = _check_types(types)
    _check_flag("use_stemmer", use_stemmer)
    return _score_pair(prediction, reference, types, _tokenizer(use_stemmer))


def rouge_per_pair(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    types: Sequence[str] = DEFAULT_TYPES,
    use_stemmer: bool = False,
) -> dict[str, RougeScore]:
    """ROUGE scores of every (prediction, reference) pair of a corpus.

    Args:
      predictions: ``N`` generated texts.
      references: ``N`` references, each a string or a non-empty sequence of strings.
      types, use_stemmer: as :func:`sentence_rouge`.

    Returns:
      ``{type: RougeScore(precision, recall, fmeasure)}`` whose fields are ``(N,)`` float64
      arrays, entry ``i`` being :func:`sentence_rouge` of pair ``i``.

    Example:
        >>> per_pair = rouge_per_pair(["a b", "c"], ["a b", "d"], types=("rouge1",))
        >>> per_pair["rouge1"].fmeasure.tolist()
        [1.0, 0.0]
    """
    _check_corpus(predictions, references)
    types = _check_types(types)
    _check_flag("use_stemmer", use_stemmer)
    tokenize = _tokenizer(use_stemmer)
    pairs = [
        _score_pair(p, r, types, tokenize) for p, r in zip(predictions, references, strict=True)
    ]
    return {
        name: RougeScore(*(np.array([pair[name][f] for pair in pairs]) for f in range(3)))
        for name in types
    }


def corpus_rouge(
    predictions: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    types: Sequence[str] = DEFAULT_TYPES,
    use_stemmer: bool = False,
) -> dict[str, RougeScore]:
    """Corpus ROUGE: the mean over pairs of each per-pair precision, recall and F-measure.

    Args:
      predictions: ``N >= 1`` generated texts.
      references: ``N`` references, each a string or a non-empty sequence of strings.
      types: any of ``"rouge1"`` .. ``"rouge9"``, ``"rougeL"``, ``"rougeLsum"``.
      use_stemmer: Porter-stem tokens longer than 3 characters (needs ``recurrax[text]``).

    Returns:
      ``{type: RougeScore(precision, recall, fmeasure)}`` of float means.

    Example:
        >>> scores = corpus_rouge(["a b c", "x"], ["a b d", "y"], types=("rouge1", "rouge2"))
        >>> round(scores["rouge1"].fmeasure, 4), scores["rouge2"].fmeasure    # (2/3 + 0) / 2
        (0.3333, 0.25)
    """
    per_pair = rouge_per_pair(predictions, references, types=types, use_stemmer=use_stemmer)
    return {
        name: RougeScore(*(float(np.mean(field)) for field in score))
        for name, score in per_pair.items()
    }


# --------------------------------------------------------------------------------------------------
# Scoring


def _score_pair(
    prediction: str,
    reference: str | Sequence[str],
    types: tuple[str, ...],
    tokenize: Callable[[str], list[str]],
) -> dict[str, RougeScore]:
    if isinstance(reference, str):
        return _score_single(prediction, reference, types, tokenize)
    candidates = [_score_single(prediction, ref, types, tokenize) for ref in reference]
    # Per type, the reference with the highest F (max keeps the first of equal ones).
    return {
        name: max((c[name] for c in candidates), key=lambda score: score.fmeasure) for name in types
    }


def _score_single(
    prediction: str, reference: str, types: tuple[str, ...], tokenize: Callable[[str], list[str]]
) -> dict[str, RougeScore]:
    pred, ref = tokenize(prediction), tokenize(reference)
    scores = {}
    for name in types:
        if name == "rougeL":
            scores[name] = _lcs_score(pred, ref)
        elif name == "rougeLsum":
            scores[name] = _summary_lcs_score(
                [tokenize(line) for line in prediction.split("\n") if line],
                [tokenize(line) for line in reference.split("\n") if line],
            )
        else:
            scores[name] = _ngram_score(pred, ref, int(name[len("rouge") :]))
    return scores


def _ngram_score(pred: list[str], ref: list[str], n: int) -> RougeScore:
    pred_ngrams = Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
    ref_ngrams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    overlap = sum((pred_ngrams & ref_ngrams).values())
    precision = overlap / max(sum(pred_ngrams.values()), 1)
    recall = overlap / max(sum(ref_ngrams.values()), 1)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _lcs_score(pred: list[str], ref: list[str]) -> RougeScore:
    if not pred or not ref:
        return RougeScore(0.0, 0.0, 0.0)
    lcs = _lcs_table(ref, pred)[-1][-1]
    precision, recall = lcs / len(pred), lcs / len(ref)
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _summary_lcs_score(
    pred_sentences: list[list[str]], ref_sentences: list[list[str]]
) -> RougeScore:
    pred_total = sum(map(len, pred_sentences))
    ref_total = sum(map(len, ref_sentences))
    if pred_total == 0 or ref_total == 0:
        return RougeScore(0.0, 0.0, 0.0)
    # Each token can be credited at most as often as it occurs in both texts.
    pred_left = Counter(token for sentence in pred_sentences for token in sentence)
    ref_left = Counter(token for sentence in ref_sentences for token in sentence)
    hits = 0
    for ref in ref_sentences:
        on_some_lcs = set()
        for pred in pred_sentences:
            on_some_lcs.update(_lcs_positions(ref, pred))
        for position in sorted(on_some_lcs):
            token = ref[position]
            if pred_left[token] > 0 and ref_left[token] > 0:
                hits += 1
                pred_left[token] -= 1
                ref_left[token] -= 1
    precision, recall = hits / pred_total, hits / ref_total
    return RougeScore(precision, recall, _fmeasure(precision, recall))


def _lcs_table(a: list[str], b: list[str]) -> list[list[int]]:
    """``table[i][j]`` = LCS length of ``a[:i]`` and ``b[:j]``."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, a_token in enumerate(a, start=1):
        row, above = table[i], table[i - 1]
        for j, b_token in enumerate(b, start=1):
            row[j] = above[j - 1] + 1 if a_token == b_token else max(above[j], row[j - 1])
    return table


def _lcs_positions(ref: list[str], pred: list[str]) -> list[int]:
    """Positions in ``ref`` of one LCS with ``pred``, the one rouge-score's backtracking picks.

    Which LCS is taken changes the union in ROUGE-Lsum, so the tie-break is rouge-score's (and
    ROUGE-1.5.5's): walking back from the end, a match is taken, otherwise the step drops a
    prediction token only when that keeps a strictly longer LCS, else a reference token.
    """
    table = _lcs_table(ref, pred)
    i, j = len(ref), len(pred)
    positions = []
    while i > 0 and j > 0:
        if ref[i - 1] == pred[j - 1]:
            positions.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return positions[::-1]


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# Tokenising and checks


def _tokenizer(use_stemmer: bool) -> Callable[[str], list[str]]:
    """rouge-score's default tokeniser, stemming through a per-call cache of Porter stems."""
    stem = _porter_stemmer() if use_stemmer else None
    stems: dict[str, str] = {}

    def tokenize(text: str) -> list[str]:
        tokens = _NON_ALPHANUMERIC.sub(" ", text.lower()).split()
        if stem is not None:
            for token in tokens:
                if len(token) > 3 and token not in stems:
                    stems[token] = stem(token)
            tokens = [stems[token] if len(token) > 3 else token for token in tokens]
        return [token for token in tokens if _VALID_TOKEN.fullmatch(token)]

    return tokenize


def _porter_stemmer() -> Callable[[str], str]:
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError:
        raise ImportError(
            "ROUGE with use_stemmer=True needs NLTK's Porter stemmer: pip install 'recurrax[text]'"
        ) from None
    return PorterStemmer().stem


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {value!r}")


def _check_types(types: Any) -> tuple[str, ...]:
    if isinstance(types, str) or not isinstance(types, Sequence) or len(types) == 0:
        raise TypeError(
            "types must be a non-empty sequence of ROUGE types, e.g. ('rouge1', 'rougeL'); "
            f"got {types!r}"
        )
    for name in types:
        if not (
            name in ("rougeL", "rougeLsum") or (isinstance(name, str) and _ROUGE_N.fullmatch(name))
        ):
            raise ValueError(
                f"types must hold only 'rouge1'..'rouge9', 'rougeL' or 'rougeLsum'; got {name!r}"
            )
    return tuple(dict.fromkeys(types))


def _check_reference(name: str, reference: Any) -> None:
    if isinstance(reference, str):
        return
    if not isinstance(reference, Sequence) or len(reference) == 0:
        raise TypeError(
            f"{name} must be a string or a non-empty sequence of strings; got {reference!r}"
        )
    for k, text in enumerate(reference):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{k}] must be a string; got {type(text).__name__}")


def _check_corpus(predictions: Any, references: Any) -> None:
    for name, value in (("predictions", predictions), ("references", references)):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(
                f"{name} must be a sequence, one entry per pair; got {type(value).__name__}"
            )
    if len(predictions) == 0:
        raise ValueError("predictions must be a non-empty sequence of strings; got length 0")
    if len(references) != len(predictions):
        raise ValueError(
            f"references must have one entry per prediction, length {len(predictions)} (as "
            f"predictions); got length {len(references)}"
        )
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise TypeError(f"predictions[{i}] must be a string; got {type(prediction).__name__}")
    for i, reference in enumerate(references):
        _check_reference(f"references[{i}]", reference)
