/* Compiled kernels of the quality statistics, loaded with ctypes (kernels.py). Each one
 * computes exactly what its numpy twin in gopher.py computes; tests compare the two.
 * Plain C99, no Python headers: the shared library only exchanges arrays. */

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

static int table_reserve(table_t *t, int64_t entries, int64_t *capacity) {
    int64_t size = 16;
    int bits = 4;
    while (size < 2 * entries) {
        size <<= 1;
        bits++;
    }
    if (size > *capacity) {
        free(t->first);
        free(t->count);
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
    if (!g || !cum) goto fail;
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
                if (table_reserve(&t, grams, &capacity)) goto fail;
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
                if (table_reserve(&t, grams, &capacity)) goto fail;
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
    free(g);
    free(cum);
    free(t.first);
    free(t.count);
    return 0;
fail:
    free(g);
    free(cum);
    free(t.first);
    free(t.count);
    return -1;
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
    if (!h) return -1;
    for (int64_t t = 0; t < n_texts; t++) {
        int64_t parts = count[t], lo = at, repeats = 0, chars = 0;
        at += parts;
        dup[t] = dup_chars[t] = 0;
        if (parts < 2) continue;
        if (table_reserve(&tab, parts, &capacity)) goto fail;
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
    free(h);
    free(tab.first);
    free(tab.count);
    return 0;
fail:
    free(h);
    free(tab.first);
    free(tab.count);
    return -1;
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
