/* bpe.c: the BPE model of tokenizer.json, as tokenizers/src/models/bpe
 * (model.rs, word.rs) defines it: vocabulary, ranked merges ("a b" strings
 * or [a, b] pairs), unk_token with fuse_unk, byte_fallback (<0xNN> tokens),
 * continuing_subword_prefix / end_of_word_suffix and ignore_merges.
 *
 * A word is split into characters, then the pair with the lowest merge rank
 * (leftmost on ties) is merged until none is left, with a min-heap exactly
 * like word.rs's merge_all. Finished words go into a cache shared by all
 * callers (a mutex that is only tried, never waited on), so that frequent
 * words cost one hash lookup. */
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"

struct tok_symbol {
    int32_t id;
    int32_t prev, next;
    uint32_t len; /* bytes of the word; 0 once merged into its left neighbour */
};

struct tok_merge {
    uint32_t rank, pos;
    int32_t new_id;
};

/* ---------- the word cache ---------- */

#define CACHE_SLOTS (1u << 17)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_ARENA (32u << 20)
#define CACHE_MAX_WORD 256 /* tokenizers' MAX_LENGTH: longer words are not cached */

struct tok_cache {
    pthread_mutex_t lock;
    uint32_t *slots; /* arena offset + 1 */
    uint32_t *hashes;
    tok_buf arena; /* per entry: u32 key_len, u32 count, key (padded to 4), count x (i32 id, u32 len) */
    size_t entries;
};

static tok_cache *cache_new(void) {
    tok_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    c->hashes = calloc(CACHE_SLOTS, sizeof *c->hashes);
    if (!c->slots || !c->hashes || pthread_mutex_init(&c->lock, NULL)) {
        free(c->slots);
        free(c->hashes);
        free(c);
        return NULL;
    }
    return c;
}

static void cache_free(tok_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    free(c->slots);
    free(c->hashes);
    tok_buf_free(&c->arena);
    free(c);
}

static size_t pad4(size_t n) {
    return (n + 3) & ~(size_t)3;
}

