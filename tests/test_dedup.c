/* test_dedup.c: exact and near-duplicate removal and decontamination on
 * planted data, with precision and recall printed.
 *
 * The texts are random sequences over a 4000-word synthetic vocabulary, so
 * two unrelated records share almost no 5-word shingle (Jaccard ~ 0); planted
 * near duplicates change one or two words of a 120-200-word record, which
 * gives Jaccard 0.85-0.95 on 5-word shingles (measured below, not assumed). */
#include <omp.h>
#include <unistd.h>

#include "data/pipeline.h"
#include "data/text.h"
#include "io/file.h"
#include "test.h"

static uint64_t rng_state = 12345;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A pseudo-word for vocabulary index i: consonant-vowel syllables. */
static void word(size_t i, char *out) {
    static const char *c = "bdfgklmnprstvz", *v = "aeiou";
    int n = 0;
    do {
        out[n++] = c[i % 14];
        i /= 14;
        out[n++] = v[i % 5];
        i /= 5;
    } while (i);
    out[n] = 0;
}

#define MAXW 256
typedef struct {
    size_t words[MAXW];
    size_t count;
} text_t;

static void random_text(text_t *t, size_t count) {
    t->count = count;
    for (size_t i = 0; i < count; i++)
        t->words[i] = rnd() % 4000;
}

static void render(const text_t *t, char *out, size_t cap, int shout) {
    size_t o = 0;
    for (size_t i = 0; i < t->count && o + 16 < cap; i++) {
        char w[32];
        word(t->words[i], w);
        if (shout)
            for (char *p = w; *p; p++)
                *p = (char)(*p - 32);
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? (shout && i % 7 == 0 ? "  \\t " : " ") : "", w);
    }
}

static double jaccard_texts(const char *a, const char *b) {
    sft_text_scratch s = {0};
    sft_u64s ha = {0}, hb = {0};
    sft_err err;
    sft_text_normalized_words(a, strlen(a), &s, &err);
    sft_text_ngram_hashes(s.normalized.data, &s.words, 5, &ha);
    sft_u64s_sort_unique(&ha);
    sft_text_normalized_words(b, strlen(b), &s, &err);
    sft_text_ngram_hashes(s.normalized.data, &s.words, 5, &hb);
    sft_u64s_sort_unique(&hb);
    double j = sft_jaccard_sorted(ha.items, ha.count, hb.items, hb.count);
    sft_u64s_free(&ha);
    sft_u64s_free(&hb);
    sft_text_scratch_free(&s);
    return j;
}

/* Reads the "id" integers of an output file into keep[id] = 1. */
static int read_kept_ids(const char *path, int *keep, int max) {
    sft_err err = {0};
    sft_reader_options ro = {0};
    sft_reader *r = sft_reader_open(path, &ro, &err);
    if (!r) return -1;
    json_t *j;
    size_t line;
    int n = 0;
    while (sft_reader_next_json(r, &j, &line, &err) == 1) {
        int64_t id = (int64_t)json_integer_value(json_object_get(j, "id"));
        if (id >= 0 && id < max) keep[id] = 1;
        n++;
        json_decref(j);
    }
    sft_reader_close(r);
    return n;
}

TEST(normalisation_is_nfkc_casefold_and_collapsed_space) {
    sft_buf b = {0};
    sft_err err;
    CHECK_INT(sft_text_normalize("  Hello\t\n  WORLD ", 17, &b, &err), 0);
    CHECK_STR(b.data, "hello world");
    /* Fullwidth letters and the fi ligature fold under NFKC; German sharp s casefolds to ss. */
    const char *s = "\xEF\xBC\xA8\xEF\xBD\x85llo \xEF\xAC\x81ne Stra\xC3\x9F"
                    "e\xE2\x80\x83X";
    CHECK_INT(sft_text_normalize(s, strlen(s), &b, &err), 0);
    CHECK_STR(b.data, "hello fine strasse x");
    sft_buf_free(&b);
}

