"""Word tokenization for the quality filters, over whole batches of documents.

Two tokenizers, one interface: `features(texts) -> Tokens` (per-token length, flags and a
64-bit hash, never the token strings) and `sentence_counts(lines)`.

* `FastTokenizer` ("fast", the default): spaCy's English tokenizer rules re-implemented with
  numpy over a batch's code points (see docs/quality.md for the rules and the known
  differences). Sentences are counted as spaCy's sentencizer counts them, from those tokens.
* `SpacyTokenizer` ("spacy", extra `datamill[spacy]`): `spacy.blank("en")` plus its
  sentencizer, loaded once per process; what datatrove uses.

Tokens are the stripped, non-empty token texts (whitespace tokens are dropped).
"""

from __future__ import annotations

import re
from typing import Any

# Terminal punctuation marks (a line or sentence that ends in one is "finished").
TERMINAL_PUNCTUATION = frozenset(
    "!.?։؝؞؟۔܀܁܂߹࠷࠹࠽࠾।॥၊။።፧፨᙮᜵᜶។៕៖៙៚᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᭽᭾᰻᰼᱾᱿\u203c\u203d\u2047\u2048\u2049"
    "\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f"
    "\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61"
    "\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86\U00010f87"
    "\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0\U000110c1\U00011141"
    "\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca"
    "\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3"
    "\U000115d4\U000115d5\U000115d6\U000115d7\U00011641\U00011642\U0001173c\U0001173d\U0001173e"
    "\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42\U00011ef7"
    "\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38\U00016b44"
    "\U00016e98\U0001bc9f\U0001da88")
# spaCy's sentencizer knows all of them but these.
_NOT_SENTENCE_END = frozenset(
    "؝؞࠷࠹࠽࠾។៕៖៙៚᭽᭾\u2e53\u2e54\U00010f55\U00010f56\U00010f57\U00010f58\U00010f59\U00010f86"
    "\U00010f87\U00010f88\U00010f89\U00011944\U00011946\U00011ef7\U00011ef8\U00011f43\U00011f44"
    "\U00016e98")
SENTENCE_END = TERMINAL_PUNCTUATION - _NOT_SENTENCE_END
# Characters that make a token a "symbol" when it has nothing else (Gopher's word rules):
# ASCII punctuation and controls, a few typographic marks, and the terminal punctuation.
PUNCTUATION = frozenset(
    "".join(map(chr, [*range(0, 9), 11, 12, *range(13, 32), *range(127, 160)]))
    + "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«´»\u2013\u2014\u2019\u201c\u201d\u201e\u2026\u2236"
    "\u2501\u25ba\u3001\u3002\u3008\u3009\u300a\u300b\u300c\u300d\u3010\u3011\uff01\uff05"
    "\uff08\uff09\uff0c\uff0e\uff11\uff1a\uff1b\uff1f\uff5e") | TERMINAL_PUNCTUATION

TOKENIZERS = ("fast", "spacy")


# --- character classes ------------------------------------------------------------------------
# spaCy's English affix rules (facts about its tokenizer, re-stated): these characters split off
# the start (prefixes) or the end (suffixes) of a whitespace-separated chunk, one at a time.
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_CURRENCY = "$£€¥฿₽﷼₴₠₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₵₶₷₸₹₺₻₼₾₿"
_PREFIX_CHARS = _PUNCT + _QUOTES + _CURRENCY + "§%=—–"  # "+" too, unless a digit follows
_SUFFIX_CHARS = _PUNCT + _QUOTES + "—–"  # "." "%" "+" too, by context
# Abbreviations that keep their final period (spaCy's English exceptions), and single letters.
_ABBREVIATIONS = frozenset((
    "Adm. Ak. Ala. Apr. Ariz. Ark. Aug. Bros. Calif. Co. Colo. Conn. Corp. D.C. Dec. Del. Dr. "
    "E.g. Feb. Fla. Ga. Gen. Gov. I.e. Ia. Id. Ill. Inc. Ind. Jan. Jr. Jul. Jun. Kan. Kans. Ky. "
    "La. Ltd. Mar. Mass. Md. Messrs. Mich. Minn. Miss. Mo. Mont. Mr. Mrs. Ms. Mt. Neb. Nebr. "
    "Nev. Nov. Oct. Okla. Ore. Pa. Prof. Rep. Rev. Sen. Sep. Sept. St. Tenn. Va. Wash. Wis. "
    "a.m. co. e.g. i.e. p.m. v.s. vs.").split()) | frozenset(f"{c}." for c in
                                                               "abcdefghijklmnopqrstuvwxyzäöü")
_NT_VERBS = frozenset(
    w for v in ("ai are ca could dare did do does had has have is may might must need ought sha "
                "should was were wo would").split() for w in (v, v.capitalize()))
_PRONOUNS = frozenset(
    w for v in ("could he how i it might must not she should that there these they this those "
                "we what when where who why would you").split() for w in (v, v.capitalize()))
_CLITICS = frozenset(f"{q}{c}" for q in "'’" for c in ("m", "re", "ve", "ll", "d", "M", "RE",
                                                        "VE", "LL", "D"))

_UNITS = ("km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t "
          "lb oz m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K am pm").split()
_UNIT = re.compile(r"(?<=[0-9])(?:" + "|".join(sorted(map(re.escape, _UNITS), key=len,
                                                       reverse=True))
                   + r")(?=[.,;:!?)\]}\"'…]*(?:\s|$))")
