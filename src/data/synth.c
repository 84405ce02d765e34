/* synth.c: model-based generation of instruction data (see synth.h):
 * answers for given prompts, Self-Instruct (Wang et al. 2022) and
 * Evol-Instruct (Xu et al. 2023). */
#include "data/synth.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "data/dedup.h"
#include "data/text.h"
#include "io/file.h"
#include "model/session.h"

void sft_synth_options_default(sft_synth_options *o) {
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 256;
    o->temperature = 0.7;
    o->top_p = 0.9;
    o->seed = 1;
}

void sft_self_instruct_options_default(sft_self_instruct_options *o) {
    memset(o, 0, sizeof *o);
    o->count = 100;
    o->prompt_instructions = 8;
    o->prompt_generated = 2;
    o->similarity = 0.7;
    o->format = SFT_FORMAT_MESSAGES;
}

void sft_evolve_options_default(sft_evolve_options *o) {
    memset(o, 0, sizeof *o);
    o->variants = 1;
    o->methods = (1u << SFT_EVOL_COUNT) - 1;
    o->keep_original = 1;
}

/* Why a candidate instruction (or its answer) is eliminated. */
enum {
    REASON_EMPTY,
    REASON_TOO_SHORT,
    REASON_TOO_LONG,
    REASON_COPY,
    REASON_NEAR_DUPLICATE,
    REASON_NOT_TEXT,
    REASON_REFUSED,
    REASON_EMPTY_ANSWER,
    REASON_COUNT
};
static const char *reason_names[REASON_COUNT] = {"empty",          "too_short",      "too_long",
                                                 "copies_prompt",  "near_duplicate", "not_a_text_task",
                                                 "refused_answer", "empty_answer"};

const char *sft_synth_reason_name(int reason) {
    return reason >= 0 && reason < REASON_COUNT ? reason_names[reason] : NULL;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The seed of one generation: a function of the run's seed and the stream
 * (record number, variant, attempt), never of what ran before. */
static uint64_t stream_seed(uint64_t seed, uint64_t a, uint64_t b) {
    return mix64(mix64(seed * 0x9E3779B97F4A7C15ULL + a) + b * 0xD1B54A32D192ED03ULL);
}

/* ------------------------------------------------------------ the generator */

typedef struct {
    sft_session session;
    const sft_synth_options *opts;
} generator;

static int generator_open(generator *g, const sft_synth_options *o, sft_err *err) {
    memset(g, 0, sizeof *g);
    g->opts = o;
    if (!o->model_dir) return sft_errf(err, "model-based generation needs --model DIR");
    if (o->max_new_tokens < 1) return sft_errf(err, "--max-new-tokens must be at least 1");
    if (o->temperature < 0 || o->top_p <= 0 || o->top_p > 1 || o->top_k < 0)
        return sft_errf(err, "--temperature must be >= 0 (0: greedy), --top-p in (0, 1], --top-k >= 0");
    const char *name = o->template_name && strcmp(o->template_name, "auto") ? o->template_name : NULL;
    if (sft_session_open(&g->session, o->model_dir, o->adapter_dir, name, 0, err)) return -1;
    /* The model's own template when it has one it can render; a model
     * without one continues raw text. */
    if (!g->session.tmpl) {
        sft_err none;
        g->session.tmpl = sft_chat_template_for_tokenizer(g->session.tok, NULL, &none);
    }
    return 0;
}

/* The model's reply to one user message (chat template), or the continuation
 * of the text for a model without a template. *text is malloc'ed and
 * trimmed; *finished is 0 when max_new_tokens cut it. */
static int generator_reply(generator *g, const char *prompt, uint64_t seed, char **text, int *finished,
                           sft_err *err) {
    const sft_synth_options *o = g->opts;
    sft_sampling sampling = {o->temperature <= 0, o->temperature > 0 ? o->temperature : 1.0, o->top_k,
                             o->top_p, seed};
    int tokens = 0;
    sft_chat_message m = {SFT_ROLE_USER, prompt, strlen(prompt)};
    int rc =
        sft_session_generate(&g->session, g->session.tmpl ? &m : NULL, 1, g->session.tmpl ? NULL : prompt,
                             o->max_new_tokens, &sampling, text, &tokens, err);
    if (rc) return -1;
    *finished = tokens < o->max_new_tokens;
    char *s = *text;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = 0;
    size_t lead = 0;
    while (lead < len && isspace((unsigned char)s[lead]))
        lead++;
    memmove(s, s + lead, len - lead + 1);
    return 0;
}

static json_t *generation_tag(const generator *g, const char *method, uint64_t seed, int finished) {
    json_t *t = json_object();
    json_object_set_new(t, "method", json_string(method));
    json_object_set_new(t, "model", json_string(g->opts->model_dir));
    if (g->opts->adapter_dir) json_object_set_new(t, "adapter", json_string(g->opts->adapter_dir));
    json_object_set_new(t, "seed", json_integer((json_int_t)(seed & 0x7FFFFFFFFFFFFFFFULL)));
    if (!finished) json_object_set_new(t, "cut_at_max_new_tokens", json_true());
    return t;
}

static json_t *origin_of(const sft_record *rec) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(rec->path));
    json_object_set_new(o, "line", json_integer((json_int_t)rec->line));
    const json_t *id = json_object_get(rec->json, "id");
    if (id) json_object_set(o, "id", (json_t *)id);
    return o;
}

