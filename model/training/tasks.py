"""Generated toy tasks whose attention tells a story: dates -> ISO, reversing, number words -> digits
(encoder-decoder: the cross-attention aligns), repeated word sequences (decoder-only: induction heads), and the
shape of the red object in a scene (a vision transformer: its [CLS] token looks at the red object).

Every task is a seeded generator of (source, target) pairs, of texts or of images; nothing is downloaded.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from . import shapes

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

# Short everyday words, one token each: the induction task's vocabulary (duplicates dropped, order kept).
INDUCTION_WORDS = tuple(dict.fromkeys("""
cat dog owl fox bee cow pig hen ant elk bat yak emu eel ape rat ram doe cub pup kid colt mare mule lamb calf
goat sheep horse zebra tiger lion bear wolf deer moose otter seal whale shark crab clam squid snail slug frog
toad newt duck goose swan crow dove hawk eagle robin finch wren lark gull heron stork crane koala panda camel
llama bison hippo rhino mouse hare mole vole lynx puma sloth lemur gecko cobra viper python trout salmon tuna
red blue green gold pink grey black white brown tan navy teal lime plum rose ruby amber ivory coral cream olive
azure jade mint peach rust sand silver violet indigo scarlet maroon beige khaki lemon cherry
cup mug jar pot pan lid bowl dish fork knife spoon plate glass bottle kettle teapot vase lamp desk chair stool
bench table sofa bed rug mat door gate wall roof floor stair shelf box bag sack basket bucket rope chain hook
nail screw bolt drill saw axe hammer brush comb mirror clock watch ring coin key lock bell drum flute harp
violin piano guitar kite ball doll yoyo sled boat ship raft canoe car bus van truck train tram bike cart wagon
sun moon star rain snow wind hail fog mist cloud storm frost tree leaf root seed bud twig branch log bark rock
stone pebble sand dune hill mound cliff cave lake pond pool river creek brook sea ocean bay shore coast island
field meadow forest grove marsh swamp desert plain valley canyon peak summit glacier volcano
bread cake pie bun roll toast jam honey milk cheese butter egg rice bean pea corn oat wheat apple pear grape
melon berry lemon orange mango kiwi fig date nut olive carrot onion garlic leek kale beet radish potato tomato
soup stew salad pasta pizza taco sushi curry
""".split()))
INDUCTION_SEGMENT = (8, 16)  # words in the segment that repeats (all distinct), inclusive
INDUCTION_NOISE = (0, 8)  # random words before the segment, inclusive


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


@dataclass(frozen=True)
class RepeatedSequence:
    """A decoder-only training text: noise words, then a segment of distinct words, then the segment again."""

    noise: tuple[str, ...]
    segment: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return [*self.noise, *self.segment, *self.segment]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def first(self) -> range:
        """Word positions (0-based, no [BOS]) of the first occurrence of the segment."""
        return range(len(self.noise), len(self.noise) + len(self.segment))

    @property
    def second(self) -> range:
        """Word positions of the repetition: predicting these is possible only by copying from context."""
        start = len(self.noise) + len(self.segment)
        return range(start, start + len(self.segment))


def repeated_sequence(rng: random.Random) -> RepeatedSequence:
    """Copying from context is the only way to predict the second half: the segment's words are drawn at random."""
    words = INDUCTION_WORDS
    noise = tuple(rng.choice(words) for _ in range(rng.randint(*INDUCTION_NOISE)))
    segment = tuple(rng.sample(words, rng.randint(*INDUCTION_SEGMENT)))
    return RepeatedSequence(noise=noise, segment=segment)


def _date_coverage() -> list[str]:
    words = list(MONTHS) + list(MONTH_ABBRS) + list(WEEKDAYS) + ["st nd rd th of , . / - 0 1 2 3 4 5 6 7 8 9"]
    return [w.lower() for w in words] + [w.upper() for w in words] + words


@dataclass(frozen=True)
class Story:
    """What a model trained on a task shows: where to look and what to see there (the app's first sentence)."""

    attention: str  # trace name, e.g. "decoder.1.cross_attn"
    head: int
    text: str
    example: str  # an input that shows it (an image task: "", its scene is shapes.example_scene())


