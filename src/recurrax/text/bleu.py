"""Corpus BLEU (Papineni et al., 2002) exactly as sacreBLEU 2.6.0 computes it by default.

BLEU compares hypotheses with references through clipped n-gram counts summed over the whole
corpus, for ``n = 1..4``::

    m_n = Σ_segments Σ_{g ∈ n-grams(hyp)} min(count_hyp(g), max_refs count_ref(g))   (matches)
    t_n = Σ_segments (number of n-grams in hyp)                                     (totals)
    p_n = 100 · m_n / t_n                                                           (percent)
    c   = Σ |hyp|,   r = Σ |closest reference|   (closest in length; a tie goes to the shorter)
    BP  = 1 if c >= r, exp(1 - r / c) if 0 < c < r, 0 if c = 0
    BLEU = BP · exp((1 / N) Σ_{n=1..N} log p_n)                                    (0..100)

``N`` is 4, or with ``effective_order`` the number of orders the hypotheses have any n-gram of
(``t_n > 0``). Segments are tokenised first (:func:`tokenize_13a`, the tokeniser of WMT's
``mteval-v13a.pl``, or ``"none"``: split on whitespace), after optional lowercasing and after
trailing whitespace is stripped. This is the corpus-level figure: summing the statistics over
segments before dividing is what makes it differ from an average of sentence BLEU scores.

Smoothing (Chen & Cherry, 2014, as sacreBLEU implements it) fills in precisions with no match:

* ``"exp"`` (the default): the ``k``-th order with ``m_n = 0`` (counting only such orders) gets
  ``p_n = 100 / (2^k · t_n)``, i.e. successive halving (NIST's ``mteval`` smoothing);
* ``"floor"``: ``p_n = 100 · ε / t_n`` where ``m_n = 0`` (``ε = smooth_value``, default 0.1);
* ``"add-k"``: ``p_n = 100 · (m_n + k) / (t_n + k)`` for ``n >= 2`` (``k`` default 1);
* ``"none"``: no smoothing, any zero precision makes BLEU 0.

With any method, a corpus with no matching n-gram at all scores 0 with all precisions 0, and an
order the hypotheses have no n-gram of (``t_n = 0``) stops the precisions there (they stay 0,
which makes BLEU 0 unless ``effective_order`` leaves that order out).

The reproducibility signature is sacreBLEU's (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|
version:...``) with one deliberate change: the version field reads ``2.6.0+recurrax``, a PEP 440
local-version label meaning "sacreBLEU 2.6.0's definition, computed by recurrax's
reimplementation", so a reported number says both what it means and what produced it.

Example::

    >>> from recurrax.text.bleu import corpus_bleu
    >>> hyps = ["The cat sat on the mat.", "It rained."]
    >>> refs = [["The cat sat on the mat.", "It was raining."]]    # one reference stream
    >>> result = corpus_bleu(hyps, refs)
    >>> round(result.score, 2), result.sys_len, result.ref_len
    (78.36, 10, 11)
    >>> result.signature
    'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0+recurrax'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from recurrax.validation import check_choice

MAX_ORDER = 4
"""The highest n-gram order BLEU counts."""

SACREBLEU_VERSION = "2.6.0"
"""The sacreBLEU release whose definitions this module reproduces."""

SIGNATURE_VERSION = f"{SACREBLEU_VERSION}+recurrax"
"""The signature's version field: sacreBLEU 2.6.0's BLEU as recomputed by recurrax."""

SMOOTH_DEFAULTS: dict[str, float | None] = {"none": None, "floor": 0.1, "add-k": 1.0, "exp": None}
"""Smoothing methods and the value each uses when ``smooth_value`` is None (None: takes none)."""

TOKENIZERS = ("13a", "none")

# mteval-v13a's "tokenize punctuation" class: every printable ASCII symbol except the apostrophe,
# the hyphen, the period and the comma, which the following rules split only next to non-digits
# (so "3.5", "1,000" and "don't" stay whole). The space of mteval's class is left out: padding a
# space with spaces changes no token.
_SYMBOLS = re.compile("([" + re.escape('!"#$%&()*+/:;<=>?@[\\]^_`{|}~') + "])")
_PERIOD_COMMA_AFTER_NON_DIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NON_DIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


class BLEUScore(NamedTuple):
    """A corpus BLEU score and the statistics it was computed from (see :func:`corpus_bleu`).

    Attributes:
      score: BLEU on the 0..100 scale.
      precisions: ``(p_1, ..., p_4)``, the (smoothed) n-gram precisions in percent.
      brevity_penalty: ``BP`` in ``[0, 1]``.
      sys_len: ``c``, the number of hypothesis tokens.
      ref_len: ``r``, the summed lengths of the closest references.
      counts: ``(m_1, ..., m_4)``, clipped n-gram matches. These are the raw counts: with
        ``"add-k"``, sacreBLEU's ``counts`` and ``totals`` include the added ``k`` for ``n >= 2``,
        these do not (the precisions include it in both).
      totals: ``(t_1, ..., t_4)``, hypothesis n-grams.
      signature: sacreBLEU's reproducibility signature (version field ``2.6.0+recurrax``).
    """

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    sys_len: int
    ref_len: int
    counts: tuple[int, ...]
    totals: tuple[int, ...]
    signature: str


def tokenize_13a(text: str) -> list[str]:
    """Splits one segment into tokens as ``mteval-v13a.pl`` (and sacreBLEU's ``13a``) does.

    First the language-independent normalisation, in this order: ``<skipped>`` tags are deleted,
    ``-\\n`` (a line-end hyphenation) is joined, other ``\\n`` become spaces, and the entities
    ``&quot;``, ``&amp;``, ``&lt;``, ``&gt;`` become ``"``, ``&``, ``<``, ``>`` (one after the
    other, so ``&amp;lt;`` ends as ``<``). Then, with the text padded by a space on each side:

    1. every ASCII symbol except ``' - . ,`` is set apart by spaces;
    2. a period or comma preceded by a non-digit gets a space on both sides;
    3. a period or comma followed by a non-digit gets a space on both sides;
    4. a dash preceded by a digit gets a space on both sides;

    and the result is split on whitespace. Each rule is one left-to-right pass of
    non-overlapping matches, as a regular-expression substitution makes it. No case folding: the
    ``lowercase`` option of :func:`corpus_bleu` lowercases before this.

    Args:
      text: one segment.

    Returns:
      The tokens.

    Example:
        >>> tokenize_13a('He said &quot;3.5, not 1,000-ish!&quot;')
        ['He', 'said', '"', '3.5', ',', 'not', '1,000', '-', 'ish', '!', '"']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string; got {type(text).__name__}")
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in text:
        for entity, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            text = text.replace(entity, char)
    text = f" {text} "
    text = _SYMBOLS.sub(r" \1 ", text)
    text = _PERIOD_COMMA_AFTER_NON_DIGIT.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE_NON_DIGIT.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    return text.split()


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str | None]],
    *,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    effective_order: bool = False,
) -> BLEUScore:
    """Corpus BLEU of ``hypotheses`` against one or more reference streams, as sacreBLEU 2.6.0.

    Equations, smoothing and the signature are in the module docstring. The layout of
    ``references`` is sacreBLEU's: a list of reference *streams*, each a list with one reference
    per hypothesis (``references[k][i]`` is the ``k``-th reference of ``hypotheses[i]``). A
    reference may be None where a segment has fewer references than others (the signature then
    reads ``nrefs:var``). This is the transpose of the per-hypothesis lists that some libraries
    take (``[[ref_a1, ref_b1], [ref_a2, ref_b2], ...]``): pass ``list(zip(*those))`` instead.

    Args:
      hypotheses: ``N`` detokenised system outputs.
      references: ``K >= 1`` streams of ``N`` detokenised references each.
      smooth_method: ``"exp"`` (default), ``"floor"``, ``"add-k"`` or ``"none"``.
      smooth_value: ``ε`` for ``"floor"`` (default 0.1), ``k`` for ``"add-k"`` (default 1); must
        be None for the other methods.
      lowercase: lowercase hypotheses and references before tokenising.
      tokenize: ``"13a"`` (:func:`tokenize_13a`, the default) or ``"none"`` (split on whitespace:
        for text that is already tokenised).
      effective_order: average the log precisions over the orders the hypotheses have n-grams of
        instead of all four (sacreBLEU's default for sentence BLEU, not for a corpus).

    Returns:
      A :class:`BLEUScore`.

    Example:
        >>> result = corpus_bleu(["a b c d e"], [["a b c d e f"], ["a b c"]])  # two streams
        >>> round(result.score, 4), result.ref_len                   # the closer length is 6
        (81.8731, 6)
    """
    streams = _check_corpus(hypotheses, references)
    _check_options(smooth_method, smooth_value, lowercase, tokenize, effective_order)

    def tokens(text: str) -> list[str]:
        if lowercase:
            text = text.lower()
        text = text.rstrip()
        return tokenize_13a(text) if tokenize == "13a" else text.split()

    counts, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
    sys_len = ref_len = 0
    reference_counts = set()
    for i, hypothesis in enumerate(hypotheses):
        refs = [tokens(stream[i]) for stream in streams if stream[i] is not None]
        reference_counts.add(len(refs))
        # Clipping uses, for each n-gram, its largest count in any one reference.
        max_ref_ngrams: Counter = Counter()
        for ref in refs:
            max_ref_ngrams |= _ngrams(ref)
        hyp = tokens(hypothesis)
        for ngram, count in _ngrams(hyp).items():
            totals[len(ngram) - 1] += count
            counts[len(ngram) - 1] += min(count, max_ref_ngrams[ngram])
        sys_len += len(hyp)
        ref_len += _closest_length(len(hyp), [len(ref) for ref in refs])

    nrefs = reference_counts.pop() if len(reference_counts) == 1 else "var"
    signature = _signature(nrefs, lowercase, effective_order, tokenize, smooth_method, smooth_value)
    score, precisions, bp = _bleu_from_statistics(
        counts, totals, sys_len, ref_len, smooth_method, smooth_value, effective_order
    )
    return BLEUScore(
        score, tuple(precisions), bp, sys_len, ref_len, tuple(counts), tuple(totals), signature
    )