_SPECIAL_SPLITS = (  # spaCy's English exceptions without apostrophes: word:cut,cut
    "Aint:2 Arent:3 Cannot:3 Cant:2 Cantve:2,4 Couldnt:5 Couldntve:5,7 Couldve:5 Darent:4 "
    "Didnt:3 Didntve:3,5 Doesnt:4 Doesntve:4,6 Dont:2 Dontve:2,4 Gonna:3 Gotta:3 Hadnt:3 "
    "Hadntve:3,5 Hasnt:3 Havent:4 Hed:2 Hedve:2,3 Hellve:2,4 Hes:2 Howd:3 Howdve:3,4 Howll:3 "
    "Howllve:3,5 Howre:3 Hows:3 Howve:3 Id:1 Idve:1,2 Illve:1,3 Im:1 Ima:1,2 Isnt:2 Itd:2 "
    "Itdve:2,3 Itll:2 Itllve:2,4 Ive:1 Maynt:3 Mayntve:3,5 Mightnt:5 Mightntve:5,7 Mightve:5 "
    "Mustnt:4 Mustntve:4,6 Mustve:4 Neednt:4 Needntve:4,6 Notve:3 Oughtnt:5 Oughtntve:5,7 "
    "Shant:3 Shantve:3,5 Shedve:3,4 Shellve:3,5 Shes:3 Shouldnt:6 Shouldntve:6,8 Shouldve:6 "
    "Thatd:4 Thatdve:4,5 Thatll:4 Thatllve:4,6 Thats:4 Thered:5 Theredve:5,6 Therell:5 "
    "Therellve:5,7 Therere:5 Theres:5 Thereve:5 Thesed:5 Thesedve:5,6 Thesell:5 Thesellve:5,7 "
    "Thesere:5 Theseve:5 Theyd:4 Theydve:4,5 Theyll:4 Theyllve:4,6 Theyre:4 Theyve:4 Thisd:4 "
    "Thisdve:4,5 Thisll:4 Thisllve:4,6 Thiss:4 Thosed:5 Thosedve:5,6 Thosell:5 Thosellve:5,7 "
    "Thosere:5 Thoseve:5 Wasnt:3 Wed:2 Wedve:2,3 Wellve:2,4 Werent:4 Weve:2 Whatd:4 "
    "Whatdve:4,5 Whatll:4 Whatllve:4,6 Whatre:4 Whats:4 Whatve:4 Whend:4 Whendve:4,5 Whenll:4 "
    "Whenllve:4,6 Whenre:4 Whens:4 Whenve:4 Whered:5 Wheredve:5,6 Wherell:5 Wherellve:5,7 "
    "Wherere:5 Wheres:5 Whereve:5 Whod:3 Whodve:3,4 Wholl:3 Whollve:3,5 Whos:3 Whove:3 Whyd:3 "
    "Whydve:3,4 Whyll:3 Whyllve:3,5 Whyre:3 Whys:3 Whyve:3 Wont:2 Wontve:2,4 Wouldnt:5 "
    "Wouldntve:5,7 Wouldve:5 Youd:3 Youdve:3,4 Youll:3 Youllve:3,5 Youre:3 Youve:3 aint:2 "
    "arent:3 cannot:3 cant:2 cantve:2,4 couldnt:5 couldntve:5,7 couldve:5 darent:4 didnt:3 "
    "didntve:3,5 doesnt:4 doesntve:4,6 dont:2 dontve:2,4 gonna:3 gotta:3 hadnt:3 hadntve:3,5 "
    "hasnt:3 havent:4 hed:2 hedve:2,3 hellve:2,4 hes:2 howd:3 howdve:3,4 howll:3 howllve:3,5 "
    "howre:3 hows:3 howve:3 id:1 idve:1,2 illve:1,3 im:1 ima:1,2 isnt:2 itd:2 itdve:2,3 "
    "itll:2 itllve:2,4 ive:1 maynt:3 mayntve:3,5 mightnt:5 mightntve:5,7 mightve:5 mustnt:4 "
    "mustntve:4,6 mustve:4 neednt:4 needntve:4,6 notve:3 oughtnt:5 oughtntve:5,7 shant:3 "
    "shantve:3,5 shedve:3,4 shellve:3,5 shes:3 shouldnt:6 shouldntve:6,8 shouldve:6 thatd:4 "
    "thatdve:4,5 thatll:4 thatllve:4,6 thats:4 thered:5 theredve:5,6 therell:5 therellve:5,7 "
    "therere:5 theres:5 thereve:5 thesed:5 thesedve:5,6 thesell:5 thesellve:5,7 thesere:5 "
    "theseve:5 theyd:4 theydve:4,5 theyll:4 theyllve:4,6 theyre:4 theyve:4 thisd:4 "
    "thisdve:4,5 thisll:4 thisllve:4,6 thiss:4 thosed:5 thosedve:5,6 thosell:5 thosellve:5,7 "
    "thosere:5 thoseve:5 wasnt:3 wed:2 wedve:2,3 wellve:2,4 werent:4 weve:2 whatd:4 "
    "whatdve:4,5 whatll:4 whatllve:4,6 whatre:4 whats:4 whatve:4 whend:4 whendve:4,5 whenll:4 "
    "whenllve:4,6 whenre:4 whens:4 whenve:4 whered:5 wheredve:5,6 wherell:5 wherellve:5,7 "
    "wherere:5 wheres:5 whereve:5 whod:3 whodve:3,4 wholl:3 whollve:3,5 whos:3 whove:3 whyd:3 "
    "whydve:3,4 whyll:3 whyllve:3,5 whyre:3 whys:3 whyve:3 wont:2 wontve:2,4 wouldnt:5 "
    "wouldntve:5,7 wouldve:5 yall:1 youd:3 youdve:3,4 youll:3 youllve:3,5 youre:3 youve:3 "
).split()
_SPECIALS: dict = {}
SPACE, ALPHA, LOWER, UPPER, DIGIT, PREFIX, SUFFIX, SYMBOL = (1 << k for k in range(8))
PUNCT_P, SENT_END, QUOTE, INFIX_SEP, ARITH, PUNCT_AFFIX, OTHER = (1 << k for k in range(8, 15))
UNKNOWN = 1 << 15  # a code point whose flags are not computed yet
_TABLE: list = []
_BITS: list = []


