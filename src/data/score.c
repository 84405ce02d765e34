/* score.c: `sft data score`: the heuristic score on filter's measures, and
 * with a model the answer loss/perplexity under the training masking and
 * Instruction-Following Difficulty (Li et al. 2023); see score.h. */
#include "data/score.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "data/dedup.h"
#include "data/rules.h"
#include "data/text.h"
#include "model/session.h"
#include "train/dataset.h"

static const char *heuristic_names[SFT_HEUR_COUNT] = {"no_answer",  "empty_turn",   "no_words",
                                                      "long_turn",  "nonprintable", "refusal",
                                                      "repetition", "cut_off",      "copies_prompt"};

const char *sft_heuristic_name(int check) {
    return check >= 0 && check < SFT_HEUR_COUNT ? heuristic_names[check] : "?";
}

void sft_score_options_default(sft_score_options *o) {
    memset(o, 0, sizeof *o);
    o->check_refusal = 1;
    o->cut_min_words = 20;
    o->max_len = 1024;
    o->batch_size = 4;
}

/* A turn longer than this is a dump (a log, a file) more often than an answer. */
#define LONG_TURN_CHARS 32768

struct sft_scorer {
    sft_score_options opts;
    int threads;
    sft_text_rules **rules;         /* one per thread */
    sft_text_scratch *scratch;      /* one per thread */
    sft_u64s *prompt_grams, *grams; /* one per thread */
    int has_model;
    sft_session session;
    sft_encoder enc;
    int32_t pad_id;
    char template_error[SFT_ERR_MSG_MAX];
};

int sft_scorer_has_model(const sft_scorer *sc) {
    return sc->has_model;
}

void sft_scorer_free(sft_scorer *sc) {
    if (!sc) return;
    for (int t = 0; t < sc->threads; t++) {
        if (sc->rules) sft_text_rules_free(sc->rules[t]);
        if (sc->scratch) sft_text_scratch_free(&sc->scratch[t]);
        if (sc->prompt_grams) sft_u64s_free(&sc->prompt_grams[t]);
        if (sc->grams) sft_u64s_free(&sc->grams[t]);
    }
    free(sc->rules);
    free(sc->scratch);
    free(sc->prompt_grams);
    free(sc->grams);
    if (sc->has_model) sft_session_close(&sc->session);
    free(sc);
}

/* The model, its tokenizer (or --tokenizer's, which must fit the model's
 * vocabulary), the chat template and the training encoder. */
static int open_model(sft_scorer *sc, sft_err *err) {
    const sft_score_options *o = &sc->opts;
    if (sft_session_open(&sc->session, o->model_dir, o->adapter_dir, NULL, 0, err)) return -1;
    sc->has_model = 1;
    const char *tok_dir = o->model_dir;
    if (o->tokenizer_dir) {
        sft_tokenizer *tok = sft_tokenizer_load(o->tokenizer_dir, err);
        if (!tok) return sft_err_prefix(err, "--tokenizer %s", o->tokenizer_dir);
        sft_tokenizer_free(sc->session.tok);
        sc->session.tok = tok;
        tok_dir = o->tokenizer_dir;
        if (sft_model_check_vocab(sc->session.model, sft_tokenizer_vocab_size(tok), err))
            return sft_err_prefix(err, "the tokenizer of %s does not fit the model %s", o->tokenizer_dir,
                                  o->model_dir);
    }
    const char *name = o->template_name && strcmp(o->template_name, "auto") ? o->template_name : NULL;
    sft_err terr = {{0}};
    sc->session.tmpl = sft_chat_template_for_tokenizer(sc->session.tok, name, &terr);
    if (!sc->session.tmpl) {
        if (name) {
            *err = terr;
            return -1;
        }
        snprintf(sc->template_error, sizeof sc->template_error, "%s", terr.msg);
    }
    if (sft_encoder_init(&sc->enc, sc->session.tok, sc->session.tmpl, tok_dir, err)) return -1;
    sc->enc.template_error = sc->session.tmpl ? NULL : sc->template_error;
    sc->pad_id = sc->session.model->cfg.pad_token_id >= 0 ? sc->session.model->cfg.pad_token_id : 0;
    sc->session.model->training = 0;
    return sft_model_plan(sc->session.model, o->batch_size, (int)o->max_len, err);
}

