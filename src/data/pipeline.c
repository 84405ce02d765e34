/* pipeline.c: the record loop shared by every `sft data` step, and the steps
 * convert, dedup and decontaminate (see pipeline.h). */
#include "data/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/file.h"
#include "io/json.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int sft_data_each(const sft_data_io *io, int allow_no_assistant, sft_record_fn fn, void *ctx,
                  sft_each_summary *summary, sft_err *err) {
    sft_each_summary local = {0};
    if (!summary) summary = &local;
    memset(summary, 0, sizeof *summary);
    sft_record rec;
    sft_record_init(&rec);
    int rc = 0;
    double last_progress = now_s();
    for (int i = 0; i < io->input_count && !rc; i++) {
        sft_reader_options ro = {io->format, io->skip_bad, allow_no_assistant};
        sft_reader *r = sft_reader_open(io->inputs[i], &ro, err);
        if (!r) {
            rc = -1;
            break;
        }
        int reported = 0;
        for (;;) {
            int got = sft_reader_next(r, &rec, err);
            if (got < 0) {
                rc = -1;
                break;
            }
            if (got == 0) break;
            if (!reported && io->log) {
                fprintf(io->log, "%s: %s format%s\n", io->inputs[i],
                        sft_data_format_name(sft_reader_format(r)),
                        io->format == SFT_FORMAT_AUTO ? " (detected)" : "");
                reported = 1;
            }
            summary->records++;
            if (fn(&rec, ctx, err)) {
                rc = -1;
                break;
            }
            if (io->progress && io->log && (summary->records & 1023) == 0 && now_s() - last_progress > 1.0) {
                last_progress = now_s();
                fprintf(io->log, "\r%s: %zu records, %.1f MB read", io->inputs[i], summary->records,
                        sft_reader_bytes_read(r) / 1e6);
                fflush(io->log);
            }
        }
        if (io->progress && io->log && summary->records >= 1024) fprintf(io->log, "\r\033[K");
        size_t skipped = sft_reader_skipped(r);
        if (skipped && io->log)
            fprintf(io->log, "%s: skipped %zu bad record%s (first: %s)\n", io->inputs[i], skipped,
                    skipped == 1 ? "" : "s", sft_reader_first_skip(r));
        summary->skipped += skipped;
        sft_reader_close(r);
    }
    sft_record_free(&rec);
    return rc;
}

/* ------------------------------------------------------------------ convert */

typedef struct {
    sft_writer *out;
    sft_data_format to;
} convert_ctx;

static int convert_one(sft_record *rec, void *p, sft_err *err) {
    convert_ctx *c = p;
    if (rec->format == c->to) return sft_writer_put_record(c->out, rec, err);
    char where[512];
    snprintf(where, sizeof where, "%s:%zu", rec->path, rec->line);
    json_t *built =
        sft_record_build(rec->json, rec->format, rec->messages, rec->message_count, c->to, where, err);
    if (!built) return -1;
    int rc = sft_writer_put_json(c->out, built, err);
    json_decref(built);
    return rc;
}

int sft_data_convert(const sft_data_io *io, sft_data_format to, sft_each_summary *summary, sft_err *err) {
    if (to == SFT_FORMAT_AUTO) return sft_errf(err, "convert needs a target format (--to)");
    if (!io->output) return sft_errf(err, "convert needs an output file (-o)");
    convert_ctx c = {sft_writer_open(io->output, err), to};
    if (!c.out) return -1;
    if (sft_data_each(io, 0, convert_one, &c, summary, err)) {
        sft_writer_abort(c.out);
        return -1;
    }
    return sft_writer_commit(c.out, err);
}

/* -------------------------------------------------------------------- dedup */

void sft_dedup_options_default(sft_dedup_options *o) {
    memset(o, 0, sizeof *o);
    o->exact = 1;
    o->near = 1;
    o->shingle_words = 5;
    o->near_opts.threshold = 0.8;
    o->near_opts.num_perm = 128;
    o->near_opts.seed = 1;
}

/* Where a record came from, for reports: "FILE:LINE" and its id. */
typedef struct {
    char *where;
    char *id; /* the id field as JSON, or NULL */
} origin;

