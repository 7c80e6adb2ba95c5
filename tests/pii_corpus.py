"""A deterministic, labelled corpus for `redact_pii`: sentences with PII in varied real-world
formats, and hard negatives (versions, dates, ISBNs, hashes, order numbers, numbers failing
Luhn, invalid IBANs and SSNs, timestamps, prices, coordinates).

`corpus(seed)` returns examples `{"text": str, "spans": [(start, end, type), ...]}`. Span
conventions (what a detector must cover): an email is `local@domain` (no `mailto:`, no
brackets); a phone runs from its `+` or first digit or `(` to its last digit; an IP address is
the address alone (no port, brackets, zone id or `/prefix`); a card, IBAN or SSN includes its
internal separators; a secret is the token alone (for an AWS secret key, the 40-character
value; for a private key, the whole BEGIN..END block).

The formats were written from how these values appear in documents, before the detectors;
do not tune them to the detectors.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from pathlib import Path

TYPES = ("email", "phone", "ip_address", "credit_card", "iban", "ssn", "secret")
Example = dict


# --- positives ---------------------------------------------------------------------------
FIRST = ["john", "maria", "li", "ahmed", "sophie", "raj", "olga", "kwame", "yuki", "pierre",
         "anna", "carlos", "fatima", "jan", "emma", "noah", "chloe", "mateo", "aisha", "lukas"]
LAST = ["smith", "garcia", "wang", "hassan", "muller", "patel", "ivanova", "mensah", "tanaka",
        "dubois", "kowalski", "rossi", "okafor", "nguyen", "jensen", "obrien", "silva", "kim"]
DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.com", "example.org", "acme-corp.com",
           "mail.uni-heidelberg.de", "proton.me", "company.io", "startup.dev", "web.de",
           "orange.fr", "hotmail.it", "cs.stanford.edu", "gov.uk", "sub.mail.example.co.jp",
           "fastmail.fm", "icloud.com", "bigbank.com.au", "posteo.net", "x.org"]


def email(rng: random.Random) -> str:
    f, last, d = rng.choice(FIRST), rng.choice(LAST), rng.choice(DOMAINS)
    local = rng.choice([
        f"{f}.{last}", f"{f}{last}", f"{f[0]}{last}", f"{f}_{last}{rng.randint(1, 99)}",
        f"{f}.{last}+{rng.choice(['news', 'work', 'spam', 'github'])}", f"{f}-{last}",
        f"{f}{rng.randint(1970, 2005)}", f"{f.upper()}.{last.upper()}", "info", "support",
        "no-reply", f"{f}.{last[0]}", f"{f}%{last}", f"{last}.{f}.{rng.randint(1, 9)}"])
    if rng.random() < 0.1:
        d = d.upper()
    return f"{local}@{d}"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _us(rng: random.Random) -> tuple[str, str, str]:
    return (str(rng.randint(2, 9)) + _digits(rng, 2), str(rng.randint(2, 9)) + _digits(rng, 2),
            _digits(rng, 4))


def phone(rng: random.Random) -> str:
    a, b, c = _us(rng)
    d = _digits
    return rng.choice([
        f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}",
        f"1-800-{b}-{c}", f"+1{a}{b}{c}", f"{a} {b} {c}", f"+1 ({a}) {b}-{c}",
        f"+44 20 {d(rng, 4)} {d(rng, 4)}", f"020 {d(rng, 4)} {d(rng, 4)}",
        f"07{d(rng, 3)} {d(rng, 6)}", f"+44 7{d(rng, 3)} {d(rng, 6)}",
        f"+44 (0)20 {d(rng, 4)} {d(rng, 4)}", f"+49 30 {d(rng, 8)}", f"030 {d(rng, 8)}",
        f"+49 1{rng.randint(5, 7)}{d(rng, 1)} {d(rng, 7)}",
        f"01{rng.randint(5, 7)}{d(rng, 1)} {d(rng, 7)}",
        f"(030) {d(rng, 4)} {d(rng, 4)}", f"+49-89-{d(rng, 7)}",
        f"+33 {rng.randint(1, 9)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
        f"0{rng.randint(1, 9)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}",
        f"0{rng.randint(6, 7)}.{d(rng, 2)}.{d(rng, 2)}.{d(rng, 2)}.{d(rng, 2)}",
        f"+91 {rng.randint(6, 9)}{d(rng, 4)} {d(rng, 5)}", f"+91-{rng.randint(6, 9)}{d(rng, 9)}",
        f"+81 3-{d(rng, 4)}-{d(rng, 4)}", f"03-{d(rng, 4)}-{d(rng, 4)}",
        f"090-{d(rng, 4)}-{d(rng, 4)}", f"+61 2 {d(rng, 4)} {d(rng, 4)}",
        f"(02) {d(rng, 4)} {d(rng, 4)}", f"04{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}",
        f"+61 4{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}", f"+55 11 9{d(rng, 4)}-{d(rng, 4)}",
        f"(11) 9{d(rng, 4)}-{d(rng, 4)}", f"+86 13{d(rng, 1)} {d(rng, 4)} {d(rng, 4)}",
        f"+34 6{d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", f"+39 06 {d(rng, 4)} {d(rng, 4)}",
        f"+31 20 {d(rng, 3)} {d(rng, 4)}", f"020-{d(rng, 3)} {d(rng, 4)}",
        f"+353 1 {d(rng, 3)} {d(rng, 4)}", f"+7 495 {d(rng, 3)}-{d(rng, 2)}-{d(rng, 2)}",
        f"+27 21 {d(rng, 3)} {d(rng, 4)}", f"+65 {rng.randint(6, 9)}{d(rng, 3)} {d(rng, 4)}"])


def phone_bare(rng: random.Random) -> str:
    a, b, c = _us(rng)
    return rng.choice([f"{a}{b}{c}", f"07{_digits(rng, 9)}", f"+44{_digits(rng, 10)}"])


def ipv4(rng: random.Random) -> str:
    return rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        ".".join(str(rng.randint(1, 255)) for _ in range(4)),
        f"8.8.{rng.choice([8, 4])}.{rng.choice([8, 4])}", "127.0.0.1",
        f"203.0.113.{rng.randint(1, 254)}", f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.0.1"])


def ipv6(rng: random.Random) -> str:
    h = [format(rng.randint(0, 0xFFFF), "x") for _ in range(8)]
    v = rng.choice([
        ":".join(h), ":".join(x.zfill(4) for x in h), f"2001:db8:{h[2]}::{h[6]}:{h[7]}",
        f"fe80::{h[4]}:{h[5]}:{h[6]}:{h[7]}", "::1", f"2001:db8::{h[7]}",
        f"::ffff:192.0.2.{rng.randint(1, 254)}", f"2a00:1450:4001:{h[3]}::200e",
        f"{h[0]}:{h[1]}::", "2606:4700:4700::1111"])
    return v.upper() if rng.random() < 0.15 else v


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch)
        if i % 2 == 0:
            n = n * 2 - 9 if n * 2 > 9 else n * 2
        total += n
    return body + str((10 - total % 10) % 10)


def credit_card(rng: random.Random) -> str:
    brand = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover", "jcb", "diners",
                        "unionpay", "visa13"])
    prefix, length = {
        "visa": ("4", 16), "visa13": ("4", 13), "mc": (str(rng.randint(51, 55)), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16), "amex": (rng.choice(["34", "37"]), 15),
        "discover": (rng.choice(["6011", "65", "644"]), 16),
        "jcb": ("35" + str(rng.randint(28, 89)), 16),
        "diners": (rng.choice(["36", "38", "300"]), 14), "unionpay": ("62", rng.choice([16, 19])),
    }[brand]
    number = luhn_complete(prefix, length, rng)
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    elif length == 14:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, length, 4)]
    sep = rng.choice([" ", "-", "", " "])
    return sep.join(groups)


# IBAN: country, BBAN pattern (n: digit, a: upper letter, c: alphanumeric).
IBAN_FORMATS = {
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
    "BE": "12n", "CH": "5n12c", "AT": "16n", "PL": "24n", "SE": "20n", "NO": "11n",
    "DK": "14n", "FI": "14n", "IE": "4a14n", "PT": "21n", "LU": "3n13c", "CZ": "20n",
    "HU": "24n", "RO": "4a16c", "GR": "7n16c", "HR": "17n", "SI": "15n", "TR": "5n1n16c",
    "SA": "2n18c", "AE": "3n16n", "BR": "23n1a1c", "MT": "4a5n18c", "LT": "16n", "IS": "22n",
}


def _bban(rng: random.Random, spec: str) -> str:
    out, num = [], ""
    for ch in spec:
        if ch.isdigit():
            num += ch
            continue
        pool = {"n": string.digits, "a": string.ascii_uppercase,
                "c": string.digits + string.ascii_uppercase}[ch]
        out.append("".join(rng.choice(pool) for _ in range(int(num))))
        num = ""
    return "".join(out)


def iban_check(country: str, bban: str) -> str:
    moved = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in moved))
    return f"{98 - number % 97:02d}"


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    bban = _bban(rng, IBAN_FORMATS[country])
    check = iban_check(country, bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 50)) % 97 + 2:02d}"
        if check == iban_check(country, bban):
            check = f"{(int(check) + 1) % 97 + 2:02d}"
    value = country + check + bban
    if rng.random() < 0.55:
        return " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def ssn(rng: random.Random, valid: bool = True) -> str:
    if valid:
        area = rng.choice([rng.randint(1, 665), rng.randint(667, 899)])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    else:
        area, group, serial = rng.choice([
            (0, rng.randint(1, 99), rng.randint(1, 9999)),
            (666, rng.randint(1, 99), rng.randint(1, 9999)),
            (rng.randint(900, 999), rng.randint(1, 99), rng.randint(1, 9999)),
            (rng.randint(1, 665), 0, rng.randint(1, 9999)),
            (rng.randint(1, 665), rng.randint(1, 99), 0)])
    sep = rng.choice(["-", "-", "-", " "])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def _token(rng: random.Random, n: int, pool: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


B64 = string.ascii_letters + string.digits + "+/"


def secret(rng: random.Random) -> tuple[str, str, str]:
    """A (before, value, after) triple: the value is the secret, the rest is its context."""
    kind = rng.randrange(11)
    upper = string.ascii_uppercase + "234567"
    if kind == 0:
        return rng.choice(["AWS_ACCESS_KEY_ID=", "access key ", "aws_access_key_id = ",
                           "key id "]), \
            rng.choice(["AKIA", "ASIA"]) + _token(rng, 16, upper), ""
    if kind == 1:
        ctx = rng.choice(["aws_secret_access_key = ", "AWS_SECRET_ACCESS_KEY=",
                          '"SecretAccessKey": "', "aws_secret_access_key: ",
                          "export AWS_SECRET_ACCESS_KEY="])
        return ctx, _token(rng, 40, B64), '"' if ctx.endswith('"') else ""
    if kind == 2:
        return rng.choice(["key=", "GOOGLE_API_KEY=", "api key ", "?key="]), \
            "AIza" + _token(rng, 35, string.ascii_letters + string.digits + "-_"), ""
    if kind == 3:
        return rng.choice(["token ", "GITHUB_TOKEN=", "Authorization: token ", ""]), \
            rng.choice(["ghp_", "gho_", "ghs_", "ghu_"]) + _token(rng, 36), ""
    if kind == 4:
        return rng.choice(["token ", "GH_TOKEN=", ""]), \
            "github_pat_" + _token(rng, 22) + "_" + _token(rng, 59), ""
    if kind == 5:
        return rng.choice(["SLACK_BOT_TOKEN=", "slack token ", ""]), \
            f"xox{rng.choice('bpa')}-{_digits(rng, 12)}-{_digits(rng, 13)}-{_token(rng, 24)}", ""
    if kind == 6:
        return "webhook: ", "https://hooks.slack.com/services/T" + _token(
            rng, 8, upper) + "/B" + _token(rng, 8, upper) + "/" + _token(rng, 24), ""
    if kind == 7:
        label = rng.choice(["RSA ", "EC ", "", "OPENSSH ", "ENCRYPTED "])
        lines = "\n".join(_token(rng, 64, B64) for _ in range(rng.randint(2, 6)))
        return "key file:\n", (f"-----BEGIN {label}PRIVATE KEY-----\n{lines}\n"
                               f"{_token(rng, 20, B64)}==\n-----END {label}PRIVATE KEY-----"), "\n"
    if kind == 8:
        def seg(n: int) -> str:
            return _token(rng, n, string.ascii_letters + string.digits + "-_")
        return rng.choice(["Authorization: Bearer ", "jwt=", "id_token: "]), \
            f"eyJ{seg(30)}.eyJ{seg(rng.randint(40, 120))}.{seg(43)}", ""
    if kind == 9:
        return "STRIPE_SECRET_KEY=", "sk_live_" + _token(rng, 24), ""
    return rng.choice(["AWS key ", ""]), "AKIA" + _token(rng, 16, upper), ""


# --- hard negatives ----------------------------------------------------------------------
def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _not_luhn(rng: random.Random) -> str:
    while True:
        number = rng.choice(["4", "5", "37", "6011"]) + _digits(rng, 15)
        number = number[:16] if not number.startswith("37") else number[:15]
        total = sum((int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2) if i % 2 else int(c)
                    for i, c in enumerate(reversed(number)))
        if total % 10:
            break
    sep = rng.choice([" ", "-", ""])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def _spec(rng: random.Random, template: str) -> str:
    """Fill `{a~b}` (a random integer) and `{a~b:02d}` (formatted) slots, left to right."""
    def one(m: re.Match) -> str:
        return format(rng.randint(int(m.group(1)), int(m.group(2))), m.group(3) or "")
    return re.sub(r"\{(-?\d+)~(-?\d+)(?::(\w+))?\}", one, template)


NEGATIVES: list[Callable[[random.Random], str]] = [
    lambda r: _spec(r, "Upgrade to version {1~9}.{0~9}.{0~9}.{0~20} today."),
    lambda r: f"Windows build v10.0.{r.randint(10000, 22631)} shipped.",
    lambda r: _spec(r, "We tested on Chrome {100~125}.0.{4000~6500}.{10~200}."),
    lambda r: _spec(r, "Requires Python 3.{8~13}.{0~9} and numpy 1.{20~26}.{0~5}."),
    lambda r: _spec(r, "Firmware {1~4}.{0~9}.{0~9}.{1~99} fixes the bug."),
    lambda r: f"Release v{r.randint(1, 3)}.{r.randint(0, 12)}.{r.randint(0, 30)} is out.",
    lambda r: _spec(r, "The meeting is on {2000~2030}-{1~12:02d}-{1~28:02d}."),
    lambda r: _spec(r, "Born {1~28:02d}/{1~12:02d}/{1950~2010} in Lyon."),
    lambda r: f"Due {r.randint(1, 12):02d}/{r.randint(1, 28):02d}/{r.randint(2020, 2030)}, net 30.",
    lambda r: f"Datum: {r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(1990, 2030)}",
    lambda r: _spec(r, "Logged at {2019~2025}-{1~12:02d}-{1~28:02d}T"
                       "{0~23:02d}:{0~59:02d}:{0~59:02d}Z."),
    lambda r: _spec(r, "[{2019~2025}-{1~12:02d}-{1~28:02d} {0~23:02d}:{0~59:02d}:{0~59:02d},"
                       "{0~999:03d}] INFO worker started"),
    lambda r: _spec(r, "ISBN 978-{0~1}-{10~99}-{100000~999999}-{0~9} is the paperback."),
    lambda r: _spec(r, "See ISBN 0-{100~999}-{10000~99999}-{0~9} (first edition)."),
    lambda r: f"ISBN-13: 978{_digits(r, 10)}",
    lambda r: f"Fixed in commit {_hex(r, 40)}.",
    lambda r: f"Merged {_hex(r, 7)} into main.",
    lambda r: f"sha256:{_hex(r, 64)}",
    lambda r: (f"Request id {_hex(r, 8)}-{_hex(r, 4)}-4{_hex(r, 3)}-a{_hex(r, 3)}-"
               f"{_hex(r, 12)} failed."),
    lambda r: f"ObjectId(\"{_hex(r, 24)}\")",
    lambda r: "MAC " + ":".join(_hex(r, 2).upper() for _ in range(6)) + " joined the network.",
    lambda r: f"Order #{_digits(r, 10)} has shipped.",
    lambda r: f"Your order ORD-{r.randint(2019, 2025)}-{_digits(r, 6)} is confirmed.",
    lambda r: f"Invoice No. {r.randint(2019, 2025)}-{_digits(r, 6)} is attached.",
    lambda r: (f"Tracking number 1Z{_token(r, 6, string.ascii_uppercase + string.digits)}"
               f"{_digits(r, 10)}."),
    lambda r: f"Reference: {_digits(r, 3)}-{_digits(r, 7)}-{_digits(r, 7)}",
    lambda r: f"Card number {_not_luhn(r)} was declined as invalid.",
    lambda r: f"Account {_digits(r, 16)} closed.",
    lambda r: f"IBAN {iban(r, valid=False)} was rejected (bad checksum).",
    lambda r: f"SSN field contained {ssn(r, valid=False)}, which is not a valid number.",
    lambda r: f"Epoch {r.randint(1_500_000_000, 1_800_000_000)} seconds.",
    lambda r: f"ts={r.randint(1_500_000_000_000, 1_800_000_000_000)}",
    lambda r: _spec(r, "Lap time {0~59:02d}:{0~59:02d}:{0~59:02d}.{0~999:03d}"),
    lambda r: f"Price: ${r.randint(1, 99)},{r.randint(100, 999)}.{r.randint(0, 99):02d} incl. VAT",
    lambda r: f"Kosten: {r.randint(1, 99)}.{r.randint(100, 999)},{r.randint(0, 99):02d} EUR",
    lambda r: _spec(r, "Revenue was USD {1~999},{100~999},{100~999}.{0~99:02d}."),
    lambda r: f"Location {r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
    lambda r: f"GPS: {r.uniform(-90, 90):.6f},{r.uniform(-180, 180):.6f}",
    lambda r: f"{r.uniform(0, 90):.4f}° N, {r.uniform(0, 180):.4f}° W",
    lambda r: (f"Resolution {r.choice([1920, 2560, 3840])}x{r.choice([1080, 1440, 2160])} "
               f"at {r.randint(30, 144)} Hz."),
    lambda r: f"pages {r.randint(100, 300)}-{r.randint(301, 600)} of volume {r.randint(1, 40)}",
    lambda r: "Row: " + " ".join(str(r.randint(10, 99)) for _ in range(5)),
    lambda r: f"ZIP {r.randint(10000, 99999)}-{r.randint(1000, 9999)}",
    lambda r: f"Postcode SW1A {r.randint(1, 9)}AA, London.",
    lambda r: f"Contact us at icon@{r.randint(2, 3)}x.png for the retina asset.",
    lambda r: f"Install lodash@4.17.{r.randint(1, 21)} and @babel/core@7.{r.randint(0, 24)}.0.",
    lambda r: "Thanks @" + r.choice(FIRST) + " for the review!",
    lambda r: _spec(r, "Use std::vector<int> and Foo::bar() in C++; time {10~23}:{10~59}:{10~59}."),
    lambda r: f"The SKU is {_token(r, 20, string.ascii_uppercase + string.digits)}.",
    lambda r: f"Checksum (base64): {_token(r, 40, B64)}",
    lambda r: f"Pi is about 3.{_digits(r, 12)} and e is 2.{_digits(r, 10)}.",
    lambda r: f"Score: {r.randint(0, 9)}-{r.randint(0, 9)} after {r.randint(60, 120)} minutes.",
    lambda r: (f"Population grew from {r.randint(1, 9)},{_digits(r, 3)},{_digits(r, 3)} "
               f"to {r.randint(1, 9)},{_digits(r, 3)},{_digits(r, 3)}."),
    lambda r: f"Part no. {_digits(r, 4)}-{_digits(r, 4)}-{_digits(r, 4)}-{_digits(r, 4)}",
    lambda r: f"Subnet mask 255.255.{r.choice([0, 255])}.0 on interface eth{r.randint(0, 3)}",
    lambda r: _spec(r, "Temperature ranged {-20~0} to {1~40} C on {1~28} Jan {1990~2030}."),
]

# Sentences: `{}` is the PII value (or values, for several slots).
TEMPLATES = {
    "email": ["Please contact {} for details.", "Email: {}", "Send your CV to <{}>.",
              "mailto:{}", "Reach me at {}, or call the office.", "From: \"Jane\" <{}>",
              "Questions? Write to {} before {} ends.", "cc {}; {}", "({})",
              "Her address is {}."],
    "phone": ["Call me at {}.", "Tel: {}", "Phone {} (mobile)", "Reach our office on {} or "
              "visit us.", "Kontakt: {}", "For support dial {} between 9 and 5.",
              "Fax: {} / Tel: {}", "mobile: {}, email preferred", "Ring {} after 6pm.",
              "Numéro : {}"],
    "ip_address": ["Server at {} is down.", "Connection from {} refused", "ssh admin@{}",
                   "Set DNS to {} and {}.", "GET http://{}/admin 403", "client_ip={}",
                   "host {} port 22", "[{}]:443 listening", "Ping {} timed out.",
                   "inet6 {} scope link"],
    "credit_card": ["Card number: {}", "Pay with {} exp 09/27.", "CC {} CVV 123",
                    "I used my card {} yesterday.", "card={}", "Visa ending... full: {}",
                    "Charged to {} on 2024-03-01.", "Kartennummer {}"],
    "iban": ["IBAN: {}", "Please transfer to {} by Friday.", "Account (IBAN) {}",
             "Bankverbindung: {}, BIC DEUTDEFF", "Refund to {}.", "iban={}"],
    "ssn": ["SSN: {}", "Social Security Number {}", "His SSN is {}.", "ssn={}",
            "SSN {} on file since 2019-04-02.", "Employee SSN: {}; DOB 04/12/1985"],
}


def _fill(template: str, values: list[tuple[str, str]]) -> Example:
    """Fill `{}` slots with values in order; values are (text, type or "")."""
    text, spans = "", []
    parts = template.split("{}")
    for i, part in enumerate(parts):
        text += part
        if i < len(parts) - 1:
            value, kind = values[i]
            if kind:
                spans.append((len(text), len(text) + len(value), kind))
            text += value
    return {"text": text, "spans": spans}


def _positive(rng: random.Random, kind: str) -> Example:
    if kind == "secret":
        before, value, after = secret(rng)
        prefix = rng.choice(["", "config: ", "Oops, committed ", "# do not share\n"])
        text = prefix + before
        return {"text": text + value + after + rng.choice(["", " (rotated)", "\n"]),
                "spans": [(len(text), len(text) + len(value), "secret")]}
    make = {"email": email, "phone": phone, "credit_card": credit_card, "iban": iban,
            "ssn": ssn, "ip_address": lambda r: ipv6(r) if r.random() < 0.4 else ipv4(r)}[kind]
    template = rng.choice(TEMPLATES[kind])
    slots = template.count("{}")
    values = [(make(rng), kind) for _ in range(slots)]
    if kind == "email" and "before {}" in template:
        values[1] = ("2024-06-30", "")
    if kind == "phone" and rng.random() < 0.15:
        template, values = rng.choice(["phone: {}", "tel {}", "Call {} now."]), \
            [(phone_bare(rng), kind)]
    example = _fill(template, values)
    if rng.random() < 0.3:  # a hard negative in the same document
        noise = rng.choice(NEGATIVES)(rng)
        shift = len(noise) + 1
        example = {"text": noise + " " + example["text"],
                   "spans": [(s + shift, e + shift, t) for s, e, t in example["spans"]]}
    return example


def corpus(seed: int = 0, per_type: int = 150, negatives: int = 800) -> list[Example]:
    """Labelled examples: `per_type` documents per PII type plus `negatives` documents made
    of hard negatives only."""
    rng = random.Random(seed)
    out = [_positive(rng, kind) for kind in TYPES for _ in range(per_type)]
    for _ in range(negatives):
        parts = [rng.choice(NEGATIVES)(rng) for _ in range(rng.randint(1, 3))]
        out.append({"text": " ".join(parts), "spans": []})
    rng.shuffle(out)
    return out


HANDWRITTEN = Path(__file__).parent / "data" / "pii" / "handwritten.txt"
_MARK = re.compile(r"\[\[(\w+)\|(.*?)\]\]", re.S)


def handwritten(path: Path = HANDWRITTEN) -> list[Example]:
    """The hand-written examples: `[[type|value]]` marks PII, `\\n` is a newline."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        text, spans, pos = "", [], 0
        line = line.replace("\\n", "\n")
        for m in _MARK.finditer(line):
            text += line[pos:m.start()]
            spans.append((len(text), len(text) + len(m.group(2)), m.group(1)))
            text += m.group(2)
            pos = m.end()
        out.append({"text": text + line[pos:], "spans": spans})
    return out


