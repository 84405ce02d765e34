/* dedup.c: exact keys, shingle sets, and the MinHash LSH index of near
 * duplicates (see dedup.h for the method and its references). */
#include "data/dedup.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------- the multimap */

static size_t slot_of(uint64_t key, size_t cap) {
    /* The keys are already hashes; mix once more so that structured keys spread too. */
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

static int u64map_grow(sft_u64map *m) {
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *values = calloc(cap, sizeof *values);
    if (!keys || !values) {
        free(keys);
        free(values);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->values[i]) continue;
        size_t s = slot_of(m->keys[i], cap);
        while (values[s])
            s = (s + 1) & (cap - 1);
        keys[s] = m->keys[i];
        values[s] = m->values[i];
    }
    free(m->keys);
    free(m->values);
    m->keys = keys;
    m->values = values;
    m->cap = cap;
    return 0;
}

int sft_u64map_add(sft_u64map *m, uint64_t key, uint32_t value) {
    if (value == UINT32_MAX) return -1;
    if (2 * (m->count + 1) > m->cap && u64map_grow(m)) return -1; /* load <= 1/2 */
    size_t s = slot_of(key, m->cap);
    while (m->values[s])
        s = (s + 1) & (m->cap - 1);
    m->keys[s] = key;
    m->values[s] = value + 1;
    m->count++;
    return 0;
}

int sft_u64map_each(const sft_u64map *m, uint64_t key, int (*fn)(uint32_t value, void *ctx), void *ctx) {
    if (!m->cap) return 0;
    for (size_t s = slot_of(key, m->cap); m->values[s]; s = (s + 1) & (m->cap - 1))
        if (m->keys[s] == key) {
            int rc = fn(m->values[s] - 1, ctx);
            if (rc) return rc;
        }
    return 0;
}

long sft_u64map_first(const sft_u64map *m, uint64_t key) {
    if (!m->cap) return -1;
    for (size_t s = slot_of(key, m->cap); m->values[s]; s = (s + 1) & (m->cap - 1))
        if (m->keys[s] == key) return (long)m->values[s] - 1;
    return -1;
}

void sft_u64map_free(sft_u64map *m) {
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

/* --------------------------------------------------------- record texts */

void sft_text_scratch_free(sft_text_scratch *s) {
    sft_buf_free(&s->joined);
    sft_buf_free(&s->normalized);
    sft_spans_free(&s->words);
}

int sft_record_exact_hash(const sft_record *rec, sft_text_scratch *s, uint64_t *out, sft_err *err) {
    XXH3_state_t *state = XXH3_createState();
    if (!state) return sft_errf(err, "out of memory");
    XXH3_64bits_reset(state);
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (sft_text_normalize(m->content, m->content_len, &s->normalized, err)) {
            XXH3_freeState(state);
            return -1;
        }
        /* Role byte and a record separator keep ("ab","c") apart from ("a","bc"). */
        unsigned char head[2] = {(unsigned char)m->role, 0x1E};
        XXH3_64bits_update(state, head, 2);
        XXH3_64bits_update(state, s->normalized.data, s->normalized.len);
    }
    *out = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return 0;
}

int sft_text_normalized_words(const char *text, size_t len, sft_text_scratch *s, sft_err *err) {
    if (sft_text_normalize(text, len, &s->normalized, err)) return -1;
    return sft_text_words(s->normalized.data, s->normalized.len, &s->words, err);
}

int sft_record_shingles(const sft_record *rec, size_t shingle_words, int prompt_only, sft_text_scratch *s,
                        sft_u64s *out, sft_err *err) {
    s->joined.len = 0;
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (prompt_only && m->role == SFT_ROLE_ASSISTANT) continue;
        /* Shingles may span turns: the record is one text for similarity. */
        if ((s->joined.len && sft_buf_append(&s->joined, "\n", 1)) ||
            sft_buf_append(&s->joined, m->content, m->content_len))
            return sft_errf(err, "out of memory");
    }
    if (sft_buf_append(&s->joined, "", 0)) return sft_errf(err, "out of memory");
    if (sft_text_normalized_words(s->joined.data, s->joined.len, s, err)) return -1;
    if (sft_text_ngram_hashes(s->normalized.data, &s->words, shingle_words, out))
        return sft_errf(err, "out of memory");
    sft_u64s_sort_unique(out);
    return 0;
}