/* ------------------------------------------------------------------ answers */

typedef struct {
    generator *gen;
    sft_writer *out;
    sft_synth_summary *summary;
    size_t record_no;
} answer_ctx;

/* The prompt messages of a record that needs an answer (count of messages
 * before the answer), or 0 when it has one. */
static size_t unanswered_prefix(const sft_record *rec) {
    size_t n = rec->message_count;
    if (!n) return 0;
    const sft_message *last = &rec->messages[n - 1];
    if (last->role == SFT_ROLE_USER) return n;
    if (last->role == SFT_ROLE_ASSISTANT && sft_text_is_blank(last->content, last->content_len) && n > 1 &&
        rec->messages[n - 2].role == SFT_ROLE_USER)
        return n - 1;
    return 0;
}

/* The conversation as one prompt: a single user message as it is; earlier
 * turns rendered by the template through sft_session_generate's message list
 * would need the whole list, so multi-message prompts go through it. */
static int reply_to_messages(generator *g, const sft_message *msgs, size_t n, uint64_t seed, char **text,
                             int *finished, sft_err *err) {
    if (n == 1 || !g->session.tmpl) {
        /* Without a template the turns are joined as plain text. */
        sft_buf joined = {0};
        for (size_t i = 0; i < n; i++)
            if ((i && sft_buf_append(&joined, "\n\n", 2)) ||
                sft_buf_append(&joined, msgs[i].content, msgs[i].content_len)) {
                sft_buf_free(&joined);
                return sft_errf(err, "out of memory");
            }
        if (sft_buf_append(&joined, "", 1)) return sft_errf(err, "out of memory");
        int rc = generator_reply(g, joined.data, seed, text, finished, err);
        sft_buf_free(&joined);
        return rc;
    }
    sft_chat_message *cm = malloc(n * sizeof *cm);
    if (!cm) return sft_errf(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        cm[i] = (sft_chat_message){msgs[i].role, msgs[i].content, msgs[i].content_len};
    const sft_synth_options *o = g->opts;
    sft_sampling sampling = {o->temperature <= 0, o->temperature > 0 ? o->temperature : 1.0, o->top_k,
                             o->top_p, seed};
    int tokens = 0;
    int rc = sft_session_generate(&g->session, cm, n, NULL, o->max_new_tokens, &sampling, text, &tokens, err);
    free(cm);
    if (rc) return -1;
    *finished = tokens < o->max_new_tokens;
    char *s = *text;
    size_t len = strlen(s), lead = 0;
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = 0;
    while (lead < len && isspace((unsigned char)s[lead]))
        lead++;
    memmove(s, s + lead, len - lead + 1);
    return 0;
}

static int answer_one(sft_record *rec, void *p, sft_err *err) {
    answer_ctx *c = p;
    size_t record_no = c->record_no++;
    size_t n = unanswered_prefix(rec);
    if (!n) {
        c->summary->unchanged++;
        c->summary->written++;
        return sft_writer_put_record(c->out, rec, err);
    }
    uint64_t seed = stream_seed(c->gen->opts->seed, record_no, 0);
    char *answer;
    int finished;
    if (reply_to_messages(c->gen, rec->messages, n, seed, &answer, &finished, err))
        return sft_err_prefix(err, "%s:%zu", rec->path, rec->line);
    json_t *built;
    if (rec->format == SFT_FORMAT_ALPACA || (rec->format == SFT_FORMAT_PROMPT_COMPLETION &&
                                             json_is_string(json_object_get(rec->json, "completion")))) {
        /* Alpaca keeps instruction and input apart: only the answer field changes. */
        built = json_copy(rec->json);
        json_object_set_new(built, rec->format == SFT_FORMAT_ALPACA ? "output" : "completion",
                            json_string(answer));
    } else {
        sft_message *msgs = malloc((n + 1) * sizeof *msgs);
        if (!msgs) {
            free(answer);
            return sft_errf(err, "out of memory");
        }
        memcpy(msgs, rec->messages, n * sizeof *msgs);
        msgs[n] = (sft_message){SFT_ROLE_ASSISTANT, answer, strlen(answer), NULL};
        char where[512];
        snprintf(where, sizeof where, "%s:%zu", rec->path, rec->line);
        built = sft_record_build(rec->json, rec->format, msgs, n + 1, rec->format, where, err);
        free(msgs);
    }
    free(answer);
    if (!built) return -1;
    json_object_set_new(built, "generation", generation_tag(c->gen, "answer", seed, finished));
    int rc = sft_writer_put_json(c->out, built, err);
    json_decref(built);
    c->summary->created++;
    c->summary->written++;
    c->summary->unfinished += !finished;
    return rc;
}

/* New records from a plain prompts file, one prompt a line. */
static int answer_prompts_file(answer_ctx *c, const char *path, sft_data_format format, sft_err *err) {
    char *text;
    size_t len;
    if (sft_read_file(path, &text, &len, err)) return -1;
    int rc = 0;
    size_t line_no = 0;
    for (char *line = text; line && *line && !rc;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        line_no++;
        while (n && (line[n - 1] == '\r' || isspace((unsigned char)line[n - 1])))
            n--;
        if (n && !sft_text_is_blank(line, n)) {
            line[n] = 0;
            c->summary->records++;
            uint64_t seed = stream_seed(c->gen->opts->seed, c->record_no++, 0);
            char *answer;
            int finished;
            rc = generator_reply(c->gen, line, seed, &answer, &finished, err);
            if (rc) {
                sft_err_prefix(err, "%s:%zu", path, line_no);
                break;
            }
            sft_message msgs[2] = {{SFT_ROLE_USER, line, n, NULL},
                                   {SFT_ROLE_ASSISTANT, answer, strlen(answer), NULL}};
            char where[512];
            snprintf(where, sizeof where, "%s:%zu", path, line_no);
            json_t *built = json_object();
            char id[64];
            snprintf(id, sizeof id, "answer-%zu", c->record_no);
            json_object_set_new(built, "id", json_string(id));
            json_t *members = sft_record_build(NULL, SFT_FORMAT_MESSAGES, msgs, 2, format, where, err);
            free(answer);
            if (!members) {
                json_decref(built);
                rc = -1;
                break;
            }
            json_object_update(built, members);
            json_decref(members);
            json_t *origin = json_object();
            json_object_set_new(origin, "file", json_string(path));
            json_object_set_new(origin, "line", json_integer((json_int_t)line_no));
            json_object_set_new(built, "origin", origin);
            json_object_set_new(built, "generation", generation_tag(c->gen, "answer", seed, finished));
            rc = sft_writer_put_json(c->out, built, err);
            json_decref(built);
            c->summary->created++;
            c->summary->written++;
            c->summary->unfinished += !finished;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return rc;
}

int sft_data_answer(const sft_data_io *io, const char *prompts_file, sft_data_format format,
                    const sft_synth_options *o, sft_synth_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "generate needs an output file (-o)");
    if (!prompts_file && io->input_count == 0)
        return sft_errf(
            err, "generate --model needs input records to answer, --instructions FILE or --self-instruct");
    if (prompts_file && io->input_count)
        return sft_errf(err, "give either input records or --instructions FILE, not both");
    if (format == SFT_FORMAT_AUTO) format = SFT_FORMAT_MESSAGES;
    if (format == SFT_FORMAT_TEXT)
        return sft_errf(err, "--to text: generated records need a prompt and an answer");
    generator g;
    if (generator_open(&g, o, err)) return -1;
    answer_ctx c = {&g, NULL, s, 0};
    int rc = (c.out = sft_writer_open(io->output, err)) ? 0 : -1;
    if (!rc) {
        if (prompts_file)
            rc = answer_prompts_file(&c, prompts_file, format, err);
        else {
            sft_each_summary each;
            rc = sft_data_each(io, 1, answer_one, &c, &each, err);
            s->records = each.records;
            s->skipped = each.skipped;
        }
        rc = sft_writer_finish(c.out, rc, err);
    }
    sft_session_close(&g.session);
    return rc;
}

/* ------------------------------------------------------ candidate filtering */

/* Words that mark a task a text model cannot do (Self-Instruct's filter). */
static const char *const non_text_words[] = {"image", "images", "graph", "graphs",    "picture", "pictures",
                                             "file",  "files",  "map",   "maps",      "draw",    "plot",
                                             "go to", "video",  "audio", "flowchart", "diagram", NULL};

/* Words of a text through the dedup normalisation (NFKC, case folded). */
static size_t word_count(const char *s, sft_text_scratch *x, sft_err *err) {
    if (sft_text_normalized_words(s, strlen(s), x, err)) return (size_t)-1;
    return x->words.count;
}

static int contains_word(const sft_text_scratch *x, const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i < x->words.count; i++) {
        const sft_span *w = &x->words.items[i];
        if (w->len == n && !memcmp(x->normalized.data + w->start, word, n)) return 1;
    }
    /* two-word phrases ("go to") */
    if (strchr(word, ' ')) return strstr(x->normalized.data, word) != NULL;
    return 0;
}

/* The word-set (unigram) shingles of a text, for the near-duplicate index. */
static int word_set(const char *s, sft_text_scratch *x, sft_u64s *set, sft_err *err) {
    if (sft_text_normalized_words(s, strlen(s), x, err)) return -1;
    if (sft_text_ngram_hashes(x->normalized.data, &x->words, 1, set)) return sft_errf(err, "out of memory");
    sft_u64s_sort_unique(set);
    return 0;
}

/* Answers the paper's elimination calls failed: "sorry" in a short answer
 * (under 80 words), or nothing but punctuation and stop words. */
static const char *const stop_words[] = {"a", "an",  "the",  "and",  "or", "of",  "to", "in",  "is",   "it",
                                         "i", "you", "this", "that", "be", "are", "on", "for", "with", NULL};

/* -1: the answer is fine; -2: error; else the reason. */
static int answer_failed(const char *answer, sft_text_scratch *x, sft_err *err) {
    size_t words = word_count(answer, x, err);
    if (words == (size_t)-1) return -2;
    if (contains_word(x, "sorry") && words < 80) return REASON_REFUSED;
    for (size_t i = 0; i < x->words.count; i++) {
        const sft_span *w = &x->words.items[i];
        int stop = 0;
        for (const char *const *sw = stop_words; *sw && !stop; sw++)
            stop = strlen(*sw) == w->len && !memcmp(x->normalized.data + w->start, *sw, w->len);
        if (!stop) return -1; /* a real word */
    }
    return REASON_EMPTY_ANSWER;
}

/* ------------------------------------------------------------ self-instruct */

typedef struct {
    char *text;
    char *origin; /* "FILE:LINE" of a seed, or the id of a generated record */
} instruction;

typedef struct {
    instruction *items;
    size_t count, cap;
} instruction_list;

static int list_push(instruction_list *l, const char *text, size_t len, const char *origin) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        instruction *p = realloc(l->items, cap * sizeof *p);
        if (!p) return -1;
        l->items = p;
        l->cap = cap;
    }
    instruction *it = &l->items[l->count];
    it->text = strndup(text, len);
    it->origin = strdup(origin);
    if (!it->text || !it->origin) {
        free(it->text);
        free(it->origin);
        return -1;
    }
    l->count++;
    return 0;
}

