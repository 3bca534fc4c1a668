"""Prompt normalisation as DALL·E mini was trained with it.

The steps (fix mojibake, unescape HTML, spell out emoji, transliterate to
ASCII, lower-case, drop wiki references/HTML tags/URLs, turn punctuation into
commas while protecting decimals, dates and contractions, split hashtags into
words) reproduce dalle-mini 0.1.5's TextNormalizer; parity is tested against
outputs of the original in tests/fixtures/dalle_mini/text_normalizer.json.
"""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

# Placeholders protect characters that the punctuation step would otherwise eat.
_MARK = "xtokx"
_DOT, _QUOTE, _SLASH = (f"{_MARK}{w}{_MARK}" for w in ("dot", "quote", "slash"))

_STEPS_BEFORE_HASHTAGS = [
    (re.compile(r"<person>([,\s]*(and)*[,\s]*<person>)+"), " people "),
    (re.compile(r"<person>"), " a person "),  # the original draws at random; we take its likeliest choice
    (re.compile(r"\A\s*\[\d+\]"), ""),  # wiki reference at the start
    (re.compile(r"\[\d+\]\s*\Z"), ""),  # ... and at the end
    (re.compile(r"<[^<]+?>"), " "),  # HTML tags
    (re.compile(r"http\S+"), ""),  # URLs
    (re.compile(r"(\d),(\d{3})"), r"\1\2"),  # 1,000,000 -> 1000000 (applied twice: matches overlap)
    (re.compile(r"(\d),(\d{3})"), r"\1\2"),
    (re.compile(r"(\w)\.(\w)"), rf"\1{_DOT}\2"),
    (re.compile(r"'(?=([stdm]|(ll)|(re)|(ve)|(ll))\b)"), _QUOTE),
    (re.compile(r"(\d)/(\d)"), rf"\1{_SLASH}\2"),
    (re.compile(r"(\w)-(\w)"), r"\1 \2"),  # well-known -> well known
    (re.compile(r"([%&\/$*])"), r" \1 "),
]
_STEPS_AFTER_HASHTAGS = [
    (re.compile(r"[_#\\]"), " "),
    (re.compile(r"['\"`]"), ' " '),
    (re.compile(r"[()[\].,|:;?!=+~\-\/{}]"), ","),
    (re.compile(_DOT), "."),
    (re.compile(_QUOTE), "'"),
    (re.compile(_SLASH), "/"),
    (re.compile(r"(\D)(\1{3,})"), r"\1"),  # 4+ repeats -> one (3 are kept for "viii")
    (re.compile(r'(\s*"+\s*)+'), ' " '),
    (re.compile(r"(\s*,+\s*)+"), ", "),
    (re.compile(r"\s+"), " "),
]
_HASHTAG = re.compile(r"#(\w+)")


class WordSplitter:
    """Splits 'sunsetbeach' into 'sunset beach' by word frequency (a word costs log(rank + 1))."""

    _PIECES = re.compile(r"[^a-zA-Z0-9']+")

    def __init__(self, words_file: Path):
        words = [line.split()[0] for line in Path(words_file).read_text(encoding="utf8").splitlines() if line.strip()]
        # a word listed twice keeps its last rank, as in the original
        self.cost = {word: math.log(rank + 1.0) for rank, word in enumerate(words)}
        self.longest = max(map(len, self.cost))

    def __call__(self, text: str) -> str:
        return " ".join(tok for piece in self._PIECES.split(text) for tok in self._split(piece))

    def _best(self, s: str, best_cost: list[float], i: int) -> tuple[float, int]:
        """Cheapest (cost, length) of a last word ending at i; ties go to the shorter word."""
        return min((best_cost[i - n] + self.cost.get(s[i - n:i].lower(), math.inf), n)
                   for n in range(1, min(i, self.longest) + 1))

    def _split(self, s: str) -> list[str]:
        best_cost = [0.0]
        for i in range(1, len(s) + 1):
            best_cost.append(self._best(s, best_cost, i)[0])
        words: list[str] = []  # built from the end
        i = len(s)
        while i > 0:
            n = self._best(s, best_cost, i)[1]
            word = s[i - n:i]
            glue = word != "'" and words and (words[-1] == "'s" or (s[i - 1].isdigit() and words[-1][0].isdigit()))
            if glue:  # keep "'s" and runs of digits attached to what precedes them
                words[-1] = word + words[-1]
            else:
                words.append(word)
            i -= n
        return words[::-1]


class TextNormalizer:
    """`words` is the word-frequency file for hashtags, or a function that finds it (called only
    when a prompt first contains a hashtag: the file may have to come from the hub)."""

    def __init__(self, words=None):
        self._words = words
        self._splitter = None

    def split_words(self, text: str) -> str:
        if self._splitter is None:
            path = self._words() if callable(self._words) else self._words
            self._splitter = WordSplitter(path) if path else (lambda s: s)
        return self._splitter(text)

    def __call__(self, text: str) -> str:
        import emoji
        import ftfy
        from unidecode import unidecode

        t = ftfy.fix_text(text)
        t = html.unescape(html.unescape(t))
        t = unidecode(emoji.demojize(t)).lower()
        for pattern, repl in _STEPS_BEFORE_HASHTAGS:
            t = pattern.sub(repl, t)
        if self._words is not None:
            t = _HASHTAG.sub(lambda m: self.split_words(m.group(1)), t)
        for pattern, repl in _STEPS_AFTER_HASHTAGS:
            t = pattern.sub(repl, t)
        t = t.strip()
        if t.endswith(","):
            t = t[:-1]
        if t.startswith(","):
            t = t[1:]
        return " " + t.strip()