def score(examples: list[Example], predicted: list[list[tuple[int, int, str]]]) -> dict:
    """Span-level precision, recall and F1 per type.

    A predicted span matches a gold span of the same type when their character ranges
    overlap; each gold span matches at most one prediction. `exact` is the share of matched
    gold spans whose boundaries were found exactly."""
    table = {t: {"tp": 0, "fp": 0, "fn": 0, "exact": 0} for t in TYPES}
    for ex, pred in zip(examples, predicted):
        gold = list(ex["spans"])
        used = [False] * len(gold)
        for s, e, t in pred:
            hit = next((i for i, (gs, ge, gt) in enumerate(gold)
                        if not used[i] and gt == t and s < ge and gs < e), None)
            if hit is None:
                table[t]["fp"] += 1
                continue
            used[hit] = True
            table[t]["tp"] += 1
            table[t]["exact"] += (s, e) == tuple(gold[hit][:2])
        for (_, _, t), u in zip(gold, used):
            table[t]["fn"] += not u
    for row in table.values():
        tp, fp, fn = row["tp"], row["fp"], row["fn"]
        row["precision"] = tp / (tp + fp) if tp + fp else 1.0
        row["recall"] = tp / (tp + fn) if tp + fn else 1.0
        p, r = row["precision"], row["recall"]
        row["f1"] = 2 * p * r / (p + r) if p + r else 0.0
        row["exact"] = row["exact"] / tp if tp else 1.0
    return table


if __name__ == "__main__":
    import json
    import sys

    for ex in corpus(int(sys.argv[1]) if len(sys.argv) > 1 else 0)[:40]:
        print(json.dumps(ex, ensure_ascii=False))