static int origin_of(const sft_record *rec, origin *o) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s:%zu", rec->path, rec->line);
    o->where = strdup(buf);
    const json_t *id = json_object_get(rec->json, "id");
    o->id = id ? sft_record_dumps(id) : NULL;
    return o->where ? 0 : -1;
}

static void origin_free(origin *o) {
    free(o->where);
    free(o->id);
}

typedef struct {
    uint32_t cluster; /* kept record number */
    double jaccard;
    int exact;
    size_t order; /* input order, to keep the report stable after sorting */
    origin from;
} removed_entry;

/* Records are deduplicated in batches: the per-record work (normalising,
 * hashing, shingling, MinHash) runs on all threads, then the decisions are
 * taken one record at a time in input order, so the output does not depend
 * on the thread count. */
#define DEDUP_BATCH 1024

typedef struct {
    const sft_dedup_options *opts;
    sft_writer *out;
    sft_u64map exact_keys;
    sft_near_index *near;
    uint32_t *leader_to_kept;
    size_t leader_cap;
    size_t kept;
    /* the batch */
    sft_record *batch;
    size_t batch_count;
    uint64_t *batch_keys;
    sft_u64s *batch_sets;
    uint32_t *batch_sigs;
    long *batch_prior; /* best leader from before the batch, or -1 */
    double *batch_prior_jaccard;
    size_t batch_from; /* leaders numbered from here on were made in this batch */
    sft_path_pool paths; /* stable copies of the input paths the batch points to */
    sft_dedup_summary *summary;
    /* report only */
    origin *kept_origins;
    size_t kept_cap;
    removed_entry *removed;
    size_t removed_count, removed_cap;
} dedup_ctx;

static int note_removed(dedup_ctx *c, const sft_record *rec, uint32_t cluster, double jaccard, int exact,
                        sft_err *err) {
    if (!c->opts->report) return 0;
    if (c->removed_count == c->removed_cap) {
        size_t cap = c->removed_cap ? 2 * c->removed_cap : 256;
        removed_entry *r = realloc(c->removed, cap * sizeof *r);
        if (!r) return sft_errf(err, "out of memory");
        c->removed = r;
        c->removed_cap = cap;
    }
    removed_entry *e = &c->removed[c->removed_count++];
    e->cluster = cluster;
    e->jaccard = jaccard;
    e->exact = exact;
    e->order = c->removed_count - 1;
    if (origin_of(rec, &e->from)) return sft_errf(err, "out of memory");
    return 0;
}

/* The decision for record i of the batch, in input order. */
static int dedup_decide(dedup_ctx *c, size_t i, sft_err *err) {
    const sft_record *rec = &c->batch[i];
    uint64_t key = c->batch_keys[i];
    if (c->opts->exact) {
        long k = sft_u64map_first(&c->exact_keys, key);
        if (k >= 0) {
            c->summary->exact_removed++;
            return note_removed(c, rec, (uint32_t)k, 1.0, 1, err);
        }
    }
    if (c->opts->near) {
        long leader;
        double j;
        size_t before = sft_near_index_leaders(c->near);
        const sft_u64s *set = &c->batch_sets[i];
        const uint32_t *sig = c->batch_sigs + i * (size_t)sft_near_index_num_perm(c->near);
        if (sft_near_index_assign_from(c->near, set->items, set->count, sig, c->batch_from, c->batch_prior[i],
                                       c->batch_prior_jaccard[i], &leader, &j, err))
            return -1;
        if (leader >= 0) {
            c->summary->near_removed++;
            return note_removed(c, rec, c->leader_to_kept[leader], j, 0, err);
        }
        if (sft_near_index_leaders(c->near) > before) {
            if (before >= c->leader_cap) {
                size_t cap = c->leader_cap ? 2 * c->leader_cap : 1024;
                uint32_t *m = realloc(c->leader_to_kept, cap * sizeof *m);
                if (!m) return sft_errf(err, "out of memory");
                c->leader_to_kept = m;
                c->leader_cap = cap;
            }
            c->leader_to_kept[before] = (uint32_t)c->kept;
        }
    }
    if (c->opts->exact && sft_u64map_add(&c->exact_keys, key, (uint32_t)c->kept))
        return sft_errf(err, "out of memory");
    if (c->opts->report) {
        if (c->kept == c->kept_cap) {
            size_t cap = c->kept_cap ? 2 * c->kept_cap : 1024;
            origin *o = realloc(c->kept_origins, cap * sizeof *o);
            if (!o) return sft_errf(err, "out of memory");
            c->kept_origins = o;
            c->kept_cap = cap;
        }
        if (origin_of(rec, &c->kept_origins[c->kept])) return sft_errf(err, "out of memory");
    }
    c->kept++;
    return sft_writer_put_record(c->out, rec, err);
}