TEST(words_split_cjk_per_character_and_drop_punctuation) {
    sft_spans w = {0};
    sft_err err;
    const char *s = "don't stop: 漢字かな, café42!";
    CHECK_INT(sft_text_words(s, strlen(s), &w, &err), 0);
    /* don, t, stop, 漢, 字, か, な, café42 */
    CHECK_INT(w.count, 8);
    if (w.count == 8) {
        CHECK_INT(w.items[3].len, 3); /* one Han character, 3 bytes */
        CHECK(!strncmp(s + w.items[7].start, "café42", w.items[7].len));
    }
    sft_spans_free(&w);
}

TEST(script_counts_use_unicode_properties) {
    uint64_t counts[SFT_SCRIPT_COUNT] = {0};
    sft_err err;
    const char *s = "Hello мир 世界 γειά 123";
    CHECK_INT(sft_text_script_counts(s, strlen(s), counts, &err), 0);
    CHECK_INT(counts[SFT_SCRIPT_LATIN], 5);
    CHECK_INT(counts[SFT_SCRIPT_CYRILLIC], 3);
    CHECK_INT(counts[SFT_SCRIPT_HAN], 2);
    CHECK_INT(counts[SFT_SCRIPT_GREEK], 4);
    CHECK_INT(sft_script_parse("han"), SFT_SCRIPT_HAN);
}

#define N_BASE 300
#define N_RECORDS 1000

