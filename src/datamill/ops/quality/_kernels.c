/* Compiled kernels of the quality statistics and of language identification, loaded with
 * ctypes (kernels.py). Each one computes exactly what its Python/numpy twin computes; tests
 * compare the two.
 * Plain C99, no Python headers: the shared library only exchanges arrays. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MULT 0x100000001B3ULL     /* k-gram hash: g_k(i) = g_{k-1}(i) * MULT + h(i+k-1) */
#define SPREAD 0x9E3779B97F4A7C15ULL

/* An open-addressing table of k-gram hashes: per slot the position of the k-gram's first
 * occurrence (-1: empty) and its count. */
typedef struct {
    int64_t *first;
    int64_t *count;
    uint64_t mask;
    int shift;
} table_t;

static void table_free(table_t *t) {
    free(t->first);
    free(t->count);
}

static int table_reserve(table_t *t, int64_t entries, int64_t *capacity) {
    int64_t size = 16;
    int bits = 4;
    while (size < 2 * entries) {
        size <<= 1;
        bits++;
    }
    if (size > *capacity) {
        table_free(t);
        t->first = malloc(sizeof(int64_t) * size);
        t->count = malloc(sizeof(int64_t) * size);
        if (!t->first || !t->count) return -1;
        *capacity = size;
    }
    memset(t->first, 0xff, sizeof(int64_t) * size);
    t->mask = (uint64_t)size - 1;
    t->shift = 64 - bits;
    return 0;
}

/* The slot of k-gram hash `key` (whose k-grams' hashes are in `g`): its own, or the empty
 * one where it goes. */
static uint64_t table_slot(const table_t *t, const uint64_t *g, uint64_t key) {
    uint64_t s = (key * SPREAD) >> t->shift;
    while (t->first[s] >= 0 && g[t->first[s]] != key) s = (s + 1) & t->mask;
    return s;
}

/* Per document, for each n in top_n: the characters of its most frequent n-gram (tokens
 * joined by spaces) times its count, ties to the first seen; for each n in dup_n: the
 * characters (tokens joined without spaces) of the n-grams that repeat an earlier visited
 * one, scanning left to right and skipping n tokens past each repeat.
 * Outputs are row-major: top_out[j * n_docs + d], dup_out[j * n_docs + d]. */
int ngram_repetition(const uint64_t *hash, const int64_t *length, const int64_t *offsets,
                     int64_t n_docs, const int64_t *top_n, int64_t n_top,
                     const int64_t *dup_n, int64_t n_dup, double *top_out, double *dup_out) {
    int64_t max_n = 1, longest = 0, capacity = 0;
    for (int64_t j = 0; j < n_top; j++) if (top_n[j] > max_n) max_n = top_n[j];
    for (int64_t j = 0; j < n_dup; j++) if (dup_n[j] > max_n) max_n = dup_n[j];
    for (int64_t d = 0; d < n_docs; d++)
        if (offsets[d + 1] - offsets[d] > longest) longest = offsets[d + 1] - offsets[d];
    memset(top_out, 0, sizeof(double) * n_top * n_docs);
    memset(dup_out, 0, sizeof(double) * n_dup * n_docs);
    if (max_n < 2 || longest < 2) return 0;
    uint64_t *g = malloc(sizeof(uint64_t) * longest);
    int64_t *cum = malloc(sizeof(int64_t) * (longest + 1));
    table_t t = {NULL, NULL, 0, 0};
    int status = -1;
    if (!g || !cum) goto done;
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t lo = offsets[d], m = offsets[d + 1] - lo;
        if (m < 2) continue;
        cum[0] = 0;
        for (int64_t i = 0; i < m; i++) {
            g[i] = hash[lo + i];
            cum[i + 1] = cum[i] + length[lo + i];
        }
        for (int64_t k = 2; k <= max_n && k <= m; k++) {
            int64_t grams = m - k + 1;
            for (int64_t i = 0; i < grams; i++) g[i] = g[i] * MULT + hash[lo + i + k - 1];
            for (int64_t j = 0; j < n_top; j++) {
                if (top_n[j] != k) continue;
                if (table_reserve(&t, grams, &capacity)) goto done;
                int64_t best = 0, best_first = 0;
                for (int64_t i = 0; i < grams; i++) {
                    uint64_t s = table_slot(&t, g, g[i]);
                    if (t.first[s] < 0) {
                        t.first[s] = i;
                        t.count[s] = 0;
                    }
                    int64_t c = ++t.count[s], f = t.first[s];
                    if (c > best || (c == best && f < best_first)) {
                        best = c;
                        best_first = f;
                    }
                }
                top_out[j * n_docs + d] =
                    (double)best * (double)(cum[best_first + k] - cum[best_first] + k - 1);
            }
            for (int64_t j = 0; j < n_dup; j++) {
                if (dup_n[j] != k) continue;
                if (table_reserve(&t, grams, &capacity)) goto done;
                int64_t repeated = 0;
                for (int64_t i = 0; i < grams;) {
                    uint64_t s = table_slot(&t, g, g[i]);
                    if (t.first[s] >= 0) {
                        repeated += cum[i + k] - cum[i];
                        i += k;
                    } else {
                        t.first[s] = i;
                        i += 1;
                    }
                }
                dup_out[j * n_docs + d] = (double)repeated;
            }
        }
    }
    status = 0;
done:  /* (also where a failed allocation jumps, status -1) */
    free(g);
    free(cum);
    table_free(&t);
    return status;
}

/* Per text, of its `count[t]` parts (bytes start[i]:end[i] of the UTF-8 `data`, the parts of
 * all texts one after the other): how many equal an earlier part of the same text
 * (dup[t]), and their characters (dup_chars[t]: bytes that do not continue a UTF-8
 * sequence). */
int part_duplicates(const uint8_t *data, const int64_t *start, const int64_t *end,
                    const int64_t *count, int64_t n_texts, int64_t *dup, int64_t *dup_chars) {
    int64_t most = 0, capacity = 0, at = 0;
    for (int64_t t = 0; t < n_texts; t++) if (count[t] > most) most = count[t];
    uint64_t *h = malloc(sizeof(uint64_t) * (most > 0 ? most : 1));
    table_t tab = {NULL, NULL, 0, 0};
    int status = -1;
    if (!h) return -1;
    for (int64_t t = 0; t < n_texts; t++) {
        int64_t parts = count[t], lo = at, repeats = 0, chars = 0;
        at += parts;
        dup[t] = dup_chars[t] = 0;
        if (parts < 2) continue;
        if (table_reserve(&tab, parts, &capacity)) goto done;
        for (int64_t i = 0; i < parts; i++) {
            const uint8_t *p = data + start[lo + i];
            int64_t size = end[lo + i] - start[lo + i];
            uint64_t x = 0xcbf29ce484222325ULL ^ (uint64_t)size;  /* FNV-1a over the bytes */
            for (int64_t b = 0; b < size; b++) x = (x ^ p[b]) * 0x100000001B3ULL;
            h[i] = x;
            uint64_t s = (x * SPREAD) >> tab.shift;
            int found = 0;
            while (tab.first[s] >= 0) {
                int64_t j = tab.first[s];
                if (h[j] == x && end[lo + j] - start[lo + j] == size &&
                    memcmp(data + start[lo + j], p, (size_t)size) == 0) {
                    found = 1;
                    break;
                }
                s = (s + 1) & tab.mask;
            }
            if (found) {
                repeats++;
                for (int64_t b = 0; b < size; b++) chars += (p[b] & 0xC0) != 0x80;
            } else {
                tab.first[s] = i;
            }
        }
        dup[t] = repeats;
        dup_chars[t] = chars;
    }
    status = 0;
done:  /* (also where a failed allocation jumps, status -1) */
    free(h);
    table_free(&tab);
    return status;
}

#define HASH_R 0x9E3779B97F4A7C15ULL     /* tokenize._R */
#define HASH_LEN 0xBF58476D1CE4E5B9ULL   /* mixes a token's length into its hash */

/* Each token's hash (tokenize._featurize): the sum over its characters of code point times
 * R^(position in the token), modulo 2^64, XOR its length times HASH_LEN. */
void token_hashes(const uint32_t *cp, const int64_t *tstart, const int64_t *tend,
                  int64_t n_tokens, uint64_t *out) {
    for (int64_t t = 0; t < n_tokens; t++) {
        uint64_t h = 0, pw = 1;
        for (int64_t i = tstart[t]; i < tend[t]; i++) {
            h += (uint64_t)cp[i] * pw;
            pw *= HASH_R;
        }
        out[t] = h ^ ((uint64_t)(tend[t] - tstart[t]) * HASH_LEN);
    }
}

