"""National phone numbers (no country code) for `redact_pii`: the digits of a candidate are
checked against the numbering plans of 19 countries (libphonenumber's metadata, compiled into
`phone_plans.py`), and the way it is written decides whether it needs a cue word.

A number is accepted on its own when its form says "phone": a trunk prefix with separators
(`0176 1234 5678`, `8 (495) 123-45-67`), an area code in parentheses (`(11) 91234-5678`),
or a grouping that a mobile number of a plan without trunk prefix is printed in
(`138 1234 5678`, `98765 43210`, `612 345 678`); a bare digit run only when it is a mobile
number with its trunk prefix (`01761234567`) or an 11-digit Chinese mobile. Anything else
that is a valid number of a plan (a bare `612345678`, a fixed line without its trunk
prefix) needs a cue before it ("Tel.:", "Móvil", "电话", "тел."). A word that names a code
(order, invoice, ISBN, IMEI, customer or tax id, ...) right before the digits, or a currency
or a unit around them, refuses them.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from .phone_plans import PLANS

TRUNKS = ("0", "8")  # "1" (NANP) is handled by the North American rules in pii.py

# Cue and code words are looked up, not searched for: the words right before a candidate
# (maximal runs of letters of any script) are compared with these sets, which costs a small
# fraction of searching a window for a large alternation.
_WORD = re.compile(r"[^\W\d_]+|[#〒]")
# Labels and calling words, in the languages of the plans; after one, up to 16 characters
# (no digit, no line break) may come before the number: "Tel. No.: ", "call us at ".
_CUES = frozenset("""
    phone ph tel tels tlf telf tfno telp telepon telephone téléphone fon fone mobile mobil
    móvil movil mob cel celular handy gsm cep hp wa whatsapp viber sms text call calls ring
    dial fax office direct contact kontakt contacto contato contattare hotline rufnummer
    anrufen rufen ruf numero numéro número ligue hubungi goi gọi đt sđt thoại arayın ara
    تلفن موبایل تماس همراه ফোন মোবাইল फ़ोन फोन मोबाइल
""".split())
_CUE_PREFIXES = ("telefon", "teléfon", "cell", "llam", "llám", "appel", "chiam", "тел", "моб",
                 "сот", "звон")
_CJK_CUES = ("电话", "電話", "手机", "手機", "联系", "聯繫", "拨打", "撥打", "携帯", "ＴＥＬ")
# A cue also covers the next numbers of a list: "Tel. 030 1234567 oder 0176 12345678".
_CONNECTOR = re.compile(r"(?i)[ ,;/]{1,3}(?:(?:or|oder|o|ou|y|e|et|und|and|или|或)[ ,]{1,2})?")
_NON_DIGITS = re.compile(r"[^\d\n\x00]*")
_NUMBER_CHARS = re.compile(r"[\d ().\-/]*")
# Words that name a code, an id or an amount: digits right after them are not a phone.
_CODES = frozenset("""
    order commande pedido encomenda sipariş siparis invoice factura facture fattura fatura
    счет счёт ref réf reference référence referenz aktenzeichen ticket case snils customer
    account acct blz iban bic routing issn imei serial sn sku part mpn model modell modelo
    cat catalog tracking awb resi id nik npwp ktp cnic aadhaar pan cpf cnpj rfc curp inn инн
    снилс огрн siren siret tva vat tax nhs passport dni nie nif codice lot batch charge
    version build release firmware kb plz zip postcode pin otp code código codigo nr nº n #
    〒
