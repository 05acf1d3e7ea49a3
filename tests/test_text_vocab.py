"""Vocab: fixed specials, counting and ordering against a brute-force reference, encode/decode,
and the checked, atomic file format."""

import hashlib
import json
import os
import random
import re

import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.text import EOS, PAD, SOS, UNK, Vocab
from recurrax.text.special_tokens import SPECIAL_TOKENS

SPECIALS = ("<pad>", "<unk>", "<sos>", "<eos>")


def reference_order(sequences, min_freq=1, max_size=None):
    """Counts with a plain loop, then repeatedly takes the most frequent, smallest string."""
    counts = {}
    for sequence in sequences:
        for token in sequence:
            if token not in SPECIALS:
                counts[token] = counts.get(token, 0) + 1
    left = {t: c for t, c in counts.items() if c >= min_freq}
    order = []
    while left:
        best = max(left.values())
        token = min(t for t, c in left.items() if c == best)
        order.append(token)
        del left[token]
    if max_size is not None:
        order = order[: max_size - 4]
    return (*SPECIALS, *order)


def test_specials_have_fixed_ids():
    assert (PAD, UNK, SOS, EOS) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == SPECIALS
    vocab = Vocab.build([])
    assert vocab.tokens == SPECIALS and len(vocab) == 4
    for i, token in enumerate(SPECIALS):
        assert vocab.token_to_id(token) == i and vocab.id_to_token(i) == token
    vocab = Vocab.build([["x", "<eos>", "<pad>", "x"]])
    # Specials in the data are not counted again: they keep their ids and appear once.
    assert vocab.tokens == (*SPECIALS, "x")


@pytest.mark.parametrize(
    "min_freq, max_size", [(1, None), (2, None), (3, None), (1, 4), (1, 7), (2, 6), (1, 1000)]
)
def test_build_matches_brute_force(min_freq, max_size):
    rng = random.Random(0)
    alphabet = [f"w{i}" for i in range(15)] + ["b", "a", "B", "é", "ab"]
    sequences = [
        [rng.choice(alphabet[: rng.randint(1, len(alphabet))]) for _ in range(rng.randint(0, 8))]
        for _ in range(40)
    ]
    vocab = Vocab.build(sequences, min_freq=min_freq, max_size=max_size)
    expected = reference_order(sequences, min_freq, max_size)
    assert vocab.tokens == expected
    if max_size is not None:
        assert len(vocab) <= max_size


def test_min_freq_and_max_size_by_hand():
    data = [["the", "cat", "the"], ["a", "cat", "the", "dog"], ["dog"]]
    # counts: the 3, cat 2, dog 2, a 1
    assert Vocab.build(data).tokens[4:] == ("the", "cat", "dog", "a")
    assert Vocab.build(data, min_freq=2).tokens[4:] == ("the", "cat", "dog")
    assert Vocab.build(data, min_freq=3).tokens[4:] == ("the",)
    assert Vocab.build(data, min_freq=4).tokens == SPECIALS
    # max_size counts the four specials.
    assert Vocab.build(data, max_size=6).tokens == (*SPECIALS, "the", "cat")
    assert len(Vocab.build(data, max_size=6)) == 6
    assert Vocab.build(data, max_size=4).tokens == SPECIALS
    with pytest.raises(ValueError, match=r"max_size must be at least 4 .* got 3"):
        Vocab.build(data, max_size=3)
    with pytest.raises(ValueError, match="min_freq must be a positive integer; got 0"):
        Vocab.build(data, min_freq=0)


def test_ties_are_broken_by_string_not_by_insertion_order():
    forward = Vocab.build([["b", "a", "c", "B"]])
    backward = Vocab.build([["c", "B"], ["a"], ["b"]])
    assert forward.tokens[4:] == backward.tokens[4:] == ("B", "a", "b", "c")
    # Counts decide first, then strings: "z" twice beats "a" once.
    assert Vocab.build([["a", "z", "z", "m", "m"]]).tokens[4:] == ("m", "z", "a")
    # The tie-break is applied before max_size cuts.
    assert Vocab.build([["d", "c", "b", "a"]], max_size=6).tokens[4:] == ("a", "b")
    # Any iterable of sequences works, including a generator.
    assert Vocab.build(iter([("b",), ("a",)])).tokens[4:] == ("a", "b")


def test_encode_unknowns_and_membership():
    vocab = Vocab.build([["hello", "world", "hello"]])
    assert vocab.tokens == (*SPECIALS, "hello", "world")
    assert vocab.encode(["hello", "there", "world"]) == [4, UNK, 5]
    assert vocab.encode(["hello"], add_sos=True, add_eos=True) == [SOS, 4, EOS]
    assert vocab.encode([], add_eos=True) == [EOS]
    assert vocab.token_to_id("there") == UNK
    assert "hello" in vocab and "there" not in vocab and "<unk>" in vocab
    assert vocab.id_to_token(5) == "world"
    with pytest.raises(ValueError, match=r"id must lie in \[0, 6\); got 6"):
        vocab.id_to_token(6)
    with pytest.raises(TypeError, match="tokens must be a sequence of token strings, not a str"):
        vocab.encode("hello")
    with pytest.raises(TypeError, match=r"tokens\[1\] must be a str; got int"):
        vocab.encode(["hello", 3])
    with pytest.raises(TypeError, match=r"token_sequences\[1\] must be a sequence .* not a str"):
        Vocab.build([["a"], "abc"])
    with pytest.raises(TypeError, match="token_sequences must be an iterable of token lists"):
        Vocab.build("abc")


