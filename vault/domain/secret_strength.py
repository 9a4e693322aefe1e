"""How many guesses a tenant's own secret is worth: a conservative estimate in bits.

The secret is explained as the cheapest sequence of pieces a guesser would try, and the
estimate is what that explanation costs (dynamic programming over positions, as
Dropbox's zxcvbn does):
- a character nothing before predicts: log2 of the character classes present
  (26 lower, 26 upper, 10 digits, 33 others), the bound for a random character;
- a run continuing a sequence ('abcd', '4321', 'aaaa', any constant step up to 5 as
  zxcvbn's: 'acegi', '97531'), or a keyboard walk along a row, the rows in order
  ('qwerty…m'), or a column ('1qaz2wsx'), compared in any case ('aBcDeF' is 'abcdef'):
  nothing, once two characters have set its direction. Runs are also followed at a
  stride of 2 to 8, a whole period at a time: interleaved runs ('a1b2c3d4') and blocks
  that repeat with a step ('Aa1!Bb2@Cc3#');
- a repeat of an earlier piece of 3 or more characters ('passwordpassword'): one choice;
- a common word, name or password (vault/domain/common_words.txt, 18,299 entries most
  frequent first) of 3 or more letters, any case: log2 of its rank, plus 1 bit for
  Capitalised or UPPER case and 1 bit per letter for any other mix.

So keyboard walks, patterned alphabets and passphrases of common words (an XKCD
'correcthorsebatterystaple' is worth about 11 bits a word) fall short of 128 bits, while
random characters keep nearly all of theirs: 43 random base64url characters are estimated
at about 270 bits, 32 of them (24 random bytes) at about 200 (the lowest of 20,000 draws:
155), so they clear the bar (tests/unit/test_api_key_rules.py draws hundreds of random
secrets of the usual shapes). Not modelled: l33t substitutions, dates, and blocks longer
than MAX_STRIDE that repeat with a step; the length minimum and the pool bound cover what
they would add.

zxcvbn itself (PyPI `zxcvbn`) was weighed and not taken: it counts an unexplained
character as 10 guesses (3.3 bits), so it puts 32 random base64url characters (192 real
bits) at about 106 bits and would refuse every one at the minimum length, and it finds
neither alternating case nor interleaved runs.
"""

from __future__ import annotations

import math
import re
from functools import cache
from importlib import resources

_CHARACTER_CLASSES = ((r"[a-z]", 26), (r"[A-Z]", 26), (r"[0-9]", 10), (r"[^a-zA-Z0-9]", 33))
MIN_REPEAT = 3
MIN_WORD = 3
# A run's constant step may be up to 5 either way, as zxcvbn's sequences ('acegi', 'afkpu').
MAX_STEP = 5
# Runs are followed at strides 1 to 8: interleaved runs (stride 2) and blocks of up to
# 8 characters that repeat with a step.
MAX_STRIDE = 8
# Lower-cased sequences a walk can follow, forwards or backwards: ASCII steps are checked
# separately (they cover 'abc', 'ABC', '123'); these add the keyboard.
KEYBOARD_SEQUENCES = (
    "`1234567890-=",
    "~!@#$%^&*()_+",
    "qwertyuiop[]\\",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "qwertyuiopasdfghjklzxcvbnm",  # the letter rows one after another
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/-['=]\\",  # columns, top to bottom
    "zaq1xsw2cde3vfr4bgt5nhy6mju7,ki8.lo9/;p0",  # columns, bottom to top
    "7894561230",  # a numeric keypad's rows
)


@cache
def _common_words() -> dict[str, int]:
    """word -> rank (1 = most common), read once on first use."""
    text = resources.files("vault.domain").joinpath("common_words.txt").read_text("ascii")
    words = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {word: rank for rank, word in enumerate(words, start=1)}


@cache
def _longest_word() -> int:
    return max(map(len, _common_words()))


@cache
def _keyboard_runs() -> frozenset[str]:
    """Every 3 characters in a row on a keyboard sequence, read either way."""
    runs: set[str] = set()
    for sequence in KEYBOARD_SEQUENCES:
        for i in range(len(sequence) - 2):
            runs.update((sequence[i : i + 3], sequence[i : i + 3][::-1]))
    return frozenset(runs)


def estimate_entropy_bits(text: str) -> float:
    pool = sum(size for pattern, size in _CHARACTER_CLASSES if re.search(pattern, text))
    if not pool:
        return 0.0
    char_bits = math.log2(pool)
    walked = _continues_a_walk(text)
    words = _common_words()
    longest_word = _longest_word()
    lowered = text.lower()
    n = len(text)
    best = [0.0] + [math.inf] * n  # best[j]: the cheapest explanation of text[:j]
    for i in range(n):
        here = best[i]
        step = 0.0 if walked[i] else char_bits
        best[i + 1] = min(best[i + 1], here + step)
        for end in range(i + MIN_REPEAT, _repeat_end(text, i) + 1):
            best[end] = min(best[end], here + char_bits)
        for end in range(i + MIN_WORD, min(n, i + longest_word) + 1):
            rank = words.get(lowered[i:end])
            if rank is not None:
                best[end] = min(best[end], here + math.log2(rank) + _case_bits(text[i:end]))
    return best[n]


def _continues_a_walk(text: str) -> list[bool]:
    """For each position: does it continue a run that the characters one and two strides
    before it started, in the same direction? A run is a constant ASCII step of at most
    MAX_STEP either way ('aceg', '9753', 'aaaa') or a keyboard sequence, in any case
    ('aBcD' steps as 'abcd'). The stride is 1 (a plain run) up to MAX_STRIDE: interleaved
    runs ('a1b2c3' is 'abc' and '123' at stride 2) and blocks that repeat with a step
    ('Aa1!Bb2@Cc3#': each character continues the ones 4 and 8 before it). At a stride of
    2 or more only whole periods count (that many continuing characters in a row): in
    random characters single matches at some stride are common, whole periods are not."""
    runs = _keyboard_runs()
    lowered = text.lower()
    codes = [ord(c) for c in lowered]
    walked = [False] * len(text)
    for stride in range(1, MAX_STRIDE + 1):
        streak = 0
        for i in range(len(text) + 1):
            first, before = i - 2 * stride, i - stride
            if i < len(text) and first >= 0:
                step = codes[i] - codes[before]
                continues = (abs(step) <= MAX_STEP and step == codes[before] - codes[first]) or (
                    lowered[first] + lowered[before] + lowered[i] in runs
                )
                if continues:
                    streak += 1
                    continue
            if streak >= stride:
                walked[i - streak : i] = [True] * streak
            streak = 0
    return walked


def _repeat_end(text: str, i: int) -> int:
    """The end of the longest piece starting at `i` (3+ characters) that occurs earlier,
    overlapping allowed ('abcabcabc'); `i` if none."""
    end = i
    for length in range(MIN_REPEAT, len(text) - i + 1):
        if text[i : i + length] in text[: i + length - 1]:
            end = i + length
        else:
            break
    return end


def _case_bits(word: str) -> float:
    if word.islower() or not any(c.isalpha() for c in word):
        return 0.0
    if word.isupper() or (word[0].isupper() and word[1:].islower()):
        return 1.0
    return float(sum(c.isalpha() for c in word))