sft_scorer *sft_scorer_open(const sft_score_options *o, sft_err *err) {
    if (o->model_dir && (o->max_len < 2 || o->batch_size < 1)) {
        sft_errf(err, "--max-len must be at least 2 and --batch-size at least 1");
        return NULL;
    }
    if (!o->model_dir && (o->adapter_dir || o->tokenizer_dir || o->template_name)) {
        sft_errf(err, "--adapter, --tokenizer and --template need --model DIR");
        return NULL;
    }
    sft_scorer *sc = calloc(1, sizeof *sc);
    if (!sc) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    sc->opts = *o;
    sc->threads = omp_get_max_threads();
    sc->rules = calloc((size_t)sc->threads, sizeof *sc->rules);
    sc->scratch = calloc((size_t)sc->threads, sizeof *sc->scratch);
    sc->prompt_grams = calloc((size_t)sc->threads, sizeof *sc->prompt_grams);
    sc->grams = calloc((size_t)sc->threads, sizeof *sc->grams);
    if (!sc->rules || !sc->scratch || !sc->prompt_grams || !sc->grams) {
        sft_errf(err, "out of memory");
        sft_scorer_free(sc);
        return NULL;
    }
    if (!(sc->rules[0] = sft_text_rules_new(o->check_refusal, o->refusal_file, err))) {
        sft_scorer_free(sc);
        return NULL;
    }
    for (int t = 1; t < sc->threads; t++)
        if (!(sc->rules[t] = sft_text_rules_clone(sc->rules[0], err))) {
            sft_scorer_free(sc);
            return NULL;
        }
    if (o->model_dir && open_model(sc, err)) {
        sft_scorer_free(sc);
        return NULL;
    }
    return sc;
}

/* ---------------------------------------------------------------- heuristic */

static double clamp01(double x) {
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

/* Each check lowers the score once, however many turns it fires on. */
static void lower(sft_record_scores *s, int check, double factor) {
    if (factor >= 1 || (s->flags & (1u << check))) return;
    s->heuristic *= factor;
    s->flags |= 1u << check;
}

/* The share of the answer's word 3-grams that occur in the prompt turns (the
 * system and user turns before it). Answers under 10 trigrams (as the
 * repetition measure, too short to judge: a reversed list of five numbers
 * shares trigrams with its prompt by chance) count as copies only when they
 * equal the last user turn (normalised). */
static int prompt_copy_share(sft_scorer *sc, int t, const sft_record *rec, long answer, double *share,
                             sft_err *err) {
    sft_text_scratch *sx = &sc->scratch[t];
    sft_u64s *prompt = &sc->prompt_grams[t], *grams = &sc->grams[t];
    *share = 0;
    prompt->count = 0;
    long last_user = -1;
    for (long i = 0; i < answer; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role == SFT_ROLE_ASSISTANT) continue;
        if (m->role == SFT_ROLE_USER) last_user = i;
        if (sft_text_normalized_words(m->content, m->content_len, sx, err)) return -1;
        if (sx->words.count < 3) continue;
        if (sft_text_ngram_hashes(sx->normalized.data, &sx->words, 3, grams))
            return sft_errf(err, "out of memory");
        for (size_t k = 0; k < grams->count; k++)
            if (sft_u64s_push(prompt, grams->items[k])) return sft_errf(err, "out of memory");
    }
    sft_u64s_sort_unique(prompt);
    const sft_message *a = &rec->messages[answer];
    if (sft_text_normalized_words(a->content, a->content_len, sx, err)) return -1;
    if (sx->words.count < 12) {
        if (last_user < 0 || !sx->words.count) return 0;
        /* Keep the answer's normalised text, then compare with the user turn's. */
        size_t len = sx->normalized.len;
        char *answer_text = malloc(len + 1);
        if (!answer_text) return sft_errf(err, "out of memory");
        memcpy(answer_text, sx->normalized.data, len + 1);
        const sft_message *u = &rec->messages[last_user];
        int rc = sft_text_normalize(u->content, u->content_len, &sx->normalized, err);
        if (!rc && sx->normalized.len == len && !memcmp(sx->normalized.data, answer_text, len)) *share = 1;
        free(answer_text);
        return rc;
    }
    if (sft_text_ngram_hashes(sx->normalized.data, &sx->words, 3, grams))
        return sft_errf(err, "out of memory");
    size_t found = 0;
    for (size_t k = 0; k < grams->count; k++) {
        size_t lo = 0, hi = prompt->count;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (prompt->items[mid] < grams->items[k])
                lo = mid + 1;
            else
                hi = mid;
        }
        found += lo < prompt->count && prompt->items[lo] == grams->items[k];
    }
    *share = grams->count ? (double)found / (double)grams->count : 0;
    return 0;
}

