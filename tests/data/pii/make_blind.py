#!/usr/bin/env python3
"""Generator for ``blind.jsonl`` -- an independent, blind, labelled PII evaluation set.

Written without looking at the detector (``datamill.ops.pii``), its tests or its docs.
Run ``python tests/data/pii/make_blind.py`` to (re)generate ``blind.jsonl`` next to this
file.  Output is deterministic (fixed seed, no set iteration, no time/env input).

Format
------
One JSON object per line: ``{"text": str, "spans": [{"start", "end", "type"}]}``.
Offsets are Python ``str`` indices (Unicode code points, not bytes); ``end`` is exclusive,
so ``text[start:end]`` is exactly the PII value.  Spans never overlap and are sorted.
Types: email, phone, ip_address, credit_card, iban, ssn, secret.  Records with
``spans == []`` are hard negatives.  The script self-checks every span (Luhn, mod-97,
SSN ranges, token shapes) and scans every text for unlabelled look-alikes.

Labelling conventions (what a span covers)
------------------------------------------
* General: cue words / keys (``Tel:``, ``IBAN``, ``SSN``, ``aws_secret_access_key=``,
  ``Bearer``), surrounding quotes, brackets and trailing punctuation are NEVER in a span.
* email: ``local@domain.tld`` only.  Excludes ``mailto:``, ``<``/``>``, ``?subject=...``.
  Case is preserved.  Addresses without a dotted public-looking domain
  (``user@localhost``, ``deploy@build-01``), ``icon@2x.png``-style asset names,
  ``@handles`` and ``pkg@1.2.3`` specifiers are NOT emails (negatives).
  ``https://ghp_...@github.com`` is a secret (token), not an email.
* phone: from the first ``+``, ``(`` or digit to the last digit, including the country
  code, internal spaces/dots/dashes, ``(0)`` trunk prefixes and area-code parentheses.
  Excludes ``tel:`` URI prefixes, ``ext. 204`` extensions and trailing periods.
  Fax numbers count as phones.
* ip_address: the address only.  Excludes ``:port``, URL brackets ``[...]`` around IPv6,
  and IPv6 zone ids (``fe80::1%eth0`` -> ``fe80::1``).  ``::ffff:192.0.2.128`` is one
  span.  Private/documentation ranges are labelled too.  Dotted quads used as version
  numbers (``version 1.2.3.4``, ``Chrome/120.0.0.0``), OIDs, MAC addresses and
  out-of-range quads (``999.300.1.1``) are NOT IP addresses.
* credit_card: Luhn-valid 13-19 digit PANs of real brand prefixes, including internal
  spaces/dashes.  Well-known test PANs (4111 1111 1111 1111) are labelled (they pass
  Luhn).  Masked PANs (``**** 4242``), expiry dates and CVVs are not labelled.
  Luhn-failing 16-digit numbers are negatives.
* iban: mod-97-valid IBAN with the correct country length, in print (groups of 4 with
  single spaces) or electronic (no spaces) form; the word ``IBAN`` is excluded.  BICs
  are not labelled.  IBAN-shaped strings with a wrong checksum are negatives.
* ssn: US SSN as ``ddd-dd-dddd`` or ``ddd dd dddd`` with area 001-665/667-899, group
  01-99, serial 0001-9999.  Invalid ones (000/666/9xx area, 00 group, 0000 serial) are
  negatives even when cued by "SSN".
* secret: the token value only (``AKIA...``, 40-char AWS secret after
  ``aws_secret_access_key``, ``ghp_/gho_/ghs_...``, ``github_pat_...``, ``xoxb-/xoxp-``
  Slack tokens, ``AIza...`` Google keys, ``sk_live_...`` Stripe keys).  AWS's documented
  example keys (``AKIAIOSFODNN7EXAMPLE``, ``wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY``)
  ARE labelled (scanners flag them).  PEM private keys: the whole block from
  ``-----BEGIN`` to the closing ``-----`` of the END line (also when embedded in JSON
  with literal ``\\n`` escapes).  Public keys, certificates, ``ssh-rsa`` public keys,
  placeholders (``YOUR_API_KEY``, ``<token>``, ``sk_live_****``), env-var names, git
  SHAs, UUIDs, hex digests and base64 image data are NOT secrets.
"""
import base64
import ipaddress
import json
import os
import re
import string
import sys

import random

SEED = 20240115
R = random.Random(SEED)
TYPES = ("email", "phone", "ip_address", "credit_card", "iban", "ssn", "secret")
HERE = os.path.dirname(os.path.abspath(__file__))

# ----------------------------------------------------------------------------- helpers
DIG = "0123456789"
ALNUM = string.ascii_letters + string.digits


def d(n):
    return "".join(R.choice(DIG) for _ in range(n))


def nz(n):  # n digits, first not 0
    return R.choice("123456789") + d(n - 1)


def chars(alpha, n):
    return "".join(R.choice(alpha) for _ in range(n))


def pick(seq):
    return R.choice(seq)


FIRST = ["John", "Maria", "Wei", "Aisha", "Lukas", "Sofia", "Hiroshi", "Priya", "Olivier",
         "Emma", "Carlos", "Fatima", "Jan", "Chloé", "Mateo", "Anna", "Kenji", "Lena",
         "Rahul", "Zoe", "Björn", "Elif", "Marco", "Ingrid", "Tomasz", "Amélie", "Diego",
         "Hannah", "Yuki", "Noah", "Giulia", "Sven", "Ana", "Pierre", "Katarzyna", "Omar"]
LAST = ["Smith", "Müller", "Dubois", "Rossi", "García", "Tanaka", "Kowalski", "Jansen",
        "Nguyen", "Patel", "O'Brien", "Schneider", "Martin", "Bianchi", "Fernández", "Sato",
        "Nowak", "de Vries", "Kumar", "Johnson", "Lefebvre", "Weber", "Romano", "López",
        "Suzuki", "Wiśniewski", "Bakker", "Singh", "Brown", "Fischer", "Moreau", "Ricci"]
ASCII_FIRST = ["john", "maria", "wei", "aisha", "lukas", "sofia", "hiroshi", "priya",
               "olivier", "emma", "carlos", "fatima", "jan", "chloe", "mateo", "anna",
               "kenji", "lena", "rahul", "zoe", "bjorn", "elif", "marco", "ingrid"]
ASCII_LAST = ["smith", "mueller", "dubois", "rossi", "garcia", "tanaka", "kowalski",
              "jansen", "nguyen", "patel", "obrien", "schneider", "martin", "bianchi",
              "fernandez", "sato", "nowak", "devries", "kumar", "johnson", "weber"]
COMPANY = ["Acme Corp", "Globex GmbH", "Initech", "Umbrella SAS", "Hooli", "Stark Ltd",
           "Wayne Enterprises", "Nordwind AG", "Soylent BV", "Tyrell S.p.A.", "Cyberdyne KK"]
CITY = ["Berlin", "Paris", "London", "Madrid", "Rome", "Amsterdam", "Brussels", "Zurich",
        "Warsaw", "Tokyo", "Mumbai", "São Paulo", "Sydney", "Toronto", "Austin", "Lyon"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com",
           "eng.corp.example.org", "example.co.uk", "shop.example.co.uk", "louvre.museum",
           "startup.io", "api-team.startup.io", "uni-heidelberg.de", "example.fr",
           "correo.example.es", "example.it", "post.example.nl", "example.ch",
           "example.pl", "studio.design", "company.tech", "dev.example.app",
           "mail-relay.example.cloud", "example.co.jp", "example.com.br", "example.com.au"]


