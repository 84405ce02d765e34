/* samples.c: sample generations at evaluations (see samples.h). */
#include "train/samples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "model/generate.h"

/* The validation example picked for sample k: evenly spaced, the first one
 * included, so a set sorted by task shows several tasks. */
static size_t pick_index(size_t k, int count, size_t examples) {
    return k * examples / (size_t)count;
}

/* What the page shows of a conversation before its answer: a lone user
 * turn as it is, else one "role: text" line per turn. */
static char *prompt_text(const sft_record *rec, long answer) {
    if (answer == 1 && rec->messages[0].role == SFT_ROLE_USER)
        return strndup(rec->messages[0].content, rec->messages[0].content_len);
    size_t cap = 1;
    for (long i = 0; i < answer; i++) cap += rec->messages[i].content_len + 16;
    char *text = malloc(cap);
    if (!text) return NULL;
    size_t used = 0;
    for (long i = 0; i < answer; i++)
        used += (size_t)snprintf(text + used, cap - used, "%s%s: %.*s", i ? "\n" : "",
                                 sft_role_name(rec->messages[i].role), (int)rec->messages[i].content_len,
                                 rec->messages[i].content);
    return text;
}

/* Encodes one record's prompt into s->items[s->count] when it has an
 * answer to predict; 0 also when it is passed over. */
static int add_record(sft_samples *s, const sft_encoder *enc, const sft_record *rec, int max_prompt_tokens,
                      sft_encoded *encoded, sft_err *err) {
    long answer = sft_record_last_assistant(rec);
    if (answer < 1 || rec->format == SFT_FORMAT_TEXT) return 0;
    sft_chat_message messages[64];
    if (answer > (long)(sizeof messages / sizeof *messages)) return 0;
    for (long i = 0; i < answer; i++)
        messages[i] = (sft_chat_message){rec->messages[i].role, rec->messages[i].content,
                                         rec->messages[i].content_len};
    if (sft_encode_prompt(enc, messages, (size_t)answer, encoded, err))
        return sft_err_prefix(err, "%s:%zu: sample prompt", rec->path, rec->line);
    if (encoded->count == 0 || encoded->count > (size_t)max_prompt_tokens) return 0;
    sft_sample_prompt *p = &s->items[s->count];
    p->len = (int)encoded->count;
    p->ids = malloc(encoded->count * sizeof *p->ids);
    p->prompt = prompt_text(rec, answer);
    p->reference = strndup(rec->messages[answer].content, rec->messages[answer].content_len);
    s->count++; /* counted now so that free releases a partial entry */
    if (!p->ids || !p->prompt || !p->reference) return sft_errf(err, "out of memory");
    memcpy(p->ids, encoded->ids, encoded->count * sizeof *p->ids);
    return 0;
}

int sft_samples_init(sft_samples *s, const sft_dataset *val, const sft_encoder *enc, int count, int max_new_tokens,
                     int max_prompt_tokens, const int32_t *eos_ids, int eos_count, sft_err *err) {
    memset(s, 0, sizeof *s);
    s->tok = enc->tok;
    s->max_new_tokens = max_new_tokens;
    for (int i = 0; i < eos_count && s->eos_count < (int)(sizeof s->eos_ids / sizeof *s->eos_ids); i++)
        s->eos_ids[s->eos_count++] = eos_ids[i];
    if (count <= 0 || val->count == 0) return 0;
    if ((size_t)count > val->count) count = (int)val->count;
    s->items = calloc((size_t)count, sizeof *s->items);
    if (!s->items) return sft_errf(err, "out of memory");
    sft_encoded encoded = {0};
    sft_record rec;
    sft_record_init(&rec);
    int rc = 0;
    /* One pass over each validation file, taking the picked lines in order. */
    for (int f = 0; f < val->file_count && !rc; f++) {
        int wanted = 0;
        for (int k = 0; k < count; k++) wanted |= val->examples[pick_index((size_t)k, count, val->count)].file == f;
        if (!wanted) continue;
        sft_reader_options ro = {.format = val->files[f].format, .skip_bad = 1};
        sft_reader *r = sft_reader_open(val->files[f].path, &ro, err);
        if (!r) {
            rc = -1;
            break;
        }
        int got = 0;
        while (s->count < count && (got = sft_reader_next(r, &rec, err)) == 1) {
            int picked = 0;
            for (int k = 0; k < count; k++) {
                const sft_example *e = &val->examples[pick_index((size_t)k, count, val->count)];
                picked |= e->file == f && e->line == (int64_t)rec.line;
            }
            if (picked && (rc = add_record(s, enc, &rec, max_prompt_tokens, &encoded, err))) break;
        }
        if (!rc && got < 0) rc = -1;
        sft_reader_close(r);
    }
    sft_record_free(&rec);
    sft_encoded_free(&encoded);
    if (rc) sft_samples_free(s);
    return rc;
}

int sft_samples_write(const sft_samples *s, const sft_model *m, int64_t step, const char *path, sft_err *err) {
    if (s->count == 0) return 0;
    int32_t *out = malloc((size_t)s->max_new_tokens * sizeof *out);
    if (!out) return sft_errf(err, "out of memory");
    FILE *f = fopen(path, "a");
    if (!f) {
        free(out);
        return sft_err_errno(err, path);
    }
    /* Greedy: the answer the model would give, comparable across steps. */
    sft_sampling greedy = {.greedy = 1, .temperature = 1.0, .top_p = 1.0};
    int rc = 0;
    for (int i = 0; i < s->count && !rc; i++) {
        const sft_sample_prompt *p = &s->items[i];
        int n = 0;
        char *text = NULL;
        size_t len = 0;
        if (sft_generate(m, p->ids, p->len, s->max_new_tokens, &greedy, s->eos_ids, s->eos_count, out, &n, err) ||
            sft_tokenizer_decode(s->tok, out, (size_t)n, 1, &text, &len, err)) {
            rc = -1;
            break;
        }
        fprintf(f, "{\"step\":%lld,\"prompt\":", (long long)step);
        sft_json_write_string(f, p->prompt, strlen(p->prompt));
        fputs(",\"output\":", f);
        sft_json_write_string(f, text, len);
        fputs(",\"reference\":", f);
        sft_json_write_string(f, p->reference, strlen(p->reference));
        fputs("}\n", f);
        free(text);
    }
    if (fflush(f) && !rc) rc = sft_err_errno(err, path);
    if (fclose(f) && !rc) rc = sft_err_errno(err, path);
    free(out);
    return rc;
}

void sft_samples_free(sft_samples *s) {
    for (int i = 0; i < s->count; i++) {
        free(s->items[i].ids);
        free(s->items[i].prompt);
        free(s->items[i].reference);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}