static void list_free(instruction_list *l) {
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].text);
        free(l->items[i].origin);
    }
    free(l->items);
}

static int collect_seed(sft_record *rec, void *p, sft_err *err) {
    instruction_list *seeds = p;
    for (size_t i = 0; i < rec->message_count; i++)
        if (rec->messages[i].role == SFT_ROLE_USER) {
            if (sft_text_is_blank(rec->messages[i].content, rec->messages[i].content_len)) return 0;
            char where[1024];
            snprintf(where, sizeof where, "%s:%zu", rec->path, rec->line);
            if (list_push(seeds, rec->messages[i].content, rec->messages[i].content_len, where))
                return sft_errf(err, "out of memory");
            return 0;
        }
    return 0;
}

/* Picks k distinct indices below n (partial Fisher-Yates on a scratch array). */
static void sample_indices(size_t n, size_t k, uint64_t *rng, size_t *scratch, size_t *out) {
    for (size_t i = 0; i < n; i++)
        scratch[i] = i;
    for (size_t i = 0; i < k && i < n; i++) {
        *rng = mix64(*rng + 0x9E3779B97F4A7C15ULL);
        size_t j = i + (size_t)(*rng % (uint64_t)(n - i));
        size_t t = scratch[i];
        scratch[i] = scratch[j];
        scratch[j] = t;
        out[i] = scratch[i];
    }
}