/* ------------------------------------------------------------ MinHash LSH */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t *items; /* the shingle set, sorted */
    size_t count;
} leader_set;

struct sft_near_index {
    sft_near_options opts;
    int bands, rows;
    /* The permutations are Dietzfelbinger's multiply-add-shift hashes of a
     * 32-bit key, h_i(x) = (a_i x + b_i) >> 32 with 64-bit a_i, b_i: a
     * universal family, and a loop over i the compiler vectorises. MinHash only
     * proposes candidates here (each is verified exactly), so 32-bit values
     * are plenty. */
    uint64_t *perm_a, *perm_b;
    uint32_t *signature;
    uint64_t *band_keys;
    sft_u64map buckets;
    leader_set *leaders;
    size_t leader_count, leader_cap;
    uint32_t *stamp; /* per leader: the query that last verified it */
    uint32_t query;
    size_t candidates;
};

/* P(a pair of Jaccard j shares at least one band) = 1 - (1 - j^r)^b. */
static double candidate_probability(double j, int bands, int rows) {
    return 1.0 - pow(1.0 - pow(j, rows), bands);
}

sft_near_index *sft_near_index_new(const sft_near_options *opts, sft_err *err) {
    sft_near_index *idx = calloc(1, sizeof *idx);
    if (!idx) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    idx->opts = *opts;
    if (idx->opts.num_perm <= 0) idx->opts.num_perm = 128;
    if (!(idx->opts.threshold > 0 && idx->opts.threshold <= 1)) {
        sft_errf(err, "--threshold must be in (0, 1], got %g", idx->opts.threshold);
        free(idx);
        return NULL;
    }
    int n = idx->opts.num_perm;
    idx->rows = 1;
    for (int r = n; r >= 1; r--)
        if (candidate_probability(idx->opts.threshold, n / r, r) >= 0.999) {
            idx->rows = r;
            break;
        }
    idx->bands = n / idx->rows;
    idx->perm_a = malloc(n * sizeof *idx->perm_a);
    idx->perm_b = malloc(n * sizeof *idx->perm_b);
    idx->signature = malloc(n * sizeof *idx->signature);
    idx->band_keys = malloc(idx->bands * sizeof *idx->band_keys);
    if (!idx->perm_a || !idx->perm_b || !idx->signature || !idx->band_keys) {
        sft_near_index_free(idx);
        sft_errf(err, "out of memory");
        return NULL;
    }
    uint64_t state = idx->opts.seed ? idx->opts.seed : 1;
    for (int i = 0; i < n; i++) {
        idx->perm_a[i] = splitmix64(&state) | 1;
        idx->perm_b[i] = splitmix64(&state);
    }
    return idx;
}

void sft_near_index_free(sft_near_index *idx) {
    if (!idx) return;
    for (size_t i = 0; i < idx->leader_count; i++)
        free(idx->leaders[i].items);
    free(idx->leaders);
    free(idx->stamp);
    sft_u64map_free(&idx->buckets);
    free(idx->perm_a);
    free(idx->perm_b);
    free(idx->signature);
    free(idx->band_keys);
    free(idx);
}

size_t sft_near_index_leaders(const sft_near_index *idx) {
    return idx->leader_count;
}
size_t sft_near_index_candidates(const sft_near_index *idx) {
    return idx->candidates;
}
void sft_near_index_add_candidates(sft_near_index *idx, size_t n) {
    idx->candidates += n;
}
void sft_near_index_shape(const sft_near_index *idx, int *bands, int *rows) {
    *bands = idx->bands;
    *rows = idx->rows;
}