TEST(planted_duplicates_removed_with_full_precision_and_recall) {
    /* Layout: 300 unrelated base records; 60 of them get 2 near copies each
     * (1-2 words changed), 40 get an exact copy that differs only in case and
     * white space, 40 get a "related" copy with 10% of the words changed (Jaccard
     * about 0.3-0.55: must be kept). Everything is shuffled after its base. */
    static char texts[N_RECORDS][2048];
    static int should_remove[N_RECORDS];
    static text_t base[N_BASE];
    int n = 0;
    rng_state = 99;
    for (int b = 0; b < N_BASE; b++) {
        random_text(&base[b], 120 + rnd() % 80);
        render(&base[b], texts[n], sizeof texts[n], 0);
        should_remove[n++] = 0;
    }
    double min_near_j = 1, max_near_j = 0, max_related_j = 0;
    for (int b = 0; b < 60; b++)
        for (int k = 0; k < 2; k++) {
            text_t t = base[b];
            int changes = 1 + (int)(rnd() % 2);
            for (int c = 0; c < changes; c++)
                t.words[10 + rnd() % (t.count - 20)] = 4000 + rnd() % 1000;
            render(&t, texts[n], sizeof texts[n], 0);
            double j = jaccard_texts(texts[n], texts[b]);
            if (j < min_near_j) min_near_j = j;
            if (j > max_near_j) max_near_j = j;
            should_remove[n++] = 1;
        }
    for (int b = 60; b < 100; b++) {
        render(&base[b], texts[n], sizeof texts[n], 1);
        should_remove[n++] = 1;
    }
    for (int b = 100; b < 140; b++) {
        text_t t = base[b];
        for (size_t i = 0; i < t.count; i++)
            if (rnd() % 10 < 1) t.words[i] = 5000 + rnd() % 1000;
        render(&t, texts[n], sizeof texts[n], 0);
        double j = jaccard_texts(texts[n], texts[b]);
        if (j > max_related_j) max_related_j = j;
        should_remove[n++] = 0;
    }
    printf("  planted: %d records, near-duplicate Jaccard %.3f..%.3f, related (kept) Jaccard <= %.3f\n", n,
           min_near_j, max_near_j, max_related_j);
    CHECK(min_near_j >= 0.84 && max_near_j <= 0.96); /* the planted pairs are what the issue asks for */
    CHECK(max_related_j < 0.75);

    char in[128], out[128], report[128];
    snprintf(in, sizeof in, "/tmp/sft_test_dedup_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/sft_test_dedup_out_%d.jsonl", (int)getpid());
    snprintf(report, sizeof report, "/tmp/sft_test_dedup_report_%d.jsonl", (int)getpid());
    FILE *f = fopen(in, "w");
    for (int i = 0; i < n; i++) {
        fprintf(f, "{\"id\": %d, \"instruction\": \"Summarise.\", \"output\": \"%s\"}\n", i, texts[i]);
    }
    fclose(f);

    sft_dedup_options o;
    sft_dedup_options_default(&o);
    o.report = report;
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1, .output = out};
    sft_dedup_summary s;
    sft_err err = {0};
    CHECK_INT(sft_data_dedup(&io, &o, &s, &err), 0);
    if (err.msg[0]) printf("  %s\n", err.msg);
    static int kept[N_RECORDS];
    memset(kept, 0, sizeof kept);
    CHECK_INT(read_kept_ids(out, kept, N_RECORDS), (int)s.kept);
    int tp = 0, fp = 0, fn = 0;
    for (int i = 0; i < n; i++) {
        if (!kept[i] && should_remove[i]) tp++;
        if (!kept[i] && !should_remove[i]) fp++;
        if (kept[i] && should_remove[i]) fn++;
    }
    printf("  dedup: %zu records, %zu kept, %zu exact + %zu near removed, %zu clusters, %zu candidates "
           "verified (LSH %d bands x %d rows); precision %.3f recall %.3f\n",
           s.records, s.kept, s.exact_removed, s.near_removed, s.clusters, s.candidates, s.bands, s.rows,
           tp + fp ? (double)tp / (tp + fp) : 1.0, tp + fn ? (double)tp / (tp + fn) : 1.0);
    CHECK_INT(fp, 0); /* no record of Jaccard < 0.5 to all others (nor the related ones) removed */
    CHECK_INT(fn, 0); /* every cluster reduced to one record */
    CHECK_INT(s.exact_removed, 40);
    CHECK_INT(s.near_removed, 120);
    CHECK_INT(s.clusters, 100);
    /* Each cluster's kept record is its first (the base). */
    for (int b = 0; b < 100; b++)
        CHECK(kept[b]);
    char *rep;
    size_t len;
    CHECK_INT(sft_read_file(report, &rep, &len, &err), 0);
    CHECK(strstr(rep, "\"match\":\"exact\"") && strstr(rep, "\"match\":\"near\""));
    free(rep);
    /* The batches are prepared on all threads; the output must not depend on how many. */
    char out1[128];
    snprintf(out1, sizeof out1, "/tmp/sft_test_dedup_out1_%d.jsonl", (int)getpid());
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    io.output = out1;
    o.report = NULL;
    CHECK_INT(sft_data_dedup(&io, &o, &s, &err), 0);
    omp_set_num_threads(threads);
    char *a, *b;
    size_t la, lb;
    CHECK_INT(sft_read_file(out, &a, &la, &err), 0);
    CHECK_INT(sft_read_file(out1, &b, &lb, &err), 0);
    CHECK(la == lb && !memcmp(a, b, la));
    free(a);
    free(b);
    unlink(out1);
    unlink(in);
    unlink(out);
    unlink(report);
}

TEST(threshold_separates_pairs_by_verified_jaccard) {
    /* A pair at Jaccard ~0.75 is a duplicate at threshold 0.7, not at 0.8. */
    rng_state = 7;
    text_t a, b;
    random_text(&a, 150);
    b = a;
    for (int c = 0; c < 5; c++)
        b.words[10 + c * 27] = 4500 + c;
    static char ta[4096], tb[4096];
    render(&a, ta, sizeof ta, 0);
    render(&b, tb, sizeof tb, 0);
    double j = jaccard_texts(ta, tb);
    CHECK(j > 0.7 && j < 0.8);
    char in[128], out[128];
    snprintf(in, sizeof in, "/tmp/sft_test_thr_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/sft_test_thr_out_%d.jsonl", (int)getpid());
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"text\": \"%s\"}\n{\"text\": \"%s\"}\n", ta, tb);
    fclose(f);
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1, .output = out};
    sft_dedup_options o;
    sft_dedup_options_default(&o);
    sft_dedup_summary s;
    sft_err err = {0};
    CHECK_INT(sft_data_dedup(&io, &o, &s, &err), 0);
    CHECK_INT(s.kept, 2);
    o.near_opts.threshold = 0.7;
    CHECK_INT(sft_data_dedup(&io, &o, &s, &err), 0);
    CHECK_INT(s.kept, 1);
    unlink(in);
    unlink(out);
}