static int heuristic(sft_scorer *sc, int t, const sft_record *rec, sft_record_scores *s, sft_err *err) {
    sft_text_rules *r = sc->rules[t];
    s->heuristic = 1;
    s->flags = 0;
    long answer = sft_record_last_assistant(rec);
    if (answer < 0 || rec->messages[rec->message_count - 1].role == SFT_ROLE_USER) {
        lower(s, SFT_HEUR_NO_ANSWER, 0);
        return 0;
    }
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role == SFT_ROLE_SYSTEM) continue;
        if (sft_text_is_blank(m->content, m->content_len)) lower(s, SFT_HEUR_EMPTY_TURN, 0);
        if (sft_text_chars(m->content, m->content_len) > LONG_TURN_CHARS) lower(s, SFT_HEUR_LONG_TURN, 0.5);
    }
    if (s->flags & (1u << SFT_HEUR_EMPTY_TURN)) return 0;
    const sft_message *a = &rec->messages[answer];
    if (sft_text_normalized_words(a->content, a->content_len, &sc->scratch[t], err)) return -1;
    if (sc->scratch[t].words.count == 0) lower(s, SFT_HEUR_NO_WORDS, 0.1);
    size_t bad, chars;
    sft_record_nonprintable(rec, &bad, &chars);
    if (chars) lower(s, SFT_HEUR_NONPRINTABLE, clamp01(1 - 50.0 * (double)bad / (double)chars));
    double worst_repeat = 0;
    int refusal = 0;
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        if (m->role != SFT_ROLE_ASSISTANT) continue;
        size_t start, end;
        refusal |= sft_text_rules_refusal(r, m->content, m->content_len, &start, &end);
        double ratio = sft_text_rules_repeat_ratio(r, m->content, m->content_len, 3, err);
        if (ratio < 0) return -1;
        if (ratio > worst_repeat) worst_repeat = ratio;
    }
    if (refusal) lower(s, SFT_HEUR_REFUSAL, 0.1);
    if (worst_repeat > 0.1) lower(s, SFT_HEUR_REPETITION, clamp01(1 - (worst_repeat - 0.1) / 0.4));
    int cut = sft_text_rules_looks_cut(r, a->content, a->content_len, sc->opts.cut_min_words, err);
    if (cut < 0) return -1;
    if (cut) lower(s, SFT_HEUR_CUT_OFF, 0.5);
    double copied;
    if (prompt_copy_share(sc, t, rec, answer, &copied, err)) return -1;
    if (copied > 0.5) lower(s, SFT_HEUR_COPIES_PROMPT, clamp01(1 - (copied - 0.5) / 0.5));
    return 0;
}

/* ------------------------------------------------------------- model scores */

/* One record's sequences for the model: the record as training encodes it
 * (ids, shifted targets, truncated), and the answer alone. */
typedef struct {
    int32_t *ids, *targets;
    size_t n, supervised;
    int truncated;
    /* IFD: the answer tokens are ids[answer_from, answer_to); the alone
     * sequence holds header tokens then the same answer tokens. */
    int ifd;
    const char *no_ifd;
    size_t answer_from, answer_to;
    int32_t *alone_ids, *alone_targets;
    size_t alone_n;
    long full_example, alone_example; /* in the batch dataset, or -1 */
} prepared;