static int dedup_flush(dedup_ctx *c, sft_err *err) {
    size_t n = c->batch_count;
    long failed = -1; /* the first record whose preparation failed */
    sft_err first_err = {{0}};
    int perms = c->near ? sft_near_index_num_perm(c->near) : 0;
    c->batch_from = c->near ? sft_near_index_leaders(c->near) : 0;
    size_t verified_total = 0;
#pragma omp parallel reduction(+ : verified_total)
    {
        sft_text_scratch scratch = {0};
        sft_err local = {{0}};
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < n; i++) {
            const sft_record *rec = &c->batch[i];
            int rc = 0;
            c->batch_keys[i] = 0;
            if (c->opts->exact) rc = sft_record_exact_hash(rec, &scratch, &c->batch_keys[i], &local);
            /* A key kept by an earlier batch (the map is only read here) makes the
             * record an exact duplicate: no near work for it. */
            int known = c->opts->exact && !rc && sft_u64map_first(&c->exact_keys, c->batch_keys[i]) >= 0;
            if (!rc && c->opts->near && !known) {
                rc = sft_record_shingles(rec, (size_t)c->opts->shingle_words, c->opts->prompt_only, &scratch,
                                         &c->batch_sets[i], &local);
                const uint32_t *sig = c->batch_sigs + i * (size_t)perms;
                if (!rc)
                    sft_near_index_signature(c->near, c->batch_sets[i].items, c->batch_sets[i].count,
                                             (uint32_t *)sig);
                /* Match against the leaders of earlier batches (read-only here). */
                size_t verified = 0;
                if (!rc && sft_near_index_best(c->near, c->batch_sets[i].items, c->batch_sets[i].count, sig,
                                               c->batch_from, &c->batch_prior[i], &c->batch_prior_jaccard[i],
                                               &verified))
                    rc = sft_errf(&local, "out of memory");
                verified_total += verified;
            }
            if (rc) {
#pragma omp critical(dedup_error)
                if (failed < 0 || (long)i < failed) {
                    failed = (long)i;
                    first_err = local;
                }
            }
        }
        sft_text_scratch_free(&scratch);
    }
    if (c->near) sft_near_index_add_candidates(c->near, verified_total);
    size_t upto = failed < 0 ? n : (size_t)failed;
    for (size_t i = 0; i < upto; i++)
        if (dedup_decide(c, i, err)) return -1;
    c->batch_count = 0;
    if (failed >= 0) {
        *err = first_err;
        return sft_err_prefix(err, "%s:%zu", c->batch[failed].path, c->batch[failed].line);
    }
    return 0;
}

/* Moves the record into the batch (the reader gets the slot's old buffers). */
static int dedup_collect(sft_record *rec, void *p, sft_err *err) {
    dedup_ctx *c = p;
    if (sft_record_move_into(&c->batch[c->batch_count], rec, &c->paths, err)) return -1;
    c->batch_count++;
    return c->batch_count == DEDUP_BATCH ? dedup_flush(c, err) : 0;
}