def test_encode_decode_round_trip_and_decode_options():
    rng = random.Random(1)
    words = [f"t{i}" for i in range(30)]
    sequences = [[rng.choice(words) for _ in range(rng.randint(0, 10))] for _ in range(20)]
    vocab = Vocab.build(sequences)
    for sequence in sequences:
        ids = vocab.encode(sequence, add_sos=True, add_eos=True)
        assert vocab.decode(ids) == sequence
        padded = [*ids, PAD, PAD, 7]  # after the EOS: padding and noise
        assert vocab.decode(padded) == sequence
        assert vocab.decode(np.asarray(padded, np.int32)) == sequence
        assert vocab.decode(jnp.asarray(padded)) == sequence

    vocab = Vocab.build([["a", "b"]])  # a=4, b=5
    ids = [SOS, 4, UNK, PAD, 5, EOS, 4, PAD]
    assert vocab.decode(ids) == ["a", "<unk>", "b"]
    assert vocab.decode(ids, stop_at_eos=False) == ["a", "<unk>", "b", "a"]
    assert vocab.decode(ids, strip_specials=False) == ["<sos>", "a", "<unk>", "<pad>", "b"]
    assert vocab.decode(ids, strip_specials=False, stop_at_eos=False) == [
        "<sos>",
        "a",
        "<unk>",
        "<pad>",
        "b",
        "<eos>",
        "a",
        "<pad>",
    ]
    assert vocab.decode([]) == []
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 6\); got values in \[0, 6\]"):
        vocab.decode([0, 6])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 6\); got values in \[-1, 4\]"):
        vocab.decode([-1, 4])
    with pytest.raises(ValueError, match=r"ids must be 1-D; got shape \(1, 2\)"):
        vocab.decode([[4, 5]])
    with pytest.raises(TypeError, match="ids must be integers; got dtype float64"):
        vocab.decode([4.0])


def test_from_tokens_checks_specials_and_duplicates_and_is_immutable():
    vocab = Vocab.from_tokens([*SPECIALS, "z", "a"])
    assert vocab.encode(["a", "z"]) == [5, 4]
    assert vocab == Vocab.from_tokens((*SPECIALS, "z", "a")) != Vocab.from_tokens([*SPECIALS, "a"])
    assert list(vocab) == [*SPECIALS, "z", "a"]
    with pytest.raises(ValueError, match="tokens must start with the special tokens"):
        Vocab.from_tokens(["<unk>", "<pad>", "<sos>", "<eos>", "a"])
    with pytest.raises(ValueError, match="tokens must start with the special tokens"):
        Vocab.from_tokens(["a", "b"])
    with pytest.raises(ValueError, match="tokens must be distinct; got 'a' at ids 4 and 6"):
        Vocab.from_tokens([*SPECIALS, "a", "b", "a"])
    with pytest.raises(ValueError, match="tokens must be distinct; got '<eos>'"):
        Vocab.from_tokens([*SPECIALS, "<eos>"])
    with pytest.raises(AttributeError, match="Vocab is immutable"):
        vocab._tokens = ()
    with pytest.raises(AttributeError, match="Vocab is immutable"):
        vocab.extra = 1
    assert vocab.tokens == (*SPECIALS, "z", "a")


def test_save_load_round_trip_and_file_format(tmp_path):
    vocab = Vocab.build([["naïve", "日本", "a b", '"q"', "naïve"]])
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded == vocab and loaded.tokens == vocab.tokens
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "recurrax.vocab" and data["version"] == 1
    assert data["tokens"] == list(vocab.tokens)
    canonical = json.dumps(list(vocab.tokens), ensure_ascii=False, separators=(",", ":"))
    assert data["checksum"] == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    # Saving over an existing file replaces it and leaves nothing else in the directory.
    Vocab.build([["other"]]).save(str(path))
    assert Vocab.load(str(path)).tokens == (*SPECIALS, "other")
    assert os.listdir(tmp_path) == ["vocab.json"]


def rewrite(path, **changes):
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_load_rejects_wrong_format_version_checksum_and_garbage(tmp_path):
    path = tmp_path / "vocab.json"
    vocab = Vocab.build([["a", "b"]])

    vocab.save(path)
    rewrite(path, version=2)
    with pytest.raises(
        ValueError, match=f"vocab file {re.escape(str(path))}: version must be 1; got 2"
    ):
        Vocab.load(path)

    vocab.save(path)
    rewrite(path, format="something.else")
    with pytest.raises(
        ValueError, match=r"format must be 'recurrax\.vocab'; got 'something\.else'"
    ):
        Vocab.load(path)

    vocab.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    rewrite(path, tokens=[*data["tokens"][:-1], "B"])  # one token changed, checksum not
    with pytest.raises(ValueError, match=f"vocab file {re.escape(str(path))}: checksum mismatch"):
        Vocab.load(path)

    vocab.save(path)
    rewrite(path, checksum="0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch: the file records '0000"):
        Vocab.load(path)

    vocab.save(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")  # a truncated file
    with pytest.raises(ValueError, match=f"vocab file {re.escape(str(path))}: not valid JSON"):
        Vocab.load(path)

    # A consistent checksum over tokens that break the specials rule is still refused.
    bad = ["a", "<pad>", "<unk>", "<sos>", "<eos>"]
    canonical = json.dumps(bad, ensure_ascii=False, separators=(",", ":"))
    vocab.save(path)
    rewrite(path, tokens=bad, checksum=hashlib.sha256(canonical.encode()).hexdigest())
    with pytest.raises(
        ValueError, match=f"vocab file {re.escape(str(path))}: tokens must start with the special"
    ):
        Vocab.load(path)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failing):
    path = tmp_path / "vocab.json"
    old = Vocab.build([["old"]])
    old.save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="disk full"):
        Vocab.build([["new", "words"]]).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert Vocab.load(path) == old
    assert os.listdir(tmp_path) == ["vocab.json"]