TEST(planted_contamination_removed_and_no_clean_record) {
    /* 30 evaluation items of 40 words (and 5 short ones of 10 words). Training:
     * 200 clean records, 30 that embed a 13-word span of an item (recased,
     * with punctuation), 30 that embed only 12 consecutive words (clean: below
     * the n-gram), 5 that contain a whole short item, 5 that contain 9 of its
     * 10 words (clean). */
    rng_state = 4242;
    static text_t eval[35];
    char evalp[128], in[128], out[128], rej[128], report[128];
    snprintf(evalp, sizeof evalp, "/tmp/sft_test_eval_%d.jsonl", (int)getpid());
    snprintf(in, sizeof in, "/tmp/sft_test_contam_%d.jsonl", (int)getpid());
    snprintf(out, sizeof out, "/tmp/sft_test_contam_out_%d.jsonl", (int)getpid());
    snprintf(rej, sizeof rej, "/tmp/sft_test_contam_rej_%d.jsonl", (int)getpid());
    snprintf(report, sizeof report, "/tmp/sft_test_contam_rep_%d.json", (int)getpid());
    FILE *f = fopen(evalp, "w");
    static char buf[4096], span[1024], filler[2048];
    for (int e = 0; e < 35; e++) {
        random_text(&eval[e], e < 30 ? 40 : 10);
        render(&eval[e], buf, sizeof buf, 0);
        /* Evaluation records of any shape: all string fields count. */
        fprintf(f, "{\"id\": \"q%d\", \"question\": {\"text\": \"%s\"}, \"answer\": 3}\n", e, buf);
    }
    fclose(f);
    f = fopen(in, "w");
    int id = 0;
    static int contaminated[400];
    for (int i = 0; i < 200; i++) {
        text_t t;
        random_text(&t, 60);
        render(&t, buf, sizeof buf, 0);
        contaminated[id] = 0;
        fprintf(f, "{\"id\": %d, \"instruction\": \"Explain.\", \"output\": \"%s\"}\n", id++, buf);
    }
    for (int e = 0; e < 30; e++)
        for (int span_words = 13; span_words >= 12; span_words--) {
            text_t s = {.count = (size_t)span_words};
            size_t at = rnd() % (40 - 13);
            memcpy(s.words, eval[e].words + at, span_words * sizeof(size_t));
            render(&s, span, sizeof span, span_words == 13);
            text_t fill;
            random_text(&fill, 30);
            render(&fill, filler, sizeof filler, 0);
            contaminated[id] = span_words == 13;
            fprintf(f, "{\"id\": %d, \"instruction\": \"%s, (%s).\", \"output\": \"ok\"}\n", id++, filler,
                    span);
        }
    for (int e = 30; e < 35; e++)
        for (int whole = 1; whole >= 0; whole--) {
            text_t s = eval[e];
            if (!whole) s.count = 9;
            render(&s, span, sizeof span, 0);
            contaminated[id] = whole;
            fprintf(f,
                    "{\"id\": %d, \"messages\": [{\"role\": \"user\", \"content\": \"Q: %s?\"}, {\"role\": "
                    "\"assistant\", \"content\": \"A\"}]}\n",
                    id++, span);
        }
    fclose(f);
    /* The last block is in another format: put it in its own file. */
    char in2[128];
    snprintf(in2, sizeof in2, "/tmp/sft_test_contam2_%d.jsonl", (int)getpid());
    {
        char *all;
        size_t len;
        sft_err e0;
        sft_read_file(in, &all, &len, &e0);
        char *cut = strstr(all, "{\"id\": 260, \"messages\"");
        FILE *a = fopen(in, "w"), *b = fopen(in2, "w");
        fwrite(all, 1, (size_t)(cut - all), a);
        fputs(cut, b);
        fclose(a);
        fclose(b);
        free(all);
    }
    const char *inputs[] = {in, in2};
    const char *against[] = {evalp};
    sft_data_io io = {.inputs = inputs, .input_count = 2, .output = out};
    sft_decontam_options o;
    sft_decontam_options_default(&o);
    o.against = against;
    o.against_count = 1;
    o.rejected = rej;
    o.report = report;
    sft_decontam_summary s;
    sft_err err = {0};
    CHECK_INT(sft_data_decontaminate(&io, &o, &s, &err), 0);
    if (err.msg[0]) printf("  %s\n", err.msg);
    static int kept[400];
    memset(kept, 0, sizeof kept);
    read_kept_ids(out, kept, 400);
    int tp = 0, fp = 0, fn = 0;
    for (int i = 0; i < id; i++) {
        tp += !kept[i] && contaminated[i];
        fp += !kept[i] && !contaminated[i];
        fn += kept[i] && contaminated[i];
    }
    printf(
        "  decontaminate: %zu records, %zu removed, %zu of %zu eval items hit; precision %.3f recall %.3f\n",
        s.records, s.removed, s.eval_items_hit, s.eval_items, tp + fp ? (double)tp / (tp + fp) : 1.0,
        tp + fn ? (double)tp / (tp + fn) : 1.0);
    CHECK_INT(s.records, (size_t)id);
    CHECK_INT(fp, 0);
    CHECK_INT(fn, 0);
    CHECK_INT(s.eval_items, 35);
    CHECK_INT(s.eval_items_hit, 35);
    char *rep;
    size_t len;
    CHECK_INT(sft_read_file(report, &rep, &len, &err), 0);
    CHECK(strstr(rep, "\"eval_id\":\"q0\"") != NULL);
    free(rep);
    unlink(evalp);
    unlink(in);
    unlink(in2);
    unlink(out);
    unlink(rej);
    unlink(report);
}

