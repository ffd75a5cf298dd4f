"""Counted words: the plural form that goes with each number, in English and Russian."""

from __future__ import annotations

import pytest

from servicekit.plurals import counted, english, plural

MINUTE_RU = ("минута", "минуты", "минут")


@pytest.mark.parametrize(
    ("count", "english_text", "russian_text"),
    [
        (0, "0 minutes", "0 минут"),
        (1, "1 minute", "1 минута"),
        (2, "2 minutes", "2 минуты"),
        (5, "5 minutes", "5 минут"),
        (11, "11 minutes", "11 минут"),
        (12, "12 minutes", "12 минут"),
        (14, "14 minutes", "14 минут"),
        (21, "21 minutes", "21 минута"),
        (22, "22 minutes", "22 минуты"),
        (25, "25 minutes", "25 минут"),
        (101, "101 minutes", "101 минута"),
        (111, "111 minutes", "111 минут"),
        (112, "112 minutes", "112 минут"),
        (1001, "1001 minutes", "1001 минута"),
    ],
)
def test_each_number_takes_its_form(count: int, english_text: str, russian_text: str) -> None:
    assert counted(count, ("minute", "minutes"), language="en") == english_text
    assert english(count, "minute") == english_text
    assert counted(count, MINUTE_RU, language="ru") == russian_text


def test_irregular_english_plurals_are_given() -> None:
    assert english(1, "address", "addresses") == "1 address"
    assert english(2, "address", "addresses") == "2 addresses"


def test_a_word_with_the_wrong_number_of_forms_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 3 forms"):
        plural(2, ("минута", "минуты"), language="ru")
    with pytest.raises(ValueError, match="no plural rule"):
        plural(2, ("a", "b"), language="de")
