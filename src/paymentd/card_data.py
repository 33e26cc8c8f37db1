"""Detection of card numbers (PANs) in anything a client sends or we might log.

paymentd never handles card data (Stripe.js collects it), so API.md refuses any
request body holding something that looks like a card number, and log processors
redact it; this module is the one definition of "looks like a card number".

What counts (the choices, and why):

* Digits: 13 to 19 of them, passing the Luhn check (API.md). Unicode decimal
  digits count too (a full-width "４２４２..." is still a card number).
* Written plainly ("4242424242424242") or in groups separated by single spaces or
  dashes ("4242 4242 4242 4242", "3782-822463-10005"); no-break/thin spaces and
  Unicode dashes count as separators as well. A separated candidate is made of
  whole groups of at most 6 digits, the widest group any card layout prints
  (Amex 4-6-5), so other grouped numbers with wide groups stay out; dates, phone
  numbers and amounts ("100000.00": a dot is not a separator) are too short.
* Anywhere in a string: digits glued to letters still count ("card4242424242424242"),
  except inside a UUID or a hex token of 32+ characters (dashless UUIDs, SHA
  digests), which are skipped whole: about 1 in 300 of them would otherwise hold a
  Luhn-valid run by chance ("ba02d4e4-0799-4099-9148-7723ec44728f" does).
* A run of 13-19 digits is judged as a whole: "4242424242424241" fails Luhn, so
  it is let through even if some 13-15 digit stretch inside it passes.
* Inside longer runs: an unseparated run of more than 19 digits is searched for
  every 13-19 digit window, and a separated run for every sequence of consecutive
  whole groups of 13-19 digits. A security reviewer prefers refusing a long
  reference number now and then to letting "<card><expiry><cvc>" typed as one
  run slip through.
* The first digit must be 2-9 (ISO/IEC 7812 major industry identifier). 0 is not
  issued, and 1 (airline UATP cards) is outside Stripe and PCI; 1 is also where
  Unix timestamps in ms/us/ns live until 2033 ("1732615273123"), which must not be
  refused. The networks Stripe processes start with 2-6 (a few domestic ones 8).

Known misses, accepted: a card number glued to other digits into a run of at
most 19 ("4242424242424242" + "123"), or split into groups wider than 6 or with a
group glued to other digits ("4242 4242 4242 4242123"); a card number inside a
UUID-shaped or 32+ character hex token; numbers spelled out or otherwise encoded. Searching windows inside 17-19 digit runs would refuse most
64-bit ids. This is a net for accidents, not a defence against a caller
determined to send card data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = ["luhn_valid", "contains_card_number", "find_card_number", "redact", "REDACTED"]

REDACTED: Final = "[REDACTED]"

_MIN_DIGITS: Final = 13
_MAX_DIGITS: Final = 19
_MAX_GROUP: Final = 6

# Space-likes: space, no-break, figure, narrow no-break, thin. Dash-likes: ASCII
# hyphen-minus, Unicode hyphen .. em dash, minus sign.
_SEP_CHARS: Final = " \u00a0\u2007\u202f\u2009\u2010\u2011\u2012\u2013\u2014\u2212-"
_SEP: Final = "[" + re.escape(_SEP_CHARS) + "]"
# A maximal run: digit groups joined by exactly one separator. \d and the
# separators are disjoint, so this cannot backtrack badly.
_RUN: Final = re.compile(rf"\d+(?:{_SEP}\d+)*")
_SPLIT: Final = re.compile(_SEP)
# UUIDs (8-4-4-4-12 hex) and hex tokens of 32+ characters (dashless UUIDs, SHA
# digests): masked before scanning, their digit runs are noise, not cards.
_HEX_ID: Final = re.compile(
    r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32,})(?![0-9A-Fa-f])"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check on a string of decimal digits; False for anything else."""
    if not digits or not digits.isdecimal():
        return False
    total = 0
    # From the right: every second digit doubled, minus 9 when it exceeds 9.
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _looks_like_pan(digits: str) -> bool:
    return _MIN_DIGITS <= len(digits) <= _MAX_DIGITS and int(digits[0]) >= 2 and luhn_valid(digits)