static int cmp_removed(const void *a, const void *b) {
    const removed_entry *x = a, *y = b;
    if (x->cluster != y->cluster) return x->cluster < y->cluster ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void put_origin(FILE *f, const char *key, const origin *o) {
    fprintf(f, "\"%s\":", key);
    sft_json_write_string(f, o->where, strlen(o->where));
    if (o->id) fprintf(f, ",\"%s_id\":%s", key, o->id);
}

/* One JSON line per cluster: the kept record and the ones removed for it. */
static int write_dedup_report(dedup_ctx *c, const char *path, sft_err *err) {
    if (c->removed_count > 1) qsort(c->removed, c->removed_count, sizeof *c->removed, cmp_removed);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    size_t clusters = 0;
    for (size_t i = 0; i < c->removed_count;) {
        uint32_t cl = c->removed[i].cluster;
        fprintf(f, "{\"cluster\":%zu,", clusters++);
        put_origin(f, "kept", &c->kept_origins[cl]);
        fprintf(f, ",\"removed\":[");
        for (size_t k = i; k < c->removed_count && c->removed[k].cluster == cl; k++) {
            if (k > i) fputc(',', f);
            fputc('{', f);
            put_origin(f, "record", &c->removed[k].from);
            fprintf(f, ",\"match\":\"%s\",\"jaccard\":%.4f}", c->removed[k].exact ? "exact" : "near",
                    c->removed[k].jaccard);
        }
        fprintf(f, "]}\n");
        while (i < c->removed_count && c->removed[i].cluster == cl)
            i++;
    }
    fclose(f);
    c->summary->clusters = clusters;
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

int sft_data_dedup(const sft_data_io *io, const sft_dedup_options *o, sft_dedup_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "dedup needs an output file (-o)");
    if (!o->exact && !o->near) return sft_errf(err, "dedup: both exact and near matching are off");
    if (o->shingle_words < 1) return sft_errf(err, "--shingle must be at least 1 word");
    dedup_ctx c = {0};
    c.opts = o;
    c.summary = s;
    if (o->near && !(c.near = sft_near_index_new(&o->near_opts, err))) return -1;
    if (c.near) sft_near_index_shape(c.near, &s->bands, &s->rows);
    int rc = -1;
    c.batch = calloc(DEDUP_BATCH, sizeof *c.batch);
    c.batch_keys = calloc(DEDUP_BATCH, sizeof *c.batch_keys);
    c.batch_sets = calloc(DEDUP_BATCH, sizeof *c.batch_sets);
    if (c.near)
        c.batch_sigs =
            calloc((size_t)DEDUP_BATCH * (size_t)sft_near_index_num_perm(c.near), sizeof *c.batch_sigs);
    c.batch_prior = calloc(DEDUP_BATCH, sizeof *c.batch_prior);
    c.batch_prior_jaccard = calloc(DEDUP_BATCH, sizeof *c.batch_prior_jaccard);
    if (!c.batch || !c.batch_keys || !c.batch_sets || (c.near && !c.batch_sigs) || !c.batch_prior ||
        !c.batch_prior_jaccard)
        sft_errf(err, "out of memory");
    else if ((c.out = sft_writer_open(io->output, err))) {
        sft_each_summary each;
        rc = sft_data_each(io, 0, dedup_collect, &c, &each, err);
        if (!rc) rc = dedup_flush(&c, err);
        s->records = each.records;
        s->skipped = each.skipped;
        s->kept = c.kept;
        if (c.near) s->candidates = sft_near_index_candidates(c.near);
        if (!rc && o->report) rc = write_dedup_report(&c, o->report, err);
        rc = sft_writer_finish(c.out, rc, err);
    }
    if (o->report) {
        for (size_t i = 0; i < c.kept && c.kept_origins; i++)
            origin_free(&c.kept_origins[i]);
        for (size_t i = 0; i < c.removed_count; i++)
            origin_free(&c.removed[i].from);
    }
    free(c.kept_origins);
    free(c.removed);
    free(c.leader_to_kept);
    for (size_t i = 0; c.batch && i < DEDUP_BATCH; i++)
        sft_record_free(&c.batch[i]);
    for (size_t i = 0; c.batch_sets && i < DEDUP_BATCH; i++)
        sft_u64s_free(&c.batch_sets[i]);
    sft_path_pool_free(&c.paths);
    free(c.batch);
    free(c.batch_keys);
    free(c.batch_sets);
    free(c.batch_sigs);
    free(c.batch_prior);
    free(c.batch_prior_jaccard);
    sft_u64map_free(&c.exact_keys);
    sft_near_index_free(c.near);
    return rc;
}

/* ------------------------------------------------------------ decontaminate */

void sft_decontam_options_default(sft_decontam_options *o) {
    memset(o, 0, sizeof *o);
    o->ngram = 13;
    o->min_ngram = 8;
}

typedef struct {
    origin from;
    size_t hits;        /* matching n-grams */
    size_t records;     /* training records that matched it */
    size_t last_record; /* 1 + the last training record counted */
    char *first_hit;    /* the first training record that hit it */
} eval_item;

typedef struct {
    const sft_decontam_options *opts;
    sft_u64map grams; /* n-gram hash -> eval item */
    uint64_t lengths; /* bit L set: some evaluation text is one L-gram (L < 64) */
    eval_item *items;
    size_t item_count, item_cap;
    sft_text_scratch scratch;
    sft_u64s hashes;
    sft_writer *out, *rejected;
    sft_decontam_summary *summary;
    /* per training record */
    size_t record_no; /* 1-based number of the current training record */
    uint32_t first_hit;
    int hit;
} decontam_ctx;

/* Adds the n-grams of one evaluation string. */
static int add_eval_text(decontam_ctx *c, const char *text, size_t len, uint32_t item, sft_err *err) {
    if (sft_text_normalized_words(text, len, &c->scratch, err)) return -1;
    size_t words = c->scratch.words.count;
    size_t n = (size_t)c->opts->ngram;
    if (words < n) {
        if (words < (size_t)c->opts->min_ngram) return 0; /* too short to call a match contamination */
        c->lengths |= 1ULL << words;
    }
    if (sft_text_ngram_hashes(c->scratch.normalized.data, &c->scratch.words, n, &c->hashes))
        return sft_errf(err, "out of memory");
    for (size_t i = 0; i < c->hashes.count; i++)
        if (sft_u64map_add(&c->grams, c->hashes.items[i], item)) return sft_errf(err, "out of memory");
    return 0;
}

static int add_eval_strings(decontam_ctx *c, const json_t *j, uint32_t item, sft_err *err) {
    if (json_is_string(j)) return add_eval_text(c, json_string_value(j), json_string_length(j), item, err);
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            if (add_eval_strings(c, json_array_get(j, i), item, err)) return -1;
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) if (add_eval_strings(c, v, item, err)) return -1;
    }
    return 0;
}

