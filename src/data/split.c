/* split.c: `sft data split`, seeded train/validation/test split that keeps
 * near duplicates on the same side (so validation loss is not flattered by
 * copies of training records) and can stratify by a field.
 *
 * Two streaming passes. The first groups records into clusters with the same
 * MinHash LSH index as dedup (dedup.h; memory: the cluster leaders' shingle
 * sets plus 8 bytes a record) and notes each record's stratum. Then, per
 * stratum, the clusters are shuffled with the seed (Fisher-Yates) and dealt
 * to validation and test until each holds round(fraction * records of the
 * stratum), the rest to train. The second pass re-reads the inputs and writes
 * each record, unchanged, to its side. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "io/file.h"

void sft_split_options_default(sft_split_options *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.1;
    o->seed = 42;
    o->keep_near_together = 1;
    o->near_opts.threshold = 0.8;
    o->near_opts.num_perm = 128;
    o->near_opts.seed = 1;
    o->shingle_words = 5;
}

typedef struct {
    uint32_t *cluster_of; /* per record */
    size_t records, cap;
    uint32_t *cluster_stratum; /* per cluster */
    uint32_t *cluster_size;
    uint8_t *cluster_side; /* 0 train, 1 val, 2 test */
    size_t clusters, cluster_cap;
    uint32_t *leader_cluster; /* near-index leader -> cluster */
    size_t leader_cap;
    sft_u64map strata; /* hash of the field's JSON -> stratum */
    size_t strata_count;
    const sft_split_options *opts;
    sft_near_index *near;
    sft_text_scratch scratch;
    sft_u64s shingles;
    /* pass 2 */
    sft_writer *out[3];
    size_t written[3];
    size_t cursor;
} split_ctx;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int new_cluster(split_ctx *c, uint32_t stratum, sft_err *err) {
    size_t cap = c->cluster_cap;
    if (grow((void **)&c->cluster_stratum, &cap, c->clusters + 1, sizeof(uint32_t)))
        return sft_errf(err, "out of memory");
    cap = c->cluster_cap;
    if (grow((void **)&c->cluster_size, &cap, c->clusters + 1, sizeof(uint32_t)))
        return sft_errf(err, "out of memory");
    cap = c->cluster_cap;
    if (grow((void **)&c->cluster_side, &cap, c->clusters + 1, 1)) return sft_errf(err, "out of memory");
    c->cluster_cap = cap;
    c->cluster_stratum[c->clusters] = stratum;
    c->cluster_size[c->clusters] = 0;
    c->cluster_side[c->clusters] = 0;
    c->clusters++;
    return 0;
}

static int stratum_of(split_ctx *c, const sft_record *rec, uint32_t *out, sft_err *err) {
    *out = 0;
    if (!c->opts->stratify) return 0;
    const json_t *v = json_object_get(rec->json, c->opts->stratify);
    char *text = v ? sft_record_dumps(v) : NULL;
    uint64_t key = text ? sft_hash64(text, strlen(text), 0) : 0; /* a missing field is a stratum too */
    free(text);
    long s = sft_u64map_first(&c->strata, key);
    if (s < 0) {
        s = (long)c->strata_count++;
        if (sft_u64map_add(&c->strata, key, (uint32_t)s)) return sft_errf(err, "out of memory");
    }
    *out = (uint32_t)s;
    return 0;
}

static int split_pass1(sft_record *rec, void *p, sft_err *err) {
    split_ctx *c = p;
    uint32_t stratum;
    if (stratum_of(c, rec, &stratum, err)) return -1;
    long cluster = -1;
    if (c->near) {
        if (sft_record_shingles(rec, (size_t)c->opts->shingle_words, 0, &c->scratch, &c->shingles, err))
            return -1;
        long leader;
        double j;
        size_t before = sft_near_index_leaders(c->near);
        if (sft_near_index_assign(c->near, c->shingles.items, c->shingles.count, &leader, &j, err)) return -1;
        if (leader >= 0)
            cluster = c->leader_cluster[leader];
        else if (sft_near_index_leaders(c->near) > before) {
            if (grow((void **)&c->leader_cluster, &c->leader_cap, before + 1, sizeof(uint32_t)))
                return sft_errf(err, "out of memory");
            c->leader_cluster[before] = (uint32_t)c->clusters;
        }
    }
    if (cluster < 0) {
        cluster = (long)c->clusters;
        if (new_cluster(c, stratum, err)) return -1;
    }
    if (grow((void **)&c->cluster_of, &c->cap, c->records + 1, sizeof(uint32_t)))
        return sft_errf(err, "out of memory");
    c->cluster_of[c->records++] = (uint32_t)cluster;
    c->cluster_size[cluster]++;
    return 0;
}

