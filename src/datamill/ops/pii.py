"""PII and secret redaction: emails, phone numbers, IP addresses, payment cards, IBANs, US
SSNs and credentials, found by linear-time patterns and confirmed by validators (Luhn,
mod-97, SSN rules, address parsing), replaced by typed placeholders or keyed hashes.

Each detector is a regular expression that proposes candidates and a function that accepts,
trims or rejects each one. Patterns start only at a token boundary (a negative look-behind of
the token's own characters) and every repetition is bounded, so a match attempt does bounded
work and a scan is linear in the text. A batch is scanned once per detector: the rows that
pass a cheap Arrow prefilter are joined with NUL separators (which no pattern crosses), and
match offsets are mapped back to rows.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from ..operation import Arguments, MapOperation
from .pii_phone import CUED, FREE, code_before, cue_before, national_form, unit_after

PiiType = Literal["email", "phone", "ip_address", "credit_card", "iban", "ssn", "secret"]
TYPES: tuple[str, ...] = ("email", "phone", "ip_address", "credit_card", "iban", "ssn",
                          "secret")
# When candidates overlap, the more specific (better validated) type wins.
PRIORITY = {"secret": 7, "email": 6, "iban": 5, "credit_card": 4, "ssn": 3, "ip_address": 2,
            "phone": 1}
SEP = "\x00"
Span = tuple[int, int]


@dataclass(frozen=True)
class Detector:
    """Finds one PII type: `pattern` proposes candidates, `accept(text, match)` returns the
    span to redact (possibly trimmed) or None, and `prefilter` (an RE2 pattern run by Arrow)
    skips rows that cannot hold a match."""

    kind: str
    pattern: re.Pattern
    accept: Callable[[str, re.Match], Span | None]
    prefilter: str


# Patterns consume their first character, then look behind it ("not inside a token"): a
# pattern that starts with a character set or a literal lets the regex engine skip quickly to
# the next possible start, which a leading look-behind would prevent.

# --- email --------------------------------------------------------------------------------
# Scanning starts at the "@"; the local part is then matched backwards in a bounded window.
_EMAIL = re.compile(r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}"
                    r"[A-Za-z]{2,24})(?![\w-]|\.[A-Za-z0-9])")
# An apostrophe may be inside a local part (o'brien) but not start it: 'a@b.co' is quoted.
_LOCAL = re.compile(r"(?<![\w.%+-])[\w%+-](?:[\w.%+'-]{0,63})\Z")
_FILE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "css", "js",
                    "json", "html", "txt", "pdf", "zip", "gz", "yaml", "yml", "md"}


def _email(text: str, m: re.Match) -> Span | None:
    at = m.start()
    local = _LOCAL.search(text, max(0, at - 64), at)
    if local is None:
        return None
    value = local.group()
    if value.startswith(".") or ".." in value or value.endswith("."):
        return None
    if m.group(1).rsplit(".", 1)[-1].lower() in _FILE_EXTENSIONS:
        return None
    return local.start(), m.end()


# --- phone --------------------------------------------------------------------------------
# Digit groups joined by one separator, "(area)" or "(0)"; the validator decides which
# prefix of the groups (if any) is a number. A letter of a script written with spaces
# (Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, Indic, Georgian, Hangul) glued to the
# digits makes them part of a word; Chinese and Japanese characters do not
# ("请拨打13812345678咨询").
_LETTER = (r"A-Za-z_\u00C0-\u024F\u0370-\u06FF\u0900-\u0DFF\u10A0-\u10FF\u1E00-\u1EFF"
           r"\uAC00-\uD7AF")
_PHONE = re.compile(r"""
    [+(\d](?<![0-9LETTER+.\-/@\#$€£%&)][+(\d])(?<!\d[ .\-][+(\d])  # not glued to a word
    (?=[\d\ ().\-/]{6})                                        # 7 characters at least
    (?:(?<=\+)\d{1,3}[ .\-]?(?:\(0\)[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?   # +CC, (0), (area)
      |(?<=\()\d{1,5}\)[ .\-]?                                     # (area)
      |(?<=\d))
    \d{0,14}(?:(?:/|\ -\ )\d{1,10})?               # after an area code: 030/1234567
    (?:[ \-]?\(\d{2,5}\)[ \-]?\d{1,10})?            # 8 (495) 123..., 03(1234)5678
    (?:[ .\-]\d{1,10}){0,6}(?<=\d\d)                              # groups, last of 2+
    (?![LETTER@]|[.\-/:]?\d|-[A-Za-z])                     # not inside a code
""".replace("LETTER", _LETTER), re.X)
_DIGIT_RUN = re.compile(r"\d+")
# Words before a part, model or serial number: digit groups after them are not phones.
_CODE_CONTEXT = re.compile(
    r"(?i)(?:\bp/n|\bpart(?: ?(?:no\.?|number|#))?|\bsku|\bmpn|\bmodel(?: ?(?:no\.?|number))?|"
    r"\bserial(?: ?(?:no\.?|number))?|\bs/n|\bitem(?: ?(?:no\.?|#))?|\bcat(?:alog)?\.? ?no\.?)"
    r"[\s:#]{0,3}\Z")
_GLUED = re.compile(r"[.\-/:]?\d")


def _date_like(groups: list[str]) -> bool:
    """Do the first three digit groups read as a date (y-m-d, d-m-y or m-d-y)?"""
    if len(groups) < 3:
        return False
    a, b, c = (int(g) for g in groups[:3])
    if len(groups[0]) == 4:
        return 1900 <= a <= 2099 and 1 <= b <= 12 and 1 <= c <= 31
    year = len(groups[2]) == 4 and 1900 <= c <= 2099 or len(groups[2]) == 2
    return len(groups) == 3 and year and (b <= 12 and 1 <= a <= 31 or a <= 12 and 1 <= b <= 31)


def phone_ok(value: str, groups: list[str]) -> bool:
    """Is `value` (its digit groups in `groups`) a phone number in a form that needs no
    numbering plan: E.164 with `+`, a trunk 0 and 10-11 digits, "(area)", North American
    3-3-4? (National numbers of the plans in phone_plans.py: pii_phone.national_ok.)"""
    digits = sum(map(len, groups))
    if value.count("(") != value.count(")"):
        return False
    if value.startswith("+"):
        return 8 <= digits <= 15
    sizes = [len(g) for g in groups]
    if _date_like(groups) or sizes[-1] < 2 or ("." in value and min(sizes) < 2):
        return False
    if "/" in value:
        return False
    if value.startswith("("):
        return 10 <= digits <= 12
    if value.startswith("0") and not value.startswith("00"):  # not "0 986 494 123" (a part)
        return 10 <= digits <= 11 and sizes[0] <= 5 and len(groups) <= 5 and not (
            sizes[0] == 1 and set(sizes[1:]) == {3})
    if sizes == [3, 3, 4] and value[0] in "23456789":  # North American
        return True
    return sizes == [1, 3, 3, 4] and value[0] == "1"


def _phone(text: str, m: re.Match) -> Span | None:
    value = m.group()
    start = m.start()
    plus = value[0] == "+"
    if not plus and _CODE_CONTEXT.search(text, max(0, start - 16), start):
        return None  # "P/N 04-0158-7817"
    cue: list[bool] = []  # the context is read only for a candidate that needs it

    def said(end: int, free: bool) -> bool:
        """Does the context allow a number that needs a cue (free=False) or none?"""
        if plus:
            return free
        # "10:30", "id=...": after a field separator only "+..." or a key naming a phone
        # ("tel:", "phone_number="); "Order no. 0123 4567 890", "612 345 678 euros"
        if free and not (start and text[start - 1] in ":=" or code_before(text, start)
                         or unit_after(text, end)) and not (
                value_is_bare and start and text[start - 1] in "\"'"):
            return True  # (bare digits in quotes without a key naming a phone: an id)
        if not cue:  # the costliest check, last
            cue.append(cue_before(text, start))
        return cue[0]

    groups = list(_DIGIT_RUN.finditer(value))
    value_is_bare = len(groups) == 1
    if len(groups) == 1:  # digits only: E.164, or a phone where the text says so
        if plus:
            return m.span() if 8 <= len(groups[0].group()) <= 15 else None
        return m.span() if _bare_ok(value, m.end(), said) else None
    if len(groups) == 2 and re.fullmatch(r"[2-9]\d\d-\d{4}", value):  # local: "call 555-0100"
        return m.span() if said(m.end(), False) else None
    if _IBAN_HEAD.search(text, max(0, start - 40), start):  # inside an IBAN
        return None
    cut = 0  # digits left out at the end: "call 415 555 2671 2 times"
    for k in range(len(groups), 0, -1):  # the longest valid prefix of the groups
        if k < len(groups):
            cut += len(groups[k].group())
            if cut > 3:
                return None
        end = start + groups[k - 1].end()
        if k < len(groups) and _GLUED.match(text, end):
            continue
        value = text[start:end]
        if k == 1:
            return (start, end) if not plus and _bare_ok(value, end, said) else None
        parts = [g.group() for g in groups[:k]]
        if phone_ok(value, parts):
            return (start, end) if said(end, True) else None
        if not plus and not _date_like(parts):
            form = national_form(value, [len(g) for g in parts], "".join(parts))
            if form is not None:
                return (start, end) if said(end, form == FREE) else None
    return None


def _bare_ok(digits: str, end: int, said: Callable[[int, bool], bool]) -> bool:
    """A run of digits alone: a national number, or a phone where the text says so."""
    form = national_form(digits, [len(digits)], digits)
    if form is None and 10 <= len(digits) <= 13:
        form = CUED
    return form is not None and said(end, form == FREE)


# --- IP addresses -------------------------------------------------------------------------
_IPV4 = re.compile(r"\d(?<![\w.\-:]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w\-]|\.\d)")
# IPv6 scanning starts at a colon followed by a hex group and another colon (fast to find);
# the address is then matched from up to 4 hex digits before it.
_IPV6 = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_FULL = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_HEX = frozenset("0123456789abcdefABCDEF")
_VERSION_CONTEXT = re.compile(
    r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\bfirmware|\bupdate|\bpatch|\brev\.?|"
    r"\bsdk|\bkernel)\s*\Z")
# A product token's version, as in a User-Agent: "Chrome/120.0.0.0", "AppleWebKit/537.36".
# The name starts a token (not a URL path segment: "/hosts/10.0.0.5" stays an address).
_PRODUCT = re.compile(r"(?<![\w/.\-@:])[A-Za-z][\w\-]{0,30}/\Z")
_MASKS = {"0.0.0.0", "255.255.255.255"} | {
    ".".join(str(255 if i < full else (0xFF << (8 - bits)) & 0xFF if i == full else 0)
             for i in range(4)) for full in range(4) for bits in range(1, 9)}


def _ipv4(text: str, m: re.Match) -> Span | None:
    value = m.group()
    octets = value.split(".")
    if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
        return None
    if value in _MASKS or _VERSION_CONTEXT.search(text, max(0, m.start() - 12), m.start()):
        return None
    if m.start() and text[m.start() - 1] == "/" and _PRODUCT.search(
            text, max(0, m.start() - 32), m.start()):
        return None
    return m.span()


def _ipv6(text: str, m: re.Match) -> Span | None:
    start = m.start()
    while start > m.start() - 4 and start > 0 and text[start - 1] in _HEX:
        start -= 1
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_:."):
        return None  # inside a word, or not the address's first colon
    value = _IPV6_FULL.match(text, start).group().rstrip(".")
    if value.endswith(":") and not value.endswith("::"):
        value = value[:-1]
    end = start + len(value)
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return None
    if "::" not in value and value.count(":") != 7 and not (
            value.count(":") == 6 and "." in value):
        return None
    if value == "::" or not any(ch.isdigit() for ch in value):
        return None
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return start, end


# --- payment cards ------------------------------------------------------------------------
# A comma is a field separator (CSV) unless it sits between digits as a thousands or decimal
# separator: before a value only when no digit precedes it; after one only when the value's
# last group has four or more digits (a thousands group has three).
_CARD = re.compile(r"""
    \d(?<![\w.\-+/]\d)(?<!\d,\d)
    (?:
        \d{12,18}
      | \d{3}([ \-])\d{4}\1(?:\d{4}\1\d{1,4}(?:\1\d{3})?  # 4-4-4-4(-3), 4-4-4-1
                           |\d{5})                      # 4-4-5 (13-digit Visa)
      | \d{3}([ \-])\d{6}\2\d{4,5}                       # Amex 4-6-5, Diners 4-6-4
    )
    (?![\w\-]|\.\d|(?<!\d{4}),\d)
""", re.X)
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){0,7} \Z")


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_brand(number: str) -> str | None:
    """The card network of a number by its issuer prefix and length, or None."""
    n, p2, p3, p4 = len(number), int(number[:2]), int(number[:3]), int(number[:4])
    if number[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or 644 <= p3 <= 649 or p2 == 65) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if (p2 == 50 or 56 <= p2 <= 58) and 12 <= n <= 19:
        return "maestro"
    return None


def _card(text: str, m: re.Match) -> Span | None:
    number = re.sub(r"\D", "", m.group())
    if len(set(number)) < 2 or card_brand(number) is None or not luhn_ok(number):
        return None
    if _IBAN_HEAD.search(text, max(0, m.start() - 40), m.start()):  # inside an IBAN
        return None
    return m.span()


# --- IBAN ---------------------------------------------------------------------------------
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){10,30}")


def iban_ok(value: str) -> bool:
    """Country length and mod-97 check of an IBAN without spaces."""
    if IBAN_LENGTHS.get(value[:2]) != len(value):
        return False
    moved = value[4:] + value[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _iban(text: str, m: re.Match) -> Span | None:
    want = IBAN_LENGTHS.get(m.group()[:2])
    if want is None:
        return None
    seen = end = 0
    value = []
    for i, ch in enumerate(m.group()):  # the country's length decides where it ends
        if ch != " ":
            seen += 1
            value.append(ch)
            if seen == want:
                end = m.start() + i + 1
                break
    if seen < want or (end < len(text) and text[end].isalnum()):
        return None
    return (m.start(), end) if iban_ok("".join(value)) else None


# --- US SSN -------------------------------------------------------------------------------
# A comma after the serial (four digits, so not a thousands group) ends the value: CSV.
_SSN = re.compile(r"\d(?<![\w\-.+/]\d)(?:\d{2}([- ])\d{2}\1\d{4}|\d{8})(?![\w\-]|\.\d)")
_SSN_CONTEXT = re.compile(r"(?i)(?:ssn|social security(?: number| no\.?)?|ss#)\W{0,3}\Z")


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ssn(text: str, m: re.Match) -> Span | None:
    digits = re.sub(r"\D", "", m.group())
    if not ssn_ok(digits[:3], digits[3:5], digits[5:]):
        return None
    if m.group(1) is None:  # nine bare digits: an SSN only where the text says so
        if not _SSN_CONTEXT.search(text, max(0, m.start() - 28), m.start()):
            return None
    return m.span()


# --- secrets ------------------------------------------------------------------------------
# One pattern per kind, each starting with its literal prefix. For an AWS secret key only
# the value after its "secret access key" name is redacted (group "value").
_SECRETS = {
    "aws_access_key_id": (r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)"
                          r"(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])", r"A[A-Z]{3}"),
    "aws_secret_key": (r"ecret(?<=[sS]ecret)[_\-]?(?:[aA]ccess[_\-]?)?[kK]ey[\"']?\s{0,4}"
                       r"[:=]\s{0,4}[\"']?(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
                       "ecret"),
    "aws_secret_key_upper": (r"SECRET_(?:ACCESS_)?KEY[\"']?\s{0,4}[:=]\s{0,4}[\"']?"
                             r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", "SECRET_"),
    "google_api_key": (r"AIza(?<![\w\-]....)[0-9A-Za-z_\-]{35}(?![\w\-])", "AIza"),
    "github_token": (r"gh[pousr]_(?<![A-Za-z0-9_]....)[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])",
                     r"gh[pousr]_"),
    "github_pat": (r"github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{22,255}"
                   r"(?![A-Za-z0-9_])", "github_pat_"),
    "slack_token": (r"xox[abposr]-(?<![A-Za-z0-9\-].....)[A-Za-z0-9\-]{10,250}", "xox"),
    "slack_webhook": (r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,120}",
                      r"hooks\.slack\.com"),
    "private_key": (r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----"
                    r"(?:(?:[^\x00\-]|-(?!----)){0,65536}?-----END (?:[A-Z0-9]+ ){0,3}"
                    r"PRIVATE KEY-----"
                    r"|(?:\r?\n[A-Za-z0-9+/=]{1,100}){1,2000})", "PRIVATE KEY"),  # cut off
    "jwt": (r"eyJ(?<![A-Za-z0-9_\-]...)[A-Za-z0-9_\-]{5,4096}\.eyJ[A-Za-z0-9_\-]{5,8192}"
            r"\.[A-Za-z0-9_\-]{10,4096}", r"eyJ"),
    "stripe_key": (r"k_live_(?<=[rs]k_live_)(?<![A-Za-z0-9].k_live_)[0-9A-Za-z]{24,99}"
                   r"(?![0-9A-Za-z])",
                   "k_live_"),
}


def _secret(text: str, m: re.Match) -> Span | None:
    if "value" in m.re.groupindex:
        return m.span("value")
    return (m.start() - 1, m.end()) if m.group().startswith("k_live_") else m.span()


DETECTORS: dict[str, tuple[Detector, ...]] = {
    "email": (Detector("email", _EMAIL, _email, "@"),),
    "phone": (Detector("phone", _PHONE, _phone, r"\d(?:[ ().\-/]{0,3}\d){6}"),),
    "ip_address": (Detector("ip_address", _IPV4, _ipv4, r"\d\.\d+\.\d"),
                   Detector("ip_address", _IPV6, _ipv6, r"[0-9A-Fa-f]?:[0-9A-Fa-f]*:")),
    "credit_card": (Detector("credit_card", _CARD, _card, r"(?:\d[ \-]?){12}\d"),),
    "iban": (Detector("iban", _IBAN, _iban, r"[A-Z]{2}\d{2} ?[A-Z0-9]{4}"),),
    "ssn": (Detector("ssn", _SSN, _ssn, r"\d{3}[- ]?\d{2}[- ]?\d{4}"),),
    "secret": tuple(Detector("secret", re.compile(pattern), _secret, prefilter)
                    for pattern, prefilter in _SECRETS.values()),
}
PLACEHOLDERS = {"email": "EMAIL", "phone": "PHONE", "ip_address": "IP_ADDRESS",
                "credit_card": "CREDIT_CARD", "iban": "IBAN", "ssn": "SSN", "secret": "SECRET"}


def find_spans(texts: Any, types: tuple[str, ...] = TYPES) -> list[list[tuple[int, int, str]]]:
    """Non-overlapping PII spans `(start, end, type)` per text, in text order.

    `texts` is a pyarrow string array (or a list of str/None, converted)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(texts, pa.string())
    values: dict[int, str] = {}  # Python strings of the rows a prefilter matched, only
    found: list[list[tuple[int, int, str]]] = [[] for _ in range(len(texts))]
    for kind in types:
        for det in DETECTORS[kind]:
            mask = pc.fill_null(pc.match_substring_regex(texts, det.prefilter), False)
            rows = pc.indices_nonzero(mask).to_pylist()
            if not rows:
                continue
            new = [i for i in rows if i not in values]
            if new:
                values.update(zip(new, texts.take(pa.array(new, pa.int64())).to_pylist()))
            starts, pos = [], 0
            for i in rows:
                starts.append(pos)
                pos += len(values[i]) + 1
            joined = SEP.join(values[i] for i in rows)
            for m in det.pattern.finditer(joined):
                span = det.accept(joined, m)
                if span is None:
                    continue
                k = bisect.bisect_right(starts, span[0]) - 1
                found[rows[k]].append((span[0] - starts[k], span[1] - starts[k], kind))
    return [_resolve(spans) if len(spans) > 1 else spans for spans in found]


def _resolve(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Keep the best of overlapping spans: higher priority type first, then the longer.
    Spans are cut into clusters of overlapping ones; each cluster is resolved alone."""
    out: list[tuple[int, int, str]] = []
    cluster: list[tuple[int, int, str]] = []
    end = -1
    for span in sorted(spans) + [(1 << 62, 1 << 62, "")]:
        if span[0] >= end and cluster:
            chosen: list[tuple[int, int, str]] = []
            for s in sorted(cluster, key=lambda s: (-PRIORITY[s[2]], s[0] - s[1], s[0])):
                if all(s[1] <= c[0] or s[0] >= c[1] for c in chosen):
                    chosen.append(s)
            out += sorted(chosen)
            cluster = []
        cluster.append(span)
        end = max(end, span[1]) if len(cluster) > 1 else span[1]
    return out


def canonical_value(kind: str, value: str) -> str:
    """The form that is hashed, so that one value written two ways maps to one token."""
    if kind in ("phone", "credit_card", "ssn"):
        return ("+" if value.lstrip().startswith("+") else "") + re.sub(r"\D", "", value)
    if kind == "iban":
        return value.replace(" ", "").upper()
    if kind in ("email", "ip_address"):
        return value.lower()
    return value


# --- the operation ------------------------------------------------------------------------
class RedactPiiArgs(Arguments):
    column: str = Field("text", description="Text column to scan.")
    output: str | None = Field(None, description="Write the redacted text to this column "
                                                 "instead of replacing `column`.")
    types: list[PiiType] = Field(default_factory=lambda: list(TYPES),
                                 description="PII types to redact: " + ", ".join(TYPES) + ".")
    replacement: Literal["placeholder", "hash"] = Field(
        "placeholder", description="placeholder: <EMAIL>, <PHONE>, ...; hash: <EMAIL:3f9a1c2b>,"
                                   " a BLAKE2b of the value keyed by `salt` (same value, "
                                   "same token).")
    salt: str | None = Field(None, description="Key of the hash (required with "
                                               "replacement='hash'; stored in the manifest).")
    hash_chars: int = Field(8, ge=4, le=32, description="Hex characters of a hash token.")
    counts_column: str | None = Field("pii_counts", description="Struct column of counts per "
                                                                "type; None to omit.")

    @model_validator(mode="after")
    def _check(self) -> RedactPiiArgs:
        if self.replacement == "hash" and not self.salt:
            raise ValueError("replacement='hash' needs a salt (any secret string)")
        if not self.types:
            raise ValueError("types is empty: name at least one of " + ", ".join(TYPES))
        return self


class RedactPii(MapOperation):
    """Redact PII and secrets in a text column: emails, phone numbers (E.164 and national
    formats), IPv4/IPv6 addresses, payment cards (Luhn, issuer prefixes), IBANs (country
    length, mod-97), US SSNs (area/group/serial rules) and credentials (AWS key ids and
    secret keys, Google API keys, GitHub, Slack and Stripe tokens, private-key blocks, JWTs).

    Each value becomes <EMAIL>, <PHONE>, <IP_ADDRESS>, <CREDIT_CARD>, <IBAN>, <SSN> or
    <SECRET>, or with replacement='hash' a keyed hash such as <EMAIL:3f9a1c2b>. Replaces the
    column (or writes `output`); `pii_counts` holds counts per type per row and the step's
    counters their totals. Nulls stay null. See docs/pii.md."""

    name = "redact_pii"
    Args = RedactPiiArgs
    consumes = {"{column}": "string"}
    in_place = True

    def _types(self) -> tuple[str, ...]:
        return tuple(t for t in TYPES if t in self.args.types)

    def counts_type(self) -> Any:
        import pyarrow as pa

        return pa.struct([(t, pa.int32()) for t in self._types()])

    def resolve_produces(self, schema: dict) -> dict:
        produced: dict[str, Any] = {self.args.output or self.args.column: "string"}
        if self.args.counts_column:
            produced[self.args.counts_column] = self.counts_type()
        return self._template(produced)

    def setup(self) -> None:
        self._key = (self.args.salt or "").encode()
        if len(self._key) > 64:  # BLAKE2b keys are at most 64 bytes
            import hashlib

            self._key = hashlib.blake2b(self._key).digest()

    def token(self, kind: str, value: str) -> str:
        label = PLACEHOLDERS[kind]
        if self.args.replacement == "placeholder":
            return f"<{label}>"
        import hashlib

        digest = hashlib.blake2b(canonical_value(kind, value).encode("utf-8", "surrogatepass"),
                                 key=self._key, digest_size=(self.args.hash_chars + 1) // 2)
        return f"<{label}:{digest.hexdigest()[:self.args.hash_chars]}>"

    def process(self, batch: Any) -> Any:
        import pyarrow as pa

        if not hasattr(self, "_key"):
            self.setup()
        types = self._types()
        texts = batch[self.args.column]
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        spans = find_spans(texts, types)
        index = {t: i for i, t in enumerate(types)}
        counts = [[0] * len(types) for _ in spans]
        totals = [0] * len(types)
        rows = [row for row, row_spans in enumerate(spans) if row_spans]
        # only the rows with PII become Python strings; the others stay as they are
        redacted = texts.take(pa.array(rows, pa.int64())).to_pylist()
        for i, row in enumerate(rows):
            text, pieces, pos = redacted[i], [], 0
            for start, end, kind in spans[row]:
                pieces += [text[pos:start], self.token(kind, text[start:end])]
                pos = end
                counts[row][index[kind]] += 1
                totals[index[kind]] += 1
            pieces.append(text[pos:])
            redacted[i] = "".join(pieces)
        for kind, n in zip(types, totals):
            self.count(kind, n)
        self.count("rows_with_pii", len(rows))
        out = texts.cast(pa.string()) if texts.type != pa.string() else texts
        if rows:
            import numpy as np
            import pyarrow.compute as pc

            mask = np.zeros(len(texts), bool)
            mask[rows] = True
            out = pc.replace_with_mask(out, pa.array(mask), pa.array(redacted, pa.string()))
        result = {self.args.output or self.args.column: out}
        if self.args.counts_column:
            columns = list(zip(*counts)) if counts else [[] for _ in types]
            result[self.args.counts_column] = pa.StructArray.from_arrays(
                [pa.array(c, pa.int32()) for c in columns], names=list(types))
        return result