/* Each token's bits: the OR over its characters of bits[flags] (tokenize._bits_table). */
void token_bits(const uint16_t *flags, const uint8_t *bits, const int64_t *tstart,
                const int64_t *length, int64_t n_tokens, uint8_t *out) {
    for (int64_t t = 0; t < n_tokens; t++) {
        uint8_t b = 0;
        const uint16_t *f = flags + tstart[t];
        for (int64_t i = 0; i < length[t] && b != 7; i++) b |= bits[f[i]];
        out[t] = b;
    }
}

/* --- the fast tokenizer's rules (tokenize._rule_starts) ---------------------------------- */
/* Character class flags: tokenize.py's SPACE ... OTHER (the same bits). */
enum {
    F_SPACE = 1 << 0, F_ALPHA = 1 << 1, F_LOWER = 1 << 2, F_UPPER = 1 << 3, F_DIGIT = 1 << 4,
    F_PREFIX = 1 << 5, F_SUFFIX = 1 << 6, F_PUNCT_P = 1 << 8, F_QUOTE = 1 << 10,
    F_INFIX_SEP = 1 << 11, F_ARITH = 1 << 12, F_PUNCT_AFFIX = 1 << 13, F_OTHER = 1 << 14
};

/* Per candidate character of a chunk (one with F_OTHER). */
enum { LEAD = 1, TRAIL = 2, CORE = 4, PREV_CORE = 8, NEXT_CORE = 16, SOLO = 32, PAIR = 64 };

/* Index i modulo n, as numpy's mode="wrap" (tokenize.py reads before a text's start that
 * way; a batch of texts ends with a newline, so what it reads there is never a letter). */
static inline int64_t wrap(int64_t i, int64_t n) {
    if (i >= 0 && i < n) return i;  /* (nearly always: no division) */
    return ((i % n) + n) % n;
}

/* Is cp[lo..hi] (inclusive) one of the words `from` to `to` (code points `words`, word w at
 * words[off[w]:off[w+1]])? */
static int is_word(const uint32_t *cp, int64_t lo, int64_t hi, const uint32_t *words,
                   const int64_t *off, int64_t from, int64_t to) {
    int64_t len = hi - lo + 1;
    if (len < 0) return 0;
    for (int64_t w = from; w < to; w++) {
        if (off[w + 1] - off[w] != len) continue;
        if (memcmp(words + off[w], cp + lo, sizeof(uint32_t) * (size_t)len) == 0) return 1;
    }
    return 0;
}

/* Word lists for the rules: tokenize.py's _ABBREVIATIONS, _NT_VERBS, _PRONOUNS, _CLITICS,
 * one after the other; lists[k]:lists[k+1] are list k's words. */
enum { ABBREVIATIONS, NT_VERBS, PRONOUNS, CLITICS };

/* The clitic rules at an apostrophe p of chunk s..e that is not a final 's (as
 * tokenize._rare_rules did them): do|n't, I|'m, and 's before several suffixes. */
static void clitic(const uint32_t *cp, const uint16_t *f, int64_t p, int64_t s, int64_t e,
                   const uint32_t *words, const int64_t *off, const int64_t *lists,
                   uint8_t *start) {
    int64_t hi = e;  /* the tail: p..e without its final suffixes */
    while (hi >= p && ((f[hi] & F_SUFFIX) || cp[hi] == '.' || cp[hi] == '%' || cp[hi] == '+'))
        hi--;
    int64_t len = hi - p + 1, lo = s;
    while (lo < p && (f[lo] & F_PREFIX)) lo++;  /* the head: s..p-1 without its prefixes */
    if (len == 2 && (cp[p + 1] == 's' || cp[p + 1] == 'S')) {
        start[p] = 1;
    } else if (len == 2 && cp[p + 1] == 't') {
        if (p - 1 >= lo && cp[p - 1] == 'n' &&
            is_word(cp, lo, p - 2, words, off, lists[NT_VERBS], lists[NT_VERBS + 1]))
            start[p - 1] = 1;
    } else if (is_word(cp, p, hi, words, off, lists[CLITICS], lists[CLITICS + 1]) &&
               is_word(cp, lo, p - 1, words, off, lists[PRONOUNS], lists[PRONOUNS + 1])) {
        start[p] = 1;
    }
}

/* Token starts of the fast rules, as tokenize._rule_starts marks them, except two rare
 * rules left to Python, whose candidates are returned: a digit followed by a letter
 * (`units`: the letter's position) and chunks that start with "cannot" (`cannot`: the chunk
 * start).
 * `start` (n bytes) must be zeroed; the candidate arrays hold `cap` entries each; their
 * counts are returned even past `cap` (then call again with more room). Returns 0, or -1
 * out of memory. */
#define PUT(array, count, value) do { if (*(count) < cap) (array)[*(count)] = (value); \
                                      (*(count))++; } while (0)