@dataclass(frozen=True)
class Task:
    """A named generator of training examples and how to tokenize them.

    Encoder-decoder tasks make (source, target) pairs; decoder-only tasks make texts (``make_sequence``); image tasks
    (arch "vit") make labelled scenes (``make_scene``).
    """

    name: str
    description: str  # one line, shown in the app and the checkpoint meta
    make_pair: Callable[[random.Random], tuple[str, str]] | None
    src_level: str = "word"  # tokenizer level of the source ("word" or "char")
    tgt_level: str = "word"  # tokenizer level of the target
    coverage: tuple[str, ...] = field(default=())  # texts that together hold every token the generator can emit
    defaults: dict = field(default_factory=dict)  # training defaults (steps, lr, ...) that reach the targets
    arch: str = "encoder-decoder"  # or "decoder-only"
    make_sequence: Callable[[random.Random], RepeatedSequence] | None = None  # decoder-only tasks
    story: Story | None = None  # what to look at in a model trained on it
    make_scene: Callable[[random.Random], shapes.Scene] | None = None  # image tasks: one labelled scene
    classes: tuple[str, ...] = ()  # image tasks: the labels' names, in the order of the model's logits
    image_size: int = 0  # image tasks: pixels per side of a scene

    def pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` pairs from a generator seeded with ``seed`` (same seed -> same pairs); decoder-only tasks give
        (text, ""), image tasks (the scene in words, its label)."""
        if self.make_scene is not None:
            return [(s.describe(), self.classes[s.label]) for s in self.scenes(n, seed)]
        rng = random.Random(seed)
        if self.arch == "decoder-only":
            return [(self.make_sequence(rng).text, "") for _ in range(n)]
        return [self.make_pair(rng) for _ in range(n)]

    def sequences(self, n: int, seed: int) -> list[RepeatedSequence]:
        """``n`` structured decoder-only examples (same seed -> same examples)."""
        rng = random.Random(seed)
        return [self.make_sequence(rng) for _ in range(n)]

    def scenes(self, n: int, seed: int) -> list[shapes.Scene]:
        """``n`` labelled images of an image task (same seed -> same scenes)."""
        rng = random.Random(seed)
        return [self.make_scene(rng) for _ in range(n)]


TASKS: dict[str, Task] = {
    "dates": Task(
        name="dates",
        description="a date as people write it -> ISO YYYY-MM-DD (1900-2099)",
        make_pair=date_pair, src_level="word", tgt_level="char",
        coverage=tuple(_date_coverage()),
        defaults={"steps": 3000},
        story=Story("decoder.1.cross_attn", 3, "each output digit reads the source token it copies: the year "
                    "digits read the year, the month digits read the month's name, the day digits read the day",
                    "Saturday, November 21, 2026"),
    ),
    "reverse": Task(
        name="reverse",
        description="a sequence of 3-9 words -> the same words reversed (the anti-diagonal)",
        make_pair=reverse_pair, src_level="word", tgt_level="word",
        coverage=(" ".join(REVERSE_WORDS),),
        defaults={"steps": 3000},
        story=Story("decoder.1.cross_attn", 2, "the decoder row that writes output word i reads source word "
                    "n − 1 − i (positions from 0, n source words): the anti-diagonal",
                    "red fox owl blue cat"),
    ),
    "numbers": Task(
        name="numbers",
        description="English number words 0-999,999 -> digits (many words to one digit)",
        make_pair=number_pair, src_level="word", tgt_level="char",
        coverage=(" ".join(ONES + TENS[2:] + ("hundred", "thousand", "and", "-")), "0123456789"),
        defaults={"steps": 4000},
        story=Story("decoder.1.cross_attn", 0, "each output digit reads the number word it comes from (\"twelve\" "
                    "gives two digits; \"hundred\" and \"and\" give none)", "seven thousand four hundred and twelve"),
    ),
    "induction": Task(
        name="induction",
        description="random words, then the same words again: the repetition is predictable only by copying "
                    "from context (induction heads)",
        make_pair=None, src_level="word", tgt_level="word",
        coverage=(" ".join(INDUCTION_WORDS),),
        defaults={"steps": 3000, "lr": 3e-3, "warmup": 100, "d_model": 64, "n_heads": 4, "layers": 2, "d_ff": 0,
                  "dropout": 0.0, "norm": "pre", "batch_size": 64, "max_len": 48, "eval_every": 100,
                  "schedule": "constant"},
        arch="decoder-only", make_sequence=repeated_sequence,
        story=Story("decoder.1.self_attn", 1, "an induction head: at each repeated word it looks at the word that "
                    "followed that word's first occurrence, a stripe one segment back (layer 0's heads look at the "
                    "previous word)", "red fox blue owl green cat gold bee red fox blue owl green cat gold bee"),
    ),
    "shapes": Task(
        name="shapes",
        description="2 to 4 coloured shapes on black, one of them red -> the red one's shape (square, circle, "
                    "triangle)",
        make_pair=None, arch="vit", make_scene=shapes.scene, classes=shapes.SHAPES, image_size=shapes.IMAGE_SIZE,
        coverage=(shapes.WORDS,),
        defaults={"steps": 1000, "lr": 2e-3, "warmup": 100, "d_model": 64, "n_heads": 4, "layers": 3, "d_ff": 128,
                  "dropout": 0.0, "norm": "pre", "batch_size": 128, "eval_every": 100, "patch_size": 8},
        story=Story("encoder.1.self_attn", 0, "the [CLS] row, the token the classifier reads, puts nearly all of its "
                    "weight on the red object's patches: the model finds the red object by its colour and reads its "
                    "outline there (layer 0's head 1 already looks at it)", ""),
    ),
}


def get_task(name: str) -> Task:
    """Look up a task by name; a ValueError lists the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]
