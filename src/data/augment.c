/* augment.c: `sft data augment`, template rewrites of instruction records
 * that keep the answer correct:
 *   prefix      a paraphrase prefix before the first user turn ("Please answer
 *               the following.");
 *   constraint  a format or length constraint that the existing answer already
 *               meets, appended to the user turn it answers ("Answer in at most
 *               20 words." only when it has at most 20 words; "Answer in a single
 *               line." only for one-line answers; "Do not use bullet points."
 *               only when it has none), so no answer is made wrong;
 *   system      a system prompt from a list, added to records that have none
 *               (an existing system prompt may carry instructions: never replaced).
 * Each new record keeps every field of its origin, in its format, with "id"
 * suffixed "-augN", "origin" {"file", "line", "id"} and "augmentation" saying
 * what was done. Model-based rewriting (Evol-Instruct) needs the inference
 * engine and is not here. */
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "data/text.h"
#include "io/file.h"

static const char *const prefixes[] = {"Please answer the following.\n\n", "Here is a task for you.\n\n",
                                       "I have a question.\n\n",           "Could you help me with this?\n\n",
                                       "Read carefully and respond.\n\n",  "Task:\n"};
#define PREFIX_COUNT (sizeof prefixes / sizeof prefixes[0])

static const char *const default_system_prompts[] = {"You are a helpful assistant.",
                                                     "You are a concise and accurate assistant.",
                                                     "You are a friendly assistant who answers clearly.",
                                                     "You are an expert assistant. Answer precisely.", NULL};

void sft_augment_options_default(sft_augment_options *o) {
    memset(o, 0, sizeof *o);
    o->variants = 1;
    o->seed = 1;
    o->keep_original = 1;
    o->prefixes = o->constraints = o->system_prompts = 1;
}

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    const sft_augment_options *opts;
    sft_writer *out;
    sft_augment_summary *summary;
    char **system_prompts;
    size_t system_count;
    char *system_text; /* storage of a loaded system prompt file */
    sft_spans words;
    uint64_t rng;
} augment_ctx;

/* The constraints the answer already satisfies (up to 3), as sentences. */
static int truthful_constraints(augment_ctx *c, const sft_message *answer, char out[3][96], sft_err *err) {
    int n = 0;
    if (sft_text_words(answer->content, answer->content_len, &c->words, err)) return -1;
    size_t words = c->words.count;
    static const size_t limits[] = {1, 5, 10, 20, 50, 100, 200, 500};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (words && words <= limits[i]) {
            if (limits[i] == 1)
                snprintf(out[n++], 96, "Answer with a single word or number.");
            else
                snprintf(out[n++], 96, "Answer in at most %zu words.", limits[i]);
            break;
        }
    if (!memchr(answer->content, '\n', answer->content_len))
        snprintf(out[n++], 96, "Answer in a single line.");
    int bullets = 0;
    for (size_t i = 0; i < answer->content_len; i++) {
        if (i && answer->content[i - 1] != '\n') continue;
        size_t j = i;
        while (j < answer->content_len && answer->content[j] == ' ')
            j++;
        if (j + 1 < answer->content_len && strchr("-*+", answer->content[j]) && answer->content[j + 1] == ' ')
            bullets = 1;
    }
    if (!bullets) snprintf(out[n++], 96, "Do not use bullet points.");
    return n;
}

static char *concat3(const char *a, const char *b, size_t blen, const char *c) {
    size_t la = strlen(a), lc = strlen(c);
    char *s = malloc(la + blen + lc + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, blen);
    memcpy(s + la + blen, c, lc);
    s[la + blen + lc] = 0;
    return s;
}

enum { KIND_PREFIX, KIND_CONSTRAINT, KIND_SYSTEM, KIND_COUNT };