def fullname():
    return pick(FIRST) + " " + pick(LAST)


# ----------------------------------------------------------------------------- email
def email():
    f, l = pick(ASCII_FIRST), pick(ASCII_LAST)
    style = R.randrange(12)
    local = [f + "." + l, f + "+" + pick(["news", "github", "shop", "2024", "spam"]),
             f[0] + l, f + "_" + l, f + "-" + l, f + "." + l + "+" + pick(["work", "lists"]),
             (f + "." + l).upper(), f + d(R.randint(2, 4)), f[0] + "." + pick("abcdefg") + "." + l,
             f.capitalize() + "." + l.capitalize(), "info", pick(["support", "billing", "no-reply", "hr.team"])][style]
    dom = pick(DOMAINS)
    if R.random() < 0.1:
        dom = dom.upper()
    return local + "@" + dom


# ----------------------------------------------------------------------------- phone
def us_parts():
    return nz(1) + pick("01234578") + d(1), nz(3), d(4)


def ph_e164_us():
    a, b, c = us_parts(); return "+1" + a + b + c


def ph_us_paren():
    a, b, c = us_parts(); return "(%s) %s-%s" % (a, b, c)


def ph_us_dash():
    a, b, c = us_parts(); return "%s-%s-%s" % (a, b, c)


def ph_us_dot():
    a, b, c = us_parts(); return "%s.%s.%s" % (a, b, c)


def ph_us_intl():
    a, b, c = us_parts()
    return pick(["+1 (%s) %s-%s", "+1-%s-%s-%s", "+1 %s %s %s", "1-%s-%s-%s"]) % (a, b, c)


def ph_us_tollfree():
    return "1-%s-%s-%s" % (pick(["800", "888", "877", "866"]), nz(3), d(4))


def ph_us():
    return pick([ph_us_paren, ph_us_dash, ph_us_dot, ph_us_intl, ph_e164_us, ph_us_tollfree])()


def ph_uk_intl():
    return pick(["+44 20 %s %s" % ("7946", d(4)), "+44 7700 900%s" % d(3),
                 "+44 (0)20 %s %s" % (nz(4), d(4)), "+44 161 %s %s" % (nz(3), d(4)),
                 "+447%s" % d(9)])


def ph_uk_nat():
    return pick(["020 7946 0%s" % d(3), "07700 900%s" % d(3), "0161 %s %s" % (nz(3), d(4)),
                 "020 %s %s" % (nz(4), d(4))])


def ph_fr_intl():
    g = lambda: d(2)
    return pick(["+33 1 %s %s %s %s" % (nz(2), g(), g(), g()),
                 "+33 6 %s %s %s %s" % (g(), g(), g(), g()),
                 "+33 (0)1 %s %s %s %s" % (nz(2), g(), g(), g()),
                 "+33%s%s" % (pick("1234567"), d(8))])


def ph_fr_nat():
    g = lambda: d(2)
    return pick(["0%s %s %s %s %s" % (pick("1234567"), nz(2), g(), g(), g()),
                 "0%s.%s.%s.%s.%s" % (pick("67"), g(), g(), g(), g())])


def ph_de():
    return pick(["+49 (0)30 %s" % nz(6), "+49 30 %s" % nz(8), "+49 170 %s" % nz(7),
                 "+49 89 %s %s" % (nz(4), d(4)), "030 %s" % nz(8), "0170 %s" % nz(7),
                 "+49 (0)89 %s-%s" % (nz(3), d(3)), "+4915%s" % d(9)])


def ph_jp():
    return pick(["+81 3-%s-%s" % (nz(4), d(4)), "+81 90-%s-%s" % (nz(4), d(4)),
                 "03-%s-%s" % (nz(4), d(4)), "+81-6-%s-%s" % (nz(4), d(4))])


def ph_in():
    return pick(["+91 9%s %s" % (d(4), d(5)), "+91-9%s-%s" % (d(4), d(5)),
                 "+91 22 %s %s" % (nz(4), d(4))])


def ph_es():
    return pick(["+34 6%s %s %s" % (d(2), d(3), d(3)), "+34 91 %s %s %s" % (nz(3), d(2), d(2))])


def ph_it():
    return pick(["+39 06 %s %s" % (nz(4), d(4)), "+39 3%s %s %s" % (d(2), d(3), d(4))])


def ph_au():
    return pick(["+61 2 %s %s" % (nz(4), d(4)), "+61 4%s %s %s" % (d(2), d(3), d(3))])


def ph_br():
    return "+55 11 9%s-%s" % (d(4), d(4))


def ph_nl():
    return pick(["+31 20 %s %s" % (nz(3), d(4)), "+31 6 %s" % d(8)])


def ph_e164():
    return pick(["+1" + "".join(us_parts()), "+4915" + d(9), "+336" + d(8), "+447700900" + d(3),
                 "+3491" + nz(7), "+8190" + d(8), "+919" + d(9), "+6141" + d(7), "+31" + "6" + d(8)])


def ph_intl():
    return pick([ph_uk_intl, ph_fr_intl, ph_de, ph_jp, ph_in, ph_es, ph_it, ph_au, ph_br,
                 ph_nl, ph_e164, ph_us_intl])()


def ph_any():
    return pick([ph_us, ph_us, ph_intl, ph_intl, ph_uk_nat, ph_fr_nat, ph_e164])()


def ph_mobile():
    return pick(["+44 7700 900%s" % d(3), "+33 6 %s %s %s %s" % (d(2), d(2), d(2), d(2)),
                 "+49 170 %s" % nz(7), "+91 9%s %s" % (d(4), d(5)), "+81 90-%s-%s" % (nz(4), d(4)),
                 ph_us_dash(), "07700 900%s" % d(3), "+34 6%s %s %s" % (d(2), d(3), d(3))])


# ----------------------------------------------------------------------------- ip
def ip4_public():
    return pick([
        "203.0.113.%d" % R.randint(1, 254), "198.51.100.%d" % R.randint(1, 254),
        "192.0.2.%d" % R.randint(1, 254),
        "%d.%d.%d.%d" % (pick([R.randint(1, 9), R.randint(11, 126), R.randint(128, 223)]),
                         R.randint(0, 255), R.randint(0, 255), R.randint(1, 254))])


def ip4_private():
    return pick(["10.%d.%d.%d" % (R.randint(0, 255), R.randint(0, 255), R.randint(1, 254)),
                 "172.%d.%d.%d" % (R.randint(16, 31), R.randint(0, 255), R.randint(1, 254)),
                 "192.168.%d.%d" % (R.randint(0, 10), R.randint(1, 254)), "127.0.0.1"])


def ip4():
    return ip4_public() if R.random() < 0.65 else ip4_private()