static void prepared_free(prepared *p) {
    free(p->ids);
    free(p->targets);
    free(p->alone_ids);
    free(p->alone_targets);
}

typedef struct {
    sft_encoded enc;
    sft_chat_render prefix;
    sft_encoding header;
    sft_chat_message *msgs;
    size_t msg_cap;
} prep_scratch;

static void prep_scratch_free(prep_scratch *x) {
    sft_encoded_free(&x->enc);
    sft_chat_render_free(&x->prefix);
    sft_encoding_free(&x->header);
    free(x->msgs);
}

/* The last occurrence of needle in hay[0, len), or NULL. */
static const char *last_occurrence(const char *hay, size_t len, const char *needle, size_t n) {
    if (!n || n > len) return NULL;
    for (size_t at = len - n + 1; at-- > 0;)
        if (hay[at] == needle[0] && !memcmp(hay + at, needle, n)) return hay + at;
    return NULL;
}

/* The response header: the template's text between the end of the prompt's
 * last message and the answer's span in the full rendering, e.g.
 * "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" (Llama 3),
 * "\n\n### Response:\n" (Alpaca, Cherry LLM's own "### Response:"). The
 * message is found as its text trimmed of white space (templates strip it);
 * when it cannot be found, the text after the prompt rendered alone; else "". */
static int response_header(const sft_scorer *sc, prep_scratch *x, const sft_record *rec, long answer,
                           const char **header, size_t *header_len, sft_err *err) {
    const sft_chat_render *full = &x->enc.chat.render;
    *header = "";
    *header_len = 0;
    if (!full->span_count) return 0;
    size_t span_start = full->spans[full->span_count - 1].start;
    const sft_message *q = &rec->messages[answer - 1];
    const char *c = q->content;
    size_t n = q->content_len;
    while (n && (*c == ' ' || *c == '\n' || *c == '\t' || *c == '\r'))
        c++, n--;
    while (n && (c[n - 1] == ' ' || c[n - 1] == '\n' || c[n - 1] == '\t' || c[n - 1] == '\r'))
        n--;
    const char *found = last_occurrence(full->text, span_start, c, n);
    if (found) {
        *header = found + n;
        *header_len = span_start - (size_t)(found + n - full->text);
        return 0;
    }
    if ((size_t)answer > x->msg_cap) {
        sft_chat_message *m = realloc(x->msgs, (size_t)answer * sizeof *m);
        if (!m) return sft_errf(err, "out of memory");
        x->msgs = m;
        x->msg_cap = (size_t)answer;
    }
    for (long i = 0; i < answer; i++)
        x->msgs[i] =
            (sft_chat_message){rec->messages[i].role, rec->messages[i].content, rec->messages[i].content_len};
    sft_err ignored;
    if (sft_chat_render_messages(sc->session.tmpl, x->msgs, (size_t)answer, 0, &x->prefix, &ignored))
        return 0;
    if (x->prefix.len > span_start || memcmp(x->prefix.text, full->text, x->prefix.len)) return 0;
    *header = full->text + x->prefix.len;
    *header_len = span_start - x->prefix.len;
    return 0;
}

static int32_t *dup_ids(const int32_t *ids, size_t n) {
    int32_t *p = malloc((n ? n : 1) * sizeof *p);
    if (p && n) memcpy(p, ids, n * sizeof *p);
    return p;
}