int rule_starts(const uint32_t *cp, const uint16_t *f, int64_t n, const uint32_t *words,
                const int64_t *off, const int64_t *lists, uint8_t *start, int64_t cap,
                int64_t *units, int64_t *n_units, int64_t *cannot, int64_t *n_cannot) {
    int64_t *P = malloc(sizeof(int64_t) * (n + 1));
    uint8_t *st = malloc(n + 1);
    if (!P || !st) {
        free(P);
        free(st);
        return -1;
    }
    *n_units = *n_cannot = 0;
    int64_t s = 0;
    while (s < n) {
        if (f[s] & F_SPACE) {
            s++;
            continue;
        }
        /* one pass over the chunk s..e: its end, its candidates for the rules (F_OTHER)
         * and for the rare rule of units (a digit, then a letter) */
        int64_t e = s, m = 0;
        uint16_t fe = f[s];
        if (fe & F_OTHER) P[m++] = s;
        while (e + 1 < n && !(f[e + 1] & F_SPACE)) {
            uint16_t fn = f[++e];
            if ((fe & F_DIGIT) && (fn & F_ALPHA)) PUT(units, n_units, e);
            if (fn & F_OTHER) P[m++] = e;
            fe = fn;
        }
        start[s] = 1;
        if ((cp[s] | 32) == 'c' && s + 6 < n && cp[s + 1] == 'a' && cp[s + 2] == 'n' &&
            cp[s + 3] == 'n' && cp[s + 4] == 'o' && cp[s + 5] == 't')
            PUT(cannot, n_cannot, s);
        if (m == 0) {
            s = e + 1;
            continue;
        }
        int url = 0;
        for (int64_t j = 0; j < m; j++) {
            int64_t p = P[j];
            if (cp[p] == ':' && cp[wrap(p + 1, n)] == '/' && cp[wrap(p + 2, n)] == '/') url = 1;
            if (cp[p] == '.' && cp[wrap(p - 1, n)] == 'w' && cp[wrap(p - 2, n)] == 'w' &&
                cp[wrap(p - 3, n)] == 'w') url = 1;
        }
        /* leading: every character from the chunk start to here is a prefix */
        for (int64_t j = 0; j < m; j++) {
            int64_t p = P[j];
            uint32_t c0 = cp[p], cprev = cp[wrap(p - 1, n)], cnext = cp[p + 1];
            uint16_t fc = f[p], fprev = f[wrap(p - 1, n)], fnext = f[p + 1];
            int dot = c0 == '.', dotrun = dot && (cprev == '.' || cnext == '.');
            int prefix = (fc & F_PREFIX) || dotrun || (c0 == '+' && !(fnext & F_DIGIT));
            (void)fprev;
            st[j] = (prefix && p == s + j && (j == 0 || (st[j - 1] & LEAD))) ? LEAD : 0;
        }
        for (int64_t j = m - 1; j >= 0; j--) {
            int64_t p = P[j];
            uint32_t c0 = cp[p], cprev = cp[wrap(p - 1, n)], cnext = cp[p + 1];
            uint16_t fc = f[p], fprev = f[wrap(p - 1, n)], fprev2 = f[wrap(p - 2, n)];
            int dot = c0 == '.', dotrun = dot && (cprev == '.' || cnext == '.');
            int dot_suffix = dot && ((fprev & (F_LOWER | F_DIGIT | F_PUNCT_AFFIX)) ||
                                     ((fprev & F_UPPER) && (fprev2 & F_UPPER)));
            int suffix = (fc & F_SUFFIX) || dotrun || dot_suffix ||
                         ((c0 == '+' || c0 == '%') && (fprev & F_DIGIT));
            int tail = suffix && p == e - (m - 1 - j) &&
                       (j == m - 1 || (st[j + 1] & (TRAIL | 128)));
            if (tail) st[j] |= 128;  /* (the run of suffixes reaches the chunk end) */
            if (tail && !(st[j] & LEAD)) st[j] |= TRAIL;
        }
        for (int64_t j = 0; j < m; j++) {
            st[j] &= (uint8_t)~128;
            if (!(st[j] & (LEAD | TRAIL))) st[j] |= CORE;
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t p = P[j];
            int prev_in = j > 0 && P[j - 1] == p - 1, next_in = j < m - 1 && P[j + 1] == p + 1;
            if (p > s && (!prev_in || (st[j - 1] & CORE))) st[j] |= PREV_CORE;
            if (p < e && (!next_in || (st[j + 1] & CORE))) st[j] |= NEXT_CORE;
        }
        for (int64_t j = 0; j < m; j++) {
            int64_t p = P[j];
            uint32_t c0 = cp[p], cprev = cp[wrap(p - 1, n)], cnext = cp[p + 1];
            uint16_t fc = f[p], fprev = f[wrap(p - 1, n)], fnext = f[p + 1];
            int dot = c0 == '.', dotrun = dot && (cprev == '.' || cnext == '.');
            int core = st[j] & CORE;
            int solo = st[j] & (LEAD | TRAIL);
            if (core && (st[j] & PREV_CORE) && (st[j] & NEXT_CORE) && !url) {
                int alnum_p = (fprev & (F_ALPHA | F_DIGIT)) != 0, alpha_n = (fnext & F_ALPHA) != 0;
                if (((fc & F_INFIX_SEP) && alnum_p && alpha_n) ||
                    (c0 == ',' && (fprev & F_ALPHA) && alpha_n) ||
                    (dot && (fprev & (F_LOWER | F_QUOTE)) && (fnext & (F_UPPER | F_QUOTE))) ||
                    ((fc & F_ARITH) && (fprev & F_DIGIT) && ((fnext & F_DIGIT) || cnext == '-')))
                    solo = 1;
            }
            if (core && !url && (dotrun || c0 == 0x2026)) solo = 1;
            /* abbreviations keep their period ("Mr." "e.g." "a."), never a run's first dot */
            int short_ = (p - s <= 4) || (((f[s] | f[s + 1]) & F_UPPER) && p - s <= 9);
            if (solo && dot && (st[j] & TRAIL) && (st[j] & PREV_CORE) && short_ && !dotrun) {
                int64_t lo = s;
                while (lo <= p && (f[lo] & F_PREFIX)) lo++;
                if (lo <= p && is_word(cp, lo, p, words, off, lists[ABBREVIATIONS],
                                       lists[ABBREVIATIONS + 1]))
                    solo = 0;
            }
            if (solo) st[j] |= SOLO;
        }
        for (int64_t j = 0; j < m; j++) {
            if (!(st[j] & SOLO)) continue;
            start[P[j]] = 1;
            if (P[j] + 1 <= e) start[P[j] + 1] = 1;
        }
        /* spaCy's special cases made of two affixes: "):" ":)" ":(" ";)" "''", once per
         * pair; then a run of solo dots is one token */
        for (int64_t j = 1; j < m; j++) {
            uint32_t a = cp[P[j - 1]], b = cp[P[j]];
            if ((st[j] & SOLO) && (st[j - 1] & SOLO) && P[j - 1] == P[j] - 1 &&
                ((b == ':' && a == ')') || (a == ':' && b == ')') || (a == ':' && b == '(') ||
                 (a == ';' && b == ')') || (a == '\'' && b == '\'')))
                st[j] |= PAIR;
        }
        for (int64_t j = 1; j < m; j++)
            if ((st[j] & PAIR) && !(st[j - 1] & PAIR)) start[P[j]] = 0;
        for (int64_t j = 1; j < m; j++)
            if ((st[j] & SOLO) && (st[j - 1] & SOLO) && cp[P[j]] == '.' &&
                P[j - 1] == P[j] - 1 && cp[P[j] - 1] == '.')
                start[P[j]] = 0;
        /* clitics: John|'s, do|n't, I|'m */
        for (int64_t j = 0; j < m; j++) {
            int64_t p = P[j];
            uint32_t c0 = cp[p], cnext = cp[p + 1];
            if (!((st[j] & CORE) && (st[j] & PREV_CORE) && (c0 == '\'' || c0 == 0x2019)))
                continue;
            int s_end = 0;
            if ((cnext == 's' || cnext == 'S') && p + 1 <= e)
                s_end = (p + 1 == e) ||
                        (p + 2 == e && ((f[e] & F_SUFFIX) || cp[e] == '.' || cp[e] == '%' ||
                                        cp[e] == '+'));
            if (s_end) {
                start[p] = 1;
            } else {
                clitic(cp, f, p, s, e, words, off, lists, start);
            }
        }
        s = e + 1;
    }
    free(P);
    free(st);
    return 0;
}

/* --- C4's line rules (c4_lines.py) ---------------------------------------------------------- */
/* Bytes of the whitespace character at p (Python's str.isspace(): what str.strip() and
 * str.split() remove), 0 when it is not one. */
static int space_len(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    if (b < 0x80) return b == ' ' || (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f);
    if (b == 0xC2) return end - p >= 2 && (p[1] == 0x85 || p[1] == 0xA0) ? 2 : 0;
    if (end - p < 3) return 0;
    if (b == 0xE1) return p[1] == 0x9A && p[2] == 0x80 ? 3 : 0;              /* U+1680 */
    if (b == 0xE2 && p[1] == 0x80)                        /* U+2000-200A, 2028, 2029, 202F */
        return (p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF
               ? 3 : 0;
    if (b == 0xE2 && p[1] == 0x81) return p[2] == 0x9F ? 3 : 0;              /* U+205F */
    if (b == 0xE3) return p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;              /* U+3000 */
    return 0;
}

/* Narrow [*s, *e) to its text without leading and trailing whitespace (str.strip()). */
static void strip_spaces(const uint8_t **s, const uint8_t **e) {
    int k;
    while (*s < *e && (k = space_len(*s, *e))) *s += k;
    while (*e > *s) {
        const uint8_t *q = *e - 1;
        while (q > *s && (*q & 0xC0) == 0x80) q--;
        if (space_len(q, *e) != *e - q) break;
        *e = q;
    }
}

/* Bytes of the line break at p (Python's str.splitlines(): \n \r \r\n \v \f \x1c-\x1e \x85
 * U+2028 U+2029), 0 when there is none. */
static int break_len(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    if (b == '\r') return end - p >= 2 && p[1] == '\n' ? 2 : 1;
    if (b == '\n' || b == 0x0b || b == 0x0c || (b >= 0x1c && b <= 0x1e)) return 1;
    if (b == 0xC2) return end - p >= 2 && p[1] == 0x85 ? 2 : 0;
    if (b == 0xE2) return end - p >= 3 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9) ? 3 : 0;
    return 0;
}

/* The phrases the line rules look for: NUL-separated (an empty one ends the list). */
#define MAX_PHRASES 63
#define LOWERS_TO_ASCII (1ULL << 63)  /* first bytes of U+0130 and U+212A */
typedef struct {
    const char *word[MAX_PHRASES];
    size_t len[MAX_PHRASES];
    uint64_t first[256], second[256];  /* the phrases with this first / second byte */
} phrases_t;

static uint8_t ascii_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }

static void phrases_read(phrases_t *t, const char *words) {
    memset(t, 0, sizeof(*t));
    int j = 0;
    for (const char *w = words; *w && j < MAX_PHRASES; w += strlen(w) + 1, j++) {
        t->word[j] = w;
        t->len[j] = strlen(w);  /* (at least 2: c4_lines' caller checks) */
        for (int c = 0; c < 256; c++) {
            if (ascii_lower((uint8_t)c) == (uint8_t)w[0]) t->first[c] |= 1ULL << j;
            if (ascii_lower((uint8_t)c) == (uint8_t)w[1]) t->second[c] |= 1ULL << j;
        }
    }
    t->first[0xC4] |= LOWERS_TO_ASCII;  /* U+0130: C4 B0; U+212A: E2 84 AA */
    t->second[0xB0] |= LOWERS_TO_ASCII;
    t->first[0xE2] |= LOWERS_TO_ASCII;
    t->second[0x84] |= LOWERS_TO_ASCII;
}