/* Builds variant number `variant` of rec, or returns 0 when no enabled rewrite applies. */
static int make_variant(augment_ctx *c, const sft_record *rec, int variant, json_t **out, sft_err *err) {
    *out = NULL;
    long last_assistant = sft_record_last_assistant(rec);
    long first_user = -1, answered_user = -1;
    for (size_t i = 0; i < rec->message_count; i++)
        if (rec->messages[i].role == SFT_ROLE_USER && first_user < 0) first_user = (long)i;
    for (long i = last_assistant - 1; i >= 0; i--)
        if (rec->messages[i].role == SFT_ROLE_USER) {
            answered_user = i;
            break;
        }
    char constraints[3][96];
    int constraint_count = 0;
    if (c->opts->constraints && answered_user >= 0) {
        constraint_count = truthful_constraints(c, &rec->messages[last_assistant], constraints, err);
        if (constraint_count < 0) return -1;
    }
    int applicable[KIND_COUNT] = {
        c->opts->prefixes && first_user >= 0,
        constraint_count > 0,
        c->opts->system_prompts && c->system_count && sft_record_count_role(rec, SFT_ROLE_SYSTEM) == 0 &&
            first_user >= 0,
    };
    int kinds[KIND_COUNT], kind_count = 0;
    for (int k = 0; k < KIND_COUNT; k++)
        if (applicable[k]) kinds[kind_count++] = k;
    if (!kind_count) return 0;
    /* Variants cycle through the applicable kinds from a random start, so two
     * variants of one record differ in kind before they repeat one. */
    int kind = kinds[(c->rng % (uint64_t)kind_count + (uint64_t)variant) % (uint64_t)kind_count];
    uint64_t pick = next(&c->rng);

    sft_message *msgs = malloc((rec->message_count + 1) * sizeof *msgs);
    if (!msgs) return sft_errf(err, "out of memory");
    char *owned = NULL;
    char what[256];
    size_t n = 0;
    if (kind == KIND_SYSTEM) {
        const char *sys = c->system_prompts[pick % c->system_count];
        msgs[n++] = (sft_message){SFT_ROLE_SYSTEM, sys, strlen(sys), NULL};
        snprintf(what, sizeof what, "system: %s", sys);
    }
    for (size_t i = 0; i < rec->message_count; i++)
        msgs[n++] = rec->messages[i];
    size_t shift = kind == KIND_SYSTEM;
    if (kind == KIND_PREFIX) {
        const char *prefix = prefixes[pick % PREFIX_COUNT];
        sft_message *m = &msgs[first_user + shift];
        owned = concat3(prefix, m->content, m->content_len, "");
        m->content = owned;
        m->content_len = owned ? strlen(prefix) + rec->messages[first_user].content_len : 0;
        snprintf(what, sizeof what, "prefix: %.*s", (int)strcspn(prefix, "\n"), prefix);
    } else if (kind == KIND_CONSTRAINT) {
        const char *constraint = constraints[pick % (uint64_t)constraint_count];
        sft_message *m = &msgs[answered_user + shift];
        owned = concat3("", m->content, m->content_len, "\n\n");
        if (owned) {
            char *full = concat3(owned, constraint, strlen(constraint), "");
            free(owned);
            owned = full;
        }
        if (owned) {
            m->content = owned;
            m->content_len = m->content_len + 2 + strlen(constraint);
        }
        snprintf(what, sizeof what, "constraint: %s", constraint);
    }
    if (kind != KIND_SYSTEM && !owned) {
        free(msgs);
        return sft_errf(err, "out of memory");
    }
    char where[512];
    snprintf(where, sizeof where, "%s:%zu", rec->path, rec->line);
    json_t *built;
    if (rec->format == SFT_FORMAT_ALPACA && kind != KIND_SYSTEM) {
        /* Alpaca keeps instruction and input apart: rewrite the instruction only. */
        built = json_copy(rec->json);
        const char *instr = json_string_value(json_object_get(built, "instruction"));
        size_t ilen = json_string_length(json_object_get(built, "instruction"));
        char *s = kind == KIND_PREFIX ? concat3(prefixes[pick % PREFIX_COUNT], instr, ilen, "")
                                      : concat3("", instr, ilen, "");
        if (s && kind == KIND_CONSTRAINT) {
            const char *constraint = constraints[pick % (uint64_t)constraint_count];
            char *t = concat3(s, "\n\n", 2, constraint);
            free(s);
            s = t;
        }
        if (s) json_object_set_new(built, "instruction", json_string(s));
        free(s);
    } else
        built = sft_record_build(rec->json, rec->format, msgs, n, rec->format, where, err);
    free(owned);
    free(msgs);
    if (!built) return -1;
    /* Provenance. */
    const json_t *id = json_object_get(rec->json, "id");
    char new_id[512];
    if (json_is_string(id))
        snprintf(new_id, sizeof new_id, "%s-aug%d", json_string_value(id), variant + 1);
    else if (json_is_integer(id))
        snprintf(new_id, sizeof new_id, "%lld-aug%d", (long long)json_integer_value(id), variant + 1);
    else
        snprintf(new_id, sizeof new_id, "%s:%zu-aug%d", rec->path, rec->line, variant + 1);
    json_object_set_new(built, "id", json_string(new_id));
    json_t *origin = json_object();
    json_object_set_new(origin, "file", json_string(rec->path));
    json_object_set_new(origin, "line", json_integer((json_int_t)rec->line));
    if (id) json_object_set(origin, "id", (json_t *)id);
    json_object_set_new(built, "origin", origin);
    json_object_set_new(built, "augmentation", json_string(what));
    *out = built;
    return 1;
}