static int prepare(const sft_scorer *sc, prep_scratch *x, const sft_record *rec, prepared *p, sft_err *err) {
    memset(p, 0, sizeof *p);
    p->full_example = p->alone_example = -1;
    const sft_encoder *enc = &sc->enc;
    long answer = sft_record_last_assistant(rec);
    if (answer < 0) {
        p->no_ifd = "no answer";
        return 0;
    }
    if (sft_encode_record(enc, rec, 0, &x->enc, err)) return -1;
    size_t n = x->enc.count;
    if ((long)n > sc->opts.max_len) {
        n = (size_t)sc->opts.max_len;
        p->truncated = 1;
    }
    p->n = n;
    if (!(p->ids = dup_ids(x->enc.ids, n)) || !(p->targets = malloc((n ? n : 1) * sizeof *p->targets)))
        return sft_errf(err, "out of memory");
    /* The training targets (train/dataset.c): position i predicts token i+1 when it carries loss. */
    for (size_t i = 0; i < n; i++) {
        p->targets[i] = i + 1 < n && x->enc.mask[i + 1] ? x->enc.ids[i + 1] : SFT_IGNORE_INDEX;
        p->supervised += p->targets[i] != SFT_IGNORE_INDEX;
    }
    if (rec->format == SFT_FORMAT_TEXT || answer < 1) {
        p->no_ifd = "no instruction before the answer";
        return 0;
    }
    /* The answer's tokens: the last run of the training mask. */
    size_t to = x->enc.count;
    while (to > 0 && !x->enc.mask[to - 1])
        to--;
    size_t from = to;
    while (from > 0 && x->enc.mask[from - 1])
        from--;
    if (from == to || from == 0) {
        p->no_ifd = "no answer tokens";
        return 0;
    }
    if (to > n) to = n;
    if (from >= to) {
        p->no_ifd = "the answer is past --max-len";
        return 0;
    }
    const char *header;
    size_t header_len;
    if (response_header(sc, x, rec, answer, &header, &header_len, err)) return -1;
    if (sft_tokenizer_encode(enc->tok, header, header_len, 0, &x->header, err)) return -1;
    /* The alone sequence starts as every sequence of this model does: with
     * BOS when the training encoding does. */
    int bos = enc->bos_id >= 0 && n > 0 && p->ids[0] == enc->bos_id;
    size_t context = (size_t)bos + x->header.count;
    /* Without any context the first answer token is not predicted alone:
     * leave it out of both losses so they cover the same tokens. */
    if (context == 0) from++;
    if (from >= to) {
        p->no_ifd = "a one-token answer with no context to predict it alone";
        return 0;
    }
    size_t answer_tokens = to - from;
    size_t first = context == 0 ? 1 : 0; /* answer tokens given with no target before them */
    p->alone_n = context + first + answer_tokens;
    p->alone_ids = malloc(p->alone_n * sizeof *p->alone_ids);
    p->alone_targets = malloc(p->alone_n * sizeof *p->alone_targets);
    if (!p->alone_ids || !p->alone_targets) return sft_errf(err, "out of memory");
    size_t k = 0;
    if (bos) p->alone_ids[k++] = enc->bos_id;
    for (size_t i = 0; i < x->header.count; i++)
        p->alone_ids[k++] = x->header.ids[i];
    memcpy(p->alone_ids + k, p->ids + from - first, (first + answer_tokens) * sizeof(int32_t));
    for (size_t i = 0; i < p->alone_n; i++)
        p->alone_targets[i] =
            i + 1 >= context + first && i + 1 < p->alone_n ? p->alone_ids[i + 1] : SFT_IGNORE_INDEX;
    p->ifd = 1;
    p->answer_from = from;
    p->answer_to = to;
    return 0;
}

/* Appends one example to the batch dataset (train/dataset.h's layout). */
static int ds_append(sft_dataset *ds, const int32_t *ids, const int32_t *targets, size_t n, sft_err *err) {
    if (ds->count == ds->cap) {
        size_t cap = ds->cap ? 2 * ds->cap : 64;
        sft_example *e = realloc(ds->examples, cap * sizeof *e);
        if (!e) return sft_errf(err, "out of memory");
        ds->examples = e;
        ds->cap = cap;
    }
    if (ds->token_count + n > ds->token_cap) {
        size_t cap = ds->token_cap ? ds->token_cap : 4096;
        while (cap < ds->token_count + n)
            cap *= 2;
        int32_t *a = realloc(ds->ids, cap * sizeof *a);
        if (!a) return sft_errf(err, "out of memory");
        ds->ids = a;
        int32_t *b = realloc(ds->targets, cap * sizeof *b);
        if (!b) return sft_errf(err, "out of memory");
        ds->targets = b;
        ds->token_cap = cap;
    }
    int32_t sup = 0;
    for (size_t i = 0; i < n; i++)
        sup += targets[i] != SFT_IGNORE_INDEX;
    memcpy(ds->ids + ds->token_count, ids, n * sizeof *ids);
    memcpy(ds->targets + ds->token_count, targets, n * sizeof *targets);
    ds->examples[ds->count++] =
        (sft_example){.offset = (int64_t)ds->token_count, .len = (int32_t)n, .supervised = sup};
    ds->token_count += n;
    return 0;
}