/* Whether bytes s..e, ASCII letters lowercased, contain one of the phrases, or hold a
 * character whose lowercase holds ASCII (U+0130 and U+212A: only Python knows then). */
static int must_ask(const uint8_t *s, const uint8_t *e, const phrases_t *t) {
    for (const uint8_t *p = s; p + 1 < e; p++) {
        uint64_t maybe = t->first[p[0]] & t->second[p[1]];  /* the first two bytes match */
        if (__builtin_expect(!maybe, 1)) continue;
        if (maybe & LOWERS_TO_ASCII) {
            if (*p == 0xC4 || (e - p >= 3 && p[2] == 0xAA)) return 1;
            maybe &= ~LOWERS_TO_ASCII;
        }
        while (maybe) {
            int j = __builtin_ctzll(maybe);
            maybe &= maybe - 1;
            const char *w = t->word[j];
            size_t n = t->len[j], k = 2;
            if ((size_t)(e - p) < n) continue;
            while (k < n && ascii_lower(p[k]) == (uint8_t)w[k]) k++;
            if (k >= n) return 1;
        }
    }
    return 0;
}

/* Characters (bytes that do not continue a UTF-8 sequence) in p..e. */
static int64_t utf8_chars(const uint8_t *p, const uint8_t *e) {
    int64_t n = 0;
    for (; p < e; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

#define LOW_BYTES 0x2020202020202020ULL
#define HIGH_BITS 0x8080808080808080ULL

enum { C4_ASK = 1, C4_CURLY = 2 };  /* flags of a candidate line */

/* C4's line rules over UTF-8 texts (text d: data[offsets[d]:offsets[d + 1]]), as
 * c4_lines.python_rules applies them to each line of text.splitlines(), stripped:
 * a line is dropped when (punct) it does not end in . ? ! " ' (or ] with citations to
 * cut), when a word is longer than max_len characters (max_len -1: off), when it has fewer
 * than min_words words (<= 0: off), and (punct, no citation to cut) when it ends in ']'
 * or "...". Each other line is a candidate, written as 6 int64 (text, start and end of
 * the stripped line in characters of its text, then in bytes of `data`, flags) to
 * `lines` (room for `cap`); its
 * flags say whether it holds '{' (C4_CURLY) and whether Python must finish its rules
 * (C4_ASK: a '[' with cut_citations, an ASCII-case-insensitive `phrase` (NUL-separated,
 * an empty one ends them; 63 at most, of 2 bytes or more), or a character whose lowercase is ASCII: U+0130
 * and U+212A). Per text: its lines (`n_lines`) and whether every line break is one
 * character and the text does not end in a break other than '\n' (`exact`). Returns the
 * candidates' count, even past `cap`. */
int64_t c4_lines(const uint8_t *data, const int64_t *offsets, int64_t n_texts,
                 int64_t max_len, int64_t min_words, int punct, int cut_citations,
                 const char *phrases, int64_t *n_lines, uint8_t *exact, int64_t *lines,
                 int64_t cap) {
    int64_t found = 0;
    phrases_t table;
    phrases_read(&table, phrases);
    for (int64_t d = 0; d < n_texts; d++) {
        const uint8_t *p = data + offsets[d], *end = data + offsets[d + 1];
        const uint8_t *counted = p;  /* characters are counted up to here, lazily */
        int64_t ch = 0, count = 0;
        int two_char = 0, last_break = 0;  /* last_break: 0 none, 1 '\n', 2 another */
        while (p < end) {
            const uint8_t *ls = p;
            int brk = 0;
            while (p < end) {
                if (end - p >= 8) {  /* 8 printable ASCII bytes at once */
                    uint64_t x;
                    memcpy(&x, p, 8);
                    if (!(((x - LOW_BYTES) | x) & HIGH_BITS)) {
                        p += 8;
                        continue;
                    }
                }
                uint8_t b = *p;
                if ((b < 0x20 || b == 0xC2 || b == 0xE2) && (brk = break_len(p, end))) break;
                p++;
            }
            const uint8_t *le = p;
            last_break = 0;
            if (brk) {
                two_char |= brk == 2 && *p == '\r';
                last_break = p[brk - 1] == '\n' ? 1 : 2;
                p += brk;
            }
            count++;
            /* strip */
            const uint8_t *s = ls, *e = le;
            strip_spaces(&s, &e);
            if (punct) {
                if (s == e) continue;
                uint8_t last = e[-1];
                if (!(last == '.' || last == '?' || last == '!' || last == '"' || last == '\'' ||
                      last == ']'))
                    continue;
            }
            /* words: all of them when one may be too long, else the first min_words */
            int long_words = max_len != -1 && e - s > max_len;
            int64_t words = 0, longest = 0, run = 0;
            for (const uint8_t *q = s; q < e;) {
                uint8_t b = *q;
                if (b > 0x20 && b < 0x80) {
                    run++;
                    q++;
                    continue;
                }
                if (b <= 0x20 || b == 0xC2 || b == 0xE1 || b == 0xE2 || b == 0xE3) {
                    int k = space_len(q, e);
                    if (k) {
                        if (run) words++;
                        if (run > longest) longest = run;
                        run = 0;
                        q += k;
                        if (!long_words && words >= min_words) break;
                        continue;
                    }
                }
                run += (b & 0xC0) != 0x80;
                q++;
            }
            if (run) words++;
            if (run > longest) longest = run;
            if (long_words && words > 0 && longest > max_len) continue;
            int cite = cut_citations && memchr(s, '[', (size_t)(e - s)) != NULL;
            if (punct && !cite && (e[-1] == ']' ||
                                   (e - s >= 3 && e[-1] == '.' && e[-2] == '.' && e[-3] == '.')))
                continue;
            if (min_words > 0 && words < min_words) continue;
            int ask = cite || must_ask(s, e, &table);
            int curly = memchr(s, '{', (size_t)(e - s)) != NULL;
            ch += utf8_chars(counted, s);
            int64_t start = ch;
            ch += utf8_chars(s, e);
            counted = e;
            if (found < cap) {
                int64_t *out = lines + 6 * found;
                out[0] = d;
                out[1] = start;
                out[2] = ch;
                out[3] = s - data;
                out[4] = e - data;
                out[5] = (ask ? C4_ASK : 0) | (curly ? C4_CURLY : 0);
            }
            found++;
        }
        n_lines[d] = count;
        exact[d] = offsets[d + 1] > offsets[d] && !two_char && last_break != 2;
    }
    return found;
}

/* Per text, its kept lines joined by '\n' and stripped of whitespace at both ends (what
 * "\n".join(lines).strip() makes): line i is rows[4i:4i+4] = (text, source, start, end),
 * bytes start..end of `data` (source 0) or `side` (source 1), texts in order. Writes the
 * n_texts results one after the other to `out` and their bounds to `out_offsets`. */
void join_lines(const uint8_t *data, const uint8_t *side, const int64_t *rows, int64_t n_rows,
                int64_t n_texts, uint8_t *out, int64_t *out_offsets) {
    int64_t w = 0, r = 0;
    out_offsets[0] = 0;
    for (int64_t d = 0; d < n_texts; d++) {
        int64_t lo = w;
        for (int first = 1; r < n_rows && rows[4 * r] == d; r++, first = 0) {
            const int64_t *row = rows + 4 * r;
            if (!first) out[w++] = '\n';
            memcpy(out + w, (row[1] ? side : data) + row[2], (size_t)(row[3] - row[2]));
            w += row[3] - row[2];
        }
        const uint8_t *s = out + lo, *e = out + w;
        strip_spaces(&s, &e);
        memmove(out + lo, s, (size_t)(e - s));
        w = lo + (e - s);
        out_offsets[d + 1] = w;
    }
}

/* Sentences and tokens of each line, from its document's tokens (c4._line_sentences): the
 * tokens of document doc[i] (tokens tok_offsets[d]..tok_offsets[d + 1], sorted by `start`,
 * their character offset in it) that start in lo[i]..hi[i]; a sentence starts at a token
 * that is neither punctuation nor an end mark when an end mark came since the line's start
 * or the last such token; a line counts at least one. */
void span_sentences(const int64_t *start, const uint8_t *punct, const uint8_t *sent_end,
                    const int64_t *tok_offsets, const int64_t *doc, const int64_t *lo,
                    const int64_t *hi, int64_t n_lines, int64_t *sentences, int64_t *words) {
    for (int64_t i = 0; i < n_lines; i++) {
        int64_t a = tok_offsets[doc[i]], b = tok_offsets[doc[i] + 1];
        while (a < b) {  /* the first token starting at lo[i] or later */
            int64_t m = a + (b - a) / 2;
            if (start[m] < lo[i]) a = m + 1;
            else b = m;
        }
        int64_t t = a, end = tok_offsets[doc[i] + 1], count = 1;
        int ended = 0;
        for (; t < end && start[t] < hi[i]; t++) {
            if (sent_end[t]) ended = 1;
            else if (!punct[t]) {
                count += ended;
                ended = 0;
            }
        }
        sentences[i] = count;
        words[i] = t - a;
    }
}

/* --- FineWeb's line statistics (fineweb.py) ------------------------------------------------ */
/* The code point of the UTF-8 character that ends at e (after s). */
static uint32_t last_code_point(const uint8_t *s, const uint8_t *e) {
    const uint8_t *q = e - 1;
    while (q > s && (*q & 0xC0) == 0x80) q--;
    uint32_t c = *q;
    int n = (int)(e - q);
    if (n == 1) return c;
    c &= n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07;
    for (q++; q < e; q++) c = (c << 6) | (*q & 0x3F);
    return c;
}

static int in_sorted(const uint32_t *set, int64_t n, uint32_t c) {
    int64_t a = 0, b = n;
    while (a < b) {
        int64_t m = a + (b - a) / 2;
        if (set[m] < c) a = m + 1;
        else b = m;
    }
    return a < n && set[a] == c;
}

/* Per UTF-8 text (text d: data[offsets[d]:offsets[d + 1]]), over its lines split at '\n'
 * that hold a character other than whitespace (str.isspace()): their count (`lines`), how
 * many end in a character of `stop` (sorted code points; the line's own last character,
 * before any stripping), how many have at most `short_len` characters, and the characters
 * of those equal to an earlier one of the text (`dup_chars`); and the text's '\n' count.
 * Returns 0, or -1 out of memory. */
int fineweb_lines(const uint8_t *data, const int64_t *offsets, int64_t n_texts,
                  const uint32_t *stop, int64_t n_stop, int64_t short_len, int64_t *lines,
                  int64_t *punct, int64_t *shorts, int64_t *dup_chars, int64_t *newlines) {
    int64_t room = 0, capacity = 0;
    int64_t *ls = NULL, *le = NULL;
    uint64_t *h = NULL;
    table_t tab = {NULL, NULL, 0, 0};
    int status = -1;
    for (int64_t d = 0; d < n_texts; d++) {
        const uint8_t *p = data + offsets[d], *end = data + offsets[d + 1];
        int64_t breaks = 0;
        for (const uint8_t *q = p; q < end; q++) breaks += *q == '\n';
        newlines[d] = breaks;
        if (breaks + 1 > room) {  /* room for every line's bounds and hash */
            room = 2 * (breaks + 1);
            free(ls);
            free(le);
            free(h);
            ls = malloc(sizeof(int64_t) * room);
            le = malloc(sizeof(int64_t) * room);
            h = malloc(sizeof(uint64_t) * room);
            if (!ls || !le || !h) goto done;
        }
        int64_t m = 0, n_punct = 0, n_short = 0;
        while (p <= end) {
            const uint8_t *e = memchr(p, '\n', (size_t)(end - p));
            if (!e) e = end;
            const uint8_t *s = p;
            int k;
            while (s < e && (k = space_len(s, e))) s += k;
            if (s < e) {  /* not blank */
                ls[m] = p - data;
                le[m] = e - data;
                m++;
                n_punct += in_sorted(stop, n_stop, last_code_point(p, e));
                n_short += utf8_chars(p, e) <= short_len;
            }
            p = e + 1;
        }
        lines[d] = m;
        punct[d] = n_punct;
        shorts[d] = n_short;
        dup_chars[d] = 0;
        if (m < 2) continue;
        if (table_reserve(&tab, m, &capacity)) goto done;
        int64_t chars = 0;
        for (int64_t i = 0; i < m; i++) {
            const uint8_t *a = data + ls[i];
            int64_t size = le[i] - ls[i];
            uint64_t x = 0xcbf29ce484222325ULL ^ (uint64_t)size;  /* FNV-1a over the bytes */
            for (int64_t b = 0; b < size; b++) x = (x ^ a[b]) * 0x100000001B3ULL;
            h[i] = x;
            uint64_t slot = (x * SPREAD) >> tab.shift;
            int found = 0;
            while (tab.first[slot] >= 0) {
                int64_t j = tab.first[slot];
                if (h[j] == x && le[j] - ls[j] == size && memcmp(data + ls[j], a, (size_t)size) == 0) {
                    found = 1;
                    break;
                }
                slot = (slot + 1) & tab.mask;
            }
            if (found) chars += utf8_chars(a, a + size);
            else tab.first[slot] = i;
        }
        dup_chars[d] = chars;
    }
    status = 0;
done:  /* (also where a failed allocation jumps, status -1) */
    free(ls);
    free(le);
    free(h);
    table_free(&tab);
    return status;
}

/* --- Gopher quality's byte counts (gopher._byte_counts and gopher._line_counts) ------------ */
/* Bytes of the space of the RE2 pattern's set (tab, 0x1f, space, U+00A0, U+1680,
 * U+2000-U+200A, U+202F, U+205F, U+3000) starting at p (before p with `back`), within
 * lo..hi; 0 where there is none. */
static int re2_space(const uint8_t *p, const uint8_t *lo, const uint8_t *hi, int back) {
    if (back) {
        if (p - lo < 1) return 0;
        uint8_t b = p[-1];
        if (b == ' ' || b == '\t' || b == 0x1F) return 1;
        if (p - lo >= 2 && b == 0xA0 && p[-2] == 0xC2) return 2;
        if (p - lo < 3) return 0;
        p -= 3;
    } else {
        if (hi - p < 1) return 0;
        uint8_t b = p[0];
        if (b == ' ' || b == '\t' || b == 0x1F) return 1;
        if (hi - p >= 2 && b == 0xC2 && p[1] == 0xA0) return 2;
        if (hi - p < 3) return 0;
    }
    uint8_t a = p[0], m = p[1], l = p[2];
    return (a == 0xE2 && m == 0x80 && ((l >= 0x80 && l <= 0x8A) || l == 0xAF)) ||
           (a == 0xE2 && m == 0x81 && l == 0x9F) || (a == 0xE1 && m == 0x9A && l == 0x80) ||
           (a == 0xE3 && m == 0x80 && l == 0x80) ? 3 : 0;
}

/* Per UTF-8 text, as gopher._byte_counts and gopher._line_counts count them: '#'
 * (`hashes`), ellipses (each run of '.' holds length / 3, plus each U+2026), '\n'
 * (`breaks`), whether it ends in '\n' (`ends_nl`); over its lines cut at '\n' (a line
 * starts at the text's start and after each '\n' but the last byte's): lines whose first
 * byte after spaces is '-' or starts U+2022 (`bullets`), lines ending in "..." or U+2026
 * before spaces (`ellipsis_lines`); whether a line starts or ends with more than `steps`
 * spaces (`unsure`: counted elsewhere) and whether the text holds another line break
 * (`exotic`: \r \v \f \x1c-\x1e U+0085 U+2028 U+2029). */
void gopher_lines(const uint8_t *data, const int64_t *offsets, int64_t n_texts, int64_t steps,
                  int64_t *hashes, int64_t *ellipses, int64_t *breaks, uint8_t *ends_nl,
                  int64_t *bullets, int64_t *ellipsis_lines, uint8_t *unsure,
                  uint8_t *exotic) {
    for (int64_t d = 0; d < n_texts; d++) {
        const uint8_t *lo = data + offsets[d], *hi = data + offsets[d + 1];
        int64_t n_hash = 0, n_ell = 0, n_nl = 0, n_bullet = 0, n_ell_lines = 0, run = 0;
        int odd = 0, deep = 0;
        for (const uint8_t *p = lo; p < hi; p++) {
            uint8_t b = *p;
            if (b == '.') {
                run++;
                continue;
            }
            n_ell += run / 3;
            run = 0;
            if (b == '#') n_hash++;
            else if (b == '\n') n_nl++;
            else if (b < 0x20) odd |= (b >= 0x0B && b <= 0x0D) || (b >= 0x1C && b <= 0x1E);
            else if (b == 0xC2) odd |= hi - p >= 2 && p[1] == 0x85;
            else if (b == 0xE2 && hi - p >= 3 && p[1] == 0x80) {
                n_ell += p[2] == 0xA6;
                odd |= p[2] == 0xA8 || p[2] == 0xA9;
            }
        }
        n_ell += run / 3;
        /* lines */
        const uint8_t *s = lo;
        while (s < hi) {
            const uint8_t *e = memchr(s, '\n', (size_t)(hi - s));
            const uint8_t *line_end = e ? e : hi;
            const uint8_t *at = s;
            int k, moved = 0;
            while (moved <= steps && (k = re2_space(at, lo, hi, 0))) {
                at += k;
                moved++;
            }
            deep |= moved > steps;
            n_bullet += at < hi && (*at == '-' || (hi - at >= 3 && at[0] == 0xE2 &&
                                                   at[1] == 0x80 && at[2] == 0xA2));
            at = line_end;
            moved = 0;
            while (moved <= steps && (k = re2_space(at, lo, hi, 1))) {
                at -= k;
                moved++;
            }
            deep |= moved > steps;
            n_ell_lines += at - 3 >= lo && ((at[-3] == '.' && at[-2] == '.' && at[-1] == '.') ||
                                            (at[-3] == 0xE2 && at[-2] == 0x80 && at[-1] == 0xA6));
            if (!e) break;
            s = e + 1;
        }
        hashes[d] = n_hash;
        ellipses[d] = n_ell;
        breaks[d] = n_nl;
        ends_nl[d] = hi > lo && hi[-1] == '\n';
        bullets[d] = n_bullet;
        ellipsis_lines[d] = n_ell_lines;
        unsure[d] = (uint8_t)deep;
        exotic[d] = (uint8_t)odd;
    }
}

/* detect_language's letter check (langid_backends.undetermined): per text, among its first
 * `max_chars` code points, the letters, the visible characters and the junk, as `table`
 * classes them (bit 1 letter, 2 visible, 4 junk; one byte per code point of the Basic
 * Multilingual Plane). A text with a code point beyond the plane is flagged in `astral`
 * and its counts are left to the caller. */
void char_classes(const uint8_t *data, const int64_t *offsets, int64_t n_texts,
                  int64_t max_chars, const uint8_t *table, int64_t *letters, int64_t *shown,
                  int64_t *junk, uint8_t *astral) {
    for (int64_t t = 0; t < n_texts; t++) {
        const uint8_t *p = data + offsets[t], *e = data + offsets[t + 1];
        int64_t chars = 0, l = 0, s = 0, j = 0;
        uint8_t beyond = 0;
        while (p < e && chars < max_chars) {
            uint32_t c = p[0];
            if (c < 0x80) {
                p += 1;
            } else if (c < 0xE0) {
                c = ((c & 0x1F) << 6) | (p[1] & 0x3F);
                p += 2;
            } else if (c < 0xF0) {
                c = ((c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
                p += 3;
            } else {
                beyond = 1;
                break;
            }
            uint8_t k = table[c];
            l += k & 1;
            s += (k >> 1) & 1;
            j += (k >> 2) & 1;
            chars++;
        }
        letters[t] = l;
        shown[t] = s;
        junk[t] = j;
        astral[t] = beyond;
    }
}

/* py3langid's feature walk over the bytes of one text: the byte automaton (next state =
 * nextmove[(row[state] << 8) + byte]; a state with out[state] >= 0 emits that feature).
 * Writes the distinct features in order of first appearance to `idx` and how often each
 * was emitted to `count` (both at least n long); returns how many. `seen` holds one entry
 * per feature, all -1, and is left so. */
int64_t dfa_features(const uint8_t *text, int64_t n, const uint32_t *nextmove,
                     const uint32_t *row, const int32_t *out, int64_t *seen, int64_t *idx,
                     int64_t *count) {
    uint32_t state = 0;
    int64_t found = 0;
    for (int64_t i = 0; i < n; i++) {
        state = nextmove[((int64_t)row[state] << 8) + text[i]];
        int32_t f = out[state];
        if (f < 0) continue;
        if (seen[f] < 0) {
            seen[f] = found;
            idx[found] = f;
            count[found++] = 1;
        } else {
            count[seen[f]]++;
        }
    }
    for (int64_t i = 0; i < found; i++) seen[idx[i]] = -1;
    return found;
}

/* ---- MinHash signatures (ops/minhash.py) ------------------------------------------------
 * One pass per document over its lowercased UTF-8 bytes, the same values as the numpy
 * path: tokens split at Arrow's Unicode whitespace (utf8_split_whitespace), trimmed of
 * minhash.PUNCTUATION at both ends (utf8_trim), empty ones dropped; each token hashed
 * with FNV-1a over its bytes then splitmix64's finalizer with its length in the top byte;
 * every `ngram` consecutive tokens (all of them for a shorter document) summed with the
 * odd constants and mixed, keeping the top 32 bits; per hash function (a, b) the minimum
 * of ((a*x + b) mod 2^64) >> 32. */

static const uint64_t MH_ODD[8] = {
    0x9E3779B97F4A7C15ULL, 0xC2B2AE3D27D4EB4FULL, 0x165667B19E3779F9ULL, 0xD6E8FEB86659FD93ULL,
    0xFF51AFD7ED558CCDULL, 0xC4CEB9FE1A85EC53ULL, 0x94D049BB133111EBULL, 0xBF58476D1CE4E5B9ULL};

static inline uint64_t mh_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* the code point at s[i] (valid UTF-8) and its byte length */
static inline uint32_t mh_decode(const uint8_t *s, int64_t i, int *len) {
    uint8_t c = s[i];
    if (c < 0x80) { *len = 1; return c; }
    if (c < 0xE0) { *len = 2; return ((uint32_t)(c & 0x1F) << 6) | (s[i + 1] & 0x3F); }
    if (c < 0xF0) {
        *len = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12)
         | ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}

static inline int mh_space(uint32_t c) {  /* Arrow's utf8_split_whitespace */
    if (c < 0x80) return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A)
        || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static inline int mh_punct(uint32_t c) {  /* minhash.PUNCTUATION */
    if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40)
                      || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
    switch (c) {
    case 0xA1: case 0xAB: case 0xB7: case 0xBB: case 0xBF: case 0x2013: case 0x2014:
    case 0x2018: case 0x2019: case 0x201C: case 0x201D: case 0x201E: case 0x2022:
    case 0x2026: case 0x2039: case 0x203A:
        return 1;
    default:
        return 0;
    }
}

/* row[f] = min(row[f], ((a*x + b) mod 2^64) >> 32) for each function f, with x < 2^32, in
 * 32-bit lanes: a = ah:al, b = bh:bl; al*x + bl < 2^64, so the top half is
 * ah*x + bh + ((al*x + bl) >> 32) mod 2^32 (`split`: al, ah, bl, bh, k each). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void mh_min_update(uint32_t *restrict row, const uint32_t *restrict split, int64_t k,
                          uint32_t x) {
    const uint32_t *al = split, *ah = split + k, *bl = split + 2 * k, *bh = split + 3 * k;
    for (int64_t f = 0; f < k; f++) {
        uint32_t low = (uint32_t)(((uint64_t)al[f] * x + bl[f]) >> 32);
        uint32_t v = ah[f] * x + bh[f] + low;
        row[f] = v < row[f] ? v : row[f];
    }
}

/* sig: n_docs x k uint32 (row d: document d's signature); status[d]: 0 no token (row left
 * as is), 1 signed, 2 a token longer than long_token bytes (hashed otherwise: the caller's
 * path). Returns -1 when out of memory, else 0. */
int minhash_signatures(const uint8_t *data, const int64_t *offsets, int64_t n_docs,
                       int64_t ngram, int64_t long_token, const uint64_t *a,
                       const uint64_t *b, int64_t k, uint32_t *sig, uint8_t *status) {
    int64_t cap = 1024;
    uint64_t *words = malloc(cap * sizeof(uint64_t));
    uint32_t *split = malloc(4 * k * sizeof(uint32_t));
    if (!words || !split) { free(words); free(split); return -1; }
    for (int64_t f = 0; f < k; f++) {
        split[f] = (uint32_t)a[f];
        split[k + f] = (uint32_t)(a[f] >> 32);
        split[2 * k + f] = (uint32_t)b[f];
        split[3 * k + f] = (uint32_t)(b[f] >> 32);
    }
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t i = offsets[d], end = offsets[d + 1], n = 0;
        int too_long = 0, len;
        while (i < end) {
            uint32_t c = mh_decode(data, i, &len);
            if (mh_space(c)) { i += len; continue; }
            int64_t j = i + len;
            while (j < end) {
                c = mh_decode(data, j, &len);
                if (mh_space(c)) break;
                j += len;
            }
            int64_t ts = i, te = j;
            i = j;
            while (ts < te) {
                c = mh_decode(data, ts, &len);
                if (!mh_punct(c)) break;
                ts += len;
            }
            while (te > ts) {
                int64_t p = te - 1;
                while (p > ts && (data[p] & 0xC0) == 0x80) p--;
                c = mh_decode(data, p, &len);
                if (!mh_punct(c)) break;
                te = p;
            }
            if (te == ts) continue;
            if (te - ts > long_token) { too_long = 1; break; }
            uint64_t h = 0xCBF29CE484222325ULL;
            for (int64_t q = ts; q < te; q++) { h ^= data[q]; h *= 0x100000001B3ULL; }
            if (n == cap) {
                uint64_t *grown = realloc(words, 2 * cap * sizeof(uint64_t));
                if (!grown) { free(words); free(split); return -1; }
                words = grown;
                cap *= 2;
            }
            words[n++] = mh_mix64(h ^ ((uint64_t)(te - ts) << 56));
        }
        if (too_long) { status[d] = 2; continue; }
        if (n == 0) { status[d] = 0; continue; }
        status[d] = 1;
        uint32_t *row = sig + d * k;
        for (int64_t f = 0; f < k; f++) row[f] = 0xFFFFFFFFu;
        int64_t shingles = n >= ngram ? n - ngram + 1 : 1;
        int64_t width = n >= ngram ? ngram : n;
        for (int64_t s = 0; s < shingles; s++) {
            uint64_t acc = 0;
            for (int64_t q = 0; q < width; q++) acc += words[s + q] * MH_ODD[q & 7];
            mh_min_update(row, split, k, (uint32_t)(mh_mix64(acc) >> 32));
        }
    }
    free(words);
    free(split);
    return 0;
}

/* ---- fastText predictions (ops/fasttext_model.py) -----------------------------------------
 * What fastText's predictLine computes for a supervised model with hierarchical softmax and
 * no word n-grams (lid.176): tokens split at ' ' \t \n \v \f \r \0, each in-vocabulary word's
 * id, then the ids of the character n-grams (minn..maxn code points) of "<token>" that the
 * pruned bucket table keeps, then the end-of-line token; the mean of their input rows (the
 * caller dequantizes the rows exactly as fastText adds them); a depth-first walk of the
 * Huffman tree keeping the k best leaves. The arithmetic is fastText's, in its order and
 * precision, so scores are the same floats. Each text is cut to its first `chars` code
 * points; a line break inside counts as a space (as the callers replace it). */

typedef struct {
    int64_t dim, nwords, bucket, minn, maxn, osz, eos;
    int64_t pruned;                 /* 1: n-grams through the prune table, 0: none, -1: all */
    const float *input;             /* rows x dim, dequantized */
    const float *output;            /* (osz - 1) x dim: the tree's inner nodes */
    const int32_t *word_slot;       /* word id or -1, word_slots of them (a power of two) */
    int64_t word_slots;
    const uint8_t *word_data;       /* word i: word_data[word_off[i]:word_off[i + 1]] */
    const int64_t *word_off;
    const int32_t *prune_key;       /* bucket or -1, prune_slots of them (a power of two) */
    const int32_t *prune_val;
    int64_t prune_slots;
    const int32_t *left, *right;    /* 2 * osz - 1 nodes */
} FtModel;

static inline uint32_t ft_step(uint32_t h, uint8_t c) {
    return (h ^ (uint32_t)(int32_t)(int8_t)c) * 16777619u;
}

static inline int ft_sep(uint8_t c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f' || c == 0;
}

typedef struct { int32_t *v; int64_t n, cap; } FtIds;

static int ft_push(FtIds *ids, int32_t id) {
    if (ids->n == ids->cap) {
        int64_t cap = ids->cap ? 2 * ids->cap : 1024;
        int32_t *grown = realloc(ids->v, cap * sizeof(int32_t));
        if (!grown) return -1;
        ids->v = grown;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

static int ft_ngram(const FtModel *m, FtIds *ids, uint32_t h) {
    int32_t b = (int32_t)(h % (uint32_t)m->bucket);
    if (m->pruned == 0) return 0;
    if (m->pruned < 0) return ft_push(ids, (int32_t)(m->nwords + b));
    uint64_t mask = (uint64_t)m->prune_slots - 1, s = ((uint32_t)b * 2654435761u) & mask;
    while (m->prune_key[s] != -1) {
        if (m->prune_key[s] == b) return ft_push(ids, (int32_t)(m->nwords + m->prune_val[s]));
        s = (s + 1) & mask;
    }
    return 0;
}

/* the n-grams of "<" token ">" in computeSubwords' order */
static int ft_subwords(const FtModel *m, FtIds *ids, const uint8_t *tok, int64_t len) {
    int64_t L = len + 2;
    for (int64_t i = 0; i < L; i++) {
        uint8_t ci = i == 0 ? '<' : i == L - 1 ? '>' : tok[i - 1];
        if ((ci & 0xC0) == 0x80) continue;
        uint32_t h = 2166136261u;
        int64_t j = i;
        for (int64_t n = 1; j < L && n <= m->maxn; n++) {
            uint8_t c = j == 0 ? '<' : j == L - 1 ? '>' : tok[j - 1];
            h = ft_step(h, c);
            j++;
            while (j < L) {
                c = j == L - 1 ? '>' : tok[j - 1];
                if ((c & 0xC0) != 0x80) break;
                h = ft_step(h, c);
                j++;
            }
            if (n >= m->minn && !(n == 1 && (i == 0 || j == L)))
                if (ft_ngram(m, ids, h)) return -1;
        }
    }
    return 0;
}

static int32_t ft_word(const FtModel *m, const uint8_t *tok, int64_t len, uint32_t h) {
    uint64_t mask = (uint64_t)m->word_slots - 1, s = h & mask;
    while (m->word_slot[s] != -1) {
        int32_t w = m->word_slot[s];
        int64_t lo = m->word_off[w];
        if (m->word_off[w + 1] - lo == len && memcmp(m->word_data + lo, tok, len) == 0) return w;
        s = (s + 1) & mask;
    }
    return -1;
}

typedef struct { float score; int32_t node; } FtPick;

/* std::push_heap / pop_heap with fastText's comparePairs (a.first > b.first): a min-heap */
static void ft_sift_up(FtPick *h, int64_t i) {
    FtPick v = h[i];
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!(h[p].score > v.score)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static void ft_sift_down(FtPick *h, int64_t n, int64_t i, FtPick v) {
    /* libstdc++'s __adjust_heap: move the hole down to a leaf, then push v up from there */
    int64_t top = i, child = i;
    while (child < (n - 1) / 2) {
        child = 2 * (child + 1);
        if (h[child].score > h[child - 1].score) child--;
        h[i] = h[child];
        i = child;
    }
    if ((n & 1) == 0 && child == (n - 2) / 2) {
        child = 2 * (child + 1);
        h[i] = h[child - 1];
        i = child - 1;
    }
    int64_t p = (i - 1) / 2;
    while (i > top && h[p].score > v.score) {
        h[i] = h[p];
        i = p;
        p = (i - 1) / 2;
    }
    h[i] = v;
}

static void ft_pop(FtPick *h, int64_t n) {  /* the front to h[n - 1] */
    FtPick v = h[n - 1];
    h[n - 1] = h[0];
    ft_sift_down(h, n - 1, 0, v);
}

static inline float ft_log(float x) { return (float)log((double)x + 1e-5); }

static void ft_dfs(const FtModel *m, int64_t k, float floor_, int64_t node, float score,
                   FtPick *heap, int64_t *size, const float *hidden) {
    if (score < floor_) return;
    if (*size == k && score < heap[0].score) return;
    if (m->left[node] == -1 && m->right[node] == -1) {
        heap[*size].score = score;
        heap[*size].node = (int32_t)node;
        ft_sift_up(heap, (*size)++);
        if (*size > k) {
            ft_pop(heap, *size);
            (*size)--;
        }
        return;
    }
    const float *row = m->output + (node - m->osz) * m->dim;
    float f = 0.0f;
    for (int64_t j = 0; j < m->dim; j++) f += row[j] * hidden[j];
    f = (float)(1.0 / (double)(1.0f + expf(-f)));
    ft_dfs(m, k, floor_, m->left[node], score + ft_log((float)(1.0 - (double)f)), heap, size,
           hidden);
    ft_dfs(m, k, floor_, m->right[node], score + ft_log(f), heap, size, hidden);
}

/* For each text, up to k (label, probability) pairs, best first: labels[t * k + i] (the
 * label's index, -1 past the end) and probs[t * k + i]. Returns -1 when out of memory. */
int ft_predict(const FtModel *m, const uint8_t *data, const int64_t *offsets, int64_t n_texts,
               int64_t chars, int64_t k, float threshold, int32_t *labels, float *probs) {
    FtIds ids = {0};
    float hidden[256];
    FtPick *heap = malloc((k + 1) * sizeof(FtPick));
    if (!heap || m->dim > 256) { free(heap); return -1; }
    float floor_ = ft_log(threshold);
    for (int64_t t = 0; t < n_texts; t++) {
        for (int64_t i = 0; i < k; i++) { labels[t * k + i] = -1; probs[t * k + i] = 0.0f; }
        int64_t i = offsets[t], end = offsets[t + 1], cps = 0, cut = i;
        while (cut < end && cps < chars) {  /* the first `chars` code points */
            cut++;
            while (cut < end && (data[cut] & 0xC0) == 0x80) cut++;
            cps++;
        }
        end = cut;
        ids.n = 0;
        int stop = 0;
        while (i < end && !stop) {
            if (ft_sep(data[i])) { i++; continue; }
            int64_t j = i;
            uint32_t h = 2166136261u;
            while (j < end && !ft_sep(data[j])) h = ft_step(h, data[j++]);
            const uint8_t *tok = data + i;
            int64_t len = j - i;
            i = j;
            if (len >= 9 && memcmp(tok, "__label__", 9) == 0) continue;  /* a label: skipped */
            int32_t w = ft_word(m, tok, len, h);
            if (w == m->eos) {  /* "</s>" read as a word ends the line */
                if (ft_push(&ids, w)) goto oom;
                stop = 1;
                break;
            }
            if (w >= 0 && ft_push(&ids, w)) goto oom;
            if (m->maxn > 0 && ft_subwords(m, &ids, tok, len)) goto oom;
        }
        if (!stop && ft_push(&ids, (int32_t)m->eos)) goto oom;  /* the line's end */
        if (ids.n == 0) continue;
        for (int64_t d = 0; d < m->dim; d++) hidden[d] = 0.0f;
        for (int64_t q = 0; q < ids.n; q++) {
            const float *row = m->input + (int64_t)ids.v[q] * m->dim;
            for (int64_t d = 0; d < m->dim; d++) hidden[d] += row[d];
        }
        float scale = (float)(1.0 / (double)ids.n);
        for (int64_t d = 0; d < m->dim; d++) hidden[d] *= scale;
        int64_t size = 0;
        ft_dfs(m, k, floor_, 2 * m->osz - 2, 0.0f, heap, &size, hidden);
        for (int64_t n = size; n > 1; n--) ft_pop(heap, n);  /* std::sort_heap */
        for (int64_t q = 0; q < size; q++) {
            labels[t * k + q] = heap[q].node;
            probs[t * k + q] = expf(heap[q].score);
        }
    }
    free(ids.v);
    free(heap);
    return 0;
oom:
    free(ids.v);
    free(heap);
    return -1;
}

/* --- the fast tokenizer's tokens in one pass (tokenize._featurize after its rules) ------- */
/* From the token start mask over the batch's code points (`start`, documents separated by a
 * newline, `doc_start`: each document's first code point, n_docs + 1 values), each token's
 * end (the next start, or the first space), hash (as token_hashes), bits (as token_bits),
 * with spaCy's special words split into their pieces (tokenize._split_specials: a token
 * whose hash is in `special` (sorted, n_special; `bucket`: 65536 bytes, 1 for the top 16
 * bits of each), that starts with a letter, becomes the
 * pieces of lengths piece_len[piece_off[k]:piece_off[k + 1]]). Writes at most `cap` tokens:
 * start in its document, length, hash, alpha, symbol, punct, sent_end (0/1), and the
 * documents' token offsets (n_docs + 1); returns the number of tokens (more than `cap`: call
 * again with that capacity). */
static int64_t emit_token(const uint32_t *cp, const uint16_t *flags, const uint8_t *bits,
                          uint16_t sent_flag, int64_t s, int64_t e, int64_t doc0, int64_t t,
                          int64_t cap, int64_t *out_start, int64_t *out_len,
                          uint64_t *out_hash, uint8_t *alpha, uint8_t *symbol,
                          uint8_t *punct, uint8_t *sent_end) {
    if (t >= cap) return t + 1;
    uint64_t h = 0, pw = 1;
    uint8_t b = 0;
    for (int64_t i = s; i < e; i++) {
        h += (uint64_t)cp[i] * pw;
        pw *= HASH_R;
        b |= bits[flags[i]];
    }
    out_start[t] = s - doc0;
    out_len[t] = e - s;
    out_hash[t] = h ^ ((uint64_t)(e - s) * HASH_LEN);
    alpha[t] = (b & 1) != 0;
    symbol[t] = (b & 2) == 0;
    punct[t] = (b & 4) == 0;
    sent_end[t] = (e - s == 1) && (flags[s] & sent_flag) != 0;
    return t + 1;
}

int64_t token_pass(const uint32_t *cp, const uint16_t *flags, const uint8_t *start, int64_t n,
                   const int64_t *doc_start, int64_t n_docs, const uint8_t *bits,
                   uint16_t sent_flag, const uint8_t *bucket, const uint64_t *special,
                   int64_t n_special,
                   const int64_t *piece_off, const int64_t *piece_len, int64_t cap,
                   int64_t *out_start, int64_t *out_len, uint64_t *out_hash, uint8_t *alpha,
                   uint8_t *symbol, uint8_t *punct, uint8_t *sent_end, int64_t *offsets) {
    int64_t t = 0, k = 0, doc0 = 0;
    int64_t i = 0;
    while (i < n) {
        if (!start[i]) { i++; continue; }
        int64_t s = i, e = i + 1;
        while (e < n && !start[e] && !(flags[e] & F_SPACE)) e++;
        while (k <= n_docs && doc_start[k] <= s) { offsets[k++] = t; }
        doc0 = doc_start[k - 1];
        /* its hash and bits first; a special word is written again as its pieces */
        uint64_t h = 0, pw = 1;
        uint8_t b = 0;
        for (int64_t j = s; j < e; j++) {
            h += (uint64_t)cp[j] * pw;
            pw *= HASH_R;
            b |= bits[flags[j]];
        }
        h ^= (uint64_t)(e - s) * HASH_LEN;
        int64_t lo = n_special, hi = n_special;
        if (bucket[h >> 48]) lo = 0;  /* a first, cheap test on the top 16 bits */
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (special[mid] < h) lo = mid + 1; else hi = mid;
        }
        if (lo < n_special && special[lo] == h && (flags[s] & F_ALPHA)) {
            int64_t a = s;
            for (int64_t p = piece_off[lo]; p < piece_off[lo + 1]; p++) {
                t = emit_token(cp, flags, bits, sent_flag, a, a + piece_len[p], doc0, t, cap,
                               out_start, out_len, out_hash, alpha, symbol, punct, sent_end);
                a += piece_len[p];
            }
        } else if (t < cap) {
            out_start[t] = s - doc0;
            out_len[t] = e - s;
            out_hash[t] = h;
            alpha[t] = (b & 1) != 0;
            symbol[t] = (b & 2) == 0;
            punct[t] = (b & 4) == 0;
            sent_end[t] = (e - s == 1) && (flags[s] & sent_flag) != 0;
            t++;
        } else {
            t++;
        }
        i = e;
    }
    while (k <= n_docs) offsets[k++] = t;
    return t;
}

/* Each code point's class flags from `table` (0x110000 entries; tokenize._flags); returns
 * whether one of them has the UNKNOWN bit (its flags are not computed yet). */
int char_flags(const uint32_t *cp, int64_t n, const uint16_t *table, uint16_t *out) {
    uint16_t any = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t f = table[cp[i] < 0x110000 ? cp[i] : 0];
        out[i] = f;
        any |= f;
    }
    return (any & 0x8000) != 0;
}
