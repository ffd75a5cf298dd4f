"""Counted words in the desk's languages: ``1 minute`` / ``5 minutes``, ``1 минута`` / ``2 минуты`` /
``5 минут`` / ``21 минута`` (CLDR's cardinal plural rules for English and Russian, integers only)."""

from __future__ import annotations

from collections.abc import Sequence

FORMS_PER_LANGUAGE = {"en": 2, "ru": 3}
"""How many forms a word takes: English one/other; Russian one/few/many."""


def plural_index(count: int, language: str) -> int:
    """Which of a word's forms goes with ``count``: English ``0`` one, ``1`` other; Russian ``0`` one
    (1, 21, 101), ``1`` few (2-4, 22-24), ``2`` many (0, 5-20, 11-14, 25, 111)."""
    n = abs(count)
    if language == "ru":
        if n % 10 == 1 and n % 100 != 11:
            return 0
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
            return 1
        return 2
    if language == "en":
        return 0 if n == 1 else 1
    raise ValueError(f"no plural rule for language {language!r}")


def plural(count: int, forms: Sequence[str], *, language: str) -> str:
    """The form of a word that goes with ``count``: ``plural(2, ("минута", "минуты", "минут"), language="ru")``
    is ``минуты``."""
    index = plural_index(count, language)
    if len(forms) != FORMS_PER_LANGUAGE[language]:
        raise ValueError(f"{language!r} needs {FORMS_PER_LANGUAGE[language]} forms, got {len(forms)}")
    return forms[index]


def counted(count: int, forms: Sequence[str], *, language: str) -> str:
    """``5 минут``, ``1 minute``: the count and the form of the word that goes with it."""
    return f"{count} {plural(count, forms, language=language)}"


def english(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 minute``, ``3 minutes``; ``plural_form`` when it is not ``singular + "s"``."""
    return counted(count, (singular, plural_form or f"{singular}s"), language="en")