/* -log p of every target of the dataset (NAN where there is none), by packed
 * batches of the loader. */
static int token_losses(sft_scorer *sc, const sft_dataset *ds, double *losses, sft_err *err) {
    sft_model *m = sc->session.model;
    sft_loader ld;
    if (sft_loader_init(&ld, ds, 1, sc->opts.max_len, sc->pad_id, err)) return -1;
    sft_batch_buf buf = {0};
    int B = sc->opts.batch_size;
    size_t *items = malloc((size_t)B * sizeof *items);
    /* -log p of every row: the loss head runs in chunks, so the B*T x V logits are never held whole */
    double *row_nll = malloc((size_t)m->max_B * (size_t)m->max_T * sizeof *row_nll);
    int rc = items && row_nll ? 0 : sft_errf(err, "out of memory");
    for (size_t start = 0; !rc && start < ld.item_count; start += (size_t)B) {
        int n = (int)(ld.item_count - start < (size_t)B ? ld.item_count - start : (size_t)B);
        for (int i = 0; i < n; i++)
            items[i] = start + (size_t)i;
        double batch_loss;
        if (sft_loader_batch(&ld, items, n, &buf, err) ||
            sft_model_forward_loss(m, &buf.batch, &batch_loss, row_nll, err)) {
            rc = -1;
            break;
        }
        const int T = buf.batch.T;
        /* Rows hold their examples back to back, as sft_loader_batch lays them out. */
        for (int r = 0; r < n; r++) {
            size_t t = 0;
            for (size_t k = ld.item_start[items[r]]; k < ld.item_start[items[r] + 1]; k++) {
                const sft_example *e = &ds->examples[ld.item_examples[k]];
                for (int32_t j = 0; j < e->len; j++) {
                    size_t row_at = (size_t)r * (size_t)T + t + (size_t)j;
                    int32_t target = ds->targets[e->offset + j];
                    losses[e->offset + j] = target == SFT_IGNORE_INDEX ? NAN : row_nll[row_at];
                }
                t += (size_t)e->len;
            }
        }
    }
    free(items);
    free(row_nll);
    sft_batch_buf_free(&buf);
    sft_loader_free(&ld);
    return rc;
}

