/* test_pipeline.c: split (exact fractions per stratum, near duplicates on one
 * side, seeded), generate (every answer recomputed from its prompt), augment
 * (constraints the answer really meets, provenance) and stats counts. */
#include <ctype.h>
#include <strings.h>
#include <unistd.h>

#include "data/pipeline.h"
#include "io/file.h"
#include "test.h"

static char tmpdir[128];

static const char *path_in_tmp(const char *name) {
    static char buf[8][256];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/sft_test_pipeline_%d", (int)getpid());
        sft_err err;
        sft_mkdir_p(tmpdir, &err);
    }
    char *b = buf[k++ % 8];
    snprintf(b, 256, "%s/%s", tmpdir, name);
    return b;
}

/* The scratch folder goes when the binary ends. */
__attribute__((destructor)) static void remove_tmpdir(void) {
    if (!tmpdir[0]) return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
}

/* Reads every record's JSON of a file into an array (caller frees with json_decref). */
static size_t read_json_records(const char *path, json_t **out, size_t max) {
    sft_err err = {{0}};
    sft_reader_options ro = {0};
    sft_reader *r = sft_reader_open(path, &ro, &err);
    if (!r) return 0;
    size_t n = 0, line;
    json_t *j;
    while (n < max && sft_reader_next_json(r, &j, &line, &err) == 1)
        out[n++] = j;
    sft_reader_close(r);
    return n;
}

static const char *field_string(const json_t *j, const char *key) {
    return json_string_value(json_object_get(j, key));
}

TEST(split_exact_fractions_per_stratum_and_near_duplicates_together) {
    /* 200 records in two strata ("a": 150, "b": 50); records 0..19 each have a
     * near copy later in the file (one word of 80 changed: Jaccard 71/81 = 0.88
     * on 5-word shingles). */
    const char *in = path_in_tmp("split_in.jsonl");
    FILE *f = fopen(in, "w");
    char text[2048];
    for (int i = 0; i < 200; i++) {
        int base = i < 180 ? i : i - 180;
        size_t o = 0;
        for (int w = 0; w < 80; w++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%sw%dx%d", w ? " " : "",
                                  (i >= 180 && w == 20) ? 9999 : base, w);
        fprintf(f, "{\"id\": %d, \"group\": \"%s\", \"text\": \"%s\"}\n", i, i % 4 == 0 ? "b" : "a", text);
    }
    fclose(f);
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1, .output = path_in_tmp("split_out")};
    sft_split_options o;
    sft_split_options_default(&o);
    o.val_fraction = 0.2;
    o.test_fraction = 0.1;
    o.seed = 11;
    o.stratify = "group";
    sft_split_summary s;
    sft_err err = {{0}};
    CHECK_INT(sft_data_split(&io, &o, &s, &err), 0);
    if (err.msg[0]) printf("  %s\n", err.msg);
    CHECK_INT(s.records, 200);
    CHECK_INT(s.train + s.val + s.test, 200);
    CHECK_INT(s.clusters, 180);
    CHECK_INT(s.strata, 2);
    /* Clusters of two may overshoot a quota by one record. */
    CHECK(s.val >= 40 && s.val <= 42);
    CHECK(s.test >= 20 && s.test <= 22);
    static json_t *recs[3][200];
    size_t n[3];
    const char *names[3] = {"split_out/train.jsonl", "split_out/val.jsonl", "split_out/test.jsonl"};
    int side_of[200], strata_val[2] = {0, 0};
    for (int k = 0; k < 3; k++) {
        n[k] = read_json_records(path_in_tmp(names[k]), recs[k], 200);
        for (size_t i = 0; i < n[k]; i++) {
            int id = (int)json_integer_value(json_object_get(recs[k][i], "id"));
            side_of[id] = k;
            if (k == 1) strata_val[!strcmp(field_string(recs[k][i], "group"), "b")]++;
        }
    }
    for (int i = 180; i < 200; i++)
        CHECK_INT(side_of[i], side_of[i - 180]);
    /* Stratified: validation holds ~20% of each group (a: 150 -> 30, b: 50 -> 10). */
    CHECK(strata_val[0] >= 30 && strata_val[0] <= 31);
    CHECK(strata_val[1] >= 10 && strata_val[1] <= 11);
    /* Seeded: the same seed gives the same validation set, another seed another. */
    int first_val[200];
    memcpy(first_val, side_of, sizeof first_val);
    CHECK_INT(sft_data_split(&io, &o, &s, &err), 0);
    json_t *val2[200];
    size_t nv = read_json_records(path_in_tmp(names[1]), val2, 200);
    int same = 1;
    for (size_t i = 0; i < nv; i++) {
        same &= first_val[json_integer_value(json_object_get(val2[i], "id"))] == 1;
        json_decref(val2[i]);
    }
    CHECK(same);
    o.seed = 12;
    CHECK_INT(sft_data_split(&io, &o, &s, &err), 0);
    nv = read_json_records(path_in_tmp(names[1]), val2, 200);
    same = 1;
    for (size_t i = 0; i < nv; i++) {
        same &= first_val[json_integer_value(json_object_get(val2[i], "id"))] == 1;
        json_decref(val2[i]);
    }
    CHECK(!same);
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < n[k]; i++)
            json_decref(recs[k][i]);
}

