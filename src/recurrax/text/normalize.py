"""Text normalisation before tokenisation: every step an explicit, validated option.

Steps, applied in this order (each is skipped when its option is off):

1. **Unicode form** (``unicode_form``): :func:`unicodedata.normalize` to ``"NFC"``, ``"NFKC"``,
   ``"NFD"`` or ``"NFKD"``. The compatibility forms (``NFK*``) fold look-alikes such as the
   full-width ``"Ｃ"`` to ``"C"`` and the ligature ``"ﬁ"`` to ``"fi"``.
2. **Lowercase** (``lowercase``): :meth:`str.lower`. It comes before accent stripping because
   lowering can itself produce a combining mark (``"İ".lower() == "i\\u0307"``), which step 3 then
   removes.
3. **Strip accents** (``strip_accents``): decompose (NFD), drop the combining marks (Unicode
   category ``Mn``), recompose with ``unicode_form`` (NFC when it is ``None``) so that letters
   that were not accented, such as Hangul syllables, come back as they were. ``"é"`` becomes
   ``"e"``. Meant for Latin-script text: in other scripts combining marks are not accents.
4. **Punctuation** (``punctuation``): a character is punctuation when its Unicode category starts
   with ``P`` (``.,!?'"-_()[]{}«»¿/\\@#%&*`` and their Unicode relatives; symbols such as ``$ + <
   >`` are category ``S`` and are left alone). ``"keep"`` leaves it, ``"remove"`` deletes it
   (``"don't"`` becomes ``"dont"``), ``"separate"`` puts a space on each side of every
   punctuation character (``"end."`` becomes ``"end ."``), so a whitespace split sees it as its
   own token.
5. **Collapse whitespace** (``collapse_whitespace``): every run of whitespace becomes one space,
   and leading and trailing whitespace is removed (``" ".join(text.split())``). With
   ``punctuation="separate"`` and this off, the added spaces stay as they are.

With every option off (``normalize(text, collapse_whitespace=False)``) the text comes back
unchanged.
"""

from __future__ import annotations

import unicodedata

from recurrax.validation import check_choice

UNICODE_FORMS = (None, "NFC", "NFKC", "NFD", "NFKD")
PUNCTUATION_MODES = ("keep", "remove", "separate")


def is_punctuation(char: str) -> bool:
    """True when ``char``'s Unicode category is punctuation (``Pc Pd Ps Pe Pi Pf Po``).

    Example:
        >>> is_punctuation("."), is_punctuation("«"), is_punctuation("$"), is_punctuation("a")
        (True, True, False, False)
    """
    return unicodedata.category(char).startswith("P")


def normalize(
    text: str,
    *,
    lowercase: bool = False,
    unicode_form: str | None = None,
    strip_accents: bool = False,
    punctuation: str = "keep",
    collapse_whitespace: bool = True,
) -> str:
    """Normalises ``text`` by the steps chosen, in the order of the module docstring.

    Order: unicode form -> lowercase -> strip accents -> punctuation -> collapse whitespace.

    Args:
      text: the string to normalise.
      lowercase: lower-case with :meth:`str.lower`.
      unicode_form: ``None`` (leave the code points as they are), ``"NFC"``, ``"NFKC"``,
        ``"NFD"`` or ``"NFKD"``.
      strip_accents: remove combining marks (category ``Mn``) after an NFD decomposition.
      punctuation: ``"keep"``, ``"remove"`` (delete every ``P*`` character) or ``"separate"``
        (a space on each side of every ``P*`` character).
      collapse_whitespace: turn every whitespace run into one space and strip both ends.

    Returns:
      The normalised string.

    Raises:
      TypeError: ``text`` is not a ``str``.
      ValueError: an option has an unknown value (the message names the option).

    Example:
        >>> normalize("  Ｃａｆé, s'il vous plaît!  ", unicode_form="NFKC", lowercase=True,
        ...           strip_accents=True, punctuation="separate")
        "cafe , s ' il vous plait !"
        >>> normalize("Hello,   world!", punctuation="remove")
        'Hello world'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    check_choice("unicode_form", unicode_form, UNICODE_FORMS)
    check_choice("punctuation", punctuation, PUNCTUATION_MODES)
    for name, flag in (
        ("lowercase", lowercase),
        ("strip_accents", strip_accents),
        ("collapse_whitespace", collapse_whitespace),
    ):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool; got {flag!r}")

    if unicode_form is not None:
        text = unicodedata.normalize(unicode_form, text)
    if lowercase:
        text = text.lower()
    if strip_accents:
        decomposed = unicodedata.normalize("NFD", text)
        bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
        text = unicodedata.normalize(unicode_form or "NFC", bare)
    if punctuation == "remove":
        text = "".join(c for c in text if not is_punctuation(c))
    elif punctuation == "separate":
        text = "".join(f" {c} " if is_punctuation(c) else c for c in text)
    if collapse_whitespace:
        text = " ".join(text.split())
    return text