static int model_scores(sft_scorer *sc, const sft_record *const *recs, size_t n, sft_record_scores *out,
                        sft_err *err) {
    prepared *p = calloc(n ? n : 1, sizeof *p);
    if (!p) return sft_errf(err, "out of memory");
    long failed = -1;
    sft_err first_err = {{0}};
#pragma omp parallel
    {
        prep_scratch x = {0};
        sft_err local = {{0}};
#pragma omp for schedule(dynamic, 4)
        for (size_t i = 0; i < n; i++) {
            if (prepare(sc, &x, recs[i], &p[i], &local) == 0) continue;
#pragma omp critical(score_error)
            if (failed < 0 || (long)i < failed) {
                failed = (long)i;
                first_err = local;
            }
        }
        prep_scratch_free(&x);
    }
    sft_dataset ds = {0};
    double *losses = NULL;
    int rc = 0;
    if (failed >= 0) {
        *err = first_err;
        rc = sft_err_prefix(err, "%s:%zu", recs[failed]->path, recs[failed]->line);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        if (p[i].supervised) {
            p[i].full_example = (long)ds.count;
            rc = ds_append(&ds, p[i].ids, p[i].targets, p[i].n, err);
        }
        if (!rc && p[i].ifd && p[i].supervised) {
            p[i].alone_example = (long)ds.count;
            rc = ds_append(&ds, p[i].alone_ids, p[i].alone_targets, p[i].alone_n, err);
        }
    }
    if (!rc && ds.count) {
        losses = malloc(ds.token_count * sizeof *losses);
        rc = losses ? token_losses(sc, &ds, losses, err) : sft_errf(err, "out of memory");
    }
    for (size_t i = 0; !rc && i < n; i++) {
        sft_record_scores *s = &out[i];
        s->has_model = s->has_ifd = 0;
        s->truncated = p[i].truncated;
        s->no_ifd = p[i].no_ifd;
        if (p[i].full_example < 0) {
            s->no_ifd = "no supervised token within --max-len";
            continue;
        }
        const sft_example *e = &ds.examples[p[i].full_example];
        double sum = 0;
        for (int32_t j = 0; j < e->len; j++)
            if (ds.targets[e->offset + j] != SFT_IGNORE_INDEX) sum += losses[e->offset + j];
        s->has_model = 1;
        s->tokens = e->supervised;
        s->loss = sum / (double)e->supervised;
        s->ppl = exp(s->loss);
        if (p[i].alone_example < 0) continue;
        /* Conditioned: answer token i is the target of position i - 1. */
        double cond = 0, alone = 0;
        for (size_t k = p[i].answer_from; k < p[i].answer_to; k++)
            cond += losses[e->offset + (int64_t)k - 1];
        const sft_example *a = &ds.examples[p[i].alone_example];
        for (int32_t j = 0; j < a->len; j++)
            if (ds.targets[a->offset + j] != SFT_IGNORE_INDEX) alone += losses[a->offset + j];
        long count = (long)(p[i].answer_to - p[i].answer_from);
        s->answer_tokens = count;
        s->answer_loss = cond / (double)count;
        s->answer_loss_alone = alone / (double)a->supervised;
        if (s->answer_loss_alone > 0) {
            s->has_ifd = 1;
            s->ifd = s->answer_loss / s->answer_loss_alone;
        } else
            s->no_ifd = "the answer alone has zero loss";
    }
    for (size_t i = 0; i < n; i++)
        prepared_free(&p[i]);
    free(p);
    free(losses);
    free(ds.examples);
    free(ds.ids);
    free(ds.targets);
    return rc;
}

int sft_scorer_run(sft_scorer *sc, const sft_record *const *recs, size_t n, int want_model,
                   sft_record_scores *out, sft_err *err) {
    long failed = -1;
    sft_err first_err = {{0}};
#pragma omp parallel num_threads(sc->threads)
    {
        int t = omp_get_thread_num();
        sft_err local = {{0}};
#pragma omp for schedule(dynamic, 16)
        for (size_t i = 0; i < n; i++) {
            memset(&out[i], 0, sizeof out[i]);
            if (heuristic(sc, t, recs[i], &out[i], &local) == 0) continue;
#pragma omp critical(score_error)
            if (failed < 0 || (long)i < failed) {
                failed = (long)i;
                first_err = local;
            }
        }
    }
    if (failed >= 0) {
        *err = first_err;
        return sft_err_prefix(err, "%s:%zu", recs[failed]->path, recs[failed]->line);
    }
    if (!want_model || !sc->has_model) return 0;
    return model_scores(sc, recs, n, out, err);
}

json_t *sft_record_scores_json(const sft_scorer *sc, const sft_record_scores *s) {
    json_t *o = json_object();
    json_object_set_new(o, "heuristic", json_real(s->heuristic));
    json_t *flags = json_array();
    for (int k = 0; k < SFT_HEUR_COUNT; k++)
        if (s->flags & (1u << k)) json_array_append_new(flags, json_string(heuristic_names[k]));
    json_object_set_new(o, "flags", flags);
    if (!sc->has_model) return o;
    json_object_set_new(o, "model", json_string(sc->opts.model_dir));
    if (sc->opts.adapter_dir) json_object_set_new(o, "adapter", json_string(sc->opts.adapter_dir));
    if (s->has_model) {
        json_object_set_new(o, "loss", json_real(s->loss));
        json_object_set_new(o, "ppl", json_real(s->ppl));
        json_object_set_new(o, "tokens", json_integer(s->tokens));
    } else {
        json_object_set_new(o, "ppl", json_null());
    }
    if (s->truncated) json_object_set_new(o, "truncated", json_true());
    if (s->has_ifd) {
        json_object_set_new(o, "ifd", json_real(s->ifd));
        json_object_set_new(o, "answer_loss", json_real(s->answer_loss));
        json_object_set_new(o, "answer_loss_alone", json_real(s->answer_loss_alone));
        json_object_set_new(o, "answer_tokens", json_integer(s->answer_tokens));
    } else {
        json_object_set_new(o, "ifd", json_null());
        if (s->no_ifd) json_object_set_new(o, "ifd_note", json_string(s->no_ifd));
    }
    return o;
}