def _flags_of(cp: int) -> int:
    import unicodedata

    c = chr(cp)
    f = 0
    if c.isspace():
        f |= SPACE
    if c.isalpha():
        f |= ALPHA
    cat = unicodedata.category(c)
    if cat == "Ll":
        f |= LOWER
    elif cat == "Lu":
        f |= UPPER
    elif cat[0] == "P":
        f |= PUNCT_P
    if "0" <= c <= "9":
        f |= DIGIT
    if c in _PREFIX_CHARS:
        f |= PREFIX
    if c in _SUFFIX_CHARS:
        f |= SUFFIX
    if c in _PUNCT or c in _QUOTES or c in "%²-+":
        f |= PUNCT_AFFIX  # may precede a final period that splits off
    if c in PUNCTUATION:
        f |= SYMBOL
    if c in SENTENCE_END:
        f |= SENT_END
    if c in _QUOTES:
        f |= QUOTE
    if c in "-–—~:<>=/":
        f |= INFIX_SEP
    if c in "+-*^":
        f |= ARITH
    if not c.isspace() and not (c.isalnum() or cat[0] == "M") or f & (PREFIX | SUFFIX):
        f |= OTHER  # where the tokenizer's rules look
    return f


def _flags(cp: Any) -> Any:
    """Class flags of each code point, from a table filled as new code points appear."""
    import numpy as np

    from . import kernels

    if not _TABLE:
        table = np.full(0x110000, UNKNOWN, dtype=np.uint16)
        table[:256] = [_flags_of(i) for i in range(256)]
        _TABLE.append(table)
    table = _TABLE[0]
    found = kernels.char_flags(cp, table)
    if found is None:  # the numpy twin (np.take: 2-3x faster than indexing with a uint32)
        flags = np.take(table, cp)
        unknown = bool(len(flags) and flags.max() & UNKNOWN)  # (no other flag is as large)
    else:
        flags, unknown = found
    if unknown:
        new = (flags & UNKNOWN) != 0
        for u in np.unique(cp[new]).tolist():
            table[u] = _flags_of(u)
        flags = np.take(table, cp)
    return flags


def _bits_table() -> Any:
    """For each flags value, as uint8: 1 if ALPHA, 2 if not SYMBOL, 4 if not PUNCT_P; 0 for
    a space (ORed over a token's characters: has a letter, is not all symbols, is not all
    punctuation)."""
    import numpy as np

    if not _BITS:
        f = np.arange(1 << 16, dtype=np.int64)
        bits = ((f & ALPHA) != 0) | (((f & SYMBOL) == 0) << 1) | (((f & PUNCT_P) == 0) << 2)
        bits[(f & SPACE) != 0] = 0
        _BITS.append(bits.astype(np.uint8))
    return _BITS[0]


# --- hashing ----------------------------------------------------------------------------------
_R = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_POWERS: list = []


def _powers(n: int) -> tuple:
    """R**i and R**-i modulo 2**64 for i < n (cached, grown on demand)."""
    import numpy as np

    if not _POWERS or len(_POWERS[0]) < n:
        size = 1 << max(int(n + 1).bit_length(), 16)  # grown in powers of two, as needed
        with np.errstate(over="ignore"):
            pw = np.cumprod(np.full(size, _R, dtype=np.uint64))
            inv = np.cumprod(np.full(size, pow(_R, -1, 1 << 64), dtype=np.uint64))
        pw = np.concatenate([np.ones(1, np.uint64), pw[:-1]])
        inv = np.concatenate([np.ones(1, np.uint64), inv[:-1]])
        _POWERS[:] = [pw, inv]
    return _POWERS[0], _POWERS[1]


FIELDS = ("start", "length", "hash", "alpha", "symbol", "punct", "sent_end")


class Tokens:
    """Per-token features of a batch of documents, without materializing token strings.

    `offsets[d]:offsets[d+1]` are document d's tokens; per token: `start` (character offset
    in its document; for the spaCy tokenizer, in its tokens joined by spaces), `length`,
    `hash` (uint64 of its text), `alpha` (has a letter), `symbol` (only punctuation
    characters), `punct` (only Unicode punctuation), `sent_end` (a sentence end mark)."""

    __slots__ = ("offsets", *FIELDS, "_sources")

    def __init__(self, **fields: Any):
        for k, v in fields.items():
            setattr(self, k, v)

    def __getattr__(self, name: str) -> Any:
        # a field of tokens made by `take` or `concat_tokens`, gathered on first use (a
        # step reads only some fields)
        if name not in FIELDS:
            raise AttributeError(name)
        import numpy as np

        sources = object.__getattribute__(self, "_sources")
        parts = [getattr(t, name) if index is None else getattr(t, name)[index]
                 for t, index in sources]
        value = parts[0] if len(parts) == 1 else np.concatenate(parts)
        setattr(self, name, value)
        return value

    def take(self, docs: Any) -> Tokens:
        """The tokens of documents `docs` (indices), in that order (fields are gathered when
        first read)."""
        import numpy as np

        lo, hi = self.offsets[docs], self.offsets[np.asarray(docs) + 1]
        counts = hi - lo
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        index = np.repeat(lo - offsets[:-1], counts) + np.arange(offsets[-1])
        return Tokens(offsets=offsets, _sources=[(self, index)])

    @property
    def counts(self) -> Any:
        import numpy as np

        return np.diff(self.offsets)

    @property
    def doc(self) -> Any:
        import numpy as np

        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def _shift_prev(a: Any, fill: Any) -> Any:
    import numpy as np

    out = np.empty_like(a)
    out[0] = fill
    out[1:] = a[:-1]
    return out