static int cmp_u64_test(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

TEST(sort_unique_matches_qsort_on_random_and_repetitive_sets) {
    rng_state = 5;
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(rnd() % 700);
        uint64_t mod = round % 3 == 0 ? 5 : round % 3 == 1 ? 1000 : UINT64_MAX; /* many repeats, some, none */
        sft_u64s v = {0};
        uint64_t *ref = malloc((n + 1) * sizeof *ref);
        for (size_t i = 0; i < n; i++) {
            uint64_t x = mod == UINT64_MAX ? rnd() : rnd() % mod;
            sft_u64s_push(&v, x);
            ref[i] = x;
        }
        qsort(ref, n, sizeof *ref, cmp_u64_test);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!m || ref[i] != ref[m - 1]) ref[m++] = ref[i];
        sft_u64s_sort_unique(&v);
        CHECK_INT(v.count, m);
        CHECK(m == 0 || !memcmp(v.items, ref, m * sizeof *ref));
        free(ref);
        sft_u64s_free(&v);
    }
}

TEST(jaccard_of_sorted_sets) {
    uint64_t a[] = {1, 2, 3, 4}, b[] = {3, 4, 5, 6};
    CHECK_NEAR(sft_jaccard_sorted(a, 4, b, 4), 2.0 / 6.0, 1e-12);
    CHECK_NEAR(sft_jaccard_sorted(a, 4, a, 4), 1.0, 1e-12);
    CHECK_NEAR(sft_jaccard_sorted(a, 0, b, 0), 1.0, 1e-12);
}
