"""A conservative static check for regexes that can backtrack catastrophically (tokenizers' Oniguruma syntax).

A tokenizer's normalizer or pre-tokenizer may carry any regex; ``(q+)+$`` holds one call for seconds on 960
characters, with the GIL held, and every session of the server waits. ``backtracking_risk`` parses a pattern and
names what makes backtracking explode, under a repetition that can run more than once:

- a repetition inside it (``(q+)+``, ``(a*)*``, ``(.*a){20}``, ``(\\d{1,3})+``),
- a body that can match the empty string (``(a?){30}``),
- alternatives that can begin with the same character (``(a|a)*``, ``(a|ab)+``, ``(\\s|\\n)+``).

Plain alternations, repetitions of single characters or classes and lookarounds pass: the standard GPT-2,
Llama-3, Qwen and o200k pre-tokenizer patterns do. Overlap between character classes is decided on a sample of
characters (every Latin-1 character, some of each script, and the literal characters of the classes); a class it
cannot evaluate (a script name, POSIX brackets, ``&&``) counts as overlapping everything.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

SAMPLES = frozenset(chr(c) for c in range(256)) | frozenset(
    "ĀąſƀΩωЖяאעبع٣अ१กᄀ가一龥ぁあアー한\u0301\u0300\u200b\u200d\u2028\u2029\u3000\u00a0\u2003€₹∑→■♥😀🎉²½ⅫⅰＡａ０＿\ufeff\ufffd")
LINE_BREAKS = "\n\x0b\x0c\r\x85\u2028\u2029"


class _Unparsable(ValueError):
    pass


@dataclass(frozen=True)
class Chars:
    """A set of characters, decided per character: ``contains`` returns None when it cannot tell."""

    kind: str  # "lit", "any", "dot", "esc", "prop", "bracket", "unknown"
    value: object = None
    negated: bool = False

    def contains(self, ch: str) -> bool | None:
        if self.kind == "lit":
            return ch.casefold() == str(self.value).casefold()  # case folded: (?i) may be on
        if self.kind == "any":
            return True
        if self.kind == "dot":
            return ch != "\n"
        if self.kind == "unknown":
            return None
        if self.kind == "esc":
            hit = _escape_class(str(self.value), ch)
        elif self.kind == "prop":
            hit = _property(str(self.value), ch)
        else:  # bracket: a list of items, any of which matches
            hit = False
            for item in self.value:
                got = item.contains(ch)
                if got:
                    hit = True
                    break
                if got is None:
                    hit = None
        if hit is None:
            return None
        return hit != self.negated

    def samples(self) -> set[str]:
        if self.kind == "lit":
            return {str(self.value)}
        if self.kind == "bracket":
            out = set()
            for item in self.value:
                out |= item.samples()
            return out
        if self.kind == "range":
            lo, hi = self.value
            return {chr(lo), chr(hi), chr((lo + hi) // 2)}
        return set()


@dataclass(frozen=True)
class Range(Chars):
    def contains(self, ch: str) -> bool | None:
        lo, hi = self.value
        return lo <= ord(ch) <= hi or lo <= ord(ch.casefold()[0]) <= hi


def _escape_class(name: str, ch: str) -> bool:
    cat = unicodedata.category(ch)
    if name == "d":
        return cat == "Nd"
    if name == "w":
        return cat[0] in "LMN" or cat == "Pc"
    if name == "s":
        return ch.isspace() or ch == "\x85"
    if name == "h":
        return (ch.isspace() or ch == "\x85") and ch not in LINE_BREAKS
    if name == "R":
        return ch in LINE_BREAKS
    return ch != "\n"  # \N, \O, \X: (almost) any character


def _property(name: str, ch: str) -> bool | None:
    name = name.replace(" ", "").replace("_", "")
    if name.lower() == "any":
        return True
    cat = unicodedata.category(ch)
    if len(name) == 1 and name in "LMNPSZC":
        return cat[0] == name
    if len(name) == 2 and name[0] in "LMNPSZC":
        return cat == name
    if name == "L&":
        return cat in ("Lu", "Ll", "Lt")
    return None  # a script or a long name: cannot tell


def overlaps(a: Chars, b: Chars) -> bool:
    """True when some character may be in both (undecidable counts as True)."""
    for ch in SAMPLES | a.samples() | b.samples():
        if a.contains(ch) is not False and b.contains(ch) is not False:
            return True
    return False


# the syntax tree: ("chars", Chars) | ("empty",) | ("seq", [nodes]) | ("alt", [nodes]) | ("rep", node, min, max)
#                  | ("look", node) (zero width)


class _Parser:
    def __init__(self, pattern: str):
        self.p, self.i = pattern, 0

    def peek(self, k: int = 0) -> str:
        return self.p[self.i + k] if self.i + k < len(self.p) else ""

    def parse(self):
        node = self.alternation()
        if self.i < len(self.p):
            raise _Unparsable(f"unbalanced ')' at {self.i}")
        return node

    def alternation(self):
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self):
        items = []
        while self.i < len(self.p) and self.peek() not in "|)":
            items.append(self.quantified(self.atom()))
        return ("seq", items)

    def quantified(self, node):
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{" and self._bounds() is not None:
                lo, hi, length = self._bounds()
                self.i += length
            else:
                return node
            if self.peek() in ("?", "+"):  # lazy or possessive: still a repetition
                self.i += 1
            node = ("rep", node, lo, hi)

    def _bounds(self):
        end = self.p.find("}", self.i)
        if end < 0:
            return None
        body = self.p[self.i + 1:end]
        parts = body.split(",")
        if len(parts) > 2 or not all(x.strip().isdigit() or x.strip() == "" for x in parts) or not body.strip(","):
            return None
        lo = int(parts[0]) if parts[0].strip() else 0
        hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1].strip() else None)
        return lo, hi, end + 1 - self.i

    def atom(self):
        c = self.peek()
        if c == "(":
            return self.group()
        if c == "[":
            return ("chars", self.bracket())
        if c == ".":
            self.i += 1
            return ("chars", Chars("dot"))
        if c in "^$":
            self.i += 1
            return ("empty",)
        if c == "\\":
            return self.escape(in_class=False)
        if c in "*+?":
            raise _Unparsable(f"a quantifier with nothing before it at {self.i}")
        self.i += 1
        return ("chars", Chars("lit", c))

    def group(self):
        self.i += 1  # (
        look = False
        if self.peek() == "?":
            rest = self.p[self.i + 1:self.i + 4]
            if rest.startswith("#"):  # (?#comment)
                end = self.p.find(")", self.i)
                if end < 0:
                    raise _Unparsable("unterminated comment")
                self.i = end + 1
                return ("empty",)
            if rest[:1] in ("=", "!") or rest[:2] in ("<=", "<!"):
                look = True
                self.i += 2 if rest[:1] in ("=", "!") else 3
            elif rest[:1] in (":", ">", "~"):
                self.i += 2
            elif rest[:1] in ("<", "'", "P"):  # named group
                close = {"<": ">", "'": "'", "P": ">"}[rest[0]]
                end = self.p.find(close, self.i + 2 + (rest[0] == "P"))
                if end < 0:
                    raise _Unparsable("unterminated group name")
                self.i = end + 1
            else:  # inline flags: (?i) or (?i-m:...)
                j = self.i + 1
                while j < len(self.p) and (self.p[j].isalpha() or self.p[j] == "-"):
                    j += 1
                if j >= len(self.p) or self.p[j] not in ":)":
                    raise _Unparsable(f"unknown group syntax at {self.i}")
                self.i = j + 1
                if self.p[j] == ")":
                    return ("empty",)
        node = self.alternation()
        if self.peek() != ")":
            raise _Unparsable("unbalanced '('")
        self.i += 1
        return ("look", node) if look else node

    def escape(self, in_class: bool):
        self.i += 1  # backslash
        c = self.peek()
        if not c:
            raise _Unparsable("a trailing backslash")
        self.i += 1
        if c in "dwshRNOX":
            return ("chars", Chars("esc", c)) if not in_class else Chars("esc", c)
        if c in "DWSH":
            chars = Chars("esc", c.lower(), negated=True)
            return chars if in_class else ("chars", chars)
        if c in "pP":
            if self.peek() == "{":
                end = self.p.find("}", self.i)
                if end < 0:
                    raise _Unparsable("unterminated \\p{")
                name = self.p[self.i + 1:end]
                self.i = end + 1
            else:
                name = self.peek()
                self.i += 1
            negated = (c == "P") != name.startswith("^")
            chars = Chars("prop", name.lstrip("^"), negated=negated)
            return chars if in_class else ("chars", chars)
        if not in_class and c in "bBAzZGK":
            return ("empty",)
        if not in_class and (c.isdigit() and c != "0" or c == "k"):  # a backreference: anything, maybe empty
            if c == "k" and self.peek() in "<'":
                end = self.p.find(">" if self.peek() == "<" else "'", self.i + 1)
                self.i = end + 1 if end > 0 else len(self.p)
            return ("rep", ("chars", Chars("unknown")), 0, None)
        literal = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "e": "\x1b", "a": "\x07", "0": "\x00"}
        if c == "x":
            if self.peek() == "{":
                end = self.p.find("}", self.i)
                code = self.p[self.i + 1:end] if end > 0 else ""
                self.i = end + 1 if end > 0 else len(self.p)
            else:
                code = self.p[self.i:self.i + 2]
                self.i += 2
            ch = _codepoint(code)
        elif c == "u":
            ch = _codepoint(self.p[self.i:self.i + 4])
            self.i += 4
        else:
            ch = literal.get(c, c)
        chars = Chars("lit", ch)
        return chars if in_class else ("chars", chars)

    def bracket(self) -> Chars:
        self.i += 1  # [
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        items: list[Chars] = []
        first = True
        while True:
            c = self.peek()
            if not c:
                raise _Unparsable("unterminated '['")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[":
                if self.peek(1) == ":":  # [:alpha:]
                    end = self.p.find(":]", self.i)
                    if end < 0:
                        raise _Unparsable("unterminated POSIX class")
                    self.i = end + 2
                    items.append(Chars("unknown"))
                else:
                    items.append(self.bracket())
                continue
            if c == "&" and self.peek(1) == "&":  # intersection: not evaluated
                self.i += 2
                items.append(Chars("unknown"))
                continue
            item = self.escape(in_class=True) if c == "\\" else self._class_char()
            if self.peek() == "-" and self.peek(1) not in ("]", "") and item.kind == "lit":
                self.i += 1
                hi = self.escape(in_class=True) if self.peek() == "\\" else self._class_char()
                if hi.kind != "lit":
                    items += [item, Chars("lit", "-"), hi]
                else:
                    items.append(Range("range", (ord(str(item.value)), ord(str(hi.value)))))
                continue
            items.append(item)
        has_unknown = any(i.kind == "unknown" for i in items)
        if has_unknown:
            return Chars("unknown")
        return Chars("bracket", tuple(items), negated=negated)

    def _class_char(self) -> Chars:
        c = self.peek()
        self.i += 1
        return Chars("lit", c)


def _codepoint(code: str) -> str:
    try:
        return chr(int(code, 16))
    except ValueError:
        raise _Unparsable(f"bad code point {code!r}") from None


def _nullable(node) -> bool:
    kind = node[0]
    if kind in ("empty", "look"):
        return True
    if kind == "chars":
        return False
    if kind == "seq":
        return all(_nullable(n) for n in node[1])
    if kind == "alt":
        return any(_nullable(n) for n in node[1])
    return node[2] == 0 or _nullable(node[1])  # rep


def _first(node) -> list[Chars]:
    """The character sets a non-empty match of ``node`` can begin with."""
    kind = node[0]
    if kind in ("empty", "look"):
        return []
    if kind == "chars":
        return [node[1]]
    if kind == "alt":
        return [c for n in node[1] for c in _first(n)]
    if kind == "rep":
        return _first(node[1])
    out = []
    for n in node[1]:  # seq
        out += _first(n)
        if not _nullable(n):
            break
    return out


def _walk(node):
    yield node
    kind = node[0]
    if kind in ("seq", "alt"):
        for n in node[1]:
            yield from _walk(n)
    elif kind in ("rep", "look"):
        yield from _walk(node[1])


def _repeats(node) -> bool:
    """A repetition that can run more than once (``*``, ``+``, ``{2,}``, ``{1,3}``...)."""
    return node[0] == "rep" and (node[3] is None or node[3] > 1)


def _overlapping_branches(alt) -> bool:
    branches = alt[1]
    if any(_nullable(b) for b in branches):
        return True
    firsts = [_first(b) for b in branches]
    for i in range(len(firsts)):
        for j in range(i + 1, len(firsts)):
            if any(overlaps(a, b) for a in firsts[i] for b in firsts[j]):
                return True
    return False


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` can backtrack catastrophically, or None when this conservative check finds no reason."""
    try:
        tree = _Parser(pattern).parse()
    except (_Unparsable, IndexError, RecursionError) as e:
        return f"this app cannot check it ({e})"
    for node in _walk(tree):
        if not _repeats(node):
            continue
        body = node[1]
        if _nullable(body):
            return "a repeated part can match the empty string"
        for inner in _walk(body):
            if _repeats(inner):
                return "a repetition inside a repetition"
            if inner[0] == "alt" and _overlapping_branches(inner):
                return "a repetition of alternatives that can match the same text"
    return None