def _shift_next(a: Any, fill: Any) -> Any:
    import numpy as np

    out = np.empty_like(a)
    out[-1] = fill
    out[:-1] = a[1:]
    return out


PIECE_CHARS = 1 << 20  # featurize at most this many characters at once (bounded memory)


def featurize(texts: list[str], rules: bool = True) -> Tokens:
    """Tokenize `texts` (Python strings) and return their token features. With `rules=False`
    tokens are the whitespace-separated chunks (used for spaCy's tokens, joined by spaces);
    with `rules=True` the fast spaCy-like rules apply (see the module doc). Works on at most
    PIECE_CHARS characters at a time: long documents are cut at whitespace (tokens never
    cross it) and their pieces' tokens joined again."""
    import numpy as np

    if sum(map(len, texts)) <= PIECE_CHARS:
        return _featurize(texts, rules)
    pieces: list[str] = []
    owner: list[int] = []
    piece_start: list[int] = []
    for d, text in enumerate(texts):
        start = 0
        while len(text) - start > PIECE_CHARS:
            cut = start + PIECE_CHARS
            space = max(text.rfind(" ", start + 1, cut), text.rfind("\n", start + 1, cut))
            cut = space if space > start else cut
            pieces.append(text[start:cut])
            owner.append(d)
            piece_start.append(start)
            start = cut
        pieces.append(text[start:])
        owner.append(d)
        piece_start.append(start)
    parts, group, size = [], [], 0
    for piece in pieces:
        if group and size + len(piece) > PIECE_CHARS:
            parts.append(_featurize(group, rules))
            group, size = [], 0
        group.append(piece)
        size += len(piece)
    parts.append(_featurize(group, rules))
    counts = np.concatenate([p.counts for p in parts])
    per_doc = np.bincount(np.array(owner), weights=counts, minlength=len(texts)).astype(np.int64)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=offsets[1:])
    out = Tokens(offsets=offsets, **{k: np.concatenate([getattr(p, k) for p in parts])
                                     for k in FIELDS})
    out.start += np.repeat(np.array(piece_start, dtype=np.int64), counts)
    return out