/* The exact Jaccard of two sorted sets, or 0 as soon as the intersection can
 * no longer reach threshold: J >= t  <=>  |A n B| >= t (|A| + |B|) / (1 + t). */
static double jaccard_at_least(const uint64_t *a, size_t na, const uint64_t *b, size_t nb, double t) {
    double need = t * (double)(na + nb) / (1.0 + t) - 1e-9;
    size_t i = 0, j = 0, both = 0;
    /* Branch-free merge: the comparisons of random hashes are unpredictable. */
    while (i < na && j < nb) {
        size_t stop_i = na - i < 64 ? na : i + 64, stop_j = nb - j < 64 ? nb : j + 64;
        while (i < stop_i && j < stop_j) {
            uint64_t x = a[i], y = b[j];
            both += x == y;
            i += x <= y;
            j += y <= x;
        }
        size_t left = na - i < nb - j ? na - i : nb - j;
        if ((double)(both + left) < need) return 0;
    }
    return (double)both / (double)(na + nb - both);
}

/* The exact Jaccard of a set and a leader when it can reach the threshold, else 0. */
static double candidate_jaccard(const sft_near_index *idx, const uint64_t *set, size_t count,
                                uint32_t leader) {
    const leader_set *l = &idx->leaders[leader];
    /* J <= min/max of the sizes: most candidates of a different length end here. */
    size_t small = count < l->count ? count : l->count, large = count ^ l->count ^ small;
    if ((double)small < idx->opts.threshold * (double)large) return 0;
    return jaccard_at_least(set, count, l->items, l->count, idx->opts.threshold);
}

/* The better of two matches: higher Jaccard, then the earlier leader. */
static void keep_best(const sft_near_index *idx, uint32_t leader, double j, long *best,
                      double *best_jaccard) {
    if (j >= idx->opts.threshold && (j > *best_jaccard || (j == *best_jaccard && (long)leader < *best))) {
        *best = leader;
        *best_jaccard = j;
    }
}

static void band_keys_of(const sft_near_index *idx, const uint32_t *sig, uint64_t *keys) {
    for (int b = 0; b < idx->bands; b++)
        keys[b] = XXH3_64bits_withSeed(sig + b * idx->rows, idx->rows * sizeof *sig, (uint64_t)b + 1);
}

typedef struct {
    sft_near_index *idx;
    const uint64_t *set;
    size_t count;
    size_t from; /* only leaders from this number on */
    long best;
    double best_jaccard;
} verify_ctx;

static int verify_candidate(uint32_t leader, void *p) {
    verify_ctx *c = p;
    sft_near_index *idx = c->idx;
    if (leader < c->from || idx->stamp[leader] == idx->query) return 0; /* not ours, or already verified */
    idx->stamp[leader] = idx->query;
    idx->candidates++;
    keep_best(idx, leader, candidate_jaccard(idx, c->set, c->count, leader), &c->best, &c->best_jaccard);
    return 0;
}

typedef struct {
    uint32_t *ids;
    size_t count, cap;
    size_t below;
} id_list;

static int collect_id(uint32_t leader, void *p) {
    id_list *l = p;
    if (leader >= l->below) return 0;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        uint32_t *ids = realloc(l->ids, cap * sizeof *ids);
        if (!ids) return -1;
        l->ids = ids;
        l->cap = cap;
    }
    l->ids[l->count++] = leader;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int sft_near_index_best(const sft_near_index *idx, const uint64_t *set, size_t count,
                        const uint32_t *signature, size_t below, long *leader, double *jaccard,
                        size_t *verified) {
    *leader = -1;
    *jaccard = 0;
    *verified = 0;
    if (count == 0) return 0;
    uint64_t *keys = malloc((size_t)idx->bands * sizeof *keys);
    id_list ids = {NULL, 0, 0, below};
    if (!keys) return -1;
    band_keys_of(idx, signature, keys);
    int rc = 0;
    for (int b = 0; b < idx->bands && !rc; b++)
        rc = sft_u64map_each(&idx->buckets, keys[b], collect_id, &ids);
    free(keys);
    if (rc) {
        free(ids.ids);
        return -1;
    }
    if (ids.count > 1) qsort(ids.ids, ids.count, sizeof *ids.ids, cmp_u32);
    for (size_t i = 0; i < ids.count; i++) {
        if (i && ids.ids[i] == ids.ids[i - 1]) continue;
        (*verified)++;
        keep_best(idx, ids.ids[i], candidate_jaccard(idx, set, count, ids.ids[i]), leader, jaccard);
    }
    free(ids.ids);
    return 0;
}