/* One instruction a line: "Task 1: ...", "1. ...", or a bare line (the first
 * line continues the prompt's open "Task N:"). */
static const char *strip_list_marker(const char *line) {
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!strncasecmp(p, "task", 4)) {
        const char *q = p + 4;
        while (*q == ' ')
            q++;
        if (isdigit((unsigned char)*q)) {
            while (isdigit((unsigned char)*q))
                q++;
            if (*q == ':' || *q == '.') {
                q++;
                while (*q == ' ')
                    q++;
                return q;
            }
        }
    }
    if (isdigit((unsigned char)*p)) {
        const char *q = p;
        while (isdigit((unsigned char)*q))
            q++;
        if (*q == '.' || *q == ')' || *q == ':') {
            q++;
            while (*q == ' ')
                q++;
            return q;
        }
    }
    return p;
}

/* Self-Instruct's filters of a new instruction (before the near-duplicate
 * check): 3 to 150 words, starts with a letter, not a task for images,
 * files, plots and the like. -1 when it passes, -2 on error. */
static int candidate_rejected(const char *text, sft_text_scratch *x, sft_err *err) {
    size_t words = word_count(text, x, err);
    if (words == (size_t)-1) return -2;
    if (words == 0) return REASON_EMPTY;
    if (words < 3) return REASON_TOO_SHORT;
    if (words > 150) return REASON_TOO_LONG;
    if (!isalpha((unsigned char)text[0])) return REASON_EMPTY; /* punctuation or a non-Latin start */
    for (const char *const *w = non_text_words; *w; w++)
        if (contains_word(x, *w)) return REASON_NOT_TEXT;
    return -1;
}

