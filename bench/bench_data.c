/* bench_data.c: what data loading and tokenization cost `sft train`,
 * against its training step (issue 8's target: under 2% of step time).
 *
 *   bench_data [--shape gpt2-124m|gpt2-6l] [--records N] [--step-ms MS] [--reps N] [--fixtures DIR]
 *
 * Writes a chat dataset of N records (default 10000; `messages` JSONL, a
 * system turn in every third record, one user turn, one assistant turn)
 * from the real-text strings of FIXTURE_DIR/corpus/reference_corpus.json.gz,
 * records of T/2 to 3 T bytes (write_dataset below), and runs
 * the trainer's data path on it through the library (src/train/dataset.h),
 * with the model's own GPT-2 tokenizer and chat template
 * (FIXTURE_DIR/models/gpt2-tiny), max_len = the shape's T:
 *
 *   setup         sft_tokenizer_load, the chat template, sft_encoder_init
 *                 (hashes the tokenizer files): once per run.
 *   load (cold)   sft_dataset_load with an empty cache folder: read and
 *                 parse the JSONL, render the template, tokenize, mask,
 *                 truncate, write the cache: what the first `sft train` on a
 *                 dataset pays once.
 *   load (cached) the same call again, served from the cache written above:
 *                 what every later run on the same data pays.
 *   loader init   sft_loader_init without packing (the default) and with
 *                 packing (best-fit decreasing into rows of T).
 *   per step      the trainer's per-step data work before the forward
 *                 (trainer.c's train_step): the epoch's permutation, the
 *                 step's items and their supervised count, and
 *                 sft_loader_batch for one micro-batch of B items; the mean
 *                 over a whole epoch of steps, the fastest of --reps epochs.
 *
 * One `RESULT kind=data ...` line for bench/run.sh and bench/summarize.py,
 * which set these against the step time measured in the same run. With
 * --step-ms, the shares are printed here too: per step (per-step work /
 * step), and the one-time load spread over one epoch of steps
 * (records / B steps). Single-threaded, as the trainer's data path is.
 * The corpus has 2000 strings, so a 10000-record dataset repeats them; the
 * tokenizer's word cache is then warmer than on fully distinct text (the
 * cold load is a lower figure for very varied data). */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"
#include "io/file.h"
#include "io/json.h"
#include "train/dataset.h"
#include "train/rng.h"