int sft_near_index_num_perm(const sft_near_index *idx) {
    return idx->opts.num_perm;
}

void sft_near_index_signature(const sft_near_index *idx, const uint64_t *set, size_t count, uint32_t *sig) {
    int n = idx->opts.num_perm;
    const uint64_t *pa = idx->perm_a, *pb = idx->perm_b;
    for (int i = 0; i < n; i++)
        sig[i] = UINT32_MAX;
    for (size_t k = 0; k < count; k++) {
        uint64_t x = (uint32_t)(set[k] ^ (set[k] >> 32));
        for (int i = 0; i < n; i++) {
            uint32_t h = (uint32_t)((pa[i] * x + pb[i]) >> 32);
            sig[i] = h < sig[i] ? h : sig[i];
        }
    }
}

int sft_near_index_assign(sft_near_index *idx, const uint64_t *set, size_t count, long *leader,
                          double *jaccard, sft_err *err) {
    sft_near_index_signature(idx, set, count, idx->signature);
    return sft_near_index_assign_signed(idx, set, count, idx->signature, leader, jaccard, err);
}

int sft_near_index_assign_signed(sft_near_index *idx, const uint64_t *set, size_t count,
                                 const uint32_t *signature, long *leader, double *jaccard, sft_err *err) {
    return sft_near_index_assign_from(idx, set, count, signature, 0, -1, 0, leader, jaccard, err);
}

int sft_near_index_assign_from(sft_near_index *idx, const uint64_t *set, size_t count,
                               const uint32_t *signature, size_t from, long prior_leader,
                               double prior_jaccard, long *leader, double *jaccard, sft_err *err) {
    *leader = -1;
    *jaccard = 0;
    /* A record without words has no shingles; only exact dedup can judge it. */
    if (count == 0) return 0;
    band_keys_of(idx, signature, idx->band_keys);
    idx->query++;
    verify_ctx ctx = {idx, set, count, from, prior_leader, prior_leader >= 0 ? prior_jaccard : 0};
    for (int b = 0; b < idx->bands; b++)
        sft_u64map_each(&idx->buckets, idx->band_keys[b], verify_candidate, &ctx);
    if (ctx.best >= 0) {
        *leader = ctx.best;
        *jaccard = ctx.best_jaccard;
        return 0;
    }
    /* A new leader. */
    if (idx->leader_count == idx->leader_cap) {
        size_t cap = idx->leader_cap ? 2 * idx->leader_cap : 1024;
        leader_set *l = realloc(idx->leaders, cap * sizeof *l);
        if (!l) return sft_errf(err, "out of memory");
        idx->leaders = l;
        uint32_t *st = realloc(idx->stamp, cap * sizeof *st);
        if (!st) return sft_errf(err, "out of memory");
        idx->stamp = st;
        idx->leader_cap = cap;
    }
    uint32_t id = (uint32_t)idx->leader_count;
    leader_set *l = &idx->leaders[id];
    l->items = malloc(count * sizeof *l->items);
    if (!l->items) return sft_errf(err, "out of memory");
    memcpy(l->items, set, count * sizeof *l->items);
    l->count = count;
    idx->stamp[id] = idx->query;
    idx->leader_count++;
    for (int b = 0; b < idx->bands; b++)
        if (sft_u64map_add(&idx->buckets, idx->band_keys[b], id)) return sft_errf(err, "out of memory");
    return 0;
}