int sft_self_instruct_rejects(const char *candidate, sft_err *err) {
    sft_text_scratch x = {0};
    int r = candidate_rejected(candidate, &x, err);
    sft_text_scratch_free(&x);
    return r;
}

int sft_data_self_instruct(const sft_data_io *io, const sft_self_instruct_options *si,
                           const sft_synth_options *o, sft_synth_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "generate needs an output file (-o)");
    if (io->input_count == 0) return sft_errf(err, "--self-instruct needs seed records (INPUT...)");
    if (si->count < 1 || si->prompt_instructions < 1 || si->prompt_generated < 0 ||
        si->prompt_generated >= si->prompt_instructions || si->similarity <= 0 || si->similarity > 1)
        return sft_errf(err, "--count >= 1, --prompt-instructions >= 1, 0 <= --prompt-generated < "
                             "--prompt-instructions, --similarity in (0, 1]");
    sft_data_format format = si->format == SFT_FORMAT_AUTO ? SFT_FORMAT_MESSAGES : si->format;
    if (format == SFT_FORMAT_TEXT)
        return sft_errf(err, "--to text: generated records need a prompt and an answer");
    instruction_list seeds = {0}, made = {0};
    sft_each_summary each;
    if (sft_data_each(io, 1, collect_seed, &seeds, &each, err)) {
        list_free(&seeds);
        return -1;
    }
    s->records = each.records;
    s->skipped = each.skipped;
    if (seeds.count == 0) {
        list_free(&seeds);
        return sft_errf(err, "no seed instruction (a record with a non-empty user message) in the input");
    }
    generator g;
    sft_near_options near = {si->similarity, 128, 1};
    sft_near_index *pool = NULL;
    sft_text_scratch x = {0};
    sft_u64s set = {0};
    sft_writer *out = NULL;
    size_t *scratch = NULL, *picked = NULL;
    sft_buf prompt = {0};
    json_t *shown = NULL;
    int rc = generator_open(&g, o, err);
    if (rc) goto done;
    rc = -1;
    if (!(pool = sft_near_index_new(&near, err))) goto done;
    /* The pool starts with the seeds. */
    for (size_t i = 0; i < seeds.count; i++) {
        long leader;
        double j;
        if (word_set(seeds.items[i].text, &x, &set, err) ||
            sft_near_index_assign(pool, set.items, set.count, &leader, &j, err))
            goto done;
    }
    size_t k_max = (size_t)si->prompt_instructions;
    scratch = malloc((seeds.count + (size_t)si->count + 1) * sizeof *scratch);
    picked = malloc(k_max * sizeof *picked);
    if (!scratch || !picked) {
        sft_errf(err, "out of memory");
        goto done;
    }
    if (!(out = sft_writer_open(io->output, err))) goto done;
    long max_attempts = si->max_attempts > 0 ? si->max_attempts : 20 * si->count;
    uint64_t rng = stream_seed(o->seed, 0x5E1F, 0);
    for (long attempt = 0; (long)made.count < si->count && attempt < max_attempts; attempt++) {
        s->attempts++;
        /* k instructions: from the generated pool (up to prompt_generated) and the seeds. */
        size_t from_made =
            made.count < (size_t)si->prompt_generated ? made.count : (size_t)si->prompt_generated;
        size_t from_seeds = k_max - from_made < seeds.count ? k_max - from_made : seeds.count;
        prompt.len = 0;
        if (sft_buf_append(&prompt, "Come up with a series of tasks:\n\n", 33)) goto oom;
        size_t task = 0;
        char line[64];
        json_decref(shown);
        shown = json_array();
        sample_indices(seeds.count, from_seeds, &rng, scratch, picked);
        for (size_t i = 0; i < from_seeds; i++) {
            json_array_append_new(shown, json_string(seeds.items[picked[i]].origin));
            int n = snprintf(line, sizeof line, "Task %zu: ", ++task);
            const char *t = seeds.items[picked[i]].text;
            if (sft_buf_append(&prompt, line, (size_t)n) || sft_buf_append(&prompt, t, strcspn(t, "\n")) ||
                sft_buf_append(&prompt, "\n", 1))
                goto oom;
        }
        sample_indices(made.count, from_made, &rng, scratch, picked);
        for (size_t i = 0; i < from_made; i++) {
            json_array_append_new(shown, json_string(made.items[picked[i]].origin));
            int n = snprintf(line, sizeof line, "Task %zu: ", ++task);
            const char *t = made.items[picked[i]].text;
            if (sft_buf_append(&prompt, line, (size_t)n) || sft_buf_append(&prompt, t, strlen(t)) ||
                sft_buf_append(&prompt, "\n", 1))
                goto oom;
        }
        int n = snprintf(line, sizeof line, "Task %zu:", ++task);
        if (sft_buf_append(&prompt, line, (size_t)n) || sft_buf_append(&prompt, "", 1)) goto oom;
        uint64_t seed = stream_seed(o->seed, 0x5E1F, (uint64_t)attempt + 1);
        char *reply;
        int finished;
        if (generator_reply(&g, prompt.data, seed, &reply, &finished, err)) goto done;
        /* Each line a candidate; the last line of a reply cut by max_new_tokens is dropped. */
        if (!finished) {
            char *last_nl = strrchr(reply, '\n');
            if (last_nl)
                *last_nl = 0;
            else
                reply[0] = 0;
        }
        char *save = NULL;
        for (char *l = strtok_r(reply, "\n", &save); l && (long)made.count < si->count;
             l = strtok_r(NULL, "\n", &save)) {
            const char *cand = strip_list_marker(l);
            size_t len = strlen(cand);
            while (len && isspace((unsigned char)cand[len - 1]))
                len--;
            char *text = strndup(cand, len);
            if (!text) goto oom;
            int reason = candidate_rejected(text, &x, err);
            if (reason == -2) {
                free(text);
                free(reply);
                goto done;
            }
            long leader = -1;
            double jaccard = 0;
            if (reason < 0) {
                if (word_set(text, &x, &set, err) ||
                    sft_near_index_assign(pool, set.items, set.count, &leader, &jaccard, err)) {
                    free(text);
                    free(reply);
                    goto done;
                }
                if (leader >= 0) reason = REASON_NEAR_DUPLICATE;
            }
            if (reason >= 0) {
                s->rejected++;
                s->per_reason[reason]++;
                free(text);
                continue;
            }
            char id[64];
            snprintf(id, sizeof id, "self-instruct-%zu", made.count + 1);
            if (list_push(&made, text, len, id)) {
                free(text);
                goto oom;
            }
            /* The answer, then the record. */
            uint64_t answer_seed = stream_seed(o->seed, 0xA45, made.count);
            char *answer;
            int answer_finished;
            if (generator_reply(&g, text, answer_seed, &answer, &answer_finished, err)) {
                free(text);
                free(reply);
                goto done;
            }
            sft_message msgs[2] = {{SFT_ROLE_USER, text, len, NULL},
                                   {SFT_ROLE_ASSISTANT, answer, strlen(answer), NULL}};
            json_t *record = json_object();
            json_object_set_new(record, "id", json_string(id));
            json_t *members = sft_record_build(NULL, SFT_FORMAT_MESSAGES, msgs, 2, format, id, err);
            free(answer);
            free(text);
            if (!members) {
                json_decref(record);
                free(reply);
                goto done;
            }
            json_object_update(record, members);
            json_decref(members);
            json_t *tag = generation_tag(&g, "self-instruct", seed, answer_finished);
            json_object_set_new(tag, "answer_seed",
                                json_integer((json_int_t)(answer_seed & 0x7FFFFFFFFFFFFFFFULL)));
            json_object_set_new(record, "generation", tag);
            /* the instructions the prompt showed: seeds by FILE:LINE, generated ones by id */
            json_t *origin = json_object();
            json_object_set(origin, "prompt_instructions", shown);
            json_object_set_new(record, "origin", origin);
            int wrc = sft_writer_put_json(out, record, err);
            json_decref(record);
            if (wrc) {
                free(reply);
                goto done;
            }
            s->created++;
            s->written++;
            s->unfinished += !answer_finished;
        }
        free(reply);
    }
    rc = sft_writer_commit(out, err);
    out = NULL;
    goto done;