def _featurize(texts: list[str], rules: bool) -> Tokens:
    import numpy as np

    from . import kernels

    big = "\n".join(texts) + "\n"
    cp = np.frombuffer(big.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = len(cp)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    doc_start = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=doc_start[1:])
    f = _flags(cp)
    if rules:
        fast = _featurize_in_c(big, cp, f, doc_start)
        if fast is not None:
            return fast
    space = (f & SPACE) != 0
    ns = ~space
    prev_space = _shift_prev(space, True)
    next_space = _shift_next(space, True)
    cend = np.flatnonzero(ns & next_space)  # chunks' last characters
    if not rules:  # tokens are the chunks
        tstart = np.flatnonzero(ns & prev_space)
        tend = cend + 1
    else:
        tstart = np.flatnonzero(_rule_starts(big, cp, f, ns, prev_space, cend, n))
        # a token ends where the next one starts, or where its chunk ends (every chunk
        # starts a token)
        tend = np.empty_like(tstart)
        tend[:-1] = tstart[1:]
        last = np.ones(len(tstart), dtype=bool)
        last[:-1] = prev_space[tstart[1:]]
        tend[last] = cend + 1
    length = tend - tstart
    h = kernels.token_hashes(cp, tstart, tend)
    if h is None:  # the numpy twin: prefix sums of cp * R**i, divided by R**start
        pw, inv = _powers(n + 1)
        with np.errstate(over="ignore"):
            acc = np.empty(n + 1, dtype=np.uint64)
            acc[0] = 0
            np.multiply(cp, pw[:n], out=acc[1:], dtype=np.uint64)
            np.cumsum(acc[1:], out=acc[1:])
            h = (np.take(acc, tend) - np.take(acc, tstart)) * np.take(inv, tstart)
            h ^= length.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    if rules:  # before the other fields: they are computed once, for the final tokens
        tstart, tend, h = _split_specials(tstart, tend, h, f)
        length = tend - tstart
    tokens_before = np.searchsorted(tstart, doc_start)
    # three flags per token from one OR over its characters' bits: all three are there when
    # the first character has them all (most words); only the other tokens of two or more
    # characters look further
    table = _bits_table()
    first = f[tstart]
    bits = kernels.token_bits(f, table, tstart, length)
    rest = np.zeros(0, np.int64)
    if bits is None:
        bits = np.take(table, first)
        rest = np.flatnonzero((bits != 7) & (length > 1))
    if len(rest):
        sizes = length[rest]
        bounds = np.zeros(len(rest) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        chars = np.repeat(tstart[rest] - bounds[:-1], sizes) + np.arange(bounds[-1])
        bits[rest] = np.bitwise_or.reduceat(np.take(table, f[chars]), bounds[:-1])
    alpha = (bits & 1) != 0
    symbol = (bits & 2) == 0
    punct = (bits & 4) == 0
    sent_end = (length == 1) & ((first & SENT_END) != 0)
    start = tstart - np.repeat(doc_start[:-1], np.diff(tokens_before))
    return Tokens(offsets=tokens_before, start=start, length=length, hash=h, alpha=alpha,
                  symbol=symbol, punct=punct, sent_end=sent_end)


def _specials() -> dict:
    """The words split by exception: their sorted hashes, a bucket of their top 16 bits, and
    per hash its pieces' hashes and lengths (`table`); `c`: the same for the C pass (bucket,
    sorted distinct hashes, piece offsets, piece lengths)."""
    import numpy as np

    if not _SPECIALS:
        words = [w.split(":")[0] for w in _SPECIAL_SPLITS]
        pieces = []
        for entry in _SPECIAL_SPLITS:
            word, cuts = entry.split(":")
            bounds = [0, *map(int, cuts.split(",")), len(word)]
            pieces.append([word[a:b] for a, b in zip(bounds, bounds[1:])])
        whole = hash_words(words)
        parts = [hash_words(p) for p in pieces]
        bucket = np.zeros(1 << 16, dtype=bool)  # a first, cheap test on the hash's top bits
        bucket[(whole >> np.uint64(48)).astype(np.int64)] = True
        _SPECIALS.update(hashes=np.sort(whole), bucket=bucket, table={
            int(w): (ph, np.array([len(x) for x in p])) for w, ph, p in zip(whole, parts,
                                                                             pieces)})
        keys = sorted(_SPECIALS["table"])
        lengths = [_SPECIALS["table"][k][1] for k in keys]
        piece_off = np.zeros(len(keys) + 1, np.int64)
        np.cumsum([len(x) for x in lengths], out=piece_off[1:])
        _SPECIALS["c"] = (bucket.view(np.uint8), np.array(keys, np.uint64), piece_off,
                          np.concatenate(lengths).astype(np.int64))
    return _SPECIALS


def _featurize_in_c(big: str, cp: Any, f: Any, doc_start: Any) -> Tokens | None:
    """What the rest of _featurize computes (with rules), with the kernels: the rules' start
    mask in C, then the tokens' ends, hashes, special splits and flags in one C pass; None
    without kernels."""
    import numpy as np

    from . import kernels

    found = kernels.rule_starts(cp, f, _rule_words())
    if found is None:
        return None
    start, units, cannot = found
    _rare_rules(big, start, np.zeros((0, 3), np.int64), units, cannot)
    fields = kernels.token_pass(cp, f, start, doc_start, _bits_table(), SENT_END,
                                _specials()["c"])
    return Tokens(**fields)


def _split_specials(tstart: Any, tend: Any, h: Any, f: Any) -> tuple[Any, Any, Any]:
    """Split the words spaCy splits by exception ("dont" -> "do" "nt", "gonna" -> "gon"
    "na"), found by their hashes `h`: the tokens' (start, end, hash) with each such word
    replaced by its pieces. `f`: the characters' class flags."""
    import numpy as np

    _specials()
    known = _SPECIALS["hashes"]
    maybe = np.flatnonzero(np.take(_SPECIALS["bucket"], (h >> np.uint64(48)).view(np.int64)))
    at = np.minimum(np.searchsorted(known, h[maybe]), len(known) - 1)
    # (a special word starts with a letter)
    hit = maybe[(known[at] == h[maybe]) & ((f[tstart[maybe]] & ALPHA) != 0)]
    if len(hit) == 0:
        return tstart, tend, h
    table = _SPECIALS["table"]
    pieces = [table[x] for x in h[hit].tolist()]
    reps = np.ones(len(h), dtype=np.int64)
    reps[hit] = [len(ph) for ph, _ in pieces]
    before = np.zeros(len(reps) + 1, dtype=np.int64)
    np.cumsum(reps, out=before[1:])
    # each split word once per piece
    ts, te, hh = np.repeat(tstart, reps), np.repeat(tend, reps), np.repeat(h, reps)
    # the pieces of all split words at once: piece p of word i goes to before[i] + p
    ks = reps[hit]
    lengths = np.concatenate([lengths for _, lengths in pieces])
    first = np.cumsum(ks) - ks  # each word's first piece among all pieces
    within = np.arange(len(lengths)) - np.repeat(first, ks)
    at = np.repeat(before[hit], ks) + within
    ends = np.cumsum(lengths)
    cuts = np.repeat(tstart[hit] - (ends[first] - lengths[first]), ks) + ends
    te[at] = cuts
    hh[at] = np.concatenate([hashes for hashes, _ in pieces])
    later = np.flatnonzero(within > 0)
    ts[at[later]] = cuts[later - 1]
    return ts, te, hh


def _rule_starts(big: str, cp: Any, f: Any, ns: Any, prev_space: Any, cend: Any,
                 n: int) -> Any:
    """Token starts under the fast spaCy-like rules (see the module doc), as a boolean mask
    (`cend`: the chunks' last characters). Works on chunk boundaries and on the few
    characters that are not letters or digits, not on every character."""
    import numpy as np

    from . import kernels

    fast = kernels.rule_starts(cp, f, _rule_words())
    if fast is not None:  # the compiled twin of what follows (kernels.py)
        start, units, cannot = fast
        _rare_rules(big, start, np.zeros((0, 3), np.int64), units, cannot)
        return start
    cstart = np.flatnonzero(ns & prev_space)
    start = np.zeros(n, dtype=bool)
    start[cstart] = True
    q = np.flatnonzero((f & (OTHER | DIGIT)) != 0)
    fq = f[q]
    p = q[(fq & OTHER) != 0]  # punctuation, symbols: where rules apply
    digits = q[(fq & DIGIT) != 0]  # (and where units may follow a number)
    # 5|km: a unit ending a chunk splits off its number (units start with a letter: try the
    # regex only where a digit is followed by a letter); "cannot" starting a chunk
    units = digits[(f[digits + 1] & ALPHA) != 0] + 1  # a digit is never last: a newline is
    cannot = cstart[(np.take(cp, cstart) | 32) == 99]  # 'c' or 'C'
    cannot = cannot[cannot + 6 < n]
    for k, ch in enumerate("annot", 1):
        cannot = cannot[cp[cannot + k] == ord(ch)]
    if len(p) == 0:
        _rare_rules(big, start, np.zeros((0, 3), np.int64), units, cannot)
        return start
    chunk = np.searchsorted(cstart, p, side="right") - 1
    s, e = cstart[chunk], cend[chunk]
    c0, fc = cp[p], f[p]
    # (p + 1 < n: the text ends with a newline, a space, never in p)
    cprev, cnext = cp[p - 1], cp[p + 1]
    fprev, fnext, fprev2 = f[p - 1], f[p + 1], f[p - 2]
    dot = c0 == 46
    dotrun = dot & ((cprev == 46) | (cnext == 46))
    plus, pct = c0 == 43, c0 == 37
    prefix = ((fc & PREFIX) != 0) | dotrun | (plus & ((fnext & DIGIT) == 0))
    dot_suffix = dot & (((fprev & (LOWER | DIGIT | PUNCT_AFFIX)) != 0)
                        | (((fprev & UPPER) != 0) & ((fprev2 & UPPER) != 0)))
    suffix = ((fc & SUFFIX) != 0) | dotrun | dot_suffix | ((plus | pct) & ((fprev & DIGIT) != 0))
    # leading: every character from the chunk start to here is a prefix (all are in p)
    cum_pre = np.concatenate([[0], np.cumsum(prefix)])
    j = np.arange(len(p))
    # the positions in p of each chunk's first and (past its) last character in p
    run = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
    run_len = np.diff(np.r_[run, len(p)])
    first = np.repeat(run, run_len)
    leading = (cum_pre[j + 1] - cum_pre[first]) == (p - s + 1)
    cum_suf = np.concatenate([[0], np.cumsum(suffix)])
    last = np.repeat(np.r_[run[1:], len(p)], run_len)
    trailing = ~leading & ((cum_suf[last] - cum_suf[j]) == (e - p + 1))
    core = ~leading & ~trailing
    # neighbours: plain characters are core; others look up their own status
    prev_in_p = np.zeros(len(p), dtype=bool)
    prev_in_p[1:] = p[1:] - 1 == p[:-1]
    prev_core = (p > s) & ~prev_in_p
    prev_core[1:] |= prev_in_p[1:] & core[:-1]
    prev_core &= p > s
    next_in_p = np.zeros(len(p), dtype=bool)
    next_in_p[:-1] = p[:-1] + 1 == p[1:]
    next_core = (p < e) & ~next_in_p
    next_core[:-1] |= next_in_p[:-1] & core[1:]
    next_core &= p < e
    url = _url_chunks(cp, p, chunk, len(cstart))[chunk]
    alnum_p = (fprev & (ALPHA | DIGIT)) != 0
    alpha_n = (fnext & ALPHA) != 0
    inner = core & prev_core & next_core & ~url
    infix = inner & (
        (((fc & INFIX_SEP) != 0) & alnum_p & alpha_n)
        | ((c0 == 44) & ((fprev & ALPHA) != 0) & alpha_n)
        | (dot & ((fprev & (LOWER | QUOTE)) != 0) & ((fnext & (UPPER | QUOTE)) != 0))
        | (((fc & ARITH) != 0) & ((fprev & DIGIT) != 0)
           & (((fnext & DIGIT) != 0) | (cnext == 45))))
    infix |= core & ~url & (dotrun | (c0 == 0x2026))
    solo = leading | trailing | infix
    # abbreviations keep their period: "Mr." "e.g." "a." (never the first dot of a run: spaCy
    # splits a trailing ".." or "..." off whole, so "a..." is "a" + "...")
    short = (p - s <= 4) | ((((f[s] | f[s + 1]) & UPPER) != 0) & (p - s <= 9))
    maybe = np.flatnonzero(dot & trailing & prev_core & short & ~dotrun)
    if len(maybe):  # first test: (first character, character before the period, length)
        ms = s[maybe]
        key = (cp[ms].astype(np.int64) << 29) | (cprev[maybe].astype(np.int64) << 8) \
            | np.minimum(p[maybe] - ms + 1, 255)
        keys = _abbreviation_keys()
        known = keys[np.minimum(np.searchsorted(keys, key), len(keys) - 1)] == key
        maybe = maybe[known | ((f[ms] & PREFIX) != 0)]
    for k in maybe.tolist():
        i = int(p[k])
        if big[int(s[k]):i + 1].lstrip(_PREFIX_CHARS) in _ABBREVIATIONS:
            solo[k] = False
    ps = p[solo]
    start[ps] = True
    after = ps + 1
    start[after[after <= e[solo]]] = True
    # spaCy's special cases made of two affixes: "):" ":)" ":(" ";)" "''"
    pair = solo & prev_in_p & (((c0 == 58) & (cprev == 41)) | ((cprev == 58) & (c0 == 41))
                               | ((cprev == 58) & (c0 == 40)) | ((cprev == 59) & (c0 == 41))
                               | ((cprev == 39) & (c0 == 39)))
    pair[1:] &= solo[:-1]
    pair[0] = False
    pair[1:] &= ~pair[:-1]  # one merge per pair
    start[p[pair]] = False
    cont = solo & dot & prev_in_p & (cprev == 46)
    cont[1:] &= solo[:-1]
    cont[0] = False
    start[p[cont]] = False
    # clitics: do|n't, John|'s, I|'m
    apos = core & prev_core & ((c0 == 39) | (c0 == 0x2019))
    s_end = apos & ((cnext == 115) | (cnext == 83)) & (p + 1 <= e)
    if s_end.any():  # the common case of 's ending a chunk, or before one final suffix
        k = np.flatnonzero(s_end)
        last = e[k]
        cl = cp[last]
        s_end[k] = (p[k] + 1 == last) | ((p[k] + 2 == last) & (
            ((f[last] & SUFFIX) != 0) | (cl == 46) | (cl == 37) | (cl == 43)))
        start[p[s_end]] = True
    rest = np.flatnonzero(apos & ~s_end)
    _rare_rules(big, start, np.stack([p[rest], s[rest], e[rest]], axis=1), units, cannot)
    return start


def _rare_rules(big: str, start: Any, rest: Any, units: Any, cannot: Any) -> None:
    """The rules that read words, at their few candidates: clitics other than a final 's
    (`rest`: apostrophe, chunk start, chunk end), units after a number (`units`: the
    letter after a digit) and "cannot" not followed by a letter or digit (`cannot`: chunk
    starts)."""
    strip_tail = _SUFFIX_CHARS + ".%+"
    for i, lo, hi in rest.tolist():  # clitics: do|n't, I|'m, we|'ll
        tail = big[i:hi + 1].rstrip(strip_tail)
        if tail in ("'s", "'S", "’s", "’S"):
            start[i] = True
        elif tail in ("'t", "’t"):
            head = big[lo:i].lstrip(_PREFIX_CHARS)
            if head.endswith("n") and head[:-1] in _NT_VERBS:
                start[i - 1] = True
        elif tail in _CLITICS and big[lo:i].lstrip(_PREFIX_CHARS) in _PRONOUNS:
            start[i] = True
    for i in units.tolist():  # 5|km
        if _UNIT.match(big, i):
            start[i] = True
    for i in cannot.tolist():  # can|not
        if not big[i + 6].isalnum():
            start[i + 3] = True


def _rule_words() -> tuple[Any, Any, Any]:
    """The word lists of the rules (abbreviations, verbs before n't, pronouns, clitics) for
    the compiled rules: their UTF-32 code points one after the other, each word's offset,
    and each list's first word (the order of kernels.c's enum)."""
    import numpy as np

    if not _RULE_WORDS:
        lists = [sorted(_ABBREVIATIONS), sorted(_NT_VERBS), sorted(_PRONOUNS), sorted(_CLITICS)]
        words = [w for ws in lists for w in ws]
        offsets = np.zeros(len(words) + 1, np.int64)
        np.cumsum([len(w) for w in words], out=offsets[1:])
        firsts = np.zeros(len(lists) + 1, np.int64)
        np.cumsum([len(ws) for ws in lists], out=firsts[1:])
        codes = np.frombuffer("".join(words).encode("utf-32-le"), np.uint32)
        _RULE_WORDS.append((codes, offsets, firsts))
    return _RULE_WORDS[0]


_RULE_WORDS: list = []


def _abbreviation_keys() -> Any:
    import numpy as np

    if not _ABBREVIATION_KEYS:
        _ABBREVIATION_KEYS.append(np.array(sorted(
            (ord(w[0]) << 29) | (ord(w[-2]) << 8) | len(w) for w in _ABBREVIATIONS),
            dtype=np.int64))
    return _ABBREVIATION_KEYS[0]


_ABBREVIATION_KEYS: list = []


def _url_chunks(cp: Any, p: Any, chunk: Any, k: int) -> Any:
    """Which of the `k` chunks hold a URL (a scheme's '://' or 'www.'), from the code points
    `cp` at the positions `p` of punctuation (':' and '.' are) and their chunks."""
    import numpy as np

    n = len(cp)
    c = cp[p]
    colon = np.flatnonzero(c == 58)  # ':' then '//'
    colon = colon[(cp[(p[colon] + 1) % n] == 47) & (cp[(p[colon] + 2) % n] == 47)]
    dot = np.flatnonzero(c == 46)  # 'www' then '.' (no space between: the same chunk)
    # (wrapping: a batch of "." is two characters)
    before = [np.take(cp, p[dot] - k, mode="wrap") for k in (1, 2, 3)]
    dot = dot[(before[0] == 119) & (before[1] == 119) & (before[2] == 119)]
    out = np.zeros(k, dtype=bool)
    out[chunk[colon]] = True
    out[chunk[dot]] = True
    return out


def sentence_counts(tokens: Tokens) -> Any:
    """Sentences per document as spaCy's sentencizer counts them: a sentence starts at a token
    that is neither punctuation nor an end mark when an end mark came after the previous such
    token (or after the document start). A document counts at least one sentence."""
    import numpy as np

    n_docs = len(tokens.offsets) - 1
    counts = np.ones(n_docs, dtype=np.int64)
    if len(tokens.length) == 0:
        return counts
    end = tokens.sent_end
    normal = ~(tokens.punct | end)
    seen = np.concatenate([[0], np.cumsum(end)])  # end marks before token i: seen[i]
    doc = tokens.doc
    idx = np.flatnonzero(normal)
    if len(idx):
        before = seen[idx]
        prev = np.empty_like(before)
        prev[1:] = seen[idx[:-1] + 1]
        prev[0] = 0
        first = np.ones(len(idx), dtype=bool)
        first[1:] = doc[idx[1:]] != doc[idx[:-1]]
        prev[first] = seen[tokens.offsets[doc[idx[first]]]]
        boundary = before > prev
        counts += np.bincount(doc[idx[boundary]], minlength=n_docs)
    return counts


class FastTokenizer:
    """Vectorized spaCy-like English tokenizer (see the module doc)."""

    name = "fast"

    def features(self, texts: list[str]) -> Tokens:
        return featurize(texts, rules=True)

    def sentence_counts(self, lines: list[str]) -> Any:
        return sentence_counts(featurize(lines, rules=True))


class SpacyTokenizer:
    """spaCy's blank English pipeline and its sentencizer, loaded once per process: what
    datatrove uses. Needs `pip install 'datamill[spacy]'`. spaCy's tokenizer caches the
    chunks it has seen (10-50x faster than without, as inside a memory zone); the cache and
    the string store grow with new words, so the pipeline is reloaded every RELOAD_AFTER
    documents to bound memory."""

    name = "spacy"
    RELOAD_AFTER = 100_000
    _nlp: Any = None
    _used = 0

    @classmethod
    def nlp(cls, docs: int = 0) -> Any:
        cls._used += docs
        if cls._nlp is not None and cls._used > cls.RELOAD_AFTER:
            cls._nlp, cls._used = None, docs
        if cls._nlp is None:
            try:
                import spacy
            except ImportError:
                raise ImportError("tokenizer='spacy' needs spaCy: pip install 'datamill[spacy]'") \
                    from None
            nlp = spacy.blank("en")
            nlp.add_pipe("sentencizer")
            cls._nlp = nlp
        return cls._nlp

    def _doc(self, text: str) -> Any:
        nlp = self.nlp()
        nlp.max_length = len(text) + 10
        try:
            return nlp(text)
        except Exception:
            if "IS_ALPHA" in text:  # a string that breaks spaCy's tokenizer
                return nlp(text.replace("IS_ALPHA", ""))
            raise

    def words(self, text: str) -> list[str]:
        return [s for s in (t.text.strip() for t in self._doc(text)) if s]

    def features(self, texts: list[str]) -> Tokens:
        self.nlp(len(texts))
        return featurize([" ".join(self.words(t)) for t in texts], rules=False)

    def sentence_counts(self, lines: list[str]) -> Any:
        import numpy as np

        self.nlp(len(lines) // 10)
        return np.array([max(1, sum(1 for _ in self._doc(line).sents)) for line in lines],
                        dtype=np.int64)


_INSTANCES: dict[str, Any] = {}


def get_tokenizer(name: str) -> Any:
    """The tokenizer called `name` ("fast" or "spacy"), one instance per process."""
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = FastTokenizer() if name == "fast" else SpacyTokenizer()
    return _INSTANCES[name]


_CACHE: dict = {}  # tokenizer -> _TokenCache of the current batch's slices
# Tokenized text kept per tokenizer: a little more than one batch of the stats ops
# (StatsOperation.batch_bytes, 1 MiB), so that the stats ops that follow each other on a batch
# share its tokens; more would only hold memory (64M characters held ~400 MB per worker).
CACHE_CHARS = 1_250_000


class _TokenCache:
    """Tokens of the slices tokenized last (oldest dropped first past CACHE_CHARS), and one
    index of their documents: text -> (slice number, position in it)."""

    def __init__(self) -> None:
        self.slices: dict[int, tuple] = {}  # number -> (texts, tokens, characters)
        self.where: dict[str, tuple[int, int]] = {}
        self.size = 0
        self.count = 0

    def add(self, texts: list[str], tokens: Tokens, size: int) -> None:
        while self.slices and self.size + size > CACHE_CHARS:
            number = next(iter(self.slices))
            old, _, old_size = self.slices.pop(number)
            self.size -= old_size
            where = self.where
            for t in old:  # (a later slice may hold the same text: keep that one)
                if where.get(t, (-1,))[0] == number:
                    del where[t]
        number = self.count
        self.count += 1
        self.slices[number] = (texts, tokens, size)
        self.size += size
        self.where.update(zip(texts, zip([number] * len(texts), range(len(texts)))))

    def get(self, texts: list[str]) -> Tokens | None:
        import numpy as np

        if not self.slices:
            return None
        for old, tokens, _ in reversed(self.slices.values()):
            if old is texts or old == texts:
                return tokens
        get = self.where.get
        found = [get(t) for t in texts]
        if not found or None in found:
            return None
        numbers = np.array([f[0] for f in found], dtype=np.int64)
        index = np.array([f[1] for f in found], dtype=np.int64)
        cuts = np.flatnonzero(numbers[1:] != numbers[:-1]) + 1
        bounds = [0, *cuts.tolist(), len(found)]
        # consecutive documents from one slice are taken together
        parts = [self.slices[int(numbers[lo])][1].take(index[lo:hi])
                 for lo, hi in zip(bounds, bounds[1:])]
        return parts[0] if len(parts) == 1 else concat_tokens(parts)


def features_of(texts: list[str], tokenizer: str) -> Tokens:
    """Token features of `texts`. Results of the current batch are kept (up to CACHE_CHARS
    of text): a later step of the same pass that sees the same documents, or a subset of them
    after a filter, reuses them instead of tokenizing again."""
    result = cached_features(texts, tokenizer)
    if result is not None:
        return result
    result = get_tokenizer(tokenizer).features(texts)
    size = sum(map(len, texts))
    if size <= CACHE_CHARS:
        cache = _CACHE.get(tokenizer)
        if cache is None:
            cache = _CACHE[tokenizer] = _TokenCache()
        cache.add(texts, result, size)
    return result


def cached_features(texts: list[str], tokenizer: str) -> Tokens | None:
    """The token features of `texts` when an earlier step of this batch computed them all
    (see `features_of`), else None."""
    cache = _CACHE.get(tokenizer)
    return None if cache is None else cache.get(texts)


def concat_tokens(parts: list[Tokens]) -> Tokens:
    """The tokens of `parts` one after the other (fields are joined when first read)."""
    import numpy as np

    counts = np.concatenate([p.counts for p in parts])
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Tokens(offsets=offsets, _sources=[(p, None) for p in parts])


def hash_words(words: list[str]) -> Any:
    """The token hash of each word (as `Tokens.hash` computes it)."""
    return featurize([" ".join(words)], rules=False).hash
