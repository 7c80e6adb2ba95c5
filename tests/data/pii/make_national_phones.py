#!/usr/bin/env python3
"""Generator for ``national_phones.jsonl``: phone numbers written in national formats (no
country code), in sentences with and without a cue word, and hard negatives that look like
them (versions, part numbers, dates, prices, ids, ISBNs, coordinates, order numbers).

Written from numbering-plan facts (trunk prefixes, area codes, mobile ranges, subscriber
lengths, and how each country usually groups its digits in print) before the detector's
national rules, without reading them; libphonenumber (the ``phonenumbers`` package) is used
only as an oracle: every generated number must be a valid number of its region, or it is
drawn again. Do not tune this file to the detector.

    python tests/data/pii/make_national_phones.py                  # the held-out set
    python tests/data/pii/make_national_phones.py --seed 7 --out /tmp/dev.jsonl   # a dev set

Output: one JSON object per line, ``{"text", "spans": [{"start", "end", "type"}], "region",
"cue"}``; ``cue`` is true when a label or a calling verb sits next to the number, false when
the number stands alone (a name, a list, a signature); records with ``spans == []`` are hard
negatives (``region`` is then the negative's kind). A phone span runs from its first digit or
``(`` to its last digit (same conventions as ``make_blind.py``).

Plans: the fifteen most populous numbering plans of Europe, the Americas and Asia (India,
China, NANP, Indonesia, Pakistan, Brazil, Bangladesh, Russia, Mexico, Japan, the
Philippines, Vietnam, Iran, Turkey, Germany) and the rest of Europe's five largest countries
(the United Kingdom, France, Italy, Spain).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys

import phonenumbers

SEED = 20261203  # the held-out set; develop on another seed
HERE = os.path.dirname(os.path.abspath(__file__))
R = random.Random(SEED)


def d(n: int) -> str:
    return "".join(R.choice("0123456789") for _ in range(n))


def nz(n: int) -> str:
    return R.choice("123456789") + d(n - 1)


def pick(seq):
    return R.choice(seq)


def split(s: str, sizes: list[int], sep: str = " ") -> str:
    """`s` cut into groups of `sizes` (the last group takes the rest) joined by `sep`."""
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return sep.join(g for g in out if g)


# --------------------------------------------------------------------------- the plans
# Each plan: (region, kinds). A kind draws a national significant number as (prefix,
# subscriber) and lists the ways people print it; `t` is the trunk prefix.
def de_mobile():
    p = pick(["151", "152", "157", "159", "160", "162", "163", "170", "171", "172", "173",
              "174", "175", "176", "177", "178", "179"])
    return p, d(8 if p[:2] == "15" or p in ("176", "179") else 7)


def de_fixed():
    area = pick(["30", "40", "89", "69", "221", "211", "711", "341", "351", "511", "911",
                 "7071", "6221", "3641", "8031", "4131"])
    return area, nz(10 - len(area) - R.randint(0, 1))


def de_formats(p, s):
    return [f"0{p} {s}", f"0{p}/{s}", f"0{p}-{s}", f"(0{p}) {s}",
            f"0{p} {split(s, [len(s) // 2])}", f"0{p} {split(s, [2, 2, 2, 2])}",
            f"0{p}{s}", f"0{p} - {s}"]


def gb_fixed():
    kind = R.randrange(3)
    if kind == 0:
        return pick(["20", "29", "23", "24", "28"]), pick("378") + d(7)
    if kind == 1:
        return pick(["113", "114", "115", "116", "117", "118", "121", "131", "141", "151",
                     "161", "191"]), nz(7)
    return pick(["1223", "1865", "1632", "1904", "1273", "1392", "1603"]), nz(6)


def gb_mobile():
    return "7" + pick(["4", "5", "7", "8", "9"]) + d(2), d(6)


def gb_formats(p, s):
    if len(p) == 2:
        return [f"0{p} {split(s, [4])}", f"(0{p}) {split(s, [4])}", f"0{p}{s}",
                f"0{p}-{split(s, [4], '-')}"]
    if len(p) == 3:
        return [f"0{p} {split(s, [3])}", f"(0{p}) {split(s, [3])}", f"0{p} {s}", f"0{p}{s}"]
    return [f"0{p} {s}", f"(0{p}) {s}", f"0{p} {split(s, [3])}", f"0{p}{s}", f"0{p}-{s}"]


def fr_number():
    return pick("1234567899"), d(8)


def fr_formats(p, s):
    pairs = [s[i:i + 2] for i in range(0, 8, 2)]
    return [f"0{p} " + " ".join(pairs), f"0{p}." + ".".join(pairs), f"0{p}-" + "-".join(pairs),
            f"0{p}{s}", f"0{p} " + " ".join(pairs), f"0{p}." + ".".join(pairs)]


def it_fixed():
    area = pick(["06", "02", "011", "055", "081", "051", "010", "041", "091", "070", "0471"])
    return area, nz(10 - len(area) - R.randint(0, 1))


def it_mobile():
    return "3" + pick(["20", "23", "24", "27", "28", "29", "30", "31", "33", "34", "35", "38",
                       "39", "40", "45", "46", "47", "48", "49", "66", "88", "89"]), d(7)


def it_formats(p, s):
    return [f"{p} {s}", f"{p} {split(s, [3])}", f"{p}-{s}", f"{p}/{s}", f"({p}) {s}",
            f"{p}{s}", f"{p} {split(s, [2, 2])}" if len(s) == 6 else f"{p} {split(s, [4])}"]


def es_number():
    kind = R.randrange(3)
    if kind == 0:
        return "6" + d(2), d(6)
    if kind == 1:
        return "7" + pick("1234") + d(1), d(6)
    return pick(["91", "93", "96", "95", "94"]) + nz(1), d(6)


def es_formats(p, s):
    n = p + s
    return [split(n, [3, 3, 3]), split(n, [3, 2, 2, 2]), n, split(n, [3, 3, 3], "-"),
            split(n, [2, 3, 2, 2]) if n[0] == "9" else split(n, [3, 3, 3], "."),
            split(n, [3, 3, 3])]


def ru_mobile():
    return "9" + pick(["01", "03", "05", "06", "09", "10", "12", "15", "16", "17", "19",
                       "20", "25", "26", "29", "50", "51", "52", "53", "60", "61", "62", "63",
                       "65", "67", "77", "81", "85", "88", "99"]), d(7)


def ru_fixed():
    return pick(["495", "499", "812", "343", "383", "843", "863", "846", "800"]), nz(7)


def ru_formats(p, s):
    tail = f"{s[:3]}-{s[3:5]}-{s[5:]}"
    return [f"8 ({p}) {tail}", f"8 {p} {tail}", f"8-{p}-{tail}", f"8{p}{s}", f"({p}) {tail}",
            f"8 ({p}) {s[:3]} {s[3:5]} {s[5:]}", f"8 {p} {s[:3]} {s[3:5]} {s[5:]}",
            f"8({p}){tail}"]


def tr_mobile():
    return "5" + pick(["01", "05", "06", "30", "31", "32", "33", "35", "36", "38", "39", "41",
                       "42", "43", "44", "45", "46", "49", "51", "52", "53", "54", "55", "59"]
                      ), nz(7)


def tr_fixed():
    return pick(["212", "216", "312", "232", "224", "242", "322", "850"]), nz(7)


def tr_formats(p, s):
    two = f"{s[:3]} {s[3:5]} {s[5:]}"
    return [f"0{p} {two}", f"0 {p} {two}", f"({p}) {two}", f"0{p} {split(s, [3])}",
            f"0{p}{s}", f"(0{p}) {two}", f"0{p}-{s[:3]}-{s[3:5]}-{s[5:]}", f"0 ({p}) {two}"]


def nanp_number():
    return nz(1) + pick("012345678") + d(1), pick("23456789") + d(2) + d(4)


def nanp_formats(p, s):
    return [f"({p}) {s[:3]}-{s[3:]}", f"{p}-{s[:3]}-{s[3:]}", f"{p}.{s[:3]}.{s[3:]}",
            f"{p} {s[:3]} {s[3:]}", f"1-{p}-{s[:3]}-{s[3:]}", f"1 ({p}) {s[:3]}-{s[3:]}",
            f"({p}){s[:3]}-{s[3:]}", f"{p}{s}"]


def br_mobile():
    return pick(["11", "21", "31", "41", "51", "61", "71", "81", "85", "19", "27", "48"]), \
        "9" + pick("6789") + d(7)


def br_fixed():
    return pick(["11", "21", "31", "41", "51", "61", "71", "81", "85", "19"]), \
        pick("2345") + d(7)


def br_formats(p, s):
    a, b = s[:-4], s[-4:]
    out = [f"({p}) {a}-{b}", f"{p} {a}-{b}", f"({p}){a}-{b}", f"(0{p}) {a}-{b}",
           f"{p} {a} {b}", f"{p}{s}", f"0{p} {a}-{b}"]
    if len(s) == 9:
        out.append(f"({p}) {s[0]} {s[1:5]}-{b}")
    return out


def mx_number():
    area = pick(["55", "33", "81", "222", "442", "664", "998", "477", "999", "614"])
    return area, d(10 - len(area))


def mx_formats(p, s):
    if len(p) == 2:
        return [f"{p} {split(s, [4])}", f"({p}) {split(s, [4])}", f"{p}-{split(s, [4], '-')}",
                f"{p}{s}", f"({p}) {split(s, [4], '-')}", f"{p} {split(s, [2, 2, 2])}"]
    return [f"{p} {split(s, [3])}", f"({p}) {split(s, [3])}", f"{p}-{split(s, [3], '-')}",
            f"{p}{s}", f"({p}) {split(s, [3], '-')}"]


def jp_number():
    kind = R.randrange(4)
    if kind == 0:
        return pick(["90", "80", "70"]), nz(8)
    if kind == 1:
        return pick(["3", "6"]), nz(8)
    if kind == 2:
        return pick(["45", "52", "92", "11", "22", "75", "78", "82"]), nz(7)
    return "120", nz(6)


def jp_formats(p, s):
    a, b = s[:-4], s[-4:]
    if p == "120":
        return [f"0120-{s[:3]}-{s[3:]}", f"0120 {s[:3]} {s[3:]}", f"0120{s}"]
    return [f"0{p}-{a}-{b}", f"0{p} {a} {b}", f"(0{p}) {a}-{b}", f"0{p}{s}", f"0{p}({a}){b}",
            f"0{p}-{a}-{b}"]


def cn_mobile():
    return "1" + pick(["30", "31", "32", "33", "35", "36", "37", "38", "39", "50", "51", "52",
                       "53", "55", "56", "57", "58", "59", "66", "77", "80", "81", "82", "83",
                       "85", "86", "87", "88", "89", "98", "99"]), d(8)


def cn_fixed():
    area = pick(["10", "21", "20", "22", "23", "24", "25", "27", "28", "29", "755", "571",
                 "512", "532", "731", "871"])
    return area, nz(8)


def cn_formats(p, s):
    if p[0] == "1" and len(p) == 3:
        return [f"{p} {s[:4]} {s[4:]}", f"{p}-{s[:4]}-{s[4:]}", f"{p}{s}", f"{p} {s}",
                f"{p}{s}"]
    return [f"0{p}-{s}", f"(0{p}) {s}", f"0{p} {s[:4]} {s[4:]}", f"0{p}-{s[:4]} {s[4:]}",
            f"(0{p}){s}", f"0{p}{s}"]


def in_mobile():
    return pick("6789") + d(4), d(5)


def in_fixed():
    area = pick(["11", "22", "33", "44", "80", "40", "20", "79", "141", "172", "484", "821"])
    return area, nz(10 - len(area))


def in_formats(p, s):
    if len(p) == 5:
        return [f"{p} {s}", f"0{p} {s}", f"{p}{s}", f"0{p}{s}", f"{p}-{s}", f"0 {p} {s}",
                f"{p} {s}"]
    return [f"0{p} {split(s, [4])}" if len(s) == 8 else f"0{p} {s}", f"0{p}-{s}",
            f"(0{p}) {s}", f"0{p} {s}", f"0{p}-{split(s, [4], '-')}" if len(s) == 8
            else f"0{p}-{s}", f"0{p}{s}"]


def id_mobile():
    return "8" + pick(["11", "12", "13", "21", "22", "23", "51", "52", "53", "14", "15", "16",
                       "55", "56", "57", "58", "17", "18", "19", "59", "77", "78", "31", "32",
                       "38", "95", "96", "97", "98", "99", "81", "82", "83", "87", "88", "89"]
                      ), d(R.choice([7, 8, 8, 8, 9]))


def id_fixed():
    area = pick(["21", "22", "31", "24", "61", "274", "341", "361", "411", "711"])
    return area, nz(8 if area in ("21", "31") else 7)


def id_formats(p, s):
    if p[0] == "8":
        return [f"0{p}-{split(s, [4], '-')}", f"0{p} {split(s, [4])}", f"0{p}{s}",
                f"0{p} {s}", f"0{p}-{s}", f"0{p} {split(s, [3, 3])}"]
    return [f"(0{p}) {s}", f"0{p}-{s}", f"(0{p}) {split(s, [4])}", f"0{p} {s}",
            f"0{p}{s}"]


def pk_mobile():
    return "3" + pick(["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "11",
                       "12", "13", "14", "15", "16", "17", "21", "22", "23", "24", "25", "31",
                       "32", "33", "34", "35", "36", "37", "45", "46", "47"]), d(7)


def pk_fixed():
    area = pick(["42", "21", "51", "41", "61", "91", "52", "81"])
    return area, pick("23456789") + d(7 if area in ("42", "21") else 6)


def pk_formats(p, s):
    if p[0] == "3":
        return [f"0{p} {s}", f"0{p}-{s}", f"0{p}{s}", f"0{p}-{s[:3]}-{s[3:]}",
                f"0{p} {s[:3]} {s[3:]}"]
    return [f"0{p}-{s}", f"(0{p}) {split(s, [4])}", f"0{p} {s}", f"0{p}{s}",
            f"(0{p}) {s}"]


def bd_mobile():
    return "1" + pick("3456789") + d(2), d(6)


def bd_fixed():
    return pick(["2", "31", "41", "51", "521", "721", "821"]), None


def bd_formats(p, s):
    n = p + s
    return [f"0{n[:4]}-{n[4:]}", f"0{n}", f"0{n[:4]} {n[4:]}", f"0{n[:2]} {n[2:6]} {n[6:]}",
            f"0{n[:4]} {n[4:7]} {n[7:]}", f"0{n[:4]}-{n[4:7]}-{n[7:]}"]


def ph_mobile():
    return "9" + pick(["05", "06", "15", "16", "17", "26", "27", "35", "45", "55", "56", "65",
                       "75", "77", "78", "95", "96", "97", "05", "08", "09", "10", "12", "18",
                       "19", "20", "21", "28", "29", "30", "38", "39", "46", "47", "48", "49",
                       "50", "51", "61", "98", "99"]), d(7)


def ph_fixed():
    return pick(["2", "32", "82", "88", "33", "34"]), None


def ph_formats(p, s):
    if p[0] == "9":
        return [f"0{p} {s[:3]} {s[3:]}", f"0{p}-{s[:3]}-{s[3:]}", f"0{p}{s}",
                f"(0{p}) {s[:3]} {s[3:]}", f"0{p} {s}", f"0{p}.{s[:3]}.{s[3:]}"]
    if p == "2":
        return [f"(02) {s[:4]} {s[4:]}", f"02 {s[:4]} {s[4:]}", f"02-{s[:4]}-{s[4:]}",
                f"(02) {s}", f"02{s}"]
    return [f"(0{p}) {s[:3]} {s[3:]}", f"0{p} {s[:3]} {s[3:]}", f"0{p}-{s[:3]}-{s[3:]}",
            f"(0{p}) {s}"]


def vn_mobile():
    return pick(["90", "91", "93", "94", "96", "97", "98", "86", "88", "89", "32", "33",
                 "34", "35", "36", "37", "38", "39", "70", "76", "77", "78", "79", "81",
                 "82", "83", "84", "85", "56", "58"]), d(7)


def vn_fixed():
    return pick(["24", "28", "236", "225", "292", "251", "274"]), None


def vn_formats(p, s):
    n = p + s
    if p[0] != "2":
        return [f"0{n[:2]} {n[2:5]} {n[5:7]} {n[7:]}", f"0{n[:3]} {n[3:6]} {n[6:]}",
                f"0{n}", f"0{n[:3]}.{n[3:6]}.{n[6:]}", f"0{n[:2]} {n[2:5]} {n[5:]}",
                f"0{n[:3]}-{n[3:6]}-{n[6:]}", f"0{n[:3]} {n[3:]}"]
    return [f"0{p} {split(s, [4])}", f"(0{p}) {split(s, [4])}", f"0{p}.{split(s, [4], '.')}",
            f"0{p}{s}", f"0{p}-{s}"]


def ir_mobile():
    return "9" + pick(["01", "02", "03", "05", "10", "11", "12", "13", "14", "15", "16",
                       "17", "18", "19", "20", "21", "22", "30", "33", "35", "36", "37",
                       "38", "39", "90", "91", "92", "93", "94"]), d(7)


def ir_fixed():
    return pick(["21", "31", "51", "41", "71", "61", "26"]), None


def ir_formats(p, s):
    if p[0] == "9":
        return [f"0{p} {s[:3]} {s[3:]}", f"0{p}-{s[:3]}-{s[3:]}", f"0{p}{s}",
                f"0{p} {s}", f"0{p}-{s}"]
    return [f"0{p} {split(s, [4])}", f"0{p}-{s}", f"(0{p}) {s}", f"0{p}{s}",
            f"0{p} {split(s, [4], '-')}"]


PLANS = {
    "DE": [(de_mobile, de_formats), (de_fixed, de_formats)],
    "GB": [(gb_fixed, gb_formats), (gb_mobile, gb_formats)],
    "FR": [(fr_number, fr_formats)],
    "IT": [(it_fixed, it_formats), (it_mobile, it_formats)],
    "ES": [(es_number, es_formats)],
    "RU": [(ru_mobile, ru_formats), (ru_fixed, ru_formats)],
    "TR": [(tr_mobile, tr_formats), (tr_fixed, tr_formats)],
    "US": [(nanp_number, nanp_formats)],
    "BR": [(br_mobile, br_formats), (br_fixed, br_formats)],
    "MX": [(mx_number, mx_formats)],
    "JP": [(jp_number, jp_formats)],
    "CN": [(cn_mobile, cn_formats), (cn_fixed, cn_formats)],
    "IN": [(in_mobile, in_formats), (in_fixed, in_formats)],
    "ID": [(id_mobile, id_formats), (id_fixed, id_formats)],
    "PK": [(pk_mobile, pk_formats), (pk_fixed, pk_formats)],
    "BD": [(bd_mobile, bd_formats), (bd_fixed, None)],
    "PH": [(ph_mobile, ph_formats), (ph_fixed, ph_formats)],
    "VN": [(vn_mobile, vn_formats), (vn_fixed, vn_formats)],
    "IR": [(ir_mobile, ir_formats), (ir_fixed, ir_formats)],
}
# National significant lengths of fixed lines whose subscriber length depends on the area.
FIXED_NSN = {"BD": {"2": 9, "31": 10, "41": 10, "51": 10, "521": 10, "721": 10, "821": 10},
             "PH": {"2": 9, "32": 9, "82": 9, "88": 9, "33": 9, "34": 9},
             "VN": {"24": 10, "28": 10, "236": 10, "225": 10, "292": 10, "251": 10,
                    "274": 10},
             "IR": {k: 10 for k in ("21", "31", "51", "41", "71", "61", "26")}}


def bd_fixed_formats(p, s):
    return [f"0{p}-{s}", f"(0{p}) {s}", f"0{p} {s}", f"0{p}{s}"]


def national_number(region: str) -> str:
    """A printed national number of `region`, valid by libphonenumber (drawn again if not)."""
    for _ in range(200):
        draw, formats = pick(PLANS[region])
        p, s = draw()
        if s is None:
            s = pick("23456789") + d(FIXED_NSN[region][p] - len(p) - 1)
        if formats is None:
            formats = bd_fixed_formats
        text = pick(formats(p, s))
        digits = "".join(ch for ch in text if ch.isdigit())
        parsed = phonenumbers.parse(text, region)
        if (phonenumbers.is_valid_number(parsed)
                and phonenumbers.region_code_for_number(parsed) in (region, "CA")
                and digits.endswith(str(parsed.national_number))):
            return text
    raise RuntimeError(f"no valid {region} number in 200 draws: check the plan's facts")


# --------------------------------------------------------------------------- sentences
NAMES = {
    "DE": ["Jonas Becker", "Lea Wagner", "Dr. Klaus Hoffmann", "Praxis Dr. Schulz"],
    "GB": ["Oliver Hughes", "Amelia Clarke", "The Red Lion", "Harris & Sons Plumbing"],
    "FR": ["Camille Laurent", "Hugo Bernard", "Cabinet Moreau", "Boulangerie Petit"],
    "IT": ["Giulia Ferrari", "Marco Esposito", "Trattoria da Gino", "Studio Colombo"],
    "ES": ["Lucía Martínez", "Pablo Sánchez", "Clínica Dental Ruiz", "Bar El Rincón"],
    "RU": ["Иван Петров", "Анна Смирнова", "ООО «Вектор»", "Dmitri Volkov"],
    "TR": ["Ayşe Yılmaz", "Mehmet Kaya", "Özdemir Hukuk Bürosu", "Emre Demir"],
    "US": ["Jessica Miller", "Tyler Johnson", "Bright Smiles Dental", "Joe's Auto Repair"],
    "BR": ["João Silva", "Ana Souza", "Padaria Pão Quente", "Dra. Fernanda Lima"],
    "MX": ["Alejandro Hernández", "Sofía González", "Taquería El Güero", "Dra. Ramírez"],
    "JP": ["山田太郎", "佐藤花子", "Tanaka Dental Clinic", "株式会社サクラ"],
    "CN": ["王伟", "李娜", "张先生", "Chen Jing"],
    "IN": ["Rahul Sharma", "Priya Patel", "Sri Balaji Travels", "Dr. Anil Kumar"],
    "ID": ["Budi Santoso", "Siti Rahayu", "Toko Makmur Jaya", "Pak Agus"],
    "PK": ["Ali Khan", "Ayesha Malik", "Karachi Traders", "Dr. Imran Ahmed"],
    "BD": ["Rahim Uddin", "Fatema Begum", "Dhaka Electronics", "Md. Karim"],
    "PH": ["Juan dela Cruz", "Maria Santos", "Aling Nena's Store", "Atty. Reyes"],
    "VN": ["Nguyễn Văn An", "Trần Thị Bích", "Cửa hàng Minh Phát", "Anh Tuấn"],
    "IR": ["علی رضایی", "Maryam Hosseini", "فروشگاه پارس", "Reza Ahmadi"],
}
# Labels and calling phrases next to a number ("cue"), per region's languages.
CUED = {
    "DE": ["Tel.: {p}", "Telefon: {p}", "Handy: {p}", "Mobil {p}", "Tel. {p}", "Fon: {p}",
           "Rufen Sie uns an: {p}", "Fax: {p}", "Telefonnummer {p}", "erreichbar unter Tel. {p}"],
    "GB": ["Tel: {p}", "Phone: {p}", "Mobile: {p}", "Mob: {p}", "Call us on {p}", "T: {p}",
           "Ring {p} to book", "Office: {p}", "Fax: {p}", "phone {p}"],
    "FR": ["Tél. : {p}", "Téléphone : {p}", "Portable : {p}", "Tél : {p}", "Appelez le {p}",
           "Mobile : {p}", "Fax : {p}", "tél. {p}"],
    "IT": ["Tel. {p}", "Telefono: {p}", "Cell. {p}", "Cellulare: {p}", "Tel: {p}",
           "Chiamare il {p}", "Fax {p}"],
    "ES": ["Tel.: {p}", "Teléfono: {p}", "Móvil: {p}", "Tlf.: {p}", "Telf. {p}",
           "Tfno.: {p}", "Llámanos al {p}", "tel. {p}"],
    "RU": ["Тел.: {p}", "Телефон: {p}", "Моб.: {p}", "тел. {p}", "Звоните: {p}",
           "Phone: {p}"],
    "TR": ["Tel: {p}", "Telefon: {p}", "Cep: {p}", "GSM: {p}", "Tel. {p}", "Bizi arayın: {p}"],
    "US": ["Phone: {p}", "Tel: {p}", "Cell: {p}", "Call {p}", "Office: {p}", "Fax: {p}",
           "call us at {p}", "Text {p}"],
    "BR": ["Tel.: {p}", "Telefone: {p}", "Celular: {p}", "Cel.: {p}", "WhatsApp: {p}",
           "Fone: {p}", "Ligue {p}"],
    "MX": ["Tel.: {p}", "Teléfono: {p}", "Cel.: {p}", "Celular: {p}", "WhatsApp {p}",
           "Llámenos al {p}"],
    "JP": ["電話：{p}", "TEL：{p}", "TEL {p}", "携帯：{p}", "電話番号：{p}", "Tel. {p}",
           "FAX：{p}"],
    "CN": ["电话：{p}", "手机：{p}", "Tel: {p}", "联系电话：{p}", "手机号：{p}", "电话 {p}"],
    "IN": ["Mobile: {p}", "Mob. {p}", "Ph: {p}", "Contact: {p}", "Phone No.: {p}",
           "M: {p}", "Call {p}", "Tel: {p}"],
    "ID": ["HP: {p}", "Telp. {p}", "No. HP: {p}", "WA: {p}", "Telepon: {p}", "Hubungi {p}",
           "Telp: {p}"],
    "PK": ["Cell: {p}", "Ph: {p}", "Mobile No. {p}", "Contact # {p}", "Tel: {p}",
           "Call {p}"],
    "BD": ["Mobile: {p}", "মোবাইল: {p}", "Phone: {p}", "Cell: {p}", "ফোন: {p}",
           "Contact: {p}"],
    "PH": ["Mobile: {p}", "Cel. No.: {p}", "Tel. No.: {p}", "Contact No.: {p}",
           "Call or text {p}", "Tel: {p}"],
    "VN": ["ĐT: {p}", "SĐT: {p}", "Điện thoại: {p}", "Hotline: {p}", "Tel: {p}",
           "Gọi {p}"],
    "IR": ["تلفن: {p}", "موبایل: {p}", "Tel: {p}", "شماره تماس: {p}", "تماس: {p}"],
}
# The number with no label or calling word next to it.
UNCUED = {
    "DE": ["{n}, {p}", "{n} – {p}", "Bei Fragen erreichen Sie mich unter {p}.",
           "Ich bin ab 18 Uhr unter {p} erreichbar.", "{p} ({n})", "Zentrale {p}, Mo–Fr 8–17 Uhr"],
    "GB": ["{n}, {p}", "{n} - {p}", "You can reach me on {p} most evenings.",
           "Bookings: {p}", "{p} ({n})", "Give {n} a bell on {p}."],
    "FR": ["{n}, {p}", "{n} — {p}", "Vous pouvez me joindre au {p} après 18 h.",
           "Réservations au {p}", "{p} ({n})", "Contactez {n} au {p}."],
    "IT": ["{n}, {p}", "{n} - {p}", "Per informazioni: {p}", "Prenotazioni al {p}",
           "{p} ({n})", "Mi trovi al {p} dopo le 18."],
    "ES": ["{n}, {p}", "{n} - {p}", "Escríbeme al {p} si tienes dudas.", "Reservas en el {p}",
           "{p} ({n})", "Pregunta por {n} en el {p}."],
    "RU": ["{n}, {p}", "{n} — {p}", "Пишите в WhatsApp или на {p}", "Справки по {p}",
           "{p} ({n})", "Запись по номеру {p}"],
    "TR": ["{n}, {p}", "{n} - {p}", "Rezervasyon için {p}", "{p} ({n})",
           "Bilgi için {p} numarasına yazın."],
    "US": ["{n}, {p}", "{n} - {p}", "Reach me at {p} after 5.", "{p} ({n})",
           "Questions? {p}", "Ask for {n} at {p}."],
    "BR": ["{n}, {p}", "{n} - {p}", "Pedidos pelo {p}", "{p} ({n})",
           "Me chama no {p} depois das 18h."],
    "MX": ["{n}, {p}", "{n} - {p}", "Pedidos al {p}", "{p} ({n})", "Escríbeme al {p}."],
    "JP": ["{n} {p}", "{n}（{p}）", "{p}までご連絡ください。", "予約は{p}まで", "{p}（{n}）"],
    "CN": ["{n} {p}", "{n}，{p}", "请拨打{p}咨询", "预约请联系{p}", "{p}（{n}）"],
    "IN": ["{n}, {p}", "{n} - {p}", "For bookings reach {n} on {p}.", "{p} ({n})",
           "Enquiries: {p}", "WhatsApp only, {p}"],
    "ID": ["{n}, {p}", "{n} - {p}", "Pemesanan: {p}", "{p} ({n})", "Info lebih lanjut {p}"],
    "PK": ["{n}, {p}", "{n} - {p}", "For orders {p}", "{p} ({n})", "Booking {p} only"],
    "BD": ["{n}, {p}", "{n} - {p}", "অর্ডার করতে {p}", "{p} ({n})", "Orders: {p}"],
    "PH": ["{n}, {p}", "{n} - {p}", "PM or text {p}", "{p} ({n})", "For orders: {p}"],
    "VN": ["{n}, {p}", "{n} - {p}", "Đặt hàng: {p}", "{p} ({n})", "Liên hệ anh {n} {p}"],
    "IR": ["{n}، {p}", "{n} - {p}", "برای سفارش {p}", "{p} ({n})"],
}
OPENERS = ["", "", "", "Kontakt / contact:\n", "Hi! ", "-- \n", "Impressum\n", "Update: ",
           "OK. ", "Nota: "]
CLOSERS = ["", "", "", ".", " — thanks!", "\n", " (9:00–18:00)", ", Mo–Fr", " 24/7"]


# --------------------------------------------------------------------------- negatives
def isbn13() -> str:
    body = "978" + d(9)
    check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body)) % 10) % 10
    return f"{body[:3]}-{body[3]}-{body[4:7]}-{body[7:]}-{check}"


def isbn10() -> str:
    body = pick("0123") + d(8)
    check = sum((10 - i) * int(c) for i, c in enumerate(body)) % 11
    check = (11 - check) % 11
    c = "X" if check == 10 else str(check)
    return pick([f"{body[0]}-{body[1:4]}-{body[4:]}-{c}", f"{body}{c}",
                 f"{body[0]} {body[1:4]} {body[4:]} {c}"])


NEGATIVES = {
    "version": [
        lambda: f"Version {pick(['10.0', '6.1', '11.0'])}.{R.randint(10000, 26100)}.{R.randint(1, 4000)}",
        lambda: f"Firmware {R.randint(1, 9)}.{R.randint(0, 20)}.{R.randint(0, 99)}.{R.randint(1000, 9999)} behebt den Fehler.",
        lambda: f"Chrome {R.randint(100, 131)}.0.{R.randint(4000, 6800)}.{R.randint(10, 200)} (Offizieller Build)",
        lambda: f"Build {R.randint(19041, 26100)}.{R.randint(100, 4500)} ist verfügbar.",
        lambda: f"kernel 6.{R.randint(0, 12)}.0-{R.randint(10, 40)}-amd64 #{R.randint(1, 9)} SMP",
        lambda: f"Android {R.randint(10, 15)} (UP1A.{R.randint(230000, 241231)}.{R.randint(1, 30):03d})",
        lambda: f"Versión {R.randint(1, 9)}.{R.randint(0, 99)}.{R.randint(0, 999)} del controlador",
        lambda: f"v{R.randint(0, 3)}.{R.randint(0, 30)}.{R.randint(0, 30)} → v{R.randint(0, 3)}.{R.randint(0, 30)}.{R.randint(0, 30)}",
    ],
    "part number": [
        lambda: f"Bosch Ersatzteil {pick(['0 986', '0 280', '0 258', '0 242'])} {d(3)} {d(3)}",
        lambda: f"Part No. {d(4)}-{d(4)}-{d(2)}",
        lambda: f"Art.-Nr. {pick(['0', '1', '4'])}{d(3)} {d(4)}",
        lambda: f"MPN: {d(2)}-{d(4)}-{d(4)}",
        lambda: f"Teilenummer {d(3)} {d(3)} {d(3)} {pick(['A', 'B', 'C'])}",
        lambda: f"Réf. fabricant {d(3)}.{d(3)}.{d(2)}",
        lambda: f"Modelo {pick(['SM-A', 'KD-', 'XR-'])}{d(3)}{pick(['F', 'X', ''])}, código {d(5)} {d(5)}",
        lambda: f"Cat. No. {d(3)}-{d(5)}-{d(1)}",
    ],
    "date": [
        lambda: f"am {R.randint(1, 28):02d}.{R.randint(1, 12):02d}.{R.randint(2000, 2030)}",
        lambda: f"el {R.randint(1, 28):02d}/{R.randint(1, 12):02d}/{R.randint(2000, 2030)}",
        lambda: f"on {R.randint(2000, 2030)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d} {R.randint(0, 23):02d}:{R.randint(0, 59):02d}",
        lambda: f"{R.randint(2000, 2030)}年{R.randint(1, 12)}月{R.randint(1, 28)}日",
        lambda: f"Date: {R.randint(1, 12):02d}/{R.randint(1, 28):02d}/{R.randint(2000, 2030)} - {R.randint(1, 12):02d}/{R.randint(1, 28):02d}/{R.randint(2000, 2030)}",
        lambda: f"Stand: {R.randint(1, 28):02d}.{R.randint(1, 12):02d}.{R.randint(10, 30)}, {R.randint(8, 18):02d}:{R.randint(0, 59):02d} Uhr",
        lambda: f"تاریخ {R.randint(1395, 1404)}/{R.randint(1, 12):02d}/{R.randint(1, 29):02d}",
        lambda: f"ngày {R.randint(1, 28):02d}.{R.randint(1, 12):02d}.{R.randint(2000, 2030)}",
        lambda: f"{R.randint(2000, 2030)}{R.randint(1, 12):02d}{R.randint(1, 28):02d}_{R.randint(0, 23):02d}{R.randint(0, 59):02d}{R.randint(0, 59):02d}.jpg",
    ],
    "price": [
        lambda: f"Preis: {R.randint(1, 99)}.{d(3)},{d(2)} €",
        lambda: f"El presupuesto asciende a {nz(3)} {d(3)} {d(3)} euros.",
        lambda: f"Total ${R.randint(1, 999)},{d(3)}.{d(2)}",
        lambda: f"₹ {R.randint(1, 99)},{d(2)},{d(3)}.00",
        lambda: f"R$ {R.randint(1, 999)}.{d(3)},{d(2)}",
        lambda: f"¥{R.randint(1, 999)},{d(3)}（税込）",
        lambda: f"Budget : {nz(2)} {d(3)} {d(3)} € HT",
        lambda: f"Стоимость {R.randint(1, 999)} {d(3)} руб.",
        lambda: f"Rp {R.randint(1, 999)}.{d(3)}.{d(3)}",
        lambda: f"Population: {nz(3)} {d(3)} {d(3)} habitants",
    ],
    "id": [
        lambda: f"Kundennummer: {d(10)}",
        lambda: f"Steuer-ID {nz(2)} {d(3)} {d(3)} {d(3)}",
        lambda: f"Aadhaar {nz(4)} {d(4)} {d(4)}",
        lambda: f"CPF {d(3)}.{d(3)}.{d(3)}-{d(2)}",
        lambda: f"SIREN {nz(3)} {d(3)} {d(3)}",
        lambda: f"NIK {R.choice(['31', '32', '35'])}{d(14)}",
        lambda: f"user_id={d(11)}",
        lambda: f"ИНН {nz(10)}",
        lambda: f"SNILS {d(3)}-{d(3)}-{d(3)} {d(2)}",
        lambda: f"Ticket #{nz(7)}",
        lambda: f"Vorgangsnummer {d(4)} {d(4)} {d(4)}",
        lambda: f"CNIC {d(5)}-{d(7)}-{d(1)}",
    ],
    "isbn": [
        lambda: f"ISBN {isbn13()}",
        lambda: f"ISBN {isbn10()}",
        lambda: f"ISBN-13: {isbn13().replace('-', '')}",
    ],
    "coordinates": [
        lambda: f"{R.uniform(-60, 70):.4f}, {R.uniform(-180, 180):.4f}",
        lambda: f"GPS {R.uniform(-60, 70):.6f} {R.uniform(-180, 180):.6f}",
        lambda: f"{R.randint(0, 89)}°{R.randint(0, 59)}′{R.randint(0, 59)}″N {R.randint(0, 179)}°{R.randint(0, 59)}′{R.randint(0, 59)}″E",
        lambda: f"lat={R.uniform(-60, 70):.5f}&lng={R.uniform(-180, 180):.5f}",
    ],
    "order number": [
        lambda: f"Bestellnummer {d(10)}",
        lambda: f"Order # {d(3)}-{d(7)}-{d(7)}",
        lambda: f"Pedido nº {nz(9)}",
        lambda: f"订单号 {R.randint(2020, 2026)}{d(11)}",
        lambda: f"Commande n° {d(4)} {d(4)} {d(2)}",
        lambda: f"Sendungsnummer {d(20)}",
        lambda: f"Invoice INV-{R.randint(2019, 2026)}-{d(6)}",
        lambda: f"AWB {d(3)}-{d(8)}",
        lambda: f"Nomor resi {pick(['JNE', 'JP'])}{d(12)}",
        lambda: f"Sipariş no: {d(9)}",
    ],
    "other numbers": [
        lambda: f"Konto {d(10)}, BLZ {nz(3)} {d(3)} {d(2)}",
        lambda: f"PLZ {R.randint(1001, 99999):05d} {pick(['Berlin', 'Dresden', 'Köln'])}",
        lambda: f"〒{d(3)}-{d(4)} 東京都",
        lambda: f"Sort code {d(2)}-{d(2)}-{d(2)}, account {d(8)}",
        lambda: f"{R.randint(2, 9)} × {R.randint(10, 99)} = {R.randint(100, 999)}",
        lambda: f"Ergebnis {R.randint(0, 5)}:{R.randint(0, 5)} ({R.randint(0, 3)}:{R.randint(0, 3)})",
        lambda: f"Seiten {R.randint(10, 200)}–{R.randint(201, 400)}",
        lambda: f"Öffnungszeiten {R.randint(7, 10):02d}:00–{R.randint(17, 20)}:30",
        lambda: f"{R.randint(1000, 9999)} {d(3)} {d(3)} views",
        lambda: f"IMEI {d(15)}",
    ],
}


def negative() -> tuple[str, str]:
    kind = pick(sorted(NEGATIVES))
    return kind, pick(NEGATIVES[kind])()


# --------------------------------------------------------------------------- records
def positive(region: str) -> dict:
    cued = R.random() < 0.5
    template = pick((CUED if cued else UNCUED)[region])
    name = pick(NAMES[region])
    phones = [national_number(region)]
    text, spans = pick(OPENERS), []
    parts = template.replace("{n}", name).split("{p}")
    text += parts[0]
    spans.append((len(text), len(text) + len(phones[0])))
    text += phones[0] + parts[1]
    if R.random() < 0.2:  # a second number: "Tel. ... / Fax ..."
        other = national_number(region)
        text += pick([" / ", ", ", " oder ", " o ", " or ", "; "])
        spans.append((len(text), len(text) + len(other)))
        text += other
    text += pick(CLOSERS)
    if R.random() < 0.35:  # a look-alike in the same document
        _, noise = negative()
        if R.random() < 0.5:
            shift = len(noise) + 1
            text = noise + pick([" ", "\n"])[0] + text
            spans = [(s + shift, e + shift) for s, e in spans]
        else:
            text = text + pick([" ", "\n"]) + noise
    return {"text": text, "spans": [{"start": s, "end": e, "type": "phone"} for s, e in spans],
            "region": region, "cue": cued}


def hard_negative() -> dict:
    kind, text = negative()
    if R.random() < 0.4:
        _, more = negative()
        text += pick([", ", "; ", "\n", " — "]) + more
    return {"text": text, "spans": [], "region": kind, "cue": False}


def check(record: dict) -> None:
    text = record["text"]
    for span in record["spans"]:
        value = text[span["start"]:span["end"]]
        assert value == value.strip() and value[-1].isdigit(), record
        assert value[0].isdigit() or value[0] == "(", record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-region", type=int, default=60)
    parser.add_argument("--negatives", type=int, default=1200)
    parser.add_argument("--out", default=os.path.join(HERE, "national_phones.jsonl"))
    args = parser.parse_args(argv)
    R.seed(args.seed)
    records = [positive(region) for region in PLANS for _ in range(args.per_region)]
    records += [hard_negative() for _ in range(args.negatives)]
    R.shuffle(records)
    for record in records:
        check(record)
    with open(args.out, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    phones = sum(len(r["spans"]) for r in records)
    print(f"wrote {args.out}: {len(records)} records, {phones} phones in {len(PLANS)} plans, "
          f"{args.negatives} hard negatives")
    return 0


if __name__ == "__main__":
    sys.exit(main())