oom:
    sft_errf(err, "out of memory");
done:
    sft_writer_abort(out);
    json_decref(shown);
    if (pool) sft_near_index_free(pool);
    sft_text_scratch_free(&x);
    sft_u64s_free(&set);
    sft_buf_free(&prompt);
    free(scratch);
    free(picked);
    list_free(&seeds);
    list_free(&made);
    if (g.session.model) sft_session_close(&g.session);
    return rc;
}

/* ------------------------------------------------------------ Evol-Instruct */

/* The prompts of Evol-Instruct (Xu et al. 2023, appendix; WizardLM's
 * Evol_Instruct/depth.py and breadth.py), with plain newlines. */
static const char *const evol_names[SFT_EVOL_COUNT] = {"constraints", "deepen", "concretize", "reasoning",
                                                       "breadth"};
static const char *const evol_methods[SFT_EVOL_BREADTH] = {
    "Please add one more constraints/requirements into #The Given Prompt#'",
    "If #The Given Prompt# contains inquiries about certain issues, the depth and breadth of the inquiry can "
    "be "
    "increased.",
    "Please replace general concepts with more specific concepts.",
    "If #The Given Prompt# can be solved with just a few simple thinking processes, you can rewrite it to "
    "explicitly request multiple-step reasoning.",
};
static const char *const evol_depth_head =
    "I want you act as a Prompt Rewriter.\n"
    "Your objective is to rewrite a given prompt into a more complex version to make those famous AI systems "
    "(e.g., chatgpt and GPT4) a bit harder to handle.\n"
    "But the rewritten prompt must be reasonable and must be understood and responded by humans.\n"
    "Your rewriting cannot omit the non-text parts such as the table and code in #The Given Prompt#:. Also, "
    "please do not omit the input in #The Given Prompt#.\n"
    "You SHOULD complicate the given prompt using the following method:\n";