def ip6():
    groups = [0x2001, 0xdb8] if R.random() < 0.5 else [pick([0x2a00, 0x2600, 0x2a01, 0x2406, 0x2c0f]), R.randint(0, 0xffff)]
    rest = [R.randint(0, 0xffff) for _ in range(6)]
    z = R.randint(0, 4)
    for i in range(z, min(6, z + R.randint(0, 3))):
        rest[i] = 0
    a = ipaddress.IPv6Address(":".join("%x" % g for g in groups + rest))
    style = R.randrange(5)
    if style == 0:
        s = a.exploded
    elif style == 1:
        s = ":".join("%x" % int(g, 16) for g in a.exploded.split(":"))
    else:
        s = a.compressed
    return s.upper() if R.random() < 0.1 else s


def ip6_ll():
    return str(ipaddress.IPv6Address("fe80::%x:%x:%x:%x" % tuple(R.randint(0, 0xffff) for _ in range(4))))


def ip_mapped():
    return "::ffff:" + ip4_public()


def ip_any():
    return pick([ip4, ip4, ip4, ip6, ip6, ip_mapped])()


# ----------------------------------------------------------------------------- cards
def luhn_digit(partial):
    s = 0
    for i, ch in enumerate(reversed(partial)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        s += v
    return str((10 - s % 10) % 10)


def luhn_ok(num):
    return luhn_digit(num[:-1]) == num[-1]


def cc_num(brand=None):
    brand = brand or pick(["visa", "visa", "mc", "mc", "amex", "discover", "jcb"])
    if brand == "visa":
        p, L = "4", pick([16, 16, 16, 13])
    elif brand == "mc":
        p, L = pick([str(R.randint(51, 55)), str(R.randint(2221, 2720))]), 16
    elif brand == "amex":
        p, L = pick(["34", "37"]), 15
    elif brand == "discover":
        p, L = pick(["6011", "65", str(R.randint(644, 649))]), 16
    else:
        p, L = str(R.randint(3528, 3589)), 16
    body = p + d(L - 1 - len(p))
    return body + luhn_digit(body)


def cc_fmt(num, sep=None):
    if sep is None:
        sep = pick([" ", " ", "-", ""])
    groups = {15: [4, 6, 5], 13: [4, 4, 5], 16: [4, 4, 4, 4]}[len(num)]
    out, i = [], 0
    for g in groups:
        out.append(num[i:i + g]); i += g
    return sep.join(out)


def cc():
    if R.random() < 0.05:
        return cc_fmt(pick(["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"]))
    return cc_fmt(cc_num())


# ----------------------------------------------------------------------------- iban
IBAN_LEN = {"DE": 22, "FR": 27, "GB": 22, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21, "PL": 28}


def be_bban():
    n = d(10)
    c = int(n) % 97 or 97
    return n + "%02d" % c


BBAN = {"DE": lambda: d(18), "FR": lambda: d(23),
        "GB": lambda: pick(["NWBK", "BARC", "LOYD", "MIDL", "HBUK"]) + d(14),
        "ES": lambda: d(20), "IT": lambda: pick(string.ascii_uppercase) + d(22),
        "NL": lambda: pick(["ABNA", "INGB", "RABO", "SNSB", "TRIO"]) + d(10),
        "BE": be_bban, "CH": lambda: d(17), "PL": lambda: d(24)}


def mod97(s):
    return int("".join(str(int(c, 36)) for c in s)) % 97


def iban_valid(raw):
    raw = raw.replace(" ", "")
    cc_ = raw[:2]
    return cc_ in IBAN_LEN and len(raw) == IBAN_LEN[cc_] and mod97(raw[4:] + raw[:4]) == 1


def iban_raw(country=None):
    c = country or pick(list(IBAN_LEN))
    b = BBAN[c]()
    chk = "%02d" % (98 - mod97(b + c + "00"))
    s = c + chk + b
    assert len(s) == IBAN_LEN[c] and iban_valid(s), s
    return s


def print_fmt(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def iban(country=None, fmt=None):
    s = iban_raw(country)
    fmt = fmt or pick(["print", "print", "elec"])
    return print_fmt(s) if fmt == "print" else s


def iban_bad():
    s = iban_raw()
    if R.random() < 0.5:
        good = s[2:4]
        while True:
            bad = "%02d" % R.randint(2, 98)
            if bad != good:
                break
        s = s[:2] + bad + s[4:]
    else:
        i = R.randint(len(s) - 8, len(s) - 1)
        s = s[:i] + str((int(s[i]) + R.randint(1, 9)) % 10) + s[i + 1:]
    assert not iban_valid(s)
    return print_fmt(s) if R.random() < 0.6 else s


# ----------------------------------------------------------------------------- ssn
def ssn_parts():
    a = pick([R.randint(1, 665), R.randint(667, 899)])
    return "%03d" % a, "%02d" % R.randint(1, 99), "%04d" % R.randint(1, 9999)


def ssn():
    return "-".join(ssn_parts())


def ssn_space():
    return " ".join(ssn_parts())


def ssn_any():
    return ssn() if R.random() < 0.75 else ssn_space()


def ssn_valid(s):
    m = re.fullmatch(r"(\d{3})[- ](\d{2})[- ](\d{4})", s)
    if not m:
        return False
    a, g, sr = (int(x) for x in m.groups())
    return 0 < a < 900 and a != 666 and g > 0 and sr > 0


def ssn_bad():
    a, g, s = ssn_parts()
    k = R.randrange(5)
    if k == 0: a = "000"
    elif k == 1: a = "666"
    elif k == 2: a = str(R.randint(900, 999))
    elif k == 3: g = "00"
    else: s = "0000"
    return (a + "-" + g + "-" + s) if R.random() < 0.8 else " ".join((a, g, s))


# ----------------------------------------------------------------------------- secrets
B32 = string.ascii_uppercase + "234567"


def aws_akid():
    if R.random() < 0.06:
        return "AKIAIOSFODNN7EXAMPLE"
    return "AKIA" + chars(B32, 16)


def aws_secret():
    if R.random() < 0.06:
        return "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    while True:
        s = chars(ALNUM + "/+", 40)
        if sum(c.isupper() for c in s) > 3 and sum(c.islower() for c in s) > 3:
            return s


def ghp():
    return pick(["ghp_", "ghp_", "ghp_", "gho_", "ghs_", "ghu_", "ghr_"]) + chars(ALNUM, 36)


def github_pat():
    return "github_pat_" + chars(ALNUM, 22) + "_" + chars(ALNUM, 59)


def slack():
    if R.random() < 0.7:
        return "xoxb-%s-%s-%s" % (nz(R.randint(10, 12)), nz(R.randint(12, 13)), chars(ALNUM, 24))
    return "xoxp-%s-%s-%s-%s" % (nz(11), nz(12), nz(13), chars("0123456789abcdef", 32))


def gapi():
    return "AIza" + chars(ALNUM + "_-", 35)


def stripe():
    return "sk_live_" + chars(ALNUM, pick([24, 24, 32, 99]))


def b64_lines(raw, width=64):
    s = base64.b64encode(raw).decode()
    return [s[i:i + width] for i in range(0, len(s), width)]


def pem(kind=None, nl="\n"):
    kind = kind or pick(["RSA PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    n = R.randint(4, 12)
    if kind == "OPENSSH PRIVATE KEY":
        lines = b64_lines(b"openssh-key-v1\x00" + R.randbytes(n * 52), 70)
    elif kind == "RSA PRIVATE KEY":
        lines = b64_lines(b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00" + R.randbytes(n * 48 - 12))
    elif kind == "EC PRIVATE KEY":
        lines = b64_lines(b"\x30\x77\x02\x01\x01\x04\x20" + R.randbytes(112))
    else:
        lines = b64_lines(b"\x30\x82\x04\xbe\x02\x01\x00\x30\x0d\x06\x09" + R.randbytes(n * 48 - 11))
    return nl.join(["-----BEGIN %s-----" % kind] + lines + ["-----END %s-----" % kind])


def pem_json():
    return pem("PRIVATE KEY", nl="\\n")


def cert(kind=None):
    kind = kind or pick(["CERTIFICATE", "PUBLIC KEY", "CERTIFICATE REQUEST"])
    lines = b64_lines(b"\x30\x82\x03\x5a\x30\x82\x02\x42\xa0\x03" + R.randbytes(R.randint(3, 9) * 48))
    return "\n".join(["-----BEGIN %s-----" % kind] + lines + ["-----END %s-----" % kind])


def secret_any():
    return pick([aws_akid, ghp, github_pat, slack, gapi, stripe])()


# ----------------------------------------------------------------------------- fillers
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def date():
    return "%d-%02d-%02d" % (R.randint(2015, 2025), R.randint(1, 12), R.randint(1, 28))


def date_eu():
    return pick(["%02d/%02d/%d", "%02d.%02d.%d"]) % (R.randint(1, 28), R.randint(1, 12), R.randint(2015, 2025))


def date_us():
    return "%d/%d/%d" % (R.randint(1, 12), R.randint(1, 28), R.randint(2015, 2025))


def tm():
    return "%02d:%02d:%02d" % (R.randint(0, 23), R.randint(0, 59), R.randint(0, 59))


def hhmm():
    return "%02d:%02d" % (R.randint(6, 22), pick([0, 15, 30, 45]))


def iso():
    return date() + "T" + tm() + pick(["Z", "Z", "+00:00", "+02:00", ".%03dZ" % R.randint(0, 999)])


def syslog_date():
    return "%s %2d %s" % (pick(MONTHS), R.randint(1, 28), tm())


def clf_date():
    return "%02d/%s/%d:%s +0000" % (R.randint(1, 28), pick(MONTHS), R.randint(2019, 2025), tm())


def ver():
    return pick(["%d.%d.%d" % (R.randint(0, 4), R.randint(0, 30), R.randint(0, 20)),
                 "%d.%d" % (R.randint(1, 12), R.randint(0, 20))])


def ver4():  # IPv4-shaped version number
    return "%d.%d.%d.%d" % (R.randint(1, 12), R.randint(0, 9), R.randint(0, 30), R.randint(0, 200))


def isbn13():
    body = "978" + pick(["0", "1", "3", "2", "88"]) + ""
    rest = d(12 - len(body))
    full = body + rest
    c = (10 - sum(int(x) * (1 if i % 2 == 0 else 3) for i, x in enumerate(full)) % 10) % 10
    g = len(body) - 3
    return "978-%s-%s-%s-%d" % (full[3:3 + g], full[3 + g:3 + g + 4], full[3 + g + 4:], c)


def isbn10():
    body = d(9)
    c = sum((10 - i) * int(x) for i, x in enumerate(body)) % 11
    c = (11 - c) % 11
    return "%s-%s-%s-%s" % (body[0], body[1:4], body[4:], "X" if c == 10 else str(c))


def hexs(n):
    return chars("0123456789abcdef", n)


def uuid():
    h = hexs(32)
    return "%s-%s-4%s-%s%s-%s" % (h[:8], h[8:12], h[13:16], pick("89ab"), h[17:20], h[20:])


def bad16():
    while True:
        n = pick("3456") + d(15)
        if not luhn_ok(n):
            return cc_fmt(n, pick([" ", "-", "", " "]))


def price():
    return pick(["$%s.%02d" % ("{:,}".format(R.randint(1, 99999)), R.randint(0, 99)),
                 "%s,%02d €" % ("{:,}".format(R.randint(1, 9999)).replace(",", "."), R.randint(0, 99)),
                 "£%d.%02d" % (R.randint(1, 999), R.randint(0, 99)), "¥%s" % "{:,}".format(R.randint(100, 999999))])


def coord():
    return "%.4f, %.4f" % (R.uniform(-80, 80), R.uniform(-179, 179))


def mac():
    sep = pick([":", "-"])
    return sep.join("%02X" % R.randint(0, 255) for _ in range(6))


def bad_ip():
    return pick(["%d.%d.%d.%d" % (R.randint(256, 999), R.randint(0, 400), R.randint(0, 9), R.randint(1, 9)),
                 "999.300.1.1", "%d.%d.%d.%d" % (R.randint(1, 200), R.randint(256, 999), R.randint(0, 255), R.randint(0, 255)),
                 "%d.%d.%d" % (R.randint(10, 200), R.randint(0, 255), R.randint(0, 255))])


def oid():
    return "1.3.6.1.4.1.%d.%d.%d" % (R.randint(1, 60000), R.randint(1, 20), R.randint(1, 9))


def serial():
    return pick(["SN-%s-%s-%s" % (d(4), d(4), d(4)), "%s%s" % (chars(string.ascii_uppercase, 3), d(9)),
                 "P/N %s-%s-%s-%s" % (d(2), d(4), d(4), chars(string.ascii_uppercase, 1)),
                 "%s-%s-%s" % (d(4), d(4), d(4)), "C02%s" % chars(string.ascii_uppercase + string.digits, 8)])


def ups():
    return "1Z" + chars(string.ascii_uppercase + string.digits, 6) + d(10)


def order():
    return pick(["%s-%s-%s" % (d(3), d(7), d(7)), "ORD-%s" % d(8), "#%s" % d(6), "%s/%s" % (R.randint(2019, 2025), d(5))])


def b64img():
    return base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + R.randbytes(R.randint(30, 90))).decode()


def ssh_pub():
    return "ssh-%s AAAAB3NzaC1yc2EAAAADAQABAAABAQ%s %s@%s" % (
        pick(["rsa", "ed25519"]), chars(ALNUM + "+/", 60), pick(ASCII_FIRST), pick(["laptop", "build-01", "localhost", "ci-runner"]))


F = {  # filler slots: never PII
    "name": fullname, "first": lambda: pick(FIRST), "company": lambda: pick(COMPANY),
    "city": lambda: pick(CITY), "date": date, "date_eu": date_eu, "date_us": date_us,
    "time": tm, "hhmm": hhmm, "iso": iso, "syslog": syslog_date, "clf": clf_date,
    "ver": ver, "ver4": ver4, "isbn13": isbn13, "isbn10": isbn10, "sha40": lambda: hexs(40),
    "sha7": lambda: hexs(7), "md5": lambda: hexs(32), "sha256": lambda: hexs(64), "uuid": uuid,
    "bad16": bad16, "iban_bad": iban_bad, "ssn_bad": ssn_bad, "price": price, "coord": coord,
    "mac": mac, "bad_ip": bad_ip, "oid": oid, "serial": serial, "ups": ups, "order": order,
    "b64img": b64img, "cert": cert, "sshpub": ssh_pub, "pct": lambda: "%.1f%%" % R.uniform(0, 100),
    "hex6": lambda: hexs(6), "hex8": lambda: hexs(8), "int": lambda: str(R.randint(2, 9999)),
    "small": lambda: str(R.randint(1, 12)), "port": lambda: str(pick([22, 80, 443, 8080, R.randint(1024, 65535)])),
    "pid": lambda: str(R.randint(100, 99999)), "zip": lambda: nz(5), "zip4": lambda: d(4),
    "last4": lambda: d(4), "exp": lambda: "%02d/%02d" % (R.randint(1, 12), R.randint(25, 31)),
    "cvv": lambda: d(3), "ticket": lambda: str(R.randint(10000, 999999)), "bic": lambda: pick(
        ["DEUTDEFF", "COBADEFFXXX", "BNPAFRPP", "NWBKGB2L", "CAIXESBBXXX", "UNCRITMM", "ABNANL2A", "GEBABEBB", "UBSWCHZH80A", "PKOPPLPW"]),
    "amount": lambda: "%d.%02d" % (R.randint(5, 9999), R.randint(0, 99)),
    "size": lambda: "%.1f %s" % (R.uniform(0.1, 999), pick(["KB", "MB", "GB", "TB", "MiB", "GiB"])),
    "bytes": lambda: "{:,}".format(R.randint(1000, 10 ** 10)), "lat": lambda: "%.4f" % R.uniform(-80, 80),
    "handle": lambda: pick(ASCII_FIRST) + pick(["_dev", "99", "", "_", "x"]),
    "scope": lambda: pick(["babel", "angular", "types", "vue", "aws-sdk"]),
    "pkg": lambda: pick(["core", "cli", "node", "client-s3", "runtime"]),
    "user": lambda: pick(["root", "admin", "deploy", "ubuntu", "git", "postgres"]),
}

P = {  # PII slots
    "email": ("email", email),
    "phone": ("phone", ph_any), "ph_us": ("phone", ph_us), "ph_e164": ("phone", ph_e164),
    "ph_intl": ("phone", ph_intl), "ph_uk": ("phone", lambda: pick([ph_uk_intl, ph_uk_nat])()),
    "ph_uk_nat": ("phone", ph_uk_nat), "ph_fr": ("phone", lambda: pick([ph_fr_intl, ph_fr_nat])()),
    "ph_fr_nat": ("phone", ph_fr_nat), "ph_de": ("phone", ph_de), "ph_jp": ("phone", ph_jp),
    "ph_in": ("phone", ph_in), "ph_es": ("phone", ph_es), "ph_it": ("phone", ph_it),
    "ph_au": ("phone", ph_au), "ph_br": ("phone", ph_br), "ph_nl": ("phone", ph_nl),
    "ph_mob": ("phone", ph_mobile),
    "ip": ("ip_address", ip_any), "ip4": ("ip_address", ip4), "ip4pub": ("ip_address", ip4_public),
    "ip4priv": ("ip_address", ip4_private), "ip6": ("ip_address", ip6),
    "ip6ll": ("ip_address", ip6_ll), "ipmap": ("ip_address", ip_mapped),
    "cc": ("credit_card", cc), "cc_plain": ("credit_card", lambda: cc_num()),
    "cc_visa": ("credit_card", lambda: cc_fmt(cc_num("visa"))),
    "cc_amex": ("credit_card", lambda: cc_fmt(cc_num("amex"))),
    "cc_mc": ("credit_card", lambda: cc_fmt(cc_num("mc"))),
    "iban": ("iban", iban), "iban_e": ("iban", lambda: iban(fmt="elec")),
    "iban_p": ("iban", lambda: iban(fmt="print")),
    **{"iban_" + c.lower(): ("iban", (lambda c=c: iban(c))) for c in IBAN_LEN},
    "ssn": ("ssn", ssn_any), "ssn_dash": ("ssn", ssn), "ssn_sp": ("ssn", ssn_space),
    "akid": ("secret", aws_akid), "awssec": ("secret", aws_secret), "ghp": ("secret", ghp),
    "ghpat": ("secret", github_pat), "slack": ("secret", slack), "gapi": ("secret", gapi),
    "stripe": ("secret", stripe), "pem": ("secret", pem), "pemjson": ("secret", pem_json),
    "pem_ssh": ("secret", lambda: pem("OPENSSH PRIVATE KEY")), "secret": ("secret", secret_any),
}

SLOT = re.compile(r"\[\[(\w+)\]\]")


def render(tpl):
    out, spans, pos, cur = [], [], 0, 0
    for m in SLOT.finditer(tpl):
        lit = tpl[pos:m.start()]
        out.append(lit); cur += len(lit)
        key = m.group(1)
        if key in P:
            typ, fn = P[key]
            val = fn()
            spans.append({"start": cur, "end": cur + len(val), "type": typ})
        else:
            val = F[key]()
        out.append(val); cur += len(val); pos = m.end()
    out.append(tpl[pos:])
    return "".join(out), spans


# ----------------------------------------------------------------------------- templates
T_EMAIL = [
    "Contact me at [[email]] if you have questions.",
    "From: [[name]] <[[email]]>\nSubject: Re: invoice [[order]]",
    "Reply-To: [[email]]",
    "<a href=\"mailto:[[email]]\">Email us</a>",
    "<a href=\"mailto:[[email]]?subject=Order%20question\">Write to [[first]]</a>",
    "cc: [[email]], [[email]]",
    "[[date]] [[time]] INFO auth: login succeeded for user=[[email]] session=[[hex8]]",
    "[[int]],[[name]],[[email]],[[city]]",
    "{\"id\": [[int]], \"email\": \"[[email]]\", \"active\": true}",
    "Envoyez votre CV à [[email]] avant le [[date_eu]].",
    "Bei Fragen wenden Sie sich bitte an [[email]].",
    "Para más información escriba a [[email]].",
    "お問い合わせ: [[email]]",
    "Hey, just ping me on [[email]] — I check it daily.",
    "On [[date]], [[name]] <[[email]]> wrote:\n> thanks, will do",
    "git commit --author=\"[[name]] <[[email]]>\" -m \"fix typo\"",
    "Signed-off-by: [[name]] <[[email]]>",
    "Ticket #[[ticket]]: customer ([[email]]) reports a login loop since v[[ver]].",
    "Please add [[email]] to the mailing list.",
    "E-mail: [[email]]",
    "[[name]] ([[email]]) commented on your post",
    "SELECT * FROM users WHERE email = '[[email]]';",
    "To unsubscribe, send a blank message to [[email]].",
    "Bounce: delivery to [[email]] failed (550 5.1.1 user unknown)",
    "Is [[email]] still the right address for invoices?",
    "My email is [[email]].",
    "maintainers = [\"[[name]] <[[email]]>\"]",
    "Courriel : [[email]]",
    "Author: [[name]] <[[email]]>\nDate:   [[iso]]",
    "forwarded by [[email]] to [[email]] at [[hhmm]]",
    "Indirizzo email: [[email]] — rispondo entro 24 ore.",
    "user_email,signup_date\n[[email]],[[date]]",
    "@[[handle]] you can DM me or mail [[email]]",
    "Per e-mail bereikbaar via [[email]].",
    "Adres e-mail: [[email]]",
]
T_PHONE = [
    "Tel: [[phone]]", "Call us at [[ph_us]] between 9am and 5pm.", "Mobile: [[ph_mob]]",
    "WhatsApp [[ph_intl]] (no calls please)", "Téléphone : [[ph_fr_nat]]", "Tél. [[ph_fr]]",
    "Telefon: [[ph_de]]", "Tel.: [[ph_de]], Fax: [[ph_de]]", "電話番号: [[ph_jp]]",
    "Teléfono: [[ph_es]]", "Cell: [[ph_us]]", "Fax: [[ph_us]]",
    "[[name]] | [[company]] | [[ph_e164]]", "You can reach the front desk on [[ph_uk_nat]].",
    "[[int]];[[name]];[[phone]];[[city]]", "\"phone\": \"[[ph_e164]]\",",
    "Text me on [[ph_mob]] when you land!", "Our support line: [[ph_us]] (Mon–Fri).",
    "Customer called from [[phone]] re: invoice [[order]].", "Please call [[ph_uk_nat]] ext. 204",
    "For emergencies dial [[ph_intl]].", "Rufen Sie uns an: [[ph_de]]", "Chiamaci al [[ph_it]]",
    "Ligue para [[ph_br]]", "Bel ons op [[ph_nl]]", "phone_number=[[ph_e164]]&country=US",
    "[[date]] [[time]] sms-gateway: delivered to [[ph_e164]] status=OK",
    "<a href=\"tel:[[ph_e164]]\">Call now</a>", "phone [[ph_in]]", "call [[ph_au]] after 6pm",
    "Mumbai office: [[ph_in]]", "Tokyo: [[ph_jp]] / Paris: [[ph_fr]]", "[[ph_intl]]",
    "Reach me at [[ph_us]] or [[ph_us]].", "Handy: [[ph_de]]", "Portable : [[ph_fr_nat]]",
    "Móvil: [[ph_es]]", "Call [[ph_uk]] and ask for [[first]].", "Ph. [[phone]] | [[city]]",
    "If no answer try my cell, [[ph_mob]].", "Hotline [[ph_us]] — open 24/7",
]
T_IP = [
    "[[syslog]] web01 sshd[[[pid]]]: Failed password for root from [[ip4pub]] port [[port]] ssh2",
    "[[syslog]] bastion sshd[[[pid]]]: Accepted publickey for [[user]] from [[ip]] port [[port]] ssh2",
    "[[ip4]] - - [[[clf]]] \"GET /api/v1/items?page=[[small]] HTTP/1.1\" 200 [[int]] \"-\" \"Mozilla/5.0\"",
    "Connection from [[ip4]]:[[port]] accepted", "curl -s http://[[ip4]]:8080/health",
    "Visit http://[[ip4priv]]/admin to configure the router.", "X-Forwarded-For: [[ip4pub]], [[ip4priv]]",
    "server [[ip4priv]]:8000 weight=5;", "ping [[ip4]]", "Your IP address is [[ip]].",
    "Blocked [[ip6]] after 5 failed attempts", "remoteAddress: '[[ipmap]]'",
    "Zugriff von IP-Adresse [[ip4pub]] blockiert.", "Adresse IP : [[ip]]",
    "http://[[[ip6]]]:8080/status", "ping6 [[ip6ll]]%eth0", "fe80 neighbour [[ip6ll]]%en0 is REACHABLE",
    "client_ip=[[ip]] method=POST path=/login status=401", "nameserver [[ip4]]",
    "[[iso]] WARN rate limit exceeded for [[ip]]", "AAAA record -> [[ip6]]",
    "Listening on [[ip4]]:[[port]] (http) and [[ip6]] port [[port]] (https)",
    "iptables -A INPUT -s [[ip4pub]] -j DROP", "ssh -p [[port]] [[user]]@[[ip4]]",
    "My home IP keeps changing, today it is [[ip4pub]], yesterday [[ip4pub]].",
    "upstream: [[ip6]] (latency 23ms)", "{\"src\": \"[[ip]]\", \"dst\": \"[[ip]]\", \"bytes\": [[int]]}",
    "Host [[ip4priv]] is up (0.0021s latency).", "DHCPACK on [[ip4priv]] to [[mac]] via eth0",
    "Dirección IP del cliente: [[ip]]", "接続元IP: [[ip]]",
]
T_CC = [
    "Card number: [[cc]]", "cc_number=[[cc_plain]]", "Please charge my Visa [[cc_visa]] exp [[exp]].",
    "Payment failed for card [[cc]] (insufficient funds)", "[[int]],[[name]],[[cc]],[[exp]],[[cvv]]",
    "Numéro de carte : [[cc]]", "Kartennummer: [[cc]]", "Número de tarjeta: [[cc]]",
    "{\"card\": \"[[cc_plain]]\", \"exp_month\": [[small]], \"exp_year\": 2027}",
    "use test card [[cc]] in staging", "My Amex is [[cc_amex]], can you update billing?",
    "PAN=[[cc_plain]] MID=[[int]] amount=[[amount]]", "I accidentally posted my card [[cc]] here, please delete!",
    "Mastercard [[cc_mc]] exp [[exp]] cvv [[cvv]]", "[[iso]] DEBUG charge card=[[cc_plain]] amt=[[amount]]",
    "Carta di credito: [[cc]]", "clientes.csv: [[name]];[[cc]];[[city]]", "paid with [[cc]] on [[date]]",
    "Credit card: [[cc]] / expiry [[exp]]", "カード番号 [[cc]]", "Karta: [[cc]], ważna do [[exp]]",
]
T_IBAN = [
    "IBAN: [[iban]]", "Bitte überweisen Sie den Betrag auf IBAN [[iban_de]] (BIC: [[bic]]).",
    "Virement sur le compte [[iban_fr]] avant le [[date_eu]].", "Payee IBAN [[iban_e]]",
    "[[name]];[[iban]];[[amount]] EUR", "SEPA mandate ref [[order]] — debtor IBAN: [[iban]]",
    "<IBAN>[[iban_e]]</IBAN>", "Rekeningnummer: [[iban_nl]]", "Conto corrente IBAN [[iban_it]]",
    "Numer konta: [[iban_pl]]", "Cuenta: [[iban_es]]", "Kontonummer (IBAN) [[iban_ch]]",
    "UK account, IBAN [[iban_gb]], BIC [[bic]]", "Bank details: [[iban]] / [[bic]]",
    "Rekening [[iban_be]] t.n.v. [[name]]", "iban=[[iban_e]]&amount=[[amount]]",
    "Please refund to [[iban]], thanks!", "RIB / IBAN : [[iban_fr]]",
    "{\"iban\": \"[[iban_e]]\", \"currency\": \"EUR\"}", "Empfänger: [[name]], [[iban_de]]",
]
T_SSN = [
    "SSN: [[ssn]]", "Social Security Number: [[ssn]]", "my social is [[ssn]], DOB [[date_us]]",
    "ssn=[[ssn_dash]]", "[[name]],[[ssn_dash]],[[date_us]],[[city]]",
    "Employee [[name]], SSN [[ssn_sp]], hired [[date]]", "W-2 box a — Employee's social security number: [[ssn]]",
    "SSN (last verified [[date]]): [[ssn]]", "Tax ID / SSN [[ssn]]", "I-9: SSN [[ssn_dash]]",
    "Please confirm the SSN on file ([[ssn]]).", "social security no. [[ssn_dash]]",
    "{\"ssn\": \"[[ssn_dash]]\", \"state\": \"TX\"}", "Applicant SSN: [[ssn_sp]]",
    "Can someone help, IRS letter says my SSN [[ssn]] doesn't match?",
    "patient_ssn [[ssn_dash]] mrn [[int]]", "SS#: [[ssn]]",
]
T_SECRET = [
    "AWS_ACCESS_KEY_ID=[[akid]]\nAWS_SECRET_ACCESS_KEY=[[awssec]]",
    "[default]\naws_access_key_id = [[akid]]\naws_secret_access_key = [[awssec]]",
    "aws_secret_access_key=[[awssec]]", "export GITHUB_TOKEN=[[ghp]]",
    "git clone https://[[ghp]]@github.com/acme/infra.git", "Authorization: token [[ghp]]",
    "Authorization: Bearer [[stripe]]", "stripe.api_key = \"[[stripe]]\"", "SLACK_BOT_TOKEN=[[slack]]",
    "const client = new WebClient('[[slack]]');",
    "<script src=\"https://maps.googleapis.com/maps/api/js?key=[[gapi]]&callback=initMap\"></script>",
    "GOOGLE_API_KEY: [[gapi]]", "[[pem]]", "Here is my key, can't get ssh to work:\n[[pem_ssh]]\nWhat am I doing wrong?",
    "{\"type\": \"service_account\", \"private_key\": \"[[pemjson]]\\n\", \"client_id\": \"[[int]]\"}",
    "token: [[ghpat]]", "I leaked my key [[akid]] on GitHub, how do I rotate it?",
    "[[iso]] WARN config loaded with key=[[gapi]]", "curl -u [[stripe]]: https://api.stripe.com/v1/charges",
    "s3 = boto3.client('s3', aws_access_key_id='[[akid]]', aws_secret_access_key='[[awssec]]')",
    "GH_PAT=[[ghpat]]", "slack webhook auth: [[slack]]", "key = \"[[gapi]]\"  # TODO move to env",
    "ssh_key: |\n  [[pem]]", "env:\n  STRIPE_SECRET_KEY: [[stripe]]\n  LOG_LEVEL: debug",
    "Found credentials in commit [[sha7]]: [[secret]]", "echo [[ghp]] | docker login ghcr.io -u [[user]] --password-stdin",
    "aws configure set aws_access_key_id [[akid]]",
]
T_MIX = [
    "--\n[[name]]\nSenior Engineer, [[company]]\nT: [[phone]]\nE: [[email]]",
    "Ticket [[ticket]]\nFrom: [[email]]\nPhone: [[phone]]\nIssue: card [[cc]] declined on [[date]].",
    "Name: [[name]]\nSSN: [[ssn]]\nEmail: [[email]]\nIBAN: [[iban]]",
    "[[iso]] login user=[[email]] ip=[[ip]] ua=\"Mozilla/5.0\"",
    "DB_HOST=[[ip4priv]]\nADMIN_EMAIL=[[email]]\nSTRIPE_SECRET_KEY=[[stripe]]\nAPP_VERSION=[[ver]]",
    "My server [[ip4pub]] keeps getting hit, fail2ban v[[ver]] installed. Mail [[email]] if you can help.",
    "Pay to IBAN [[iban]], reference [[order]], amount [[price]]. Questions: [[phone]].",
    "first_name,last_name,email,phone,ssn\n[[first]],Doe,[[email]],[[ph_us]],[[ssn_dash]]",
    "Kunde: [[name]], Tel. [[ph_de]], E-Mail [[email]], IBAN [[iban_de]]",
    "Client : [[name]] — tél. [[ph_fr]] — courriel [[email]] — IBAN [[iban_fr]]",
    "[[date]] [[time]] payment ok card=[[cc_plain]] email=[[email]] ip=[[ip4]]",
    "Order [[order]] shipped to [[name]] ([[email]], [[ph_intl]])",
    "AWS_ACCESS_KEY_ID=[[akid]]\nAWS_SECRET_ACCESS_KEY=[[awssec]]\nSMTP_USER=[[email]]\nSMTP_HOST=[[ip4priv]]",
    "Hi team, new hire [[name]], SSN [[ssn]], direct deposit to [[iban]]. Phone [[ph_us]].",
    "[[syslog]] postfix/smtpd[[[pid]]]: NOQUEUE: reject from unknown[[[ip4pub]]]: <[[email]]>",
    "Refund request: card [[cc]], contact [[ph_mob]], reply to [[email]]",
    "contact: {email: \"[[email]]\", phone: \"[[ph_e164]]\", last_ip: \"[[ip6]]\"}",
    "Please wire to [[iban_e]] and text [[ph_intl]] when done.",
    "SLACK_TOKEN=[[slack]]\nGITHUB_TOKEN=[[ghp]]\nMAPS_KEY=[[gapi]]",
]
T_NEG = [
    "Upgraded to version [[ver4]] last night, no issues.", "Windows build v10.0.[[int]].[[small]] is rolling out.",
    "Requires Python [[ver]] or later.", "Released on [[date]] at [[time]] UTC.", "Timestamp: [[iso]]",
    "Meeting moved to [[date_eu]] at [[hhmm]].", "ISBN [[isbn13]]", "ISBN-10: [[isbn10]]",
    "Fixed in commit [[sha40]].", "Merge [[sha7]] into main", "request_id=[[uuid]]",
    "MD5 (release.tar.gz) = [[md5]]", "[[sha256]]  datamill-[[ver]].whl", "Order [[order]] has shipped, tracking [[ups]].",
    "Reference number: [[bad16]]", "Invoice no. [[bad16]] is overdue.",
    "Validation error: [[iban_bad]] is not a valid IBAN (checksum mismatch).", "SSN [[ssn_bad]] was rejected by the validator.",
    "Total: [[price]]", "Location: [[coord]]", "Part no. [[serial]]", "Beverly Hills, CA [[zip]]",
    "Ship to ZIP [[zip]]-[[zip4]].", "ping: [[bad_ip]]: Name or service not known",
    "Send test mail to user@localhost for local development.", "Cron output is mailed to root@localhost.",
    "The runner reports as [[user]]@build-01 in the logs.", "@[[handle]] thanks for the tip!",
    "Use icon@2x.png and icon@3x.png for retina displays.", "npm install @[[scope]]/[[pkg]]@[[ver]]",
    "Growth was [[pct]] year over year.", "color: #[[hex6]]; background: rgb([[small]], 34, 56);",
    "Download size: [[size]] ([[bytes]] bytes)", "SNMP OID [[oid]]", "MAC address [[mac]]",
    "Elapsed [[time]].[[int]]", "Phone model: Pixel [[small]] Pro, Android [[small]]", "Card ending in [[last4]] was charged [[price]].",
    "**** **** **** [[last4]] (expires [[exp]])", "Set AWS_SECRET_ACCESS_KEY in your environment; never commit it.",
    "aws_secret_access_key = YOUR_SECRET_ACCESS_KEY", "Authorization: Bearer <token>", "STRIPE_KEY=sk_live_****[[last4]]",
    "[[cert]]", "Server certificate:\n[[cert]]", "[[sshpub]]", "<img src=\"data:image/png;base64,[[b64img]]\">",
    "Flight LH[[int]] departs at [[hhmm]] from gate B[[small]].", "Population: [[bytes]]", "Install patch KB[[ticket]] before [[date]].",
    "Error 0x[[hex8]] at offset 0x[[hex8]]", "Page [[small]] of [[int]]", "Uptime [[int]] days, load average 0.[[small]]",
    "chmod 755 deploy.sh && ./deploy.sh --port [[port]] --pid [[pid]]",
    "Phone numbers are stored in E.164 format.", "Enter your email address below.", "The IP allow-list is empty.",
    "Serial numbers: [[serial]], [[serial]]", "Chrome/120.0.0.0 Safari/537.36", "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/[[ver4]]",
    "am [[date_eu]] um [[hhmm]] Uhr", "le [[date_eu]] à [[hhmm]]", "Schedule: [[date_us]] [[hhmm]] - [[hhmm]]",
    "Version [[ver4]] (build [[int]])", "docker pull datamill/worker:[[ver]]", "pip install datamill==[[ver]]",
    "Coordinates [[lat]]° N, [[lat]]° E", "Amount due [[price]] by [[date]]", "[[int]] items, [[pct]] complete, ETA [[hhmm]]",
    "ISBN: [[isbn13]] / [[isbn10]]", "SHA-256: [[sha256]]", "Trace [[uuid]] span [[hex8]][[hex8]]",
    "Booking ref [[order]], seat [[small]]A", "Tracking number [[ups]]", "Gift card code [[bad16]] has no balance.",
    "Account [[iban_bad]] does not exist.", "Test SSN 000-00-0000 is used as a placeholder.", "Invalid social [[ssn_bad]]",
    "Price range [[price]] – [[price]]", "Room [[small]].[[small]], building [[small]]", "Postcode [[zip]]",
    "[[date]] [[time]] INFO job finished in [[int]] ms (rows=[[bytes]])", "Lat/long: [[coord]]",
    "Resolution 1920x1080 @ 144Hz, font-size: 1.125rem", "Python [[ver]] (tags/v[[ver]]:[[sha7]], [[date]])",
    "git log --oneline: [[sha7]] fix; [[sha7]] chore", "Ubuntu 22.04.3 LTS, kernel 6.5.0-[[small]]-generic",
    "Card BIN 411111 belongs to a test range.", "Order total [[price]] (incl. [[pct]] VAT)", "Download [[size]] at [[size]]/s",
    "Temperature [[small]].5°C, humidity [[pct]]", "Our office hours are [[hhmm]]–[[hhmm]] CET.",
    "See RFC 5737 for documentation ranges.", "API keys go in the X-API-Key header.", "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "api_key = os.environ[\"GOOGLE_API_KEY\"]", "Your token has expired; generate a new one in settings.",
    "Invalid IP: [[bad_ip]]", "Net block [[bad_ip]]/33 is malformed", "Score [[small]]-[[small]] after extra time",
]


def validate(val, typ):
    if typ == "credit_card":
        n = re.sub(r"[ -]", "", val)
        return n.isdigit() and 13 <= len(n) <= 19 and luhn_ok(n)
    if typ == "iban":
        return iban_valid(val)
    if typ == "ssn":
        return ssn_valid(val)
    if typ == "email":
        return re.fullmatch(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}", val) is not None
    if typ == "ip_address":
        try:
            ipaddress.ip_address(val)
            return True
        except ValueError:
            return False
    if typ == "phone":
        return re.fullmatch(r"\+?[\d(][\d ().-]+\d", val) is not None and len(re.sub(r"\D", "", val)) >= 9
    if typ == "secret":
        return re.fullmatch(r"AKIA[A-Z2-7]{16}|[A-Za-z0-9/+]{40}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_\w{82}"
                            r"|xox[bp]-[\d-]+-[A-Za-z0-9]+|AIza[\w-]{35}|sk_live_[A-Za-z0-9]{24,}"
                            r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+-----END [A-Z ]*PRIVATE KEY-----", val) is not None
    return False


LEAKS = [  # (type, regex, validator) -- unlabelled valid look-alikes anywhere are errors
    ("credit_card", re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])"), lambda s: validate(s, "credit_card") and s.replace(" ", "").replace("-", "")[0] in "3456"),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), iban_valid),
    ("ssn", re.compile(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])"), ssn_valid),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"), lambda s: not re.search(r"@\dx\.png$", s) and not s.startswith("gh")),
    ("secret", re.compile(r"AKIA[A-Z2-7]{16}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_|xox[bp]-|AIza|sk_live_[A-Za-z0-9]{8}|PRIVATE KEY"), lambda s: True),
]


class LeakError(Exception):
    pass


def check(rec):
    text, spans = rec["text"], rec["spans"]
    last = 0
    for sp in spans:
        v = text[sp["start"]:sp["end"]]
        assert sp["start"] >= last, rec
        last = sp["end"]
        assert v == v.strip() and v, rec
        assert validate(v, sp["type"]), (sp["type"], v)
    for typ, rx, ok in LEAKS:
        for m in rx.finditer(text):
            if not ok(m.group()):
                continue
            if not any(s["start"] <= m.start() and m.end() <= s["end"] for s in spans):
                raise LeakError("unlabelled %s %r in %r" % (typ, m.group(), text))


def main():
    recs, seen, skipped = [], set(), []

    def add(tpl):
        text, spans = render(tpl)
        if text in seen:
            return False
        rec = {"text": text, "spans": spans}
        try:
            check(rec)
        except LeakError as e:  # accidental unlabelled look-alike: drop, never mislabel
            skipped.append(str(e))
            return False
        seen.add(text)
        recs.append(rec)
        return True

    plan = [(T_EMAIL, 150), (T_PHONE, 190), (T_IP, 150), (T_CC, 140), (T_IBAN, 140), (T_SSN, 140),
            (T_SECRET, 150), (T_MIX, 120)]
    for tpls, n in plan:
        for i in range(n):  # cycle through every template, then sample
            add(tpls[i % len(tpls)] if i < len(tpls) else pick(tpls))
    n_pos = len(recs)
    target_neg = max(900, n_pos)
    i = 0
    while len(recs) - n_pos < target_neg:
        add(T_NEG[i % len(T_NEG)] if i < len(T_NEG) else pick(T_NEG))
        i += 1
    R.shuffle(recs)
    out = os.path.join(HERE, "blind.jsonl")
    with open(out, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {t: 0 for t in TYPES}
    for r in recs:
        for s in r["spans"]:
            counts[s["type"]] += 1
    neg = sum(1 for r in recs if not r["spans"])
    print("wrote %s: %d records (%d positive, %d negative)" % (out, len(recs), len(recs) - neg, neg))
    print("spans per type:", json.dumps(counts))
    print("dropped %d generated texts with accidental look-alikes" % len(skipped))
    for msg in skipped[:20]:
        print("  ", msg[:160])


if __name__ == "__main__":
    sys.exit(main())
