"""The generated tasks: every input form appears, targets are right (checked independently), seeds reproduce."""

import datetime as dt
import random
import re

import pytest

from model import Tokenizer
from model.training.tasks import CASES, DATE_FORMS, MONTHS, TASKS, format_date, get_task, number_to_words

MONTH_NUMBER = {m.lower(): i for i, m in enumerate(MONTHS, 1)}
ABBR_NUMBER = {m[:3].lower(): i for i, m in enumerate(MONTHS, 1)}
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# an independent parser per form: (form, regex over the lower-cased text) -> (year, month, day, weekday or None)
DATE_PATTERNS = {
    "weekday_month_day_year": r"(?P<wd>[a-z]+), (?P<mon>[a-z]+) (?P<d>\d{1,2}), (?P<y>\d{4})",
    "weekday_day_month_year": r"(?P<wd>[a-z]+), (?P<d>\d{1,2}) (?P<mon>[a-z]+) (?P<y>\d{4})",
    "month_day_year": r"(?P<mon>[a-z]{4,}|may) (?P<d>\d{1,2}), (?P<y>\d{4})",
    "abbr_month_day_year": r"(?P<abbr>[a-z]{3}) (?P<d>\d{1,2}), (?P<y>\d{4})",
    "ordinal_of_month_year": r"(?P<d>\d{1,2})(?P<suf>st|nd|rd|th) of (?P<mon>[a-z]+) (?P<y>\d{4})",
    "day_month_year": r"(?P<d>\d{1,2}) (?P<mon>[a-z]+) (?P<y>\d{4})",
    "dotted": r"(?P<d>\d{2})\.(?P<m>\d{2})\.(?P<y>\d{4})",
    "slashed": r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})",
}


def parse_date(text: str) -> tuple[str, dt.date, str | None]:
    """-> (form, date, weekday name or None), without using the generator's code."""
    low = text.lower()
    for form, pattern in DATE_PATTERNS.items():
        m = re.fullmatch(pattern, low)
        if not m:
            continue
        g = m.groupdict()
        if "mon" in g and g["mon"] is not None:
            if g["mon"] not in MONTH_NUMBER:
                continue
            month = MONTH_NUMBER[g["mon"]]
        elif "abbr" in g:
            if g["abbr"] not in ABBR_NUMBER:
                continue
            month = ABBR_NUMBER[g["abbr"]]
        else:
            month = int(g["m"])
        date = dt.date(int(g["y"]), month, int(g["d"]))
        if "suf" in g:
            want = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(date.day, "th")
            assert g["suf"] == want, text
        return form, date, g.get("wd")
    raise AssertionError(f"no known form matches {text!r}")


def case_of(text: str) -> str:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "none"
    if text == text.lower():
        return "lower"
    if text == text.upper():
        return "upper"
    return "title"


def test_dates_every_form_and_case_appears_and_targets_are_right():
    pairs = TASKS["dates"].pairs(3000, seed=1)
    seen = set()
    for src, tgt in pairs:
        form, date, weekday = parse_date(src)
        assert tgt == date.isoformat(), (src, tgt)
        assert dt.date.fromisoformat(tgt) == date
        assert 1900 <= date.year <= 2099
        if weekday is not None:
            assert weekday == WEEKDAY_NAMES[date.weekday()], src  # the true weekday
            assert date.strftime("%A").lower() == weekday  # and so says strftime (C locale)
        seen.add((form, case_of(src)))
    for form in DATE_FORMS:
        if form in ("dotted", "slashed"):
            assert (form, "none") in seen
        else:
            for case in CASES:
                assert (form, case) in seen, (form, case)


def test_format_date_examples_from_the_issue():
    d = dt.date(2026, 11, 21)
    assert format_date(d, "day_month_year") == "21 November 2026"
    assert format_date(d, "month_day_year") == "November 21, 2026"
    assert format_date(d, "abbr_month_day_year") == "Nov 21, 2026"
    assert format_date(d, "weekday_month_day_year") == "Saturday, November 21, 2026"
    assert format_date(d, "weekday_day_month_year") == "Saturday, 21 November 2026"
    assert format_date(d, "ordinal_of_month_year") == "21st of November 2026"
    assert format_date(d, "dotted") == "21.11.2026"
    assert format_date(d, "slashed") == "2026/11/21"
    assert format_date(d, "weekday_month_day_year", "upper") == "SATURDAY, NOVEMBER 21, 2026"
    assert format_date(dt.date(1900, 1, 2), "ordinal_of_month_year", "lower") == "2nd of january 1900"
    assert format_date(dt.date(2011, 3, 12), "ordinal_of_month_year") == "12th of March 2011"


# an independent words -> number parser, to check the generator's spelling
_SMALL = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_SMALL.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})


def words_to_number(text: str) -> int:
    total, current = 0, 0
    for word in text.replace("-", " ").split():
        if word == "and":
            continue
        if word == "hundred":
            current *= 100
        elif word == "thousand":
            total, current = total + current * 1000, 0
        else:
            current += _SMALL[word]
    return total + current


@pytest.mark.parametrize("n, words", [(0, "zero"), (7, "seven"), (13, "thirteen"), (21, "twenty-one"),
                                      (100, "one hundred"), (312, "three hundred and twelve"),
                                      (1005, "one thousand and five"), (20_000, "twenty thousand"),
                                      (999_999, "nine hundred and ninety-nine thousand nine hundred and ninety-nine")])
def test_number_words_examples(n, words):
    assert number_to_words(n) == words


def test_numbers_targets_agree_with_an_independent_parser():
    pairs = TASKS["numbers"].pairs(3000, seed=2)
    lengths = set()
    for src, tgt in pairs:
        assert tgt.isdigit() and (tgt == "0" or not tgt.startswith("0"))
        assert words_to_number(src) == int(tgt), (src, tgt)
        lengths.add(len(tgt))
    assert lengths == {1, 2, 3, 4, 5, 6}
    for n in random.Random(0).sample(range(1_000_000), 2000):
        assert words_to_number(number_to_words(n)) == n


def test_reverse_targets_are_reversed():
    for src, tgt in TASKS["reverse"].pairs(500, seed=3):
        assert tgt.split() == src.split()[::-1]
        assert 3 <= len(src.split()) <= 9


@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_seed_same_pairs_different_seed_different_pairs(name):
    task = get_task(name)
    assert task.pairs(50, seed=5) == task.pairs(50, seed=5)
    assert task.pairs(50, seed=5) != task.pairs(50, seed=6)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_coverage_lets_tokenizers_encode_every_generated_pair(name):
    """Tokenizers trained on the coverage texts alone know every token the generator emits: no [UNK]."""
    task = get_task(name)
    src_tok = Tokenizer.train(task.coverage, level=task.src_level)
    tgt_tok = Tokenizer.train(task.coverage, level=task.tgt_level)
    for src, tgt in task.pairs(2000, seed=9):
        assert "[UNK]" not in src_tok.tokenize(src).tokens, src
        assert "[UNK]" not in tgt_tok.tokenize(tgt).tokens, tgt


def test_char_tokenizer_trains_and_round_trips():
    """Regression: the char pre-tokenizer regex used an option Oniguruma rejects ("(?s)")."""
    tok = Tokenizer.train(["2026-11-21", "a b\nc"], level="char")
    enc = tok.tokenize("2026-11-21")
    assert enc.tokens == list("2026-11-21")
    assert tok.detokenize(enc.ids) == "2026-11-21"
    assert tok.tokenize("a\nb").tokens == ["a", "\n", "b"]


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="dates"):
        get_task("nope")