static int split_pass2(sft_record *rec, void *p, sft_err *err) {
    split_ctx *c = p;
    if (c->cursor >= c->records)
        return sft_errf(err, "%s:%zu: the input changed between the two passes", rec->path, rec->line);
    int side = c->cluster_side[c->cluster_of[c->cursor++]];
    c->written[side]++;
    return sft_writer_put_record(c->out[side], rec, err);
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Deals each stratum's shuffled clusters to validation, test, then train. */
static int assign_sides(split_ctx *c, sft_err *err) {
    size_t strata = c->strata_count ? c->strata_count : 1;
    uint32_t *order = malloc((c->clusters + 1) * sizeof *order);
    if (!order) return sft_errf(err, "out of memory");
    uint64_t rng = c->opts->seed;
    for (size_t s = 0; s < strata; s++) {
        size_t n = 0, records = 0;
        for (size_t k = 0; k < c->clusters; k++)
            if (c->cluster_stratum[k] == s) {
                order[n++] = (uint32_t)k;
                records += c->cluster_size[k];
            }
        for (size_t i = n; i > 1; i--) {
            size_t j = splitmix(&rng) % i;
            uint32_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        size_t want_val = (size_t)llround(c->opts->val_fraction * (double)records);
        size_t want_test = (size_t)llround(c->opts->test_fraction * (double)records);
        size_t val = 0, test = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t k = order[i];
            if (val < want_val) {
                c->cluster_side[k] = 1;
                val += c->cluster_size[k];
            } else if (test < want_test) {
                c->cluster_side[k] = 2;
                test += c->cluster_size[k];
            } else
                c->cluster_side[k] = 0;
        }
    }
    free(order);
    return 0;
}

int sft_data_split(const sft_data_io *io, const sft_split_options *o, sft_split_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "split needs an output folder (-o DIR)");
    if (!(o->val_fraction >= 0 && o->test_fraction >= 0 && o->val_fraction + o->test_fraction < 1))
        return sft_errf(err, "--val %g and --test %g must be >= 0 and leave records for training",
                        o->val_fraction, o->test_fraction);
    if (o->val_fraction + o->test_fraction <= 0) return sft_errf(err, "split: --val and --test are both 0");
    split_ctx c = {0};
    c.opts = o;
    int rc = 0;
    if (o->keep_near_together && !(c.near = sft_near_index_new(&o->near_opts, err))) return -1;
    sft_data_io quiet = *io;
    sft_each_summary each;
    rc = sft_data_each(io, 0, split_pass1, &c, &each, err);
    s->records = each.records;
    s->skipped = each.skipped;
    if (!rc) rc = assign_sides(&c, err);
    if (!rc) rc = sft_mkdir_p(io->output, err);
    static const char *names[3] = {"train.jsonl", "val.jsonl", "test.jsonl"};
    for (int side = 0; side < 3 && !rc; side++) {
        if (side == 2 && o->test_fraction <= 0) continue;
        char path[4096];
        if (sft_path_join(path, sizeof path, io->output, names[side], err) ||
            !(c.out[side] = sft_writer_open(path, err)))
            rc = -1;
    }
    if (!rc) {
        quiet.log = NULL; /* the formats were reported by the first pass */
        quiet.progress = io->progress;
        quiet.log = io->progress ? io->log : NULL;
        rc = sft_data_each(&quiet, 0, split_pass2, &c, NULL, err);
    }
    if (!rc && c.cursor != c.records) rc = sft_errf(err, "the inputs changed between the two passes");
    for (int side = 0; side < 3; side++) {
        if (!c.out[side]) continue;
        if (!rc)
            rc = sft_writer_commit(c.out[side], err);
        else
            sft_writer_abort(c.out[side]);
    }
    s->train = c.written[0];
    s->val = c.written[1];
    s->test = c.written[2];
    s->clusters = c.clusters;
    s->strata = c.strata_count ? c.strata_count : 1;
    free(c.cluster_of);
    free(c.cluster_stratum);
    free(c.cluster_size);
    free(c.cluster_side);
    free(c.leader_cluster);
    sft_u64map_free(&c.strata);
    sft_near_index_free(c.near);
    sft_text_scratch_free(&c.scratch);
    sft_u64s_free(&c.shingles);
    return rc;
}