""".split())
_CODE_PREFIXES = ("bestell", "auftrag", "заказ", "rechnung", "vorgang", "kunden", "ersatzteil",
                  "konto", "isbn", "artikel", "teile", "sendung", "steuer", "ausweis", "счет",
                  "счёт")
_CJK_CODES = ("订单", "訂單", "注文", "单号", "編號", "编号")
# After a code word, a number marker may come: "Order no.", "Invoice #", "Kunden-Nr."
_MARKERS = frozenset(("no", "nr", "num", "number", "nummer", "nº", "n", "#", "id"))
_MONEY_BEFORE = re.compile(r"(?i)(?:[$€£¥₹₽₺₩]|R\$|\bRp\.?|\b(?:EUR|USD|RMB|INR|RUB|MXN|BRL)"
                           r")\s?\Z")
_UNIT_AFTER = re.compile(
    r"(?i)\s?(?:[€₽₺₫%]|euros?\b|eur\b|usd\b|dollars?\b|pesos?\b|reais\b|rupees?\b|"
    r"руб|yuan\b|元|円|habitant\w*|inhabitants\b|people\b|views\b|visits\b|km\b|kg\b|"
    r"tons?\b|bytes?\b|users\b|times\b|votes\b)")


@cache
def _patterns(length: int, trunk: str, mobile: bool) -> re.Pattern | None:
    """One pattern for the national significant numbers of `length` digits, of the plans
    with trunk prefix `trunk` ("" for all plans, trunk omitted), mobile or other types."""
    alternatives = [pattern for region, (_, plan_trunk, types) in PLANS.items()
                    if trunk in ("", plan_trunk)
                    for kind, lengths, pattern in types
                    if length in lengths and (kind == "mobile") == mobile]
    return re.compile("|".join(f"(?:{p})" for p in alternatives)) if alternatives else None


@lru_cache(maxsize=4096)
def plan_kinds(digits: str) -> tuple[str | None, str | None]:
    """How `digits` reads as a national number: (with its trunk prefix, without one), each
    "mobile", "other" or None."""
    with_trunk = without = None
    for mobile in (True, False):
        kind = "mobile" if mobile else "other"
        if without is None:
            pattern = _patterns(len(digits), "", mobile)
            if pattern is not None and pattern.fullmatch(digits):
                without = kind
        if with_trunk is None and digits[0] in TRUNKS:
            pattern = _patterns(len(digits) - 1, digits[0], mobile)
            if pattern is not None and pattern.fullmatch(digits, 1):
                with_trunk = kind
    return with_trunk, without


_KEY_SUFFIX = re.compile(r"(?:number|num|no|nr|nummer)\Z")  # "phoneNumber", "mobileNo"


def _is_cue(word: str) -> bool:
    word = word.lower()
    stem = _KEY_SUFFIX.sub("", word) if len(word) > 4 else word
    return (word in _CUES or stem in _CUES or word.startswith(_CUE_PREFIXES)
            or stem.startswith(_CUE_PREFIXES) or any(cue in word for cue in _CJK_CUES))


_KEY_ID = re.compile(r"[a-z](?:Id|ID|Number|No|Nr|Num)\Z")  # "accountId", "orderNumber"


def _is_code(word: str) -> bool:
    if _KEY_ID.search(word):
        return True
    word = word.lower()
    return (word in _CODES or word.startswith(_CODE_PREFIXES)
            or any(code in word[-4:] for code in _CJK_CODES))


def cue_before(text: str, start: int) -> bool:
    """Is there a phone label or calling word right before `start` (at most 16 characters,
    no digit, between them), or before the numbers of a list that ends there?"""
    back = text[max(0, start - 80):start][::-1]  # read backwards from the candidate
    pos = 0
    for hop in range(3):
        gap_end = _NON_DIGITS.match(back, pos).end()
        gap = back[pos:gap_end][::-1]
        near = len(gap) - 16
        if any(m.end() >= near and _is_cue(m.group()) for m in _WORD.finditer(gap)):
            return True
        if hop == 2 or gap_end == len(back) or not back[gap_end].isdigit() \
                or not _CONNECTOR.fullmatch(gap):
            return False
        pos = _NUMBER_CHARS.match(back, gap_end).end()  # the list's number before
        if not 7 <= pos - gap_end <= 20:
            return False
    return False


def code_before(text: str, start: int) -> bool:
    """Does a word naming a code, an id or an amount come right before `start`: "Order no.
    ", "Kundennummer: ", "ISBN ", "€ "?"""
    begin = max(0, start - 24)
    words = list(_WORD.finditer(text, begin, start))
    if words:
        last = words[-1]
        tail = text[last.end():start]
        if len(tail) <= 4 and not any(ch.isalnum() or ch in "\n\x00_" for ch in tail):
            if _is_code(last.group()):
                return True
            if len(words) > 1 and last.group().lower() in _MARKERS:
                before = words[-2]
                between = text[before.end():last.start()]
                if len(between) <= 2 and between.strip(" .-") == "" and _is_code(
                        before.group()):
                    return True
    return _MONEY_BEFORE.search(text, max(0, start - 6), start) is not None