/* Recomputes the answer of a generated prompt from the numbers and words in it. */
static void recompute(const char *task, const char *prompt, char *out, size_t cap) {
    long v[8];
    int n = 0;
    char word[64] = "", letter = 0;
    for (const char *p = prompt; *p && n < 8;) {
        if (isdigit((unsigned char)*p))
            v[n++] = strtol(p, (char **)&p, 10);
        else
            p++;
    }
    /* The vocabulary word: the last run of 4+ letters that is not a template word. */
    static const char *template_words[] = {"what",     "word",    "reverse", "spell", "backwards", "write",
                                           "capital",  "letters", "make",    "upper", "case",      "spell",
                                           "capitals", "many",    "times",   "does",  "letter",    "appear",
                                           "count",    "often",   "length",  "the",   NULL};
    const char *p = prompt;
    while (*p) {
        while (*p && !isalpha((unsigned char)*p))
            p++;
        const char *s = p;
        while (isalpha((unsigned char)*p))
            p++;
        size_t len = (size_t)(p - s);
        if (len == 1 && s > prompt && s[-1] == ' ' && (*p == ' ')) letter = *s;
        if (len >= 4 && len < sizeof word) {
            int is_template = 0;
            for (int k = 0; template_words[k]; k++)
                if (strlen(template_words[k]) == len && !strncasecmp(template_words[k], s, len))
                    is_template = 1;
            if (!is_template) snprintf(word, sizeof word, "%.*s", (int)len, s);
        }
    }
    out[0] = 0;
    if (!strcmp(task, "add"))
        snprintf(out, cap, "%ld", v[0] + v[1]);
    else if (!strcmp(task, "subtract"))
        snprintf(out, cap, "%ld", strstr(prompt, "from") ? v[1] - v[0] : v[0] - v[1]);
    else if (!strcmp(task, "multiply"))
        snprintf(out, cap, "%ld", v[0] * v[1]);
    else if (!strcmp(task, "max")) {
        long m = v[0];
        for (int i = 1; i < n; i++)
            m = v[i] > m ? v[i] : m;
        snprintf(out, cap, "%ld", m);
    } else if (!strcmp(task, "sort") || !strcmp(task, "reverse_list")) {
        if (!strcmp(task, "sort"))
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++)
                    if (v[j] < v[i]) {
                        long t = v[i];
                        v[i] = v[j];
                        v[j] = t;
                    }
        size_t o = 0;
        for (int i = 0; i < n; i++) {
            long x = !strcmp(task, "sort") ? v[i] : v[n - 1 - i];
            o += (size_t)snprintf(out + o, cap - o, "%s%ld", i ? " " : "", x);
        }
    } else if (!strcmp(task, "reverse_word")) {
        size_t len = strlen(word);
        for (size_t i = 0; i < len; i++)
            out[i] = word[len - 1 - i];
        out[len] = 0;
    } else if (!strcmp(task, "uppercase")) {
        size_t i = 0;
        for (; word[i]; i++)
            out[i] = (char)toupper((unsigned char)word[i]);
        out[i] = 0;
    } else if (!strcmp(task, "count_letter")) {
        int c = 0;
        for (const char *q = word; *q; q++)
            c += *q == letter;
        snprintf(out, cap, "%d", c);
    } else if (!strcmp(task, "word_length"))
        snprintf(out, cap, "%zu", strlen(word));
    else if (!strcmp(task, "convert_units")) {
        long factor = strstr(prompt, "km")   ? 1000
                      : strstr(prompt, "kg") ? 1000
                      : strstr(prompt, "cm") ? 100
                                             : 60;
        snprintf(out, cap, "%ld", v[0] * factor);
    }
}

TEST(generated_answers_are_correct_for_every_task) {
    const char *out = path_in_tmp("gen.jsonl");
    sft_generate_options o;
    sft_generate_options_default(&o);
    o.count = 1100;
    o.seed = 77;
    sft_err err = {{0}};
    CHECK_INT(sft_data_generate(&o, out, &err), 0);
    static json_t *recs[1100];
    size_t n = read_json_records(out, recs, 1100);
    CHECK_INT(n, 1100);
    int per_task[32] = {0}, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        const char *task = field_string(recs[i], "task");
        const json_t *msgs = json_object_get(recs[i], "messages");
        const char *prompt = field_string(json_array_get(msgs, 0), "content");
        const char *answer = field_string(json_array_get(msgs, 1), "content");
        CHECK_STR(field_string(recs[i], "answer"), answer);
        char expect[256];
        recompute(task, prompt, expect, sizeof expect);
        if (strcmp(expect, answer)) {
            if (wrong++ < 5)
                printf("  %s: \"%s\" answered \"%s\", expected \"%s\"\n", task, prompt, answer, expect);
        }
        for (int t = 0; sft_generate_task_names[t]; t++)
            if (!strcmp(task, sft_generate_task_names[t])) per_task[t]++;
        json_decref(recs[i]);
    }
    CHECK_INT(wrong, 0);
    for (int t = 0; sft_generate_task_names[t]; t++)
        CHECK_INT(per_task[t], 100); /* round robin */
    /* The demo's held-out prompts come from the same function. */
    char prompt[256], answer[64], expect[256];
    CHECK_INT(sft_generate_one("sort", 5, 123, 99, prompt, sizeof prompt, answer, sizeof answer, &err), 0);
    recompute("sort", prompt, expect, sizeof expect);
    CHECK_STR(answer, expect);
    CHECK_INT(sft_generate_one("nope", 5, 1, 99, prompt, sizeof prompt, answer, sizeof answer, &err), -1);
}

