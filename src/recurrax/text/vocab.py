"""A vocabulary: an immutable, ordered list of token strings whose position is the token's id.

The first four ids are reserved (:mod:`recurrax.text.special_tokens`): ``<pad>`` = 0, ``<unk>`` = 1,
``<sos>`` = 2, ``<eos>`` = 3. Then come the ordinary tokens, most frequent first.

On disk a vocabulary is JSON::

    {"format": "recurrax.vocab", "version": 1, "tokens": ["<pad>", "<unk>", ...],
     "checksum": "<sha256 hex digest>"}

where the checksum is the SHA-256 of the canonical tokens JSON: ``json.dumps(tokens,
ensure_ascii=False, separators=(",", ":"))`` encoded as UTF-8 (see :func:`tokens_checksum`). Loading
checks the format, the version and the checksum, so an edited or truncated file is refused rather
than silently shifting every id.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from recurrax.text.special_tokens import EOS, PAD, SOS, SPECIAL_TOKENS, UNK
from recurrax.validation import check_positive_int

VOCAB_FORMAT = "recurrax.vocab"
VOCAB_VERSION = 1


def tokens_checksum(tokens: Sequence[str]) -> str:
    """SHA-256 hex digest of the canonical JSON of ``tokens`` (compact, UTF-8, not ASCII-escaped).

    Example:
        >>> tokens_checksum(["<pad>", "<unk>", "<sos>", "<eos>"])[:16]
        '3f94cfad9e206c62'
    """
    canonical = json.dumps(list(tokens), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` so that ``path`` is either the old file or the complete
    new one, never a part: the text goes to a temporary file in the same directory, which is then
    renamed over ``path`` (:func:`os.replace` is atomic within a file system).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
        >>> write_atomically(path, "hello")
        >>> open(path).read()
        'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Also on KeyboardInterrupt: leave no temporary file behind.
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def check_token_sequence(name: str, tokens: Any) -> list[str]:
    """``tokens`` as a list, checked to be an iterable of ``str`` that is not itself a ``str``."""
    if isinstance(tokens, str):
        raise TypeError(
            f"{name} must be a sequence of token strings, not a str (tokenize the text first, "
            f"e.g. list(text) for characters); got {tokens[:20]!r}"
        )
    if not isinstance(tokens, Iterable):
        raise TypeError(f"{name} must be a sequence of token strings; got {type(tokens).__name__}")
    tokens = list(tokens)
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"{name}[{i}] must be a str; got {type(token).__name__} {token!r}")
    return tokens


class Vocab:
    """An immutable map between token strings and ids ``0 .. len(vocab) - 1``.

    Build one with :meth:`Vocab.build` (from counts), :meth:`Vocab.from_tokens` (from an ordered
    list) or :meth:`Vocab.load`. Ids 0-3 are always ``<pad>``, ``<unk>``, ``<sos>``, ``<eos>``; a
    model's embedding and output layer have ``len(vocab)`` rows.

    Example:
        >>> vocab = Vocab.build([["a", "b", "a"], ["c", "a", "b"]])
        >>> vocab.tokens
        ('<pad>', '<unk>', '<sos>', '<eos>', 'a', 'b', 'c')
        >>> vocab.encode(["a", "c", "zebra"], add_eos=True)
        [4, 6, 1, 3]
        >>> vocab.decode([2, 4, 5, 3, 0, 0])
        ['a', 'b']
    """

    __slots__ = ("_ids", "_tokens")

    def __init__(self, tokens: Sequence[str]):
        """Use :meth:`from_tokens`, :meth:`build` or :meth:`load`; this checks like ``from_tokens``."""
        tokens = tuple(check_token_sequence("tokens", tokens))
        if tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(
                f"tokens must start with the special tokens {list(SPECIAL_TOKENS)}; "
                f"got {list(tokens[: len(SPECIAL_TOKENS)])}"
            )
        ids: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in ids:
                raise ValueError(
                    f"tokens must be distinct; got {token!r} at ids {ids[token]} and {i}"
                )
            ids[token] = i
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_ids", ids)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Vocab is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Vocab is immutable")

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> Vocab:
        """A vocabulary whose token ``i`` is ``tokens[i]``.

        Args:
          tokens: distinct strings; the first four must be ``<pad> <unk> <sos> <eos>``, in that
            order.

        Raises:
          ValueError: the specials are missing or out of order, or a token repeats.

        Example:
            >>> Vocab.from_tokens(["<pad>", "<unk>", "<sos>", "<eos>", "yes", "no"]).token_to_id("no")
            5
        """
        return cls(tokens)

    @classmethod
    def build(
        cls,
        token_sequences: Iterable[Sequence[str]],
        *,
        max_size: int | None = None,
        min_freq: int = 1,
    ) -> Vocab:
        """Counts the tokens of ``token_sequences`` and keeps the frequent ones.

        Order after the four specials: by count, highest first; equal counts by the token string
        in code-point order (Python's ``<`` on ``str``), so the result depends only on the counts,
        never on the order the tokens were seen. The special strings, if they occur in the data,
        are not counted: they already have their ids.

        Args:
          token_sequences: an iterable of token lists (each a sequence of ``str``, not a ``str``).
          max_size: the largest ``len(vocab)``, the four specials INCLUDED, so it is the size of
            the embedding table; at least 4. The least frequent tokens beyond it are dropped.
            ``None``: no limit.
          min_freq: keep tokens seen at least this many times.

        Returns:
          A :class:`Vocab`.

        Example:
            >>> data = [["b", "a"], ["a", "c", "b"], ["d"]]
            >>> Vocab.build(data).tokens[4:]
            ('a', 'b', 'c', 'd')
            >>> Vocab.build(data, min_freq=2).tokens[4:]
            ('a', 'b')
            >>> len(Vocab.build(data, max_size=5))
            5
        """
        if max_size is not None:
            check_positive_int("max_size", max_size)
            if max_size < len(SPECIAL_TOKENS):
                raise ValueError(
                    f"max_size must be at least {len(SPECIAL_TOKENS)} (it counts the special "
                    f"tokens); got {max_size}"
                )
        check_positive_int("min_freq", min_freq)
        if isinstance(token_sequences, str) or not isinstance(token_sequences, Iterable):
            raise TypeError(
                "token_sequences must be an iterable of token lists; got "
                f"{type(token_sequences).__name__}"
            )
        counts: Counter[str] = Counter()
        for i, sequence in enumerate(token_sequences):
            counts.update(check_token_sequence(f"token_sequences[{i}]", sequence))
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        kept = sorted(
            (token for token, count in counts.items() if count >= min_freq),
            key=lambda token: (-counts[token], token),
        )
        if max_size is not None:
            kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls((*SPECIAL_TOKENS, *kept))

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order (specials first)."""
        return self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __iter__(self):
        return iter(self._tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self._tokens[:8])
        more = ", ..." if len(self) > 8 else ""
        return f"Vocab(size={len(self)}, tokens=[{shown}{more}])"

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ``UNK`` (1) when it is not in the vocabulary (as :meth:`encode`).

        Example:
            >>> vocab = Vocab.build([["hi"]])
            >>> vocab.token_to_id("hi"), vocab.token_to_id("bye")
            (4, 1)
        """
        if not isinstance(token, str):
            raise TypeError(f"token must be a str; got {type(token).__name__}")
        return self._ids.get(token, UNK)

    def id_to_token(self, id: int) -> str:
        """The token with id ``id``.

        Raises:
          ValueError: ``id`` is not in ``[0, len(vocab))``.

        Example:
            >>> Vocab.build([["hi"]]).id_to_token(4)
            'hi'
        """
        if isinstance(id, bool) or not isinstance(id, int | np.integer):
            raise TypeError(f"id must be an int; got {type(id).__name__}")
        if not 0 <= id < len(self):
            raise ValueError(f"id must lie in [0, {len(self)}); got {id}")
        return self._tokens[id]

    def encode(
        self, tokens: Iterable[str], *, add_sos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """The ids of ``tokens``; a token not in the vocabulary becomes ``UNK`` (1).

        Args:
          tokens: token strings (a list, not a ``str``: tokenize first).
          add_sos: put ``SOS`` (2) in front.
          add_eos: put ``EOS`` (3) at the end.

        Returns:
          A list of ints of length ``len(tokens) + add_sos + add_eos``.

        Example:
            >>> Vocab.build([["hi", "there"]]).encode(["hi", "you"], add_sos=True)
            [2, 4, 1]
        """
        tokens = check_token_sequence("tokens", tokens)
        ids = [self._ids.get(token, UNK) for token in tokens]
        return [SOS] * add_sos + ids + [EOS] * add_eos

    def decode(
        self, ids: Iterable[int], *, strip_specials: bool = True, stop_at_eos: bool = True
    ) -> list[str]:
        """The tokens of ``ids``.

        ``stop_at_eos`` is applied first: everything from the first ``EOS`` on is dropped (a
        decoder's output after its end marker is noise). Then ``strip_specials`` drops ``<pad>``,
        ``<sos>`` and ``<eos>``; ``<unk>`` is kept, because it stands for a real word in the text
        and a score such as BLEU should count it as a wrong one.

        Args:
          ids: a 1-D sequence or array of integer ids in ``[0, len(vocab))``.
          strip_specials: drop ``<pad>``, ``<sos>``, ``<eos>``.
          stop_at_eos: cut at the first ``EOS``.

        Returns:
          A list of token strings.

        Raises:
          ValueError: ``ids`` is not 1-D or holds an id outside the vocabulary.

        Example:
            >>> vocab = Vocab.build([["hi", "there"]])
            >>> vocab.decode([2, 4, 1, 3, 5])
            ['hi', '<unk>']
            >>> vocab.decode([2, 4, 1, 3, 5], strip_specials=False, stop_at_eos=False)
            ['<sos>', 'hi', '<unk>', '<eos>', 'there']
        """
        array = np.asarray(ids)
        if array.ndim != 1:
            raise ValueError(f"ids must be 1-D; got shape {array.shape}")
        if array.size == 0:
            return []
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"ids must be integers; got dtype {array.dtype}")
        if array.min() < 0 or array.max() >= len(self):
            raise ValueError(
                f"ids must lie in [0, {len(self)}); got values in [{array.min()}, {array.max()}]"
            )
        values = array.tolist()
        if stop_at_eos and EOS in values:
            values = values[: values.index(EOS)]
        if strip_specials:
            values = [i for i in values if i not in (PAD, SOS, EOS)]
        return [self._tokens[i] for i in values]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as JSON with its checksum (format in the module docstring),
        atomically: a failure leaves the previous file, or none, never half a file.

        Example:
            >>> import tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "vocab.json")
            >>> vocab = Vocab.build([["hi", "there"]])
            >>> vocab.save(path)
            >>> Vocab.load(path) == vocab
            True
        """
        tokens = list(self._tokens)
        data = {
            "format": VOCAB_FORMAT,
            "version": VOCAB_VERSION,
            "tokens": tokens,
            "checksum": tokens_checksum(tokens),
        }
        write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Reads a vocabulary written by :meth:`save`.

        Raises:
          ValueError: the file is not JSON, its ``format`` is not ``"recurrax.vocab"``, its
            ``version`` is not 1, its tokens are malformed, or its checksum does not match its
            tokens; the message starts with ``vocab file <path>:`` and names the problem.

        Example:
            >>> import tempfile, os
            >>> path = os.path.join(tempfile.mkdtemp(), "vocab.json")
            >>> Vocab.build([["a", "b", "b"]]).save(path)
            >>> Vocab.load(path).tokens[4:]
            ('b', 'a')
        """
        where = f"vocab file {os.fspath(path)}"
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{where}: must hold a JSON object; got {type(data).__name__}")
        if data.get("format") != VOCAB_FORMAT:
            raise ValueError(
                f"{where}: format must be {VOCAB_FORMAT!r}; got {data.get('format')!r}"
            )
        if data.get("version") != VOCAB_VERSION:
            raise ValueError(
                f"{where}: version must be {VOCAB_VERSION}; got {data.get('version')!r}"
            )
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{where}: tokens must be a list of strings")
        expected = tokens_checksum(tokens)
        if data.get("checksum") != expected:
            raise ValueError(
                f"{where}: checksum mismatch: the file records {data.get('checksum')!r} but its "
                f"tokens hash to {expected!r} (the file was edited or corrupted)"
            )
        try:
            return cls(tokens)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