static int load_eval_file(decontam_ctx *c, const char *path, sft_err *err) {
    sft_reader_options ro = {0};
    sft_reader *r = sft_reader_open(path, &ro, err);
    if (!r) return -1;
    json_t *j;
    size_t line;
    int got;
    while ((got = sft_reader_next_json(r, &j, &line, err)) == 1) {
        if (c->item_count == c->item_cap) {
            size_t cap = c->item_cap ? 2 * c->item_cap : 256;
            eval_item *it = realloc(c->items, cap * sizeof *it);
            if (!it) {
                json_decref(j);
                sft_reader_close(r);
                return sft_errf(err, "out of memory");
            }
            c->items = it;
            c->item_cap = cap;
        }
        eval_item *it = &c->items[c->item_count];
        memset(it, 0, sizeof *it);
        sft_record fake = {.json = j, .path = path, .line = line};
        int rc = origin_of(&fake, &it->from) ? sft_errf(err, "out of memory") : 0;
        c->item_count++;
        if (!rc) rc = add_eval_strings(c, j, (uint32_t)(c->item_count - 1), err);
        json_decref(j);
        if (rc) {
            sft_reader_close(r);
            return -1;
        }
    }
    sft_reader_close(r);
    return got;
}

static int record_hit(uint32_t item, void *p) {
    decontam_ctx *c = p;
    if (!c->hit || item < c->first_hit) c->first_hit = item;
    c->hit = 1;
    eval_item *it = &c->items[item];
    it->hits++;
    if (it->last_record != c->record_no) {
        it->last_record = c->record_no;
        it->records++;
    }
    return 0;
}

static int check_grams(decontam_ctx *c, size_t n) {
    if (sft_text_ngram_hashes(c->scratch.normalized.data, &c->scratch.words, n, &c->hashes)) return -1;
    /* A text shorter than n words gives one hash of all its words: that is an
     * L-gram, not an n-gram, and must not match the n-gram table. */
    if (c->scratch.words.count < n) return 0;
    for (size_t i = 0; i < c->hashes.count; i++)
        sft_u64map_each(&c->grams, c->hashes.items[i], record_hit, c);
    return 0;
}

