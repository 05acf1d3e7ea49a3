"""Tokenizers: text to a list of token strings and back.

Every tokenizer is a value with two methods (the :class:`Tokenizer` protocol):

* ``tokenize(text: str) -> list[str]``
* ``detokenize(tokens: Sequence[str]) -> str``

A :class:`~recurrax.text.vocab.Vocab` then maps the token strings to ids. Three kinds:

* :func:`char_tokenizer` — one token per character; ``detokenize`` joins them. Round trip:
  ``detokenize(tokenize(s)) == s`` for every string.
* :func:`word_tokenizer` — the matches of a regular expression, by default ``\\w+|[^\\w\\s]``
  (runs of word characters, and every other non-space character on its own); ``detokenize`` joins
  with single spaces. Whitespace is not kept, so the round trip holds exactly when ``s`` already is
  its tokens joined by single spaces, i.e. ``s == " ".join(tokenize(s))`` (for instance
  ``"hello , world !"``, but not ``"hello, world!"``). For every string, with the default pattern,
  ``tokenize(detokenize(tokenize(s))) == tokenize(s)``.
* :class:`BPETokenizer` — byte-level byte-pair encoding trained with Hugging Face ``tokenizers``
  (``pip install 'recurrax[text]'``): text is split GPT-2 style into words with their leading space,
  each word's UTF-8 bytes are written as printable characters (a space becomes ``"Ġ"``), and
  learned merges join frequent adjacent pieces. Every byte is in the base alphabet, so no piece is
  ever unknown and ``detokenize(tokenize(s)) == s`` exactly for every string that can be encoded
  as UTF-8 (every ``str`` without lone surrogates; those are rejected): whitespace, newlines,
  accents and emoji included.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from recurrax.text.vocab import write_atomically
from recurrax.validation import check_positive_int

DEFAULT_WORD_PATTERN = r"\w+|[^\w\s]"
"""Runs of word characters, and every other non-whitespace character as its own token."""

BPE_FORMAT = "recurrax.bpe"
BPE_VERSION = 1


@runtime_checkable
class Tokenizer(Protocol):
    """What every tokenizer provides: ``tokenize(text) -> list[str]`` and
    ``detokenize(tokens) -> str``."""

    def tokenize(self, text: str) -> list[str]: ...

    def detokenize(self, tokens: Sequence[str]) -> str: ...


class FunctionTokenizer(NamedTuple):
    """A tokenizer made of two pure functions (returned by :func:`char_tokenizer` and
    :func:`word_tokenizer`).

    Attributes:
      tokenize: ``tokenize(text) -> list[str]``.
      detokenize: ``detokenize(tokens) -> str``.
      name: what it splits on, for messages and reports.
    """

    tokenize: Callable[[str], list[str]]
    detokenize: Callable[[Sequence[str]], str]
    name: str


def check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")


def check_tokens(tokens: Any) -> None:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"tokens must be a sequence of str; got {type(tokens).__name__}")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"tokens[{i}] must be a str; got {type(token).__name__}")


def char_tokenizer() -> FunctionTokenizer:
    """One token per character (Unicode code point).

    ``detokenize`` concatenates, so ``detokenize(tokenize(s)) == s`` for every string. Combine with
    :func:`~recurrax.text.normalize.normalize` (``unicode_form="NFC"``) so that an accented letter is
    one code point rather than a letter and a combining mark.

    Returns:
      A :class:`FunctionTokenizer`.

    Example:
        >>> chars = char_tokenizer()
        >>> chars.tokenize("héllo")
        ['h', 'é', 'l', 'l', 'o']
        >>> chars.detokenize(['o', 'k', '!'])
        'ok!'
    """

    def tokenize(text: str) -> list[str]:
        check_text(text)
        return list(text)

    def detokenize(tokens: Sequence[str]) -> str:
        check_tokens(tokens)
        return "".join(tokens)

    return FunctionTokenizer(tokenize, detokenize, "char")


def word_tokenizer(pattern: str = DEFAULT_WORD_PATTERN) -> FunctionTokenizer:
    """Tokens are the non-overlapping matches of ``pattern``, left to right; text between matches
    (whitespace, with the default pattern) is dropped. ``detokenize`` joins with single spaces.

    Round trip: ``detokenize(tokenize(s)) == s`` exactly when ``s == " ".join(tokenize(s))``; with
    the default pattern that is the output of ``normalize(s, punctuation="separate")`` whenever no
    symbol (category ``S``, e.g. ``$``) touches a word.

    Args:
      pattern: a regular expression (:mod:`re` syntax) that cannot match the empty string; the
        whole match is the token (groups are ignored).

    Returns:
      A :class:`FunctionTokenizer`.

    Raises:
      ValueError: ``pattern`` does not compile or matches the empty string.

    Example:
        >>> words = word_tokenizer()
        >>> words.tokenize("Don't panic, it's 42!")
        ['Don', "'", 't', 'panic', ',', 'it', "'", 's', '42', '!']
        >>> words.detokenize(['hello', ',', 'world'])
        'hello , world'
    """
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str; got {type(pattern).__name__}")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValueError(
            f"pattern must be a valid regular expression; got {pattern!r} ({error})"
        ) from None
    if regex.fullmatch("") is not None:
        # An empty match would be an empty token between every two characters.
        raise ValueError(f"pattern must not match the empty string; got {pattern!r}")

    def tokenize(text: str) -> list[str]:
        check_text(text)
        return [match.group(0) for match in regex.finditer(text) if match.group(0)]

    def detokenize(tokens: Sequence[str]) -> str:
        check_tokens(tokens)
        return " ".join(tokens)

    return FunctionTokenizer(tokenize, detokenize, f"word({pattern})")


def import_hf_tokenizers():
    """Hugging Face ``tokenizers``, imported on first use so that ``recurrax.text`` works without it."""
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError(
            "BPE needs the Hugging Face 'tokenizers' package: pip install 'recurrax[text]'"
        ) from error
    return tokenizers


class BPETokenizer:
    """A trained byte-level BPE (see the module docstring for the round-trip guarantee).

    Build one with :meth:`BPETokenizer.train` (also spelled ``bpe_tokenizer.train``) or
    :meth:`BPETokenizer.load`. The model has no special tokens of its own: ``<pad>``, ``<unk>``,
    ``<sos>`` and ``<eos>`` belong to the :class:`~recurrax.text.vocab.Vocab` built over its pieces,
    and the literal text ``"<eos>"`` is tokenized as ordinary characters.

    Attributes:
      pieces: the model's pieces in its own id order (the 256 byte characters, then one piece per
        merge, in the order the merges were learned).
    """

    def __init__(self, hf_tokenizer: Any):
        self._tokenizer = hf_tokenizer

    @classmethod
    def train(
        cls,
        corpus: Iterable[str],
        vocab_size: int,
        *,
        min_frequency: int = 2,
        max_piece_length: int | None = None,
    ) -> BPETokenizer:
        """Learns merges from ``corpus`` until the model has ``vocab_size`` pieces or no pair of
        adjacent pieces occurs ``min_frequency`` times.

        Training is offline (the corpus is read from the iterator, nothing is downloaded) and
        deterministic: the same corpus and options give the same pieces and merges, in every run
        and process. It has no randomness, hence no seed. The base alphabet is all 256 bytes, so
        ``vocab_size`` must be at least 256; the result has ``256 + number of merges <=
        vocab_size`` pieces.

        Args:
          corpus: an iterable of texts (read once).
          vocab_size: the largest number of pieces, bytes included (``>= 256``).
          min_frequency: a pair is merged only when it occurs at least this often.
          max_piece_length: when given, no piece longer than this many characters is made.

        Returns:
          A :class:`BPETokenizer`.

        Example:
            >>> corpus = ["the cat sat on the mat"] * 20
            >>> bpe = BPETokenizer.train(corpus, vocab_size=300)
            >>> bpe.tokenize("the cat sat")
            ['the', 'Ġcat', 'Ġsat']
            >>> bpe.detokenize(bpe.tokenize("a new  text!"))
            'a new  text!'
        """
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("min_frequency", min_frequency)
        if max_piece_length is not None:
            check_positive_int("max_piece_length", max_piece_length)
        if isinstance(corpus, str):
            raise TypeError("corpus must be an iterable of texts; got a str (wrap it in a list)")
        hf = import_hf_tokenizers()
        alphabet = hf.pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet):
            raise ValueError(
                f"vocab_size must be at least {len(alphabet)} (the byte alphabet); got {vocab_size}"
            )

        def texts():
            for i, text in enumerate(corpus):
                check_text_for_bpe(text, f"corpus[{i}]")
                yield text

        tokenizer = hf.Tokenizer(hf.models.BPE())
        # No prefix space: the ByteLevel decoder does not remove one, and the round trip is exact.
        tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=alphabet,
            max_token_length=max_piece_length,
        )
        tokenizer.train_from_iterator(texts(), trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Reads a tokenizer written by :meth:`save`.

        Raises:
          ValueError: the file is not a recurrax BPE file of version 1, naming the problem.

        Example:
            >>> import tempfile, os
            >>> bpe = BPETokenizer.train(["low lower lowest"] * 10, vocab_size=270)
            >>> path = os.path.join(tempfile.mkdtemp(), "bpe.json")
            >>> bpe.save(path)
            >>> BPETokenizer.load(path).pieces == bpe.pieces
            True
        """
        hf = import_hf_tokenizers()
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"BPE file {path}: not valid JSON ({error})") from None
        if not isinstance(data, dict) or data.get("format") != BPE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"BPE file {path}: format must be {BPE_FORMAT!r}; got {found!r}")
        if data.get("version") != BPE_VERSION:
            raise ValueError(
                f"BPE file {path}: version must be {BPE_VERSION}; got {data.get('version')!r}"
            )
        try:
            tokenizer = hf.Tokenizer.from_str(json.dumps(data["tokenizer"]))
        except Exception as error:
            raise ValueError(f"BPE file {path}: unreadable tokenizer ({error})") from None
        return cls(tokenizer)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer as JSON: ``{"format": "recurrax.bpe", "version": 1, "tokenizer":
        <the Hugging Face tokenizer JSON>}``, atomically (a temporary file, then a rename).

        Example:
            >>> import tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "bpe.json")
            >>> BPETokenizer.train(["ab ab ab"], vocab_size=260).save(path)
            >>> os.path.exists(path)
            True
        """
        data = {
            "format": BPE_FORMAT,
            "version": BPE_VERSION,
            "tokenizer": json.loads(self._tokenizer.to_str()),
        }
        write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1))

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (byte-level: a leading space shows as ``"Ġ"``).

        Example:
            >>> bpe = BPETokenizer.train(["low lower lowest"] * 10, vocab_size=270)
            >>> bpe.tokenize("low lowest")
            ['low', 'Ġlowest']
        """
        check_text_for_bpe(text, "text")
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The text of ``tokens``: each piece's characters are turned back into bytes, which are
        decoded as UTF-8. Pieces that do not come from :meth:`tokenize` may join into invalid UTF-8,
        which decodes to ``"\\ufffd"``.

        Example:
            >>> bpe = BPETokenizer.train(["low lower lowest"] * 10, vocab_size=270)
            >>> bpe.detokenize(['low', 'Ġlowest'])
            'low lowest'
        """
        check_tokens(tokens)
        return self._tokenizer.decoder.decode(list(tokens))

    @property
    def pieces(self) -> list[str]:
        vocab = self._tokenizer.get_vocab()
        return sorted(vocab, key=vocab.__getitem__)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size()

    def __repr__(self) -> str:
        return f"BPETokenizer(pieces={len(self)})"


def check_text_for_bpe(text: Any, name: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str; got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} must be encodable as UTF-8; got a lone surrogate at index {error.start}"
        ) from None


bpe_tokenizer = BPETokenizer
"""The BPE constructors under the name the other tokenizers use: ``bpe_tokenizer.train(corpus,
vocab_size)`` and ``bpe_tokenizer.load(path)``."""