static const char *const evol_depth_tail =
    "\nYou should try your best not to make the #Rewritten Prompt# become verbose, #Rewritten Prompt# can "
    "only "
    "add 10 to 20 words into #The Given Prompt#.\n"
    "'#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to "
    "appear in #Rewritten Prompt#\n"
    "#The Given Prompt#:\n";
static const char *const evol_breadth_head =
    "I want you act as a Prompt Creator.\n"
    "Your goal is to draw inspiration from the #Given Prompt# to create a brand new prompt.\n"
    "This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n"
    "The LENGTH and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n"
    "The #Created Prompt# must be reasonable and must be understood and responded by humans.\n"
    "'#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in "
    "#Created Prompt#\n"
    "#Given Prompt#:\n";

const char *sft_evol_method_name(int method) {
    return method >= 0 && method < SFT_EVOL_COUNT ? evol_names[method] : NULL;
}

char *sft_evol_prompt(int method, const char *instruction) {
    if (method < 0 || method >= SFT_EVOL_COUNT) return NULL;
    char *out = NULL;
    int n;
    if (method == SFT_EVOL_BREADTH)
        n = asprintf(&out, "%s%s\n#Created Prompt#:\n", evol_breadth_head, instruction);
    else
        n = asprintf(&out, "%s%s%s%s\n#Rewritten Prompt#:\n", evol_depth_head, evol_methods[method],
                     evol_depth_tail, instruction);
    return n < 0 ? NULL : out;
}

/* Words of the evolving prompt that must not leak into an evolution. */
static const char *const evol_leaks[] = {"given prompt", "rewritten prompt", "created prompt", "#the given",
                                         "#rewritten",   "#created",         "#given",         NULL};

typedef struct {
    const sft_evolve_options *opts;
    generator *gen;
    sft_writer *out;
    sft_synth_summary *summary;
    size_t record_no;
    sft_text_scratch x;
    sft_u64s a, b;
} evolve_ctx;

/* Elimination (WizardLM section 3.3), or -1 when the evolution survives:
 * empty or under 3 words; no information gain, here a copy of the original
 * (word-set Jaccard >= 0.9 after normalisation) or the evolving prompt's own
 * words in it; then, on the answer, "sorry" in under 80 words or nothing
 * but punctuation and stop words. */
static int evolution_failed(evolve_ctx *c, const char *original, const char *evolved, sft_err *err) {
    size_t words = word_count(evolved, &c->x, err);
    if (words == (size_t)-1) return -2;
    if (!words) return REASON_EMPTY;
    if (words < 3) return REASON_TOO_SHORT;
    const char *norm = c->x.normalized.data;
    for (const char *const *w = evol_leaks; *w; w++)
        if (strstr(norm, *w)) return REASON_COPY;
    if (strstr(norm, "i want you act as")) return REASON_COPY;
    if (word_set(original, &c->x, &c->a, err) || word_set(evolved, &c->x, &c->b, err)) return -2;
    if (sft_jaccard_sorted(c->a.items, c->a.count, c->b.items, c->b.count) >= 0.9) return REASON_COPY;
    return -1;
}

int sft_evol_eliminates(const char *original, const char *evolved, const char *answer, sft_err *err) {
    evolve_ctx c = {0};
    int r = evolution_failed(&c, original, evolved, err);
    if (r == -1 && answer) r = answer_failed(answer, &c.x, err);
    sft_text_scratch_free(&c.x);
    sft_u64s_free(&c.a);
    sft_u64s_free(&c.b);
    return r;
}

