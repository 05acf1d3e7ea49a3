"""Text normalisation: each option against hand-written expected strings, the order of the steps,
and the validation of every option."""

import unicodedata

import pytest

from recurrax.text import normalize


def test_unicode_forms():
    fullwidth = "Ｃａｆé"  # full-width C, a, f and a precomposed é
    assert normalize(fullwidth) == fullwidth  # no unicode_form: the code points stay
    assert normalize(fullwidth, unicode_form="NFKC") == "Café"
    assert normalize(fullwidth, unicode_form="NFC") == fullwidth  # NFC does not fold widths
    assert normalize("e\u0301", unicode_form="NFC") == "\u00e9"
    assert normalize("\u00e9", unicode_form="NFD") == "e\u0301"
    assert normalize("ﬁne ²", unicode_form="NFKD") == "fine 2"
    assert normalize("ﬁne", unicode_form="NFC") == "ﬁne"


def test_strip_accents():
    assert normalize("Ｃａｆé", unicode_form="NFKC", strip_accents=True) == "Cafe"
    assert normalize("Ｃａｆé", unicode_form="NFKC", strip_accents=True, lowercase=True) == "cafe"
    assert normalize("Crème brûlée, Ñandú", strip_accents=True) == "Creme brulee, Nandu"
    # Accents already decomposed are stripped too.
    assert normalize("Cafe\u0301", strip_accents=True) == "Cafe"
    # Hangul decomposes under NFD into letters that are not marks: they are recomposed.
    assert normalize("한국어 é", strip_accents=True) == "한국어 e"
    # The result is in the requested form: under NFD the Hangul syllable stays decomposed.
    stripped = normalize("é ñ 한", unicode_form="NFD", strip_accents=True)
    assert stripped == "e n \u1112\u1161\u11ab" == unicodedata.normalize("NFD", "e n 한")
    # Without strip_accents the accent stays.
    assert normalize("Crème") == "Crème"


def test_lowercase_comes_before_accent_stripping():
    # "İ".lower() is "i" plus a combining dot above; stripping after lowering removes the dot.
    assert normalize("İstanbul", lowercase=True) == "i\u0307stanbul"
    assert normalize("İstanbul", lowercase=True, strip_accents=True) == "istanbul"
    assert normalize("HeLLo WORLD", lowercase=True) == "hello world"


def test_punctuation_modes():
    text = "Hello, world! (It's «fine»)... $5+3 <ok>"
    assert normalize(text) == text
    assert normalize(text, punctuation="keep") == text
    # Symbols ($ + < >) are category S, not punctuation: they stay in every mode.
    assert normalize(text, punctuation="remove") == "Hello world Its fine $5+3 <ok>"
    assert (
        normalize(text, punctuation="separate")
        == "Hello , world ! ( It ' s « fine » ) . . . $5+3 <ok>"
    )
    assert normalize("under_score - dash¿", punctuation="separate") == "under _ score - dash ¿"
    assert normalize("a,b", punctuation="separate", collapse_whitespace=False) == "a , b"


def test_collapse_whitespace():
    assert normalize("  a \t b\n\nc  ") == "a b c"
    assert normalize("  a \t b\n\nc  ", collapse_whitespace=False) == "  a \t b\n\nc  "
    assert normalize("\u00a0a\u2003b\u3000") == "a b"  # Unicode spaces are whitespace too
    assert normalize("") == ""
    assert normalize(" \n ") == ""


def test_all_steps_together_and_all_off():
    text = "  Ｃａｆé,\tCRÈME   brûlée!  "
    assert (
        normalize(
            text,
            unicode_form="NFKC",
            lowercase=True,
            strip_accents=True,
            punctuation="separate",
        )
        == "cafe , creme brulee !"
    )
    assert (
        normalize(text, unicode_form="NFKC", lowercase=True, punctuation="remove")
        == "café crème brûlée"
    )
    assert normalize(text, collapse_whitespace=False) == text


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"unicode_form must be one of .* got 'NFX'"):
        normalize("a", unicode_form="NFX")
    with pytest.raises(ValueError, match=r"unicode_form must be one of .* got 'nfc'"):
        normalize("a", unicode_form="nfc")
    with pytest.raises(ValueError, match=r"punctuation must be one of .* got 'strip'"):
        normalize("a", punctuation="strip")
    with pytest.raises(TypeError, match="lowercase must be a bool; got 'yes'"):
        normalize("a", lowercase="yes")
    with pytest.raises(TypeError, match="strip_accents must be a bool"):
        normalize("a", strip_accents=1)
    with pytest.raises(TypeError, match="collapse_whitespace must be a bool"):
        normalize("a", collapse_whitespace=None)
    with pytest.raises(TypeError, match="text must be a str; got bytes"):
        normalize(b"a")