static int augment_one(sft_record *rec, void *p, sft_err *err) {
    augment_ctx *c = p;
    if (c->opts->keep_original) {
        if (sft_writer_put_record(c->out, rec, err)) return -1;
        c->summary->written++;
    }
    c->rng = c->opts->seed * 0x9E3779B97F4A7C15ULL ^ (uint64_t)c->summary->records * 0xD1B54A32D192ED03ULL;
    c->summary->records++;
    next(&c->rng);
    int made = 0;
    for (int v = 0; v < c->opts->variants; v++) {
        json_t *variant;
        int rc = make_variant(c, rec, v, &variant, err);
        if (rc < 0) return -1;
        if (rc == 0) break;
        rc = sft_writer_put_json(c->out, variant, err);
        json_decref(variant);
        if (rc) return -1;
        c->summary->created++;
        c->summary->written++;
        made = 1;
    }
    if (!made) c->summary->not_applicable++;
    return 0;
}

static int load_system_prompts(augment_ctx *c, sft_err *err) {
    size_t cap = 16;
    c->system_prompts = malloc(cap * sizeof *c->system_prompts);
    if (!c->system_prompts) return sft_errf(err, "out of memory");
    if (!c->opts->system_file) {
        for (const char *const *p = default_system_prompts; *p; p++)
            c->system_prompts[c->system_count++] = (char *)*p;
        return 0;
    }
    size_t len;
    if (sft_read_file(c->opts->system_file, &c->system_text, &len, err)) return -1;
    for (char *save = NULL, *line = strtok_r(c->system_text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = 0;
        if (!n || line[0] == '#') continue;
        if (c->system_count == cap) {
            cap *= 2;
            char **p = realloc(c->system_prompts, cap * sizeof *p);
            if (!p) return sft_errf(err, "out of memory");
            c->system_prompts = p;
        }
        c->system_prompts[c->system_count++] = line;
    }
    if (!c->system_count) return sft_errf(err, "%s: no system prompts (one a line)", c->opts->system_file);
    return 0;
}

int sft_data_augment(const sft_data_io *io, const sft_augment_options *o, sft_augment_summary *s,
                     sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "augment needs an output file (-o)");
    if (o->variants < 1) return sft_errf(err, "--variants must be at least 1");
    if (!o->prefixes && !o->constraints && !o->system_prompts)
        return sft_errf(err, "augment: every rewrite is off");
    augment_ctx c = {0};
    c.opts = o;
    c.summary = s;
    int rc = load_system_prompts(&c, err);
    if (!rc && !(c.out = sft_writer_open(io->output, err))) rc = -1;
    if (!rc) {
        sft_each_summary each;
        rc = sft_data_each(io, 0, augment_one, &c, &each, err);
        s->skipped = each.skipped;
        rc = sft_writer_finish(c.out, rc, err);
    }
    free(c.system_prompts);
    free(c.system_text);
    sft_spans_free(&c.words);
    return rc;
}