/* B and T of bench_step.c's GPT-2 shapes (keep in sync). */
typedef struct data_shape {
    const char *name;
    int B, T;
} data_shape;
static const data_shape SHAPES[] = {{"gpt2-6l", 8, 256}, {"gpt2-124m", 4, 256}};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* The length of at most max bytes of s that ends on a UTF-8 character boundary. */
static size_t utf8_prefix(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

/* Writes one message object {"role": ROLE, "content": TEXT}. */
static void write_message(FILE *f, const char *role, const char *text, size_t len, int first) {
    fprintf(f, "%s{\"role\": \"%s\", \"content\": ", first ? "" : ", ", role);
    sft_json_write_string(f, text, len);
    fputc('}', f);
}

/* The dataset: record i takes corpus strings in order (cut at 2000 bytes
 * each, so one long string does not fill a record), its assistant turn
 * growing until the record's byte budget, drawn from an LCG between T/2 and
 * 3 T bytes: with this corpus (multilingual text and code, about 2-3 bytes
 * per GPT-2 token) 186 tokens per record on average at T = 256, a quarter
 * of the records longer than T (truncated, as `sft train` does). */
static int write_dataset(const char *path, const json_t *strings, int records, int T) {
    FILE *f = fopen(path, "w");
    if (!f) return perror(path), -1;
    size_t n = json_array_size(strings), next = 0;
    uint32_t state = 2024;
    for (int i = 0; i < records; i++) {
        state = state * 1103515245u + 12345u;
        size_t budget = (size_t)T / 2 + (state >> 8) % (size_t)(5 * T / 2);
        fputs("{\"messages\": [", f);
        int first = 1;
        if (i % 3 == 0) {
            const char *s = json_string_value(json_array_get(strings, next++ % n));
            write_message(f, "system", s, utf8_prefix(s, strlen(s), 200), 1);
            first = 0;
        }
        const char *u = json_string_value(json_array_get(strings, next++ % n));
        size_t ulen = utf8_prefix(u, strlen(u), budget / 3 + 1);
        write_message(f, "user", u, ulen, first);
        /* The assistant's answer: strings joined by blank lines up to the budget. */
        size_t used = ulen + (first ? 0 : 200), cap = budget + 2048, len = 0;
        char *answer = malloc(cap);
        if (!answer) return fclose(f), fprintf(stderr, "out of memory\n"), -1;
        do { /* the last piece cut where the budget ends (at least 64 bytes of answer) */
            const char *s = json_string_value(json_array_get(strings, next++ % n));
            size_t room = budget > used + 64 ? budget - used : 64;
            size_t piece = utf8_prefix(s, strlen(s), room < 2000 ? room : 2000);
            if (len) memcpy(answer + len, "\n\n", 2), len += 2;
            memcpy(answer + len, s, piece), len += piece, used += piece + 2;
        } while (used < budget && len + 2002 < cap);
        write_message(f, "assistant", answer, len, 0);
        free(answer);
        fputs("]}\n", f);
    }
    return fclose(f) ? (perror(path), -1) : 0;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_data [--shape gpt2-124m|gpt2-6l] [--records N] [--step-ms MS] [--reps N] "
                    "[--fixtures DIR]\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *fixtures = "tests/fixtures/hf", *shape_name = "gpt2-124m";
    int records = 10000, reps = 5;
    double step_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(a, "--shape"))
            shape_name = v;
        else if (!strcmp(a, "--records") && atoi(v) > 0)
            records = atoi(v);
        else if (!strcmp(a, "--step-ms") && atof(v) > 0)
            step_ms = atof(v);
        else if (!strcmp(a, "--reps") && atoi(v) > 0)
            reps = atoi(v);
        else if (!strcmp(a, "--fixtures"))
            fixtures = v;
        else
            return fprintf(stderr, "bench_data: bad option %s %s\n", a, v), usage();
        i++;
    }
    const data_shape *shape = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, shape_name)) shape = &SHAPES[i];
    if (!shape) return fprintf(stderr, "bench_data: unknown shape '%s' (gpt2-124m, gpt2-6l)\n", shape_name), 2;
    const int B = shape->B, T = shape->T;

    sft_err err;
    char path[4096], model_dir[4096];
    snprintf(path, sizeof path, "%s/corpus/reference_corpus.json.gz", fixtures);
    snprintf(model_dir, sizeof model_dir, "%s/models/gpt2-tiny", fixtures);
    char *text;
    size_t text_len;
    if (sft_read_file_maybe_gz(path, &text, &text_len, &err)) return fprintf(stderr, "bench_data: %s\n", err.msg), 1;
    json_t *corpus = sft_json_loadb(text, text_len, path, &err);
    free(text);
    if (!corpus) return fprintf(stderr, "bench_data: %s\n", err.msg), 1;
    const json_t *strings = json_object_get(corpus, "strings");
    if (json_array_size(strings) == 0) return fprintf(stderr, "bench_data: %s has no \"strings\"\n", path), 1;

    char work[] = "/tmp/sft-bench-data.XXXXXX";
    if (!mkdtemp(work)) return perror("mkdtemp"), 1;
    char data_path[4096], cache_dir[4096];
    snprintf(data_path, sizeof data_path, "%s/train.jsonl", work);
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", work);
    int rc = 1;
    sft_tokenizer *tok = NULL;
    sft_chat_template *tmpl = NULL;
    if (write_dataset(data_path, strings, records, T)) goto done;
    json_decref(corpus), corpus = NULL;

    double t0 = bench_wall_s();
    tok = sft_tokenizer_load(model_dir, &err);
    tmpl = tok ? sft_chat_template_for_tokenizer(tok, NULL, &err) : NULL;
    sft_encoder enc;
    if (!tmpl || sft_encoder_init(&enc, tok, tmpl, model_dir, &err)) {
        fprintf(stderr, "bench_data: %s: %s\n", model_dir, err.msg);
        goto done;
    }
    double setup_s = bench_wall_s() - t0;
    sft_dataset_options opts = {.format = SFT_FORMAT_AUTO, .max_len = T, .cache_dir = cache_dir};
    const char *paths[1] = {data_path};

    /* The one-time work, cold (no cache yet) and from the cache. */
    sft_dataset ds, again;
    t0 = bench_wall_s();
    if (sft_dataset_load(&ds, paths, 1, &enc, &opts, &err)) {
        fprintf(stderr, "bench_data: %s\n", err.msg);
        goto done;
    }
    double load_cold_s = bench_wall_s() - t0;
    if (ds.cache_hit) { /* the folder was empty: a hit would mean the cold figure is not cold */
        fprintf(stderr, "bench_data: the first load came from a cache (%s)\n", ds.cache_path);
        sft_dataset_free(&ds);
        goto done;
    }
    t0 = bench_wall_s();
    if (sft_dataset_load(&again, paths, 1, &enc, &opts, &err)) {
        fprintf(stderr, "bench_data: %s\n", err.msg);
        sft_dataset_free(&ds);
        goto done;
    }
    double load_cached_s = bench_wall_s() - t0;
    int cache_hit = again.cache_hit;
    sft_dataset_free(&again);

    sft_loader ld, packed;
    t0 = bench_wall_s();
    if (sft_loader_init(&ld, &ds, 0, T, 0, &err)) {
        fprintf(stderr, "bench_data: %s\n", err.msg);
        sft_dataset_free(&ds);
        goto done;
    }
    double init_s = bench_wall_s() - t0;
    t0 = bench_wall_s();
    if (sft_loader_init(&packed, &ds, 1, T, 0, &err)) {
        fprintf(stderr, "bench_data: %s\n", err.msg);
        sft_loader_free(&ld), sft_dataset_free(&ds);
        goto done;
    }
    double init_packed_s = bench_wall_s() - t0;
    sft_loader_free(&packed);

    /* Per step, as trainer.c's train_step does it before the forward. */
    sft_rng data_stream;
    sft_rng_seed(&data_stream, 1, SFT_RNG_STREAM_DATA);
    size_t steps = ld.item_count / (size_t)B;
    size_t *items = malloc((size_t)B * sizeof *items);
    sft_batch_buf buf = {0};
    double best_step_s = 1e30;
    int64_t checksum = 0;
    for (int rep = 0; rep < reps && items; rep++) {
        t0 = bench_wall_s();
        for (size_t s = 0; s < steps; s++) {
            sft_loader_set_epoch(&ld, &data_stream, rep);
            int64_t supervised = 0;
            for (int i = 0; i < B; i++) {
                items[i] = (size_t)ld.order[s * (size_t)B + (size_t)i];
                supervised += sft_loader_item_supervised(&ld, items[i]);
            }
            if (sft_loader_batch(&ld, items, B, &buf, &err)) {
                fprintf(stderr, "bench_data: %s\n", err.msg);
                steps = 0;
                break;
            }
            buf.batch.step_supervised_tokens = supervised;
            checksum += buf.batch.tokens[0] + buf.supervised; /* keeps the work observable */
        }
        double dt = (bench_wall_s() - t0) / (double)(steps ? steps : 1);
        if (dt < best_step_s) best_step_s = dt;
    }
    if (steps) {
        const sft_dataset_stats *st = &ds.stats;
        double per_step_ms = best_step_s * 1e3, once_ms = (setup_s + load_cold_s + init_s) * 1e3;
        printf("RESULT kind=data shape=%s B=%d T=%d records=%lld examples=%zu tokens=%lld supervised=%lld "
               "truncated=%lld setup_ms=%.1f load_cold_ms=%.1f load_cached_ms=%.1f cache_hit=%d loader_init_ms=%.2f "
               "loader_init_packed_ms=%.2f batch_ms=%.4f steps_per_epoch=%zu checksum=%lld\n",
               shape->name, B, T, (long long)st->records, ds.count, (long long)st->tokens,
               (long long)st->supervised_tokens, (long long)st->truncated, setup_s * 1e3, load_cold_s * 1e3, load_cached_s * 1e3,
               cache_hit, init_s * 1e3, init_packed_s * 1e3, per_step_ms, steps, (long long)checksum);
        fprintf(stderr,
                "bench_data %s: %lld records -> %lld tokens (%.0f per record, %lld truncated to %d); "
                "tokenizer and template %.0f ms; load %.0f ms cold (%.0f tokens/s), %.0f ms cached; loader init %.2f ms (packed %.1f ms); "
                "per step (B=%d) %.4f ms; one epoch = %zu steps\n",
                shape->name, (long long)st->records, (long long)st->tokens,
                (double)st->tokens / (double)(st->records ? st->records : 1), (long long)st->truncated, T,
                setup_s * 1e3, load_cold_s * 1e3, (double)st->tokens / load_cold_s, load_cached_s * 1e3, init_s * 1e3,
                init_packed_s * 1e3, B, per_step_ms, steps);
        if (step_ms > 0)
            fprintf(stderr,
                    "bench_data %s at %.0f ms per step: per-step data work %.4f%% of the step; the one-time load "
                    "over one epoch %.3f%% (cold), %.3f%% (cached)\n",
                    shape->name, step_ms, 100.0 * per_step_ms / step_ms,
                    100.0 * once_ms / (step_ms * (double)steps),
                    100.0 * ((setup_s + load_cached_s + init_s) * 1e3) / (step_ms * (double)steps));
        rc = 0;
    }
    free(items);
    sft_batch_buf_free(&buf);
    sft_loader_free(&ld);
    sft_dataset_free(&ds);
done:
    json_decref(corpus);
    sft_chat_template_free(tmpl);
    sft_tokenizer_free(tok);
    remove_tree(work);
    return rc;
}