/* ------------------------------------------------------------ sft data score */

/* Records are scored in chunks: big enough to pack the model's rows well and
 * to keep every thread busy, small enough to stream. */
#define SCORE_CHUNK 256

typedef struct {
    sft_scorer *sc;
    sft_writer *out;
    sft_score_summary *summary;
    sft_record *chunk;
    const sft_record **ptrs;
    sft_record_scores *scores;
    size_t count;
    sft_path_pool paths; /* stable copies of the input paths the chunk points to */
} score_ctx;

static int score_flush(score_ctx *c, sft_err *err) {
    if (!c->count) return 0;
    if (sft_scorer_run(c->sc, c->ptrs, c->count, 1, c->scores, err)) return -1;
    for (size_t i = 0; i < c->count; i++) {
        const sft_record_scores *s = &c->scores[i];
        sft_score_summary *sum = c->summary;
        sum->heuristic_sum += s->heuristic;
        for (int k = 0; k < SFT_HEUR_COUNT; k++)
            sum->flagged[k] += (s->flags >> k) & 1;
        if (s->has_model) sum->with_model++, sum->loss_sum += s->loss;
        if (s->has_ifd) sum->with_ifd++, sum->ifd_sum += s->ifd;
        sum->truncated += s->truncated;
        json_t *copy = json_copy(c->chunk[i].json);
        json_object_set_new(copy, "sft_scores", sft_record_scores_json(c->sc, s));
        int rc = sft_writer_put_json(c->out, copy, err);
        json_decref(copy);
        if (rc) return -1;
    }
    c->count = 0;
    return 0;
}

/* Moves the record into the chunk (the reader gets the slot's old buffers). */
static int score_collect(sft_record *rec, void *p, sft_err *err) {
    score_ctx *c = p;
    sft_record *slot = &c->chunk[c->count];
    if (sft_record_move_into(slot, rec, &c->paths, err)) return -1;
    c->ptrs[c->count] = slot;
    c->count++;
    return c->count == SCORE_CHUNK ? score_flush(c, err) : 0;
}

int sft_data_score(const sft_data_io *io, const sft_score_options *o, sft_score_summary *s, sft_err *err) {
    memset(s, 0, sizeof *s);
    if (!io->output) return sft_errf(err, "score needs an output file (-o)");
    score_ctx c = {0};
    c.summary = s;
    if (!(c.sc = sft_scorer_open(o, err))) return -1;
    c.chunk = calloc(SCORE_CHUNK, sizeof *c.chunk);
    c.ptrs = calloc(SCORE_CHUNK, sizeof *c.ptrs);
    c.scores = calloc(SCORE_CHUNK, sizeof *c.scores);
    int rc = -1;
    if (!c.chunk || !c.ptrs || !c.scores)
        sft_errf(err, "out of memory");
    else if ((c.out = sft_writer_open(io->output, err))) {
        sft_each_summary each;
        /* Records without an answer are scored (0) rather than refused. */
        rc = sft_data_each(io, 1, score_collect, &c, &each, err);
        if (!rc) rc = score_flush(&c, err);
        s->records = each.records;
        s->skipped = each.skipped;
        rc = sft_writer_finish(c.out, rc, err);
    }
    for (size_t i = 0; c.chunk && i < SCORE_CHUNK; i++)
        sft_record_free(&c.chunk[i]);
    sft_path_pool_free(&c.paths);
    free(c.chunk);
    free(c.ptrs);
    free(c.scores);
    sft_scorer_free(c.sc);
    return rc;
}
