/* util.c: UTF-8 helpers, growable buffers and the two hash maps of the
 * tokenizer (vocabulary strings -> ids, BPE merge pairs -> rank and result).
 * Open addressing with linear probing, at most half full, so that a lookup
 * is one or two cache lines and encoding allocates nothing per token. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

/* ---------- UTF-8 ---------- */

int tok_utf8_valid_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return avail >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

uint32_t tok_utf8_decode(const unsigned char *s) {
    if (s[0] < 0x80) return s[0];
    if (s[0] < 0xE0) return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    if (s[0] < 0xF0) return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

int tok_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_is_valid(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        int n = tok_utf8_valid_len((const unsigned char *)s + i, len - i);
        if (!n) return 0;
        i += (size_t)n;
    }
    return 1;
}

/* Length of the longest prefix of s that could still start a valid sequence
 * (Unicode's "maximal subpart"), at least 1. */
static size_t maximal_invalid_subpart(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c < 0xE0)
        need = 2;
    else if (c >= 0xE0 && c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t i = 1;
    if (i < avail && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < need && i < avail && (s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

size_t tok_utf8_lossy(const char *s, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        int n = tok_utf8_valid_len((const unsigned char *)s + i, len - i);
        if (n) {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += maximal_invalid_subpart((const unsigned char *)s + i, len - i);
        }
    }
    return o;
}

/* ---------- buffers ---------- */

int tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int tok_buf_append(tok_buf *b, const void *data, size_t len) {
    if (tok_buf_reserve(b, len)) return -1;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void tok_buf_free(tok_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---------- hashing ---------- */

uint64_t tok_hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)len * 0xFF51AFD7ED558CCDull);
    while (len >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h ^= k * 0xBF58476D1CE4E5B9ull;
        h = ((h << 27) | (h >> 37)) * 0x94D049BB133111EBull;
        p += 8;
        len -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, p, len);
    h ^= k * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

/* ---------- string map ---------- */

static size_t table_size_for(size_t expected) {
    size_t n = 16;
    while (n < expected * 2 + 2)
        n *= 2;
    return n;
}

int tok_strmap_init(tok_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t n = table_size_for(expected);
    m->slots = calloc(n, sizeof *m->slots);
    m->cap = expected ? expected : 8;
    m->entries = malloc(m->cap * sizeof *m->entries);
    if (!m->slots || !m->entries) {
        tok_strmap_free(m);
        return -1;
    }
    m->mask = n - 1;
    return 0;
}

static int strmap_grow(tok_strmap *m) {
    size_t n = (m->mask + 1) * 2;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots) return -1;
    for (size_t e = 0; e < m->count; e++) {
        size_t i = (m->entries[e].hash32 * (size_t)0x9E3779B1u) & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)(e + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->mask = n - 1;
    return 0;
}

static size_t strmap_slot(const tok_strmap *m, uint32_t h32, const char *s, size_t len, int *found) {
    size_t i = (h32 * (size_t)0x9E3779B1u) & m->mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (!e) {
            *found = 0;
            return i;
        }
        const struct tok_str_entry *en = &m->entries[e - 1];
        if (en->hash32 == h32 && en->len == len && !memcmp(m->pool.data + en->offset, s, len)) {
            *found = 1;
            return i;
        }
        i = (i + 1) & m->mask;
    }
}

int tok_strmap_put(tok_strmap *m, const char *s, size_t len, int32_t value) {
    if (len > UINT32_MAX || m->pool.len + len + 1 > UINT32_MAX) return -1;
    uint32_t h32 = (uint32_t)tok_hash_bytes(s, len);
    int found;
    size_t i = strmap_slot(m, h32, s, len, &found);
    if (found) {
        m->entries[m->slots[i] - 1].value = value;
        return 0;
    }
    if (m->count == m->cap) {
        size_t cap = m->cap * 2;
        struct tok_str_entry *e = realloc(m->entries, cap * sizeof *e);
        if (!e) return -1;
        m->entries = e;
        m->cap = cap;
    }
    uint32_t offset = (uint32_t)m->pool.len;
    if (tok_buf_append(&m->pool, s, len) || tok_buf_append(&m->pool, "", 1)) return -1;
    m->entries[m->count] = (struct tok_str_entry){offset, (uint32_t)len, value, h32};
    m->slots[i] = (uint32_t)(m->count + 1);
    m->count++;
    if (m->count * 2 > m->mask + 1) return strmap_grow(m);
    return 0;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *s, size_t len) {
    if (!m->slots) return -1;
    int found;
    size_t i = strmap_slot(m, (uint32_t)tok_hash_bytes(s, len), s, len, &found);
    return found ? m->entries[m->slots[i] - 1].value : -1;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->entries);
    tok_buf_free(&m->pool);
    memset(m, 0, sizeof *m);
}

/* ---------- pair map ---------- */

int tok_pairmap_init(tok_pairmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t n = table_size_for(expected);
    m->keys = calloc(n, sizeof *m->keys);
    m->ranks = malloc(n * sizeof *m->ranks);
    m->merged = malloc(n * sizeof *m->merged);
    if (!m->keys || !m->ranks || !m->merged) {
        tok_pairmap_free(m);
        return -1;
    }
    m->mask = n - 1;
    return 0;
}

/* The table is sized for all merges up front, so it never grows. */
void tok_pairmap_put(tok_pairmap *m, uint32_t left, uint32_t right, uint32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)left << 32) | right) + 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(h >> 20) & m->mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (!m->keys[i]) m->count++;
    m->keys[i] = key;
    m->ranks[i] = rank;
    m->merged[i] = merged;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->keys);
    free(m->ranks);
    free(m->merged);
    memset(m, 0, sizeof *m);
}