static int decontam_one(sft_record *rec, void *p, sft_err *err) {
    decontam_ctx *c = p;
    c->hit = 0;
    c->record_no++;
    for (size_t m = 0; m < rec->message_count; m++) {
        if (sft_text_normalized_words(rec->messages[m].content, rec->messages[m].content_len, &c->scratch,
                                      err))
            return -1;
        if (check_grams(c, (size_t)c->opts->ngram)) return sft_errf(err, "out of memory");
        for (size_t len = 1; len < 64 && len < (size_t)c->opts->ngram; len++)
            if ((c->lengths >> len) & 1 && check_grams(c, len)) return sft_errf(err, "out of memory");
    }
    if (!c->hit) {
        c->summary->kept++;
        return sft_writer_put_record(c->out, rec, err);
    }
    c->summary->removed++;
    eval_item *it = &c->items[c->first_hit];
    if (!it->first_hit) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s:%zu", rec->path, rec->line);
        it->first_hit = strdup(buf);
    }
    if (!c->rejected) return 0;
    json_t *copy = json_copy(rec->json);
    json_object_set_new(copy, "_contaminated_by", json_string(it->from.where));
    int rc = sft_writer_put_json(c->rejected, copy, err);
    json_decref(copy);
    return rc;
}

static int write_decontam_report(decontam_ctx *c, const char *path, sft_err *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    fprintf(f,
            "{\"ngram\":%d,\"min_ngram\":%d,\"eval_items\":%zu,\"eval_items_hit\":%zu,"
            "\"training_records\":%zu,\"removed\":%zu,\"hit\":[",
            c->opts->ngram, c->opts->min_ngram, c->item_count, c->summary->eval_items_hit,
            c->summary->records, c->summary->removed);
    int first = 1;
    for (size_t i = 0; i < c->item_count; i++) {
        eval_item *it = &c->items[i];
        if (!it->hits) continue;
        fprintf(f, "%s\n{", first ? "" : ",");
        first = 0;
        put_origin(f, "eval", &it->from);
        fprintf(f, ",\"training_records\":%zu,\"matching_ngrams\":%zu", it->records, it->hits);
        if (it->first_hit) {
            fprintf(f, ",\"first_training_record\":");
            sft_json_write_string(f, it->first_hit, strlen(it->first_hit));
        }
        fputc('}', f);
    }
    fprintf(f, "]}\n");
    fclose(f);
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

int sft_data_decontaminate(const sft_data_io *io, const sft_decontam_options *o, sft_decontam_summary *s,
                           sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "decontaminate needs an output file (-o)");
    if (o->against_count < 1) return sft_errf(err, "decontaminate needs --against FILE (evaluation data)");
    if (o->ngram < 1 || o->min_ngram < 1) return sft_errf(err, "--ngram and --min-ngram must be at least 1");
    decontam_ctx c = {0};
    c.opts = o;
    c.summary = s;
    int rc = 0;
    for (int i = 0; i < o->against_count && !rc; i++)
        rc = load_eval_file(&c, o->against[i], err);
    if (!rc) {
        s->eval_items = c.item_count;
        c.out = sft_writer_open(io->output, err);
        if (!c.out) rc = -1;
        if (!rc && o->rejected && !(c.rejected = sft_writer_open(o->rejected, err))) rc = -1;
        if (!rc) {
            sft_each_summary each;
            rc = sft_data_each(io, 0, decontam_one, &c, &each, err);
            s->records = each.records;
            s->skipped = each.skipped;
        }
        for (size_t i = 0; i < c.item_count; i++)
            s->eval_items_hit += c.items[i].hits > 0;
        if (!rc && o->report) rc = write_decontam_report(&c, o->report, err);
        if (!rc && c.rejected) {
            rc = sft_writer_commit(c.rejected, err);
            c.rejected = NULL;
        }
        if (!rc) {
            rc = sft_writer_commit(c.out, err);
            c.out = NULL;
        }
        sft_writer_abort(c.rejected);
        sft_writer_abort(c.out);
    }
    for (size_t i = 0; i < c.item_count; i++) {
        origin_free(&c.items[i].from);
        free(c.items[i].first_hit);
    }
    free(c.items);
    sft_u64map_free(&c.grams);
    sft_text_scratch_free(&c.scratch);
    sft_u64s_free(&c.hashes);
    return rc;
}