TEST(augment_constraints_hold_for_the_answer_and_variants_point_to_origin) {
    const char *in = path_in_tmp("aug_in.jsonl");
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"id\": \"r1\", \"messages\": [{\"role\": \"user\", \"content\": \"Name three colours.\"}, "
               "{\"role\": \"assistant\", \"content\": \"- red\\n- green\\n- blue\"}]}\n");
    fprintf(f,
            "{\"id\": \"r2\", \"messages\": [{\"role\": \"system\", \"content\": \"Be terse.\"}, {\"role\": "
            "\"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"4\"}]}\n");
    fclose(f);
    const char *out = path_in_tmp("aug_out.jsonl");
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1, .output = out};
    sft_augment_options o;
    sft_augment_options_default(&o);
    o.variants = 3;
    o.prefixes = 0; /* constraints and system prompts only */
    sft_augment_summary s;
    sft_err err = {{0}};
    CHECK_INT(sft_data_augment(&io, &o, &s, &err), 0);
    static json_t *recs[16];
    size_t n = read_json_records(out, recs, 16);
    CHECK_INT(n, s.written);
    CHECK_INT(s.records, 2);
    for (size_t i = 0; i < n; i++) {
        const char *what = field_string(recs[i], "augmentation");
        if (!what) continue;
        const json_t *origin = json_object_get(recs[i], "origin");
        CHECK(origin && json_object_get(origin, "line"));
        const char *origin_id = field_string(origin, "id");
        const json_t *msgs = json_object_get(recs[i], "messages");
        size_t count = json_array_size(msgs);
        const char *answer = field_string(json_array_get(msgs, count - 1), "content");
        /* r1's answer is a bulleted multi-line list: neither the single-line nor
         * the no-bullets constraint may be added to it. */
        if (!strcmp(origin_id, "r1")) {
            CHECK(!strstr(what, "single line"));
            CHECK(!strstr(what, "bullet"));
            CHECK_STR(answer, "- red\n- green\n- blue");
        }
        /* r2 has a system prompt: it is never replaced. */
        if (!strcmp(origin_id, "r2")) {
            CHECK(strncmp(what, "system", 6));
            CHECK_STR(field_string(json_array_get(msgs, 0), "content"), "Be terse.");
        }
        char expect_prefix[16];
        snprintf(expect_prefix, sizeof expect_prefix, "%s-aug", origin_id);
        CHECK(!strncmp(field_string(recs[i], "id"), expect_prefix, strlen(expect_prefix)));
        /* A constraint is appended to the user turn it constrains. */
        if (!strncmp(what, "constraint: ", 12)) {
            const char *user = field_string(json_array_get(msgs, count - 2), "content");
            CHECK(strstr(user, what + 12) != NULL);
        }
    }
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i]);
}

TEST(stats_counts_roles_duplicates_and_scripts) {
    const char *in = path_in_tmp("stats_in.jsonl");
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"instruction\": \"Hello\", \"input\": \"\", \"output\": \"World\"}\n");
    fprintf(f, "{\"instruction\": \"hello \", \"input\": \"\", \"output\": \"WORLD\"}\n");
    fprintf(f, "{\"instruction\": \"Привет\", \"input\": \"\", \"output\": \"мир\", \"system\": \"S\"}\n");
    fclose(f);
    const char *inputs[] = {in};
    sft_data_io io = {.inputs = inputs, .input_count = 1};
    sft_stats *s;
    sft_err err = {{0}};
    CHECK_INT(sft_data_stats(&io, NULL, &s, &err), 0);
    char *json = sft_stats_json(s);
    json_error_t jerr;
    json_t *j = json_loads(json, 0, &jerr);
    CHECK(j != NULL);
    CHECK_INT(json_integer_value(json_object_get(j, "records")), 3);
    CHECK_INT(json_integer_value(json_object_get(j, "exact_duplicates")), 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "messages"), "system")), 1);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "scripts"), "Cyrillic")), 9);
    CHECK_INT(
        json_integer_value(json_object_get(json_object_get(json_object_get(j, "fields"), "input"), "empty")),
        3);
    json_decref(j);
    free(json);
    CHECK_INT(sft_stats_write_html(s, path_in_tmp("stats.html"), &err), 0);
    sft_stats_free(s);
}