def _group_holds_pan(group: str) -> bool:
    # Longer than 19 digits: every 13-19 digit window, in O(1) per window:
    # prefix sums of plain and Luhn-doubled digits, split by index parity. In a
    # window ending at index e, digit k is doubled iff k and e differ in parity.
    n = len(group)
    if n <= _MAX_DIGITS:
        # 13-19 digits: judged as a whole, exactly API.md's definition (windows
        # inside it would flag most 16-digit numbers that fail Luhn).
        return _looks_like_pan(group)
    plain = [[0] * (n + 1), [0] * (n + 1)]
    doubled = [[0] * (n + 1), [0] * (n + 1)]
    digits = [int(ch) for ch in group]
    for k, d in enumerate(digits):
        dd = d * 2 - 9 if d > 4 else d * 2
        for parity in (0, 1):
            hit = k % 2 == parity
            plain[parity][k + 1] = plain[parity][k] + (d if hit else 0)
            doubled[parity][k + 1] = doubled[parity][k] + (dd if hit else 0)
    for end in range(_MIN_DIGITS - 1, n):  # end: index of the window's last digit
        same, other = end % 2, 1 - end % 2
        for size in range(_MIN_DIGITS, min(_MAX_DIGITS, end + 1) + 1):
            start = end - size + 1
            if digits[start] < 2:  # see "first digit" in the module docstring
                continue
            total = (
                plain[same][end + 1] - plain[same][start]
                + doubled[other][end + 1] - doubled[other][start]
            )
            if total % 10 == 0:
                return True
    return False


def _run_is_card(run: str) -> bool:
    groups = _SPLIT.split(run)
    if any(_group_holds_pan(g) for g in groups):
        return True
    # Sequences of consecutive whole groups, each a plausible printed group.
    for i in range(len(groups)):
        total = 0
        for j in range(i, len(groups)):
            if len(groups[j]) > _MAX_GROUP:
                break
            total += len(groups[j])
            if total > _MAX_DIGITS:
                break
            if j > i and total >= _MIN_DIGITS and _looks_like_pan("".join(groups[i : j + 1])):
                return True
    return False


def _mask_ids(match: re.Match[str]) -> str:
    token = match.group()
    # A 32+ run of decimal digits alone is no hex id: leave it to be scanned.
    return token if token.isdigit() else "x" * len(token)


def _card_spans(text: str) -> Iterator[tuple[int, int]]:
    # Same-length masking keeps every span valid for the original text.
    masked = _HEX_ID.sub(_mask_ids, text)
    for m in _RUN.finditer(masked):
        run = m.group()
        # Fewer digits than a card number in the whole run: nothing to check.
        if sum(ch.isdecimal() for ch in run) >= _MIN_DIGITS and _run_is_card(run):
            yield m.span()


def contains_card_number(text: str) -> bool:
    """True if ``text`` holds anything that looks like a card number (see module doc)."""
    return next(_card_spans(text), None) is not None


def redact(text: str) -> str:
    """``text`` with every run that holds a card number replaced by "[REDACTED]".

    The whole run goes, not just the 13-19 digits found in it, so no neighbouring
    digits (a last four, an expiry) are left to piece the number together.
    """
    spans = list(_card_spans(text))
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


def _scalar_text(value: object) -> str | None:
    # JSON scalars that can carry digits. A number can be a card number too
    # (4242424242424242 sent unquoted). bool is an int subclass: skip it.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr keeps every digit a float can hold ("4242424242424242.0").
        return repr(value)
    # Decimal (json.loads(parse_float=Decimal)) and other number types.
    try:
        return format(value)
    except Exception:  # pragma: no cover - exotic objects; nothing to scan
        return None


def _join(parent: str, segment: str) -> str:
    return f"{parent}.{segment}" if parent else segment


def find_card_number(value: object) -> str | None:
    """The JSON path of the first field holding a card number in decoded JSON, else None.

    Paths look like ``metadata.note`` and ``items[2].description``; the body
    itself is ``$``. When a dict *key* is the culprit, its place in the path is
    shown as ``[REDACTED]`` (``metadata.[REDACTED]``). The number itself is never
    returned. Walks iteratively (no recursion limit) in document order.
    """
    # Stack of (path, value, is_key); pushed in reverse so entries pop in document
    # order: a dict key is checked just before its value.
    stack: list[tuple[str, object, bool]] = [("", value, False)]
    while stack:
        path, node, is_key = stack.pop()
        if is_key:
            if contains_card_number(node):  # type: ignore[arg-type]
                return _join(path, REDACTED)
        elif isinstance(node, dict):
            for key, child in reversed(list(node.items())):
                key_text = key if isinstance(key, str) else _scalar_text(key) or ""
                stack.append((_join(path, key_text), child, False))
                stack.append((path, key_text, True))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", child, False) for i, child in reversed(list(enumerate(node))))
        else:
            text = _scalar_text(node)
            if text is not None and contains_card_number(text):
                return path or "$"
    return None
