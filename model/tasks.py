"""Generated toy tasks whose cross-attention tells a story: dates -> ISO, reversing, number words -> digits.

Every task is a seeded generator of (source, target) pairs; nothing is downloaded.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
MONTH_ABBRS = tuple(m[:3] for m in MONTHS)  # Jan ... Dec
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # date.weekday() order
DATE_FORMS = ("day_month_year", "month_day_year", "abbr_month_day_year", "weekday_month_day_year",
              "weekday_day_month_year", "ordinal_of_month_year", "dotted", "slashed")
CASES = ("lower", "upper", "title")
FIRST_DAY, LAST_DAY = dt.date(1900, 1, 1), dt.date(2099, 12, 31)

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
MAX_NUMBER = 999_999

REVERSE_WORDS = ("cat", "dog", "owl", "fox", "bee", "cow", "pig", "hen", "ant", "elk", "red", "blue", "green",
                 "gold", "pink", "grey", "sun", "moon", "star", "rain", "snow", "wind", "tree", "leaf", "rock",
                 "sea", "hill", "lake", "one", "two", "three", "four")
REVERSE_LENGTHS = (3, 9)  # words per sequence, inclusive


def ordinal_suffix(day: int) -> str:
    """1 -> st, 2 -> nd, 3 -> rd, 11..13 -> th, 21 -> st ..."""
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def format_date(date: dt.date, form: str, case: str = "title") -> str:
    """Write ``date`` the way people do, in one of DATE_FORMS and CASES."""
    d, m, y = date.day, date.month, date.year
    month, abbr, weekday = MONTHS[m - 1], MONTH_ABBRS[m - 1], WEEKDAYS[date.weekday()]
    text = {
        "day_month_year": f"{d} {month} {y}",  # 21 November 2026
        "month_day_year": f"{month} {d}, {y}",  # November 21, 2026
        "abbr_month_day_year": f"{abbr} {d}, {y}",  # Nov 21, 2026
        "weekday_month_day_year": f"{weekday}, {month} {d}, {y}",  # Saturday, November 21, 2026
        "weekday_day_month_year": f"{weekday}, {d} {month} {y}",  # Saturday, 21 November 2026
        "ordinal_of_month_year": f"{d}{ordinal_suffix(d)} of {month} {y}",  # 21st of November 2026
        "dotted": f"{d:02d}.{m:02d}.{y}",  # 21.11.2026
        "slashed": f"{y}/{m:02d}/{d:02d}",  # 2026/11/21
    }[form]
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "title":
        return text
    raise ValueError(f"case must be one of {CASES}, got {case!r}")


def random_date(rng: random.Random) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days + 1))


def date_pair(rng: random.Random) -> tuple[str, str]:
    """A random date 1900-2099 in a random form and case -> its ISO form YYYY-MM-DD."""
    date = random_date(rng)
    return format_date(date, rng.choice(DATE_FORMS), rng.choice(CASES)), date.isoformat()


def _below_100(n: int) -> str:
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + (f"-{ONES[ones]}" if ones else "")


def _below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _below_100(rest)
    return f"{ONES[hundreds]} hundred" + (f" and {_below_100(rest)}" if rest else "")


def number_to_words(n: int) -> str:
    """British English: 312 -> three hundred and twelve, 1005 -> one thousand and five. 0 <= n <= 999,999."""
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"n must be in 0..{MAX_NUMBER}, got {n}")
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    parts = []
    if thousands:
        parts.append(f"{_below_1000(thousands)} thousand")
    if rest:
        if thousands and rest < 100:
            parts.append("and")
        parts.append(_below_1000(rest))
    return " ".join(parts)


def number_pair(rng: random.Random) -> tuple[str, str]:
    """Number words -> digits; the digit count is uniform in 1..6 so small numbers are not rare."""
    n_digits = rng.randint(1, 6)
    n = rng.randint(0 if n_digits == 1 else 10 ** (n_digits - 1), 10**n_digits - 1)
    return number_to_words(n), str(n)


def reverse_pair(rng: random.Random) -> tuple[str, str]:
    """A sequence of 3-9 words -> the same words in reverse order."""
    words = [rng.choice(REVERSE_WORDS) for _ in range(rng.randint(*REVERSE_LENGTHS))]
    return " ".join(words), " ".join(reversed(words))


def _date_coverage() -> list[str]:
    words = list(MONTHS) + list(MONTH_ABBRS) + list(WEEKDAYS) + ["st nd rd th of , . / - 0 1 2 3 4 5 6 7 8 9"]
    return [w.lower() for w in words] + [w.upper() for w in words] + words


@dataclass(frozen=True)
class Task:
    """A named generator of (source, target) pairs and how to tokenize each side."""

    name: str
    description: str  # one line, shown in the app and the checkpoint meta
    make_pair: Callable[[random.Random], tuple[str, str]]
    src_kind: str  # Tokenizer kind of the source ("word" or "char")
    tgt_kind: str  # Tokenizer kind of the target
    coverage: tuple[str, ...] = field(default=())  # texts that together hold every token the generator can emit
    defaults: dict = field(default_factory=dict)  # training defaults (steps, lr, ...) that reach >= 99%

    def pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` pairs from a generator seeded with ``seed`` (same seed -> same pairs)."""
        rng = random.Random(seed)
        return [self.make_pair(rng) for _ in range(n)]


TASKS: dict[str, Task] = {
    "dates": Task(
        name="dates",
        description="a date as people write it -> ISO YYYY-MM-DD (1900-2099)",
        make_pair=date_pair, src_kind="word", tgt_kind="char",
        coverage=tuple(_date_coverage()),
        defaults={"steps": 3000},
    ),
    "reverse": Task(
        name="reverse",
        description="a sequence of 3-9 words -> the same words reversed (the anti-diagonal)",
        make_pair=reverse_pair, src_kind="word", tgt_kind="word",
        coverage=(" ".join(REVERSE_WORDS),),
        defaults={"steps": 3000},
    ),
    "numbers": Task(
        name="numbers",
        description="English number words 0-999,999 -> digits (many words to one digit)",
        make_pair=number_pair, src_kind="word", tgt_kind="char",
        coverage=(" ".join(ONES + TENS[2:] + ("hundred", "thousand", "and", "-")), "0123456789"),
        defaults={"steps": 4000},
    ),
}


def get_task(name: str) -> Task:
    """Look up a task by name; a ValueError lists the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]