def unit_after(text: str, end: int) -> bool:
    return _UNIT_AFTER.match(text, end) is not None


def _thousands(value: str, sizes: list[int]) -> bool:
    """Written like a grouped quantity: 1-3 digits, then groups of exactly three."""
    return len(sizes) > 1 and sizes[0] <= 3 and all(n == 3 for n in sizes[1:]) and \
        not any(ch in value for ch in "-()/")


FREE, CUED = "free", "cued"


def national_form(value: str, sizes: list[int], digits: str) -> str | None:
    """How `value` (digit groups of `sizes`, `digits` concatenated) reads as a national
    number of the plans: FREE (a phone on its own), CUED (a phone after a cue word) or
    None (not a number of any plan, or not written like one)."""
    if not 7 <= len(digits) <= 13 or len(sizes) > 6 or sizes[-1] < 2:
        return None
    if sizes[:3] == [3, 2, 4]:
        return None  # an SSN's grouping, no plan's: "093-36-0000"
    if value.count(".") == 1:
        return None  # one dot is a decimal point: "0.33333206", "55.755800"
    if len(sizes) > 1 and min(sizes[1:]) < 2 and not (len(sizes) > 2 and sizes[1] == 1
                                                       and value.count("(") == 1):
        return None  # single digits inside: "1 2 3 4 5 6 7", but "(11) 9 1234-5678"
    with_trunk, without = plan_kinds(digits)
    if with_trunk is None and without is None:
        return None
    if "/" in value or " - " in value:  # only after the area code: "030/1234567"
        mark = value.find("/") if "/" in value else value.find(" - ")
        if mark != sizes[0] or value.count("/") + value.count(" - ") > 1 or not (
                digits[0] == "0" or without == "mobile" and sizes[0] == 3):
            return None  # not "11704/12853"
    return FREE if len(digits) >= 9 and _free(value, sizes, digits, with_trunk,
                                               without) else CUED


def _free(value: str, sizes: list[int], digits: str, with_trunk: str | None,
          without: str | None) -> bool:
    bare = len(sizes) == 1
    if with_trunk is not None:
        if value[0] == "8" and not (sizes[0] == 1 or value[1] == "(" or bare):
            return False  # RU: "8 912 ...", "8(495)", "89123456789"
        if sizes[0] == 1 and _thousands(value[2:], sizes[1:]):
            return False  # "0 986 494 123": a part number
        return not bare or len(digits) >= 10
    if without is None:
        return False
    if bare:  # an 11-digit Chinese mobile, or an Italian fixed line (its 0 is no trunk)
        return (without == "mobile" and len(digits) == 11 and digits[0] == "1"
                or digits[0] == "0")
    if _thousands(value, sizes):  # "612 345 678", "612.345.678", not "1 234 567"
        return without == "mobile" and sizes[0] == 3
    if "." in value:
        return False  # dotted groups without trunk prefix: a version, a coordinate
    if value[0] == "(":
        return True  # "(11) 91234-5678", "(495) 123-45-67"
    if sizes[-1] == 2 and len(digits) != 9 or len(sizes) > 4 or len(digits) > 11:
        return False  # pairs at the end are Spanish (9 digits): not "97 43 30 33 33"
    if len(sizes) == 2:  # two groups read as a range ("10923-14052") unless an area code
        #                  with its 0 ("011 228485") or a mobile prefix and the rest
        #                  ("347 1234567", "98765 43210")
        return digits[0] == "0" or without == "mobile" and (
            sizes == [5, 5] and digits[0] in "6789" or sizes[0] == 3 and sizes[1] >= 6)
    # an area code or a mobile prefix first: "91 123 45 67", "55 1234 5678"
    return 2 <= sizes[0] <= 4