static int evolve_one(sft_record *rec, void *p, sft_err *err) {
    evolve_ctx *c = p;
    size_t record_no = c->record_no++;
    if (c->opts->keep_original) {
        if (sft_writer_put_record(c->out, rec, err)) return -1;
        c->summary->written++;
    }
    /* Single-turn records: the (only) user message is the instruction. */
    long user = -1;
    size_t users = 0;
    for (size_t i = 0; i < rec->message_count; i++)
        if (rec->messages[i].role == SFT_ROLE_USER) user = (long)i, users++;
    if (users != 1 || rec->format == SFT_FORMAT_TEXT) {
        c->summary->unchanged++;
        return 0;
    }
    char *original = strndup(rec->messages[user].content, rec->messages[user].content_len);
    if (!original) return sft_errf(err, "out of memory");
    int methods[SFT_EVOL_COUNT], method_count = 0;
    for (int m = 0; m < SFT_EVOL_COUNT; m++)
        if (c->opts->methods & (1u << m)) methods[method_count++] = m;
    uint64_t start = stream_seed(c->gen->opts->seed, record_no, 0xE701) % (uint64_t)method_count;
    int rc = 0;
    for (int v = 0; v < c->opts->variants && !rc; v++) {
        /* Variants cycle through the methods from a seeded start. */
        int method = methods[(start + (uint64_t)v) % (uint64_t)method_count];
        char *prompt = sft_evol_prompt(method, original);
        if (!prompt) {
            rc = sft_errf(err, "out of memory");
            break;
        }
        uint64_t seed = stream_seed(c->gen->opts->seed, record_no, 2 * (uint64_t)v + 1);
        char *evolved = NULL, *answer = NULL;
        int finished, answer_finished = 1;
        rc = generator_reply(c->gen, prompt, seed, &evolved, &finished, err);
        free(prompt);
        int reason = rc ? -2 : evolution_failed(c, original, evolved, err);
        uint64_t answer_seed = stream_seed(c->gen->opts->seed, record_no, 2 * (uint64_t)v + 2);
        if (reason == -1) {
            rc = generator_reply(c->gen, evolved, answer_seed, &answer, &answer_finished, err);
            reason = rc ? -2 : answer_failed(answer, &c->x, err);
        }
        if (reason == -2 || rc) {
            rc = -1;
        } else if (reason >= 0) {
            c->summary->rejected++;
            c->summary->per_reason[reason]++;
        } else {
            /* The new record: the origin's system messages, the evolved
             * instruction, its answer; in the origin's format. Other fields
             * of the origin described the old answer and are not copied. */
            size_t n = 0;
            sft_message *msgs = malloc((rec->message_count + 2) * sizeof *msgs);
            if (!msgs) {
                rc = sft_errf(err, "out of memory");
            } else {
                for (size_t i = 0; i < rec->message_count; i++)
                    if (rec->messages[i].role == SFT_ROLE_SYSTEM) msgs[n++] = rec->messages[i];
                msgs[n++] = (sft_message){SFT_ROLE_USER, evolved, strlen(evolved), NULL};
                msgs[n++] = (sft_message){SFT_ROLE_ASSISTANT, answer, strlen(answer), NULL};
                char where[512];
                snprintf(where, sizeof where, "%s:%zu", rec->path, rec->line);
                json_t *record = json_object();
                const json_t *id = json_object_get(rec->json, "id");
                char new_id[512];
                if (json_is_string(id))
                    snprintf(new_id, sizeof new_id, "%s-evol%d", json_string_value(id), v + 1);
                else if (json_is_integer(id))
                    snprintf(new_id, sizeof new_id, "%lld-evol%d", (long long)json_integer_value(id), v + 1);
                else
                    snprintf(new_id, sizeof new_id, "%s:%zu-evol%d", rec->path, rec->line, v + 1);
                json_object_set_new(record, "id", json_string(new_id));
                json_t *members =
                    sft_record_build(NULL, SFT_FORMAT_MESSAGES, msgs, n, rec->format, where, err);
                free(msgs);
                if (!members) {
                    rc = -1;
                } else {
                    json_object_update(record, members);
                    json_decref(members);
                    json_object_set_new(record, "origin", origin_of(rec));
                    char what[64];
                    snprintf(what, sizeof what, "evol: %s", evol_names[method]);
                    json_object_set_new(record, "augmentation", json_string(what));
                    json_t *tag = generation_tag(c->gen, "evol-instruct", seed, answer_finished);
                    json_object_set_new(tag, "answer_seed",
                                        json_integer((json_int_t)(answer_seed & 0x7FFFFFFFFFFFFFFFULL)));
                    json_object_set_new(record, "generation", tag);
                    rc = sft_writer_put_json(c->out, record, err);
                    c->summary->created++;
                    c->summary->written++;
                    c->summary->unfinished += !answer_finished;
                }
                json_decref(record);
            }
        }
        free(evolved);
        free(answer);
    }
    free(original);
    return rc ? sft_err_prefix(err, "%s:%zu", rec->path, rec->line) : 0;
}

int sft_data_evolve(const sft_data_io *io, const sft_evolve_options *eo, const sft_synth_options *o,
                    sft_synth_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "augment needs an output file (-o)");
    if (eo->variants < 1) return sft_errf(err, "--variants must be at least 1");
    if (!(eo->methods & ((1u << SFT_EVOL_COUNT) - 1))) return sft_errf(err, "--evolve-methods: no method");
    generator g;
    if (generator_open(&g, o, err)) return -1;
    evolve_ctx c = {0};
    c.opts = eo;
    c.gen = &g;
    c.summary = s;
    int rc = (c.out = sft_writer_open(io->output, err)) ? 0 : -1;
    if (!rc) {
        sft_each_summary each;
        rc = sft_data_each(io, 0, evolve_one, &c, &each, err);
        s->records = each.records;
        s->skipped = each.skipped;
        rc = sft_writer_finish(c.out, rc, err);
    }
    sft_text_scratch_free(&c.x);
    sft_u64s_free(&c.a);
    sft_u64s_free(&c.b);
    sft_session_close(&g.session);
    return rc;
}