def sentence_bleu(
    hypothesis: str,
    references: Sequence[str],
    *,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    effective_order: bool = True,
) -> BLEUScore:
    """BLEU of one hypothesis against its references, as ``sacrebleu.sentence_bleu``.

    :func:`corpus_bleu` of a one-segment corpus, with ``effective_order`` on by default (as
    sacreBLEU does for sentences: a short hypothesis with no 4-gram is not scored 0 for that).
    BLEU is a corpus metric; the mean of sentence scores is not the corpus score.

    Args:
      hypothesis: one detokenised system output.
      references: its references (one string each; not streams).
      smooth_method, smooth_value, lowercase, tokenize, effective_order: as :func:`corpus_bleu`.

    Returns:
      A :class:`BLEUScore`.

    Example:
        >>> round(sentence_bleu("the cat sat", ["the cat sat down"]).score, 4)
        71.6531
    """
    if not isinstance(hypothesis, str):
        raise TypeError(f"hypothesis must be a string; got {type(hypothesis).__name__}")
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise TypeError(
            f"references must be a sequence of reference strings, e.g. [reference]; "
            f"got {type(references).__name__}"
        )
    if len(references) == 0:
        raise ValueError("references must hold at least one reference string; got none")
    return corpus_bleu(
        [hypothesis],
        [[reference] for reference in references],
        smooth_method=smooth_method,
        smooth_value=smooth_value,
        lowercase=lowercase,
        tokenize=tokenize,
        effective_order=effective_order,
    )