/* The cache entry of a word, or NULL. Called with the lock held. */
static const uint32_t *cache_find(const tok_cache *c, const char *key, size_t len, uint32_t h) {
    size_t i = (h * (size_t)0x9E3779B1u) & (CACHE_SLOTS - 1);
    for (;;) {
        uint32_t off = c->slots[i];
        if (!off) return NULL;
        if (c->hashes[i] == h) {
            const uint32_t *e = (const uint32_t *)(c->arena.data + off - 1);
            if (e[0] == len && !memcmp(e + 2, key, len)) return e;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

static void cache_insert(tok_cache *c, const char *key, size_t len, uint32_t h, const struct tok_symbol *sym,
                         size_t nsym, size_t count) {
    if (c->entries >= CACHE_MAX_ENTRIES) return;
    size_t need = 8 + pad4(len) + 8 * count;
    if (c->arena.len + need > CACHE_MAX_ARENA) return;
    if (cache_find(c, key, len, h)) return;
    size_t off = c->arena.len;
    if (tok_buf_reserve(&c->arena, need)) return;
    uint32_t *e = (uint32_t *)(c->arena.data + off);
    e[0] = (uint32_t)len;
    e[1] = (uint32_t)count;
    memcpy(e + 2, key, len);
    uint32_t *pairs = (uint32_t *)(c->arena.data + off + 8 + pad4(len));
    size_t k = 0;
    for (size_t s = 0; s < nsym; s++) {
        if (!sym[s].len) continue;
        pairs[2 * k] = (uint32_t)sym[s].id;
        pairs[2 * k + 1] = sym[s].len;
        k++;
    }
    c->arena.len += need;
    size_t i = (h * (size_t)0x9E3779B1u) & (CACHE_SLOTS - 1);
    while (c->slots[i])
        i = (i + 1) & (CACHE_SLOTS - 1);
    c->slots[i] = (uint32_t)off + 1;
    c->hashes[i] = h;
    c->entries++;
}

/* ---------- loading ---------- */

static int vocab_r_set(tok_bpe *bpe) {
    size_t n = 0;
    for (size_t e = 0; e < bpe->vocab.count; e++)
        if ((size_t)bpe->vocab.entries[e].value + 1 > n) n = (size_t)bpe->vocab.entries[e].value + 1;
    bpe->vocab_r = calloc(n ? n : 1, sizeof *bpe->vocab_r);
    bpe->vocab_r_len = calloc(n ? n : 1, sizeof *bpe->vocab_r_len);
    if (!bpe->vocab_r || !bpe->vocab_r_len) return -1;
    bpe->vocab_r_count = n;
    for (size_t e = 0; e < bpe->vocab.count; e++) {
        const struct tok_str_entry *en = &bpe->vocab.entries[e];
        if (bpe->vocab_r[en->value]) continue; /* two strings with one id: the first names it */
        bpe->vocab_r[en->value] = bpe->vocab.pool.data + en->offset;
        bpe->vocab_r_len[en->value] = en->len;
    }
    return 0;
}

static int get_opt_string(const json_t *model, const char *key, char **out, sft_err *err) {
    *out = NULL;
    const json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return sft_errf(err, "model.%s: expected a string or null", key);
    if (!json_string_length(v)) return 0; /* "" behaves as no prefix/suffix */
    *out = strndup(json_string_value(v), json_string_length(v));
    return *out ? 0 : sft_errf(err, "out of memory");
}

static int get_flag(const json_t *model, const char *key, int *out, sft_err *err) {
    *out = 0;
    const json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return sft_errf(err, "model.%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* One merge as its two token strings. */
static int merge_parts(const json_t *m, size_t index, const char **a, size_t *alen, const char **b,
                       size_t *blen, sft_err *err) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t len = json_string_length(m);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
            return sft_errf(err, "model.merges[%zu] \"%s\": expected two tokens separated by one space",
                            index, s);
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = len - *alen - 1;
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *alen = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *blen = json_string_length(json_array_get(m, 1));
        return 0;
    }
    return sft_errf(err, "model.merges[%zu]: expected a string \"a b\" or a pair [\"a\", \"b\"]", index);
}

int tok_bpe_load(tok_bpe *bpe, const json_t *model, sft_err *err) {
    memset(bpe, 0, sizeof *bpe);
    bpe->unk_id = -1;
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return sft_errf(err, "model.vocab: expected an object of token -> id");
    if (merges && !json_is_array(merges) && !json_is_null(merges))
        return sft_errf(err, "model.merges: expected a list");
    const json_t *dropout = json_object_get(model, "dropout");
    double p;
    if (dropout && !json_is_null(dropout)) {
        if (sft_json_number(dropout, &p) || p < 0 || p > 1)
            return sft_errf(err, "model.dropout: expected null or a number in [0, 1]");
        if (p > 0)
            return sft_errf(
                err,
                "model.dropout %g: BPE dropout is random; sft encodes deterministically (set it to null)", p);
    }
    if (get_opt_string(model, "continuing_subword_prefix", &bpe->continuing_subword_prefix, err) ||
        get_opt_string(model, "end_of_word_suffix", &bpe->end_of_word_suffix, err) ||
        get_flag(model, "fuse_unk", &bpe->fuse_unk, err) ||
        get_flag(model, "byte_fallback", &bpe->byte_fallback, err) ||
        get_flag(model, "ignore_merges", &bpe->ignore_merges, err))
        goto fail;

    if (tok_strmap_init(&bpe->vocab, json_object_size(vocab))) goto oom;
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach((json_t *)vocab, key, key_len, value) {
        int64_t id;
        if (sft_json_int(value, &id) || id < 0 || id > INT32_MAX - 1) {
            sft_errf(err, "model.vocab[\"%.*s\"]: expected a non-negative integer id", (int)key_len, key);
            goto fail;
        }
        if (tok_strmap_put(&bpe->vocab, key, key_len, (int32_t)id)) goto oom;
    }
    bpe->vocab_size = bpe->vocab.count;
    if (vocab_r_set(bpe)) goto oom;

    size_t nmerges = merges && json_is_array(merges) ? json_array_size(merges) : 0;
    if (tok_pairmap_init(&bpe->merges, nmerges)) goto oom;
    size_t prefix_len = bpe->continuing_subword_prefix ? strlen(bpe->continuing_subword_prefix) : 0;
    tok_buf joined = {0};
    uint32_t rank = 0;
    for (size_t i = 0; i < nmerges; i++) {
        const json_t *m = json_array_get(merges, i);
        /* The legacy text form may keep the merges.txt header line. */
        if (json_is_string(m) && !strncmp(json_string_value(m), "#version", 8)) continue;
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (merge_parts(m, i, &a, &alen, &b, &blen, err)) {
            tok_buf_free(&joined);
            goto fail;
        }
        int32_t ida = tok_strmap_get(&bpe->vocab, a, alen), idb = tok_strmap_get(&bpe->vocab, b, blen);
        const char *missing = ida < 0 ? a : idb < 0 ? b : NULL;
        size_t missing_len = ida < 0 ? alen : blen;
        if (missing) {
            sft_errf(err, "model.merges[%zu] \"%.*s %.*s\": token \"%.*s\" is not in the vocabulary", i,
                     (int)alen, a, (int)blen, b, (int)missing_len, missing);
            tok_buf_free(&joined);
            goto fail;
        }
        size_t skip = prefix_len <= blen ? prefix_len : blen;
        joined.len = 0;
        if (tok_buf_append(&joined, a, alen) || tok_buf_append(&joined, b + skip, blen - skip)) {
            tok_buf_free(&joined);
            goto oom;
        }
        int32_t merged = tok_strmap_get(&bpe->vocab, joined.data, joined.len);
        if (merged < 0) {
            sft_errf(err,
                     "model.merges[%zu] \"%.*s %.*s\": the merged token \"%.*s\" is not in the vocabulary", i,
                     (int)alen, a, (int)blen, b, (int)joined.len, joined.data);
            tok_buf_free(&joined);
            goto fail;
        }
        /* A repeated pair keeps the later rank, as tokenizers' HashMap collect does. */
        tok_pairmap_put(&bpe->merges, (uint32_t)ida, (uint32_t)idb, rank, merged);
        rank++;
    }
    tok_buf_free(&joined);

    const json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        if (!json_is_string(unk)) {
            sft_errf(err, "model.unk_token: expected a string or null");
            goto fail;
        }
        bpe->unk_id = tok_strmap_get(&bpe->vocab, json_string_value(unk), json_string_length(unk));
        /* tokenizers accepts an unk_token missing from the vocabulary and fails only when a
         * character needs it; so do we (tok_bpe_tokenize). */
        if (bpe->unk_id < 0 && !(bpe->unk_missing = strdup(json_string_value(unk)))) goto oom;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        bpe->byte_fallback_ids[b] = tok_strmap_get(&bpe->vocab, name, 6);
    }
    bpe->cache = cache_new();
    if (!bpe->cache) goto oom;
    return 0;
oom:
    sft_errf(err, "out of memory loading the BPE model");
fail:
    tok_bpe_free(bpe);
    return -1;
}

void tok_bpe_free(tok_bpe *bpe) {
    tok_strmap_free(&bpe->vocab);
    tok_pairmap_free(&bpe->merges);
    free(bpe->vocab_r);
    free(bpe->vocab_r_len);
    free(bpe->continuing_subword_prefix);
    free(bpe->end_of_word_suffix);
    free(bpe->unk_missing);
    cache_free(bpe->cache);
    memset(bpe, 0, sizeof *bpe);
}

/* ---------- encoding ---------- */

static int emit_symbol(const tok_bpe *bpe, tok_ctx *ctx, const tok_view *word, int32_t id, size_t pos,
                       size_t len, sft_err *err) {
    if (id < 0 || (size_t)id >= bpe->vocab_r_count || !bpe->vocab_r[id])
        return sft_errf(err, "internal error: token id %d has no string", id);
    size_t end = pos + len < word->len ? pos + len : word->len;
    size_t start = pos < word->len ? pos : word->len;
    return tok_emit(ctx, id, bpe->vocab_r[id], bpe->vocab_r_len[id], 1, tok_view_original(word, start, end),
                    err);
}

static int reserve_symbols(tok_ctx *ctx, size_t n) {
    if (n <= ctx->symbols_cap) return 0;
    size_t cap = ctx->symbols_cap ? ctx->symbols_cap : 64;
    while (cap < n)
        cap *= 2;
    struct tok_symbol *s = realloc(ctx->symbols, cap * sizeof *s);
    struct tok_merge *h = realloc(ctx->heap, cap * 2 * sizeof *h);
    if (s) ctx->symbols = s;
    if (h) ctx->heap = h;
    if (!s || !h) return -1;
    ctx->symbols_cap = cap;
    ctx->heap_cap = cap * 2;
    return 0;
}

static void symbol_add(tok_ctx *ctx, size_t *n, int32_t id, size_t len) {
    struct tok_symbol *s = ctx->symbols;
    if (*n) s[*n - 1].next = (int32_t)*n;
    s[*n] = (struct tok_symbol){id, (int32_t)*n - 1, -1, (uint32_t)len};
    (*n)++;
}

static int merge_less(const struct tok_merge *a, const struct tok_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(tok_ctx *ctx, size_t *n, struct tok_merge m) {
    if (*n == ctx->heap_cap) {
        size_t cap = ctx->heap_cap ? ctx->heap_cap * 2 : 128;
        struct tok_merge *h = realloc(ctx->heap, cap * sizeof *h);
        if (!h) return -1;
        ctx->heap = h;
        ctx->heap_cap = cap;
    }
    struct tok_merge *h = ctx->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!merge_less(&m, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = m;
    return 0;
}

static struct tok_merge heap_pop(tok_ctx *ctx, size_t *n) {
    struct tok_merge *h = ctx->heap;
    struct tok_merge top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(&h[c + 1], &h[c])) c++;
        if (!merge_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* word.rs merge_all without dropout. */
static int merge_all(const tok_bpe *bpe, tok_ctx *ctx, size_t nsym) {
    struct tok_symbol *sym = ctx->symbols;
    size_t nheap = 0;
    uint32_t rank;
    int32_t merged;
    for (size_t i = 0; i + 1 < nsym; i++)
        if (tok_pairmap_get(&bpe->merges, (uint32_t)sym[i].id, (uint32_t)sym[i + 1].id, &rank, &merged))
            if (heap_push(ctx, &nheap, (struct tok_merge){rank, (uint32_t)i, merged})) return -1;
    while (nheap) {
        struct tok_merge top = heap_pop(ctx, &nheap);
        struct tok_symbol *cur = &sym[top.pos];
        if (!cur->len || cur->next == -1) continue;
        size_t next_pos = (size_t)cur->next;
        struct tok_symbol right = sym[next_pos];
        if (!tok_pairmap_get(&bpe->merges, (uint32_t)cur->id, (uint32_t)right.id, &rank, &merged) ||
            merged != top.new_id)
            continue; /* an expired entry */
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        sym[next_pos].len = 0;
        if (right.next > -1 && (size_t)right.next < nsym) sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const struct tok_symbol *prev = &sym[cur->prev];
            if (tok_pairmap_get(&bpe->merges, (uint32_t)prev->id, (uint32_t)cur->id, &rank, &merged))
                if (heap_push(ctx, &nheap, (struct tok_merge){rank, (uint32_t)cur->prev, merged})) return -1;
        }
        if (cur->next >= 0 && (size_t)cur->next < nsym) {
            const struct tok_symbol *nx = &sym[cur->next];
            if (tok_pairmap_get(&bpe->merges, (uint32_t)cur->id, (uint32_t)nx->id, &rank, &merged))
                if (heap_push(ctx, &nheap, (struct tok_merge){rank, top.pos, merged})) return -1;
        }
    }
    return 0;
}

/* model.rs merge_word: characters to initial symbols (vocabulary, byte
 * fallback or unk), then merge_all. Returns the symbol count. */
static int merge_word(const tok_bpe *bpe, tok_ctx *ctx, const tok_view *word, size_t *nsym_out,
                      sft_err *err) {
    /* Byte fallback can turn one character into up to 4 + prefix/suffix symbols. */
    size_t extra = (bpe->continuing_subword_prefix ? strlen(bpe->continuing_subword_prefix) : 0) +
                   (bpe->end_of_word_suffix ? strlen(bpe->end_of_word_suffix) : 0);
    if (reserve_symbols(ctx, word->len * (1 + extra) + 8)) return sft_errf(err, "out of memory");
    size_t nsym = 0;
    int32_t unk_id = -1;
    size_t unk_len = 0;
    int have_unk = 0;
    for (size_t i = 0; i < word->len;) {
        size_t n = tok_unit_len(word->text + i, word->len - i);
        const char *s = word->text + i;
        size_t slen = n;
        int decorated =
            (i > 0 && bpe->continuing_subword_prefix) || (i + n == word->len && bpe->end_of_word_suffix);
        if (decorated) {
            ctx->word_key.len = 0;
            if ((i > 0 && bpe->continuing_subword_prefix &&
                 tok_buf_append(&ctx->word_key, bpe->continuing_subword_prefix,
                                strlen(bpe->continuing_subword_prefix))) ||
                tok_buf_append(&ctx->word_key, s, n) ||
                (i + n == word->len && bpe->end_of_word_suffix &&
                 tok_buf_append(&ctx->word_key, bpe->end_of_word_suffix, strlen(bpe->end_of_word_suffix))))
                return sft_errf(err, "out of memory");
            s = ctx->word_key.data;
            slen = ctx->word_key.len;
        }
        int32_t id = tok_strmap_get(&bpe->vocab, s, slen);
        if (id >= 0) {
            if (have_unk) {
                symbol_add(ctx, &nsym, unk_id, unk_len);
                have_unk = 0;
            }
            symbol_add(ctx, &nsym, id, n);
        } else {
            int done = 0;
            if (bpe->byte_fallback) {
                int all = 1;
                for (size_t k = 0; k < slen; k++)
                    if (bpe->byte_fallback_ids[(unsigned char)s[k]] < 0) all = 0;
                if (all) {
                    /* As model.rs: the pending unk is not flushed before byte tokens. */
                    for (size_t k = 0; k < slen; k++)
                        symbol_add(ctx, &nsym, bpe->byte_fallback_ids[(unsigned char)s[k]], 1);
                    done = 1;
                }
            }
            if (!done && bpe->unk_missing)
                return sft_errf(err, "unk_token \"%s\" is not in the vocabulary, and \"%.*s\" needs it",
                                bpe->unk_missing, (int)n, word->text + i);
            if (!done && bpe->unk_id >= 0) {
                if (have_unk && bpe->fuse_unk) {
                    unk_len += n;
                } else {
                    if (have_unk) symbol_add(ctx, &nsym, unk_id, unk_len);
                    unk_id = bpe->unk_id;
                    unk_len = n;
                    have_unk = 1;
                }
            }
            /* No byte token and no unk_token: the character is dropped, as in tokenizers. */
        }
        i += n;
    }
    if (have_unk) symbol_add(ctx, &nsym, unk_id, unk_len);
    if (merge_all(bpe, ctx, nsym)) return sft_errf(err, "out of memory");
    *nsym_out = nsym;
    return 0;
}

int tok_bpe_tokenize(const tok_bpe *bpe, tok_ctx *ctx, const tok_view *word, sft_err *err) {
    if (!word->len) return 0;
    if (bpe->ignore_merges) {
        int32_t id = tok_strmap_get(&bpe->vocab, word->text, word->len);
        if (id >= 0) return emit_symbol(bpe, ctx, word, id, 0, word->len, err);
    }
    tok_cache *cache = bpe->cache;
    uint32_t h = (uint32_t)tok_hash_bytes(word->text, word->len);
    int cacheable = word->len < CACHE_MAX_WORD;
    if (cacheable && !pthread_mutex_trylock(&cache->lock)) {
        const uint32_t *e = cache_find(cache, word->text, word->len, h);
        if (e) {
            size_t count = e[1];
            const uint32_t *pairs = (const uint32_t *)((const char *)e + 8 + pad4(e[0]));
            size_t pos = 0;
            int rc = 0;
            for (size_t k = 0; k < count && !rc; k++) {
                rc = emit_symbol(bpe, ctx, word, (int32_t)pairs[2 * k], pos, pairs[2 * k + 1], err);
                pos += pairs[2 * k + 1];
            }
            pthread_mutex_unlock(&cache->lock);
            return rc;
        }
        pthread_mutex_unlock(&cache->lock);
    }
    size_t nsym = 0;
    if (merge_word(bpe, ctx, word, &nsym, err)) return -1;
    size_t pos = 0, count = 0;
    for (size_t s = 0; s < nsym; s++) {
        if (!ctx->symbols[s].len) continue;
        if (emit_symbol(bpe, ctx, word, ctx->symbols[s].id, pos, ctx->symbols[s].len, err)) return -1;
        pos += ctx->symbols[s].len;
        count++;
    }
    if (cacheable && !pthread_mutex_trylock(&cache->lock)) {
        cache_insert(cache, word->text, word->len, h, ctx->symbols, nsym, count);
        pthread_mutex_unlock(&cache->lock);
    }
    return 0;
}
