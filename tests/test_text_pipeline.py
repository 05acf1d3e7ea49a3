"""Tokenizers (character, regex word, byte-level BPE): round trips, BPE determinism and merges,
the whole text -> ids -> text pipeline, the package without its optional extras, and the
docstring examples of recurrax.text."""

import doctest
import random
import subprocess
import sys

import pytest

import recurrax.text
from recurrax.text import (
    BPETokenizer,
    Tokenizer,
    Vocab,
    bpe_tokenizer,
    bucket_batches,
    char_tokenizer,
    normalize,
    word_tokenizer,
)

WORDS = ["banana", "apple", "cherry", "the", "a", "of", "grape", "kiwi", "melon", "straw", "berry"]
# Strings whose round trip must hold whatever the corpus: whitespace of every kind, accents
# (composed and decomposed), other scripts, emoji, control characters, text that looks special.
AWKWARD = [
    "",
    " ",
    "  leading and trailing  ",
    "tabs\tand\nnew\r\nlines\n",
    "naïve café, crème brûlée",
    "Cafe\u0301 e\u0301",
    "日本語のテキスト 한국어",
    "emoji 😀👍🏽 and ﬁ ligature",
    "\x00\x07 control",
    "<pad> <eos> are just text here",
    "unseen zyxwvut qqq",
]


def generated_corpus(count=200, seed=0):
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + rng.choice(".!?,")
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(generated_corpus(), vocab_size=320)


def random_text(rng, length):
    alphabet = "abc XYZ,.!\t\né日😀\u0301"
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_char_tokenizer_round_trips_every_string():
    chars = char_tokenizer()
    assert isinstance(chars, Tokenizer)
    assert chars.tokenize("héllo 😀") == ["h", "é", "l", "l", "o", " ", "😀"]
    assert chars.detokenize(["a", "bc", ""]) == "abc"
    rng = random.Random(0)
    for text in [*AWKWARD, *(random_text(rng, n) for n in range(30))]:
        assert chars.detokenize(chars.tokenize(text)) == text
    with pytest.raises(TypeError, match="text must be a str; got list"):
        chars.tokenize(["a"])
    with pytest.raises(TypeError, match="tokens must be a sequence of str; got str"):
        chars.detokenize("abc")


def test_word_tokenizer_splits_words_and_punctuation():
    words = word_tokenizer()
    assert isinstance(words, Tokenizer)
    assert words.tokenize("Hello, world! It's 3.5 km...") == [
        "Hello",
        ",",
        "world",
        "!",
        "It",
        "'",
        "s",
        "3",
        ".",
        "5",
        "km",
        ".",
        ".",
        ".",
    ]
    assert words.tokenize("  \t\n ") == []
    assert words.detokenize(["Hello", ",", "world"]) == "Hello , world"
    # Round trip holds exactly for text that is its tokens joined by single spaces ...
    for text in ["Hello , world !", "a", "", "x = 1 + 2", "naïve café"]:
        assert words.detokenize(words.tokenize(text)) == text
    for text in ["Hello, world!", " a", "a  b", "a\nb"]:
        assert words.detokenize(words.tokenize(text)) != text
    # ... such as normalize(punctuation="separate") output when no symbol touches a word ...
    separated = normalize("He said: «don't», then left...", punctuation="separate")
    assert words.detokenize(words.tokenize(separated)) == separated
    # ... and re-tokenizing the detokenized text gives the same tokens for every string.
    rng = random.Random(1)
    for text in [*AWKWARD, *(random_text(rng, n) for n in range(40))]:
        tokens = words.tokenize(text)
        assert words.tokenize(words.detokenize(tokens)) == tokens


def test_word_tokenizer_patterns():
    assert word_tokenizer(r"\S+").tokenize("don't stop, ok") == ["don't", "stop,", "ok"]
    # Groups do not change the token: it is the whole match.
    assert word_tokenizer(r"(\w)\w*").tokenize("ab cd") == ["ab", "cd"]
    with pytest.raises(ValueError, match=r"pattern must not match the empty string; got '\\\\w\*'"):
        word_tokenizer(r"\w*")
    with pytest.raises(ValueError, match="pattern must be a valid regular expression"):
        word_tokenizer(r"(\w+")
    with pytest.raises(TypeError, match="pattern must be a str"):
        word_tokenizer(None)


def test_bpe_round_trips_exactly(bpe):
    assert isinstance(bpe, Tokenizer) and isinstance(bpe, bpe_tokenizer)
    rng = random.Random(2)
    texts = [*generated_corpus(20, seed=9), *AWKWARD, *(random_text(rng, n) for n in range(60))]
    for text in texts:
        tokens = bpe.tokenize(text)
        assert all(token in set(bpe.pieces) for token in tokens)
        assert bpe.detokenize(tokens) == text
    assert bpe.tokenize("") == []
    with pytest.raises(ValueError, match="text must be encodable as UTF-8; got a lone surrogate"):
        bpe.tokenize("ok \ud800")
    with pytest.raises(TypeError, match="text must be a str"):
        bpe.tokenize(b"bytes")