def _ngrams(tokens: list[str]) -> Counter:
    """Counts of every n-gram of ``tokens`` for ``n = 1..MAX_ORDER`` (tuples of tokens)."""
    return Counter(
        tuple(tokens[start : start + n])
        for n in range(1, MAX_ORDER + 1)
        for start in range(len(tokens) - n + 1)
    )


def _closest_length(hyp_len: int, ref_lens: list[int]) -> int:
    """The reference length nearest ``hyp_len``; of two equally near, the shorter."""
    return min(ref_lens, key=lambda ref_len: (abs(hyp_len - ref_len), ref_len))


def _bleu_from_statistics(
    counts: list[int],
    totals: list[int],
    sys_len: int,
    ref_len: int,
    smooth_method: str,
    smooth_value: float | None,
    effective_order: bool,
) -> tuple[float, list[float], float]:
    """(score, precisions, brevity penalty) from the summed statistics; see the module docstring."""
    if smooth_value is None:
        smooth_value = SMOOTH_DEFAULTS[smooth_method]
    if sys_len < ref_len:
        bp = math.exp(1.0 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    precisions = [0.0] * MAX_ORDER
    if not any(counts):
        return 0.0, precisions, bp

    halvings = 0
    orders = MAX_ORDER
    for n in range(1, MAX_ORDER + 1):
        matches, total = counts[n - 1], totals[n - 1]
        if smooth_method == "add-k" and n > 1:
            matches, total = matches + smooth_value, total + smooth_value
        if total == 0:
            # Totals only shrink with n: no hypothesis is long enough for this order or beyond.
            break
        if effective_order:
            orders = n
        if matches > 0:
            precisions[n - 1] = 100.0 * matches / total
        elif smooth_method == "exp":
            halvings += 1
            precisions[n - 1] = 100.0 / (2**halvings * total)
        elif smooth_method == "floor":
            precisions[n - 1] = 100.0 * smooth_value / total
    used = precisions[:orders]
    if min(used) == 0.0:
        return 0.0, precisions, bp
    return bp * math.exp(sum(math.log(p) for p in used) / orders), precisions, bp


def _signature(
    nrefs: int | str,
    lowercase: bool,
    effective_order: bool,
    tokenize: str,
    smooth_method: str,
    smooth_value: float | None,
) -> str:
    smooth = smooth_method
    if SMOOTH_DEFAULTS[smooth_method] is not None:
        value = SMOOTH_DEFAULTS[smooth_method] if smooth_value is None else smooth_value
        smooth += f"[{value:.2f}]"
    fields = {
        "nrefs": nrefs,
        "case": "lc" if lowercase else "mixed",
        "eff": "yes" if effective_order else "no",
        "tok": tokenize,
        "smooth": smooth,
        "version": SIGNATURE_VERSION,
    }
    return "|".join(f"{name}:{value}" for name, value in fields.items())


def _check_options(
    smooth_method: Any, smooth_value: Any, lowercase: Any, tokenize: Any, effective_order: Any
) -> None:
    check_choice("smooth_method", smooth_method, SMOOTH_DEFAULTS)
    check_choice("tokenize", tokenize, TOKENIZERS)
    if smooth_value is not None:
        if SMOOTH_DEFAULTS[smooth_method] is None:
            raise ValueError(
                f"smooth_value must be None for smooth_method={smooth_method!r}, which takes no "
                f"value; got {smooth_value!r}"
            )
        if (
            isinstance(smooth_value, bool)
            or not isinstance(smooth_value, int | float)
            or not smooth_value > 0
        ):
            raise ValueError(f"smooth_value must be a positive number; got {smooth_value!r}")
    for name, flag in (("lowercase", lowercase), ("effective_order", effective_order)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool; got {flag!r}")


def _check_corpus(hypotheses: Any, references: Any) -> list[Sequence[str | None]]:
    """Checks the layout of a corpus before any work; returns the reference streams as a list."""
    if isinstance(hypotheses, str) or not isinstance(hypotheses, Sequence):
        raise TypeError(
            f"hypotheses must be a sequence of strings; got {type(hypotheses).__name__}"
        )
    if len(hypotheses) == 0:
        raise ValueError("hypotheses must be a non-empty sequence of strings; got length 0")
    for i, hypothesis in enumerate(hypotheses):
        if not isinstance(hypothesis, str):
            raise TypeError(f"hypotheses[{i}] must be a string; got {type(hypothesis).__name__}")
    if isinstance(references, str) or not isinstance(references, Sequence):
        raise TypeError(
            "references must be a sequence of reference streams (lists of strings aligned with "
            f"hypotheses); got {type(references).__name__}"
        )
    if len(references) == 0:
        raise ValueError("references must hold at least one reference stream; got 0 streams")
    streams = list(references)
    for k, stream in enumerate(streams):
        if isinstance(stream, str) or not isinstance(stream, Sequence):
            raise TypeError(
                f"references[{k}] must be a reference stream (a list of strings aligned with "
                f"hypotheses; wrap one stream as [references]); got {type(stream).__name__}"
            )
        if len(stream) != len(hypotheses):
            raise ValueError(
                f"references[{k}] must have one reference per hypothesis, length "
                f"{len(hypotheses)} (as hypotheses); got length {len(stream)}"
            )
        for i, reference in enumerate(stream):
            if reference is not None and not isinstance(reference, str):
                raise TypeError(
                    f"references[{k}][{i}] must be a string or None; got {type(reference).__name__}"
                )
    for i in range(len(hypotheses)):
        if all(stream[i] is None for stream in streams):
            raise ValueError(
                f"references must give hypothesis {i} at least one reference; got None in "
                f"every stream"
            )
    return streams