def test_bpe_merges_frequent_words_into_single_pieces(bpe):
    # Frequent words in the middle of a sentence carry their space: one piece each.
    for word in ["banana", "cherry", "melon", "straw"]:
        assert bpe.tokenize(f"a {word}") == ["a", f"Ġ{word}"]
    assert bpe.tokenize("the") == ["the"]
    # A word the corpus never saw is spelled in smaller pieces.
    assert len(bpe.tokenize(" zyxwvut")) > 3
    assert 256 < len(bpe) <= 320
    # The model has no special tokens of its own.
    assert not {"<pad>", "<unk>", "<sos>", "<eos>"} & set(bpe.pieces)
    assert "<eos>" not in bpe.tokenize("<eos>")


def test_bpe_training_is_deterministic_and_order_independent(bpe):
    corpus = generated_corpus()
    again = bpe_tokenizer.train(iter(corpus), vocab_size=320)
    shuffled = corpus[:]
    random.Random(5).shuffle(shuffled)
    reordered = BPETokenizer.train(shuffled, vocab_size=320)
    assert bpe.pieces == again.pieces == reordered.pieces
    sample = "the banana of a kiwi, naïve!"
    assert bpe.tokenize(sample) == again.tokenize(sample) == reordered.tokenize(sample)
    # Fewer pieces asked for: a prefix of the same merge sequence.
    smaller = BPETokenizer.train(corpus, vocab_size=280)
    assert len(smaller) == 280 and smaller.pieces == bpe.pieces[:280]
    # A higher min_frequency merges no rarer pair.
    strict = BPETokenizer.train(corpus, vocab_size=320, min_frequency=10**6)
    assert len(strict) == 256


def test_bpe_save_load(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    loaded = bpe_tokenizer.load(path)
    assert loaded.pieces == bpe.pieces
    for text in AWKWARD:
        assert loaded.tokenize(text) == bpe.tokenize(text)
        assert loaded.detokenize(loaded.tokenize(text)) == text
    text = path.read_text(encoding="utf-8")
    (tmp_path / "v2.json").write_text(text.replace('"version": 1', '"version": 2', 1))
    with pytest.raises(ValueError, match=r"BPE file .*v2.json: version must be 1; got 2"):
        BPETokenizer.load(tmp_path / "v2.json")
    (tmp_path / "vocab.json").write_text('{"format": "recurrax.vocab"}')
    with pytest.raises(ValueError, match=r"format must be 'recurrax\.bpe'; got 'recurrax\.vocab'"):
        BPETokenizer.load(tmp_path / "vocab.json")


def test_bpe_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"vocab_size must be at least 256 \(the byte alphabet\)"):
        BPETokenizer.train(["a b"], vocab_size=100)
    with pytest.raises(ValueError, match="min_frequency must be a positive integer; got 0"):
        BPETokenizer.train(["a b"], vocab_size=300, min_frequency=0)
    with pytest.raises(TypeError, match="corpus must be an iterable of texts; got a str"):
        BPETokenizer.train("a b", vocab_size=300)
    with pytest.raises(TypeError, match=r"corpus\[1\] must be a str; got int"):
        BPETokenizer.train(["a", 3], vocab_size=300)


def test_missing_extra_gives_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(ImportError, match=r"pip install 'recurrax\[text\]'"):
        BPETokenizer.train(["a b"], vocab_size=300)
    with pytest.raises(ImportError, match=r"pip install 'recurrax\[text\]'"):
        BPETokenizer.load("unused.json")


def test_package_imports_without_the_optional_extras():
    script = (
        "import sys\n"
        "sys.modules['tokenizers'] = None\n"
        "sys.modules['nltk'] = None\n"
        "import recurrax.text as t\n"
        "assert t.word_tokenizer().tokenize('a, b') == ['a', ',', 'b']\n"
        "assert t.Vocab.build([['a']]).encode(['a']) == [4]\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("make", ["char", "word", "bpe"])
def test_text_to_ids_to_text(make, bpe):
    corpus = [normalize(s, lowercase=True, punctuation="separate") for s in generated_corpus(60)]
    tokenizer = {"char": char_tokenizer(), "word": word_tokenizer(), "bpe": bpe}[make]
    vocab = Vocab.build(tokenizer.tokenize(s) for s in corpus)
    encoded = [vocab.encode(tokenizer.tokenize(s), add_sos=True, add_eos=True) for s in corpus]
    decoded = {}
    for array, lengths in bucket_batches(encoded, (16, 64, 256), 8, shuffle_seed=0):
        for row, length in zip(array, lengths, strict=True):
            text = tokenizer.detokenize(vocab.decode(row[:length]))
            decoded[text] = decoded.get(text, 0) + 1
    assert decoded == {s: corpus.count(s) for s in set(corpus)}
    # A token outside the vocabulary comes back as <unk>.
    unseen = vocab.decode(vocab.encode(tokenizer.tokenize("the ☃")))
    assert unseen[-1] == "<unk>"


def test_docstring_examples_run():
    modules = [
        sys.modules[f"recurrax.text.{name}"] for name in ("normalize", "tokenizers", "vocab")
    ]
    modules += [sys.modules["recurrax.text.batching"]]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for module in modules:
        for test in doctest.DocTestFinder().find(module):
            runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0 and attempted > 40
    public = [getattr(recurrax.text, name) for name in recurrax.text.__all__]
    for obj in public:
        if callable(obj):
            assert obj.__doc__, f"{obj!r} has no docstring"
