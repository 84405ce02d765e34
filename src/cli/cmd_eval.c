/* cmd_eval.c: `sft eval --model DIR [--adapter DIR] --data FILE [--generate]
 * [--json]`: the validation loss and perplexity of a model (a PEFT adapter
 * merged in when given) on a dataset, with the same rendering and masking as
 * training (train/dataset.h), and with --generate the exact-match accuracy of
 * greedy generation: each record's last assistant turn is generated from the
 * turns before it and compared with the reference (surrounding whitespace
 * ignored). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/file.h"
#include "io/json.h"
#include "model/ops.h"
#include "model/session.h"
#include "train/trainer.h"

#define USAGE "sft eval --model DIR [--adapter DIR] --data FILE [--generate] [--json]"

/* Trims ASCII whitespace from both ends: [*start, *end). */
static void trim(const char *s, size_t len, size_t *start, size_t *end) {
    size_t a = 0, b = len;
    while (a < b && isspace((unsigned char)s[a])) a++;
    while (b > a && isspace((unsigned char)s[b - 1])) b--;
    *start = a, *end = b;
}

typedef struct {
    int64_t total, correct, skipped;
} match_stats;

/* Greedy generation of every record's last assistant turn. */
static int exact_match(sft_session *s, const sft_encoder *enc, const char *path, sft_data_format format,
                       int max_new_limit, match_stats *ms, FILE *log, sft_err *err) {
    sft_reader_options ro = {.format = format};
    sft_reader *r = sft_reader_open(path, &ro, err);
    if (!r) return -1;
    sft_record rec;
    sft_record_init(&rec);
    sft_encoded prompt = {0};
    sft_encoding ref = {0};
    sft_chat_message *msgs = NULL;
    int32_t *out = NULL;
    int rc = -1, got;
    sft_sampling greedy = {.greedy = 1};
    while ((got = sft_reader_next(r, &rec, err)) == 1) {
        long last = sft_record_last_assistant(&rec);
        if (rec.format == SFT_FORMAT_TEXT || last < 1) {
            ms->skipped++; /* no prompt before the answer */
            continue;
        }
        sft_chat_message *grown = realloc(msgs, (size_t)last * sizeof *msgs);
        if (!grown) {
            sft_errf(err, "out of memory");
            goto done;
        }
        msgs = grown;
        for (long i = 0; i < last; i++)
            msgs[i] = (sft_chat_message){rec.messages[i].role, rec.messages[i].content, rec.messages[i].content_len};
        if (sft_encode_prompt(enc, msgs, (size_t)last, &prompt, err)) {
            sft_err_prefix(err, "%s:%zu", path, rec.line);
            goto done;
        }
        const sft_message *answer = &rec.messages[last];
        if (sft_tokenizer_encode(s->tok, answer->content, answer->content_len, 0, &ref, err)) goto done;
        /* An answer longer than the reference cannot match: a few tokens of
         * slack for another tokenization of the same text and the eos. */
        int max_new = (int)ref.count + 8;
        if (max_new > max_new_limit) max_new = max_new_limit;
        int32_t *o = realloc(out, (size_t)max_new * sizeof *o);
        if (!o) {
            sft_errf(err, "out of memory");
            goto done;
        }
        out = o;
        int n = 0;
        if (sft_generate(s->model, prompt.ids, (int)prompt.count, max_new, &greedy, s->eos_ids, s->eos_count, out,
                         &n, err)) {
            sft_err_prefix(err, "%s:%zu", path, rec.line);
            goto done;
        }
        char *text;
        size_t len;
        if (sft_tokenizer_decode(s->tok, out, (size_t)n, 1, &text, &len, err)) goto done;
        size_t a0, a1, b0, b1;
        trim(text, len, &a0, &a1);
        trim(answer->content, answer->content_len, &b0, &b1);
        int same = a1 - a0 == b1 - b0 && !memcmp(text + a0, answer->content + b0, a1 - a0);
        ms->total++;
        ms->correct += same;
        if (log) fprintf(log, "\r%lld generated, %lld exact", (long long)ms->total, (long long)ms->correct);
        free(text);
    }
    if (log && ms->total) fputc('\n', log);
    rc = got < 0 ? -1 : 0;
done:
    free(out);
    free(msgs);
    sft_encoding_free(&ref);
    sft_encoded_free(&prompt);
    sft_record_free(&rec);
    sft_reader_close(r);
    return rc;
}

int sft_cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *template_name = "auto", *format_name = "auto";
    int generate = 0, as_json = 0, train_on_prompt = 0;
    long max_len = 1024, batch_size = 8, max_new = 256, threads = 0;
    const sft_arg flags[] = {
        {"model", SFT_ARG_STRING, &model_dir, "Hugging Face model dir (required)", NULL},
        {"adapter", SFT_ARG_STRING, &adapter, "PEFT adapter dir, merged into the model", NULL},
        {"data", SFT_ARG_STRING, &data, "evaluation data, JSONL or a JSON array, any format (required)", NULL},
        {"format", SFT_ARG_STRING, &format_name, "record format (default auto: detected)", NULL},
        {"template", SFT_ARG_STRING, &template_name, "chat template (default auto: the model's own)", NULL},
        {"max-len", SFT_ARG_INT, &max_len, "maximum tokens per example, longer ones truncated (default 1024)", NULL},
        {"train-on-prompt", SFT_ARG_BOOL, &train_on_prompt, "loss on every token, as training with --train-on-prompt", NULL},
        {"batch-size", SFT_ARG_INT, &batch_size, "sequences per forward pass (default 8)", NULL},
        {"generate", SFT_ARG_BOOL, &generate, "exact-match accuracy of greedy generation of the last assistant turn", NULL},
        {"max-new-tokens", SFT_ARG_INT, &max_new, "generation limit per answer (default 256)", NULL},
        {"threads", SFT_ARG_INT, &threads, "worker threads (default: all cores)", NULL},
        {"json", SFT_ARG_BOOL, &as_json, "print one JSON object instead of text", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos, USAGE, &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("eval", &err);
    if (!model_dir || !data) {
        sft_errf(&err, "--model DIR and --data FILE are required (see --help)");
        return sft_cli_fail("eval", &err);
    }
    if (max_len < 2 || batch_size < 1 || max_new < 1 || threads < 0) {
        sft_errf(&err, "--max-len must be >= 2, --batch-size and --max-new-tokens >= 1, --threads >= 0");
        return sft_cli_fail("eval", &err);
    }
    sft_data_format format;
    if (sft_data_format_parse(format_name, &format, &err)) return sft_cli_fail("eval", &err);
    sft_set_threads((int)threads);

    sft_session s;
    if (sft_session_open(&s, model_dir, adapter, NULL, 0, &err)) return sft_cli_fail("eval", &err);
    char template_error[SFT_ERR_MSG_MAX] = "";
    /* An adapter exported by sft train carries the template it was trained
     * with; it wins over the base model's own unless --template names one. */
    char adapter_template[4096];
    char *adapter_text = NULL;
    size_t adapter_len;
    if (adapter && !strcmp(template_name, "auto") &&
        snprintf(adapter_template, sizeof adapter_template, "%s/chat_template.jinja", adapter) <
            (int)sizeof adapter_template &&
        sft_file_exists(adapter_template) && sft_read_file(adapter_template, &adapter_text, &adapter_len, &err)) {
        sft_session_close(&s);
        return sft_cli_fail("eval", &err);
    }
    if (adapter_text)
        s.tmpl = sft_chat_template_new(NULL, adapter_text, sft_tokenizer_bos_token(s.tok),
                                       sft_tokenizer_eos_token(s.tok), &err);
    else
        s.tmpl = sft_chat_template_for_tokenizer(s.tok, template_name, &err);
    free(adapter_text);
    if (!s.tmpl) snprintf(template_error, sizeof template_error, "%s", err.msg);
    sft_encoder enc;
    sft_dataset ds = {0};
    rc = 1;
    if (sft_encoder_init(&enc, s.tok, s.tmpl, model_dir, &err)) goto fail;
    enc.template_error = s.tmpl ? NULL : template_error;
    sft_dataset_options dopt = {.format = format, .train_on_prompt = train_on_prompt, .max_len = max_len};
    if (sft_dataset_load(&ds, &data, 1, &enc, &dopt, &err)) goto fail;
    if (ds.count == 0) {
        sft_errf(&err, "%s: no example with a token to score (%lld records)", data, (long long)ds.stats.records);
        goto fail;
    }
    int64_t longest = 1;
    for (size_t i = 0; i < ds.count; i++)
        if (ds.examples[i].len > longest) longest = ds.examples[i].len;
    if (sft_model_plan(s.model, (int)batch_size, (int)longest, &err)) goto fail;
    int32_t pad = s.model->cfg.pad_token_id >= 0 ? s.model->cfg.pad_token_id : 0;
    double loss;
    int64_t tokens;
    if (sft_eval_dataset(s.model, &ds, (int)batch_size, pad, &loss, &tokens, &err)) goto fail;
    match_stats ms = {0};
    /* a counter redrawn in place: only on a terminal */
    FILE *counter = !as_json && isatty(fileno(stderr)) ? stderr : NULL;
    if (generate && exact_match(&s, &enc, data, format, (int)max_new, &ms, counter, &err)) goto fail;
    double accuracy = ms.total ? (double)ms.correct / (double)ms.total : NAN;
    if (as_json) {
        printf("{\"model\": ");
        sft_json_write_string(stdout, model_dir, strlen(model_dir));
        printf(", \"adapter\": ");
        if (adapter) sft_json_write_string(stdout, adapter, strlen(adapter));
        else printf("null");
        printf(", \"data\": ");
        sft_json_write_string(stdout, data, strlen(data));
        printf(", \"examples\": %zu, \"tokens\": %lld, \"truncated\": %lld, \"dropped\": %lld, \"loss\": %.17g, "
               "\"perplexity\": %.17g",
               ds.count, (long long)tokens, (long long)ds.stats.truncated, (long long)ds.stats.dropped_unsupervised,
               loss, exp(loss));
        if (generate)
            printf(", \"exact_match\": {\"correct\": %lld, \"total\": %lld, \"skipped\": %lld, \"accuracy\": %s%.17g%s}",
                   (long long)ms.correct, (long long)ms.total, (long long)ms.skipped, ms.total ? "" : "\"",
                   ms.total ? accuracy : NAN, ms.total ? "" : "\"");
        printf("}\n");
    } else {
        printf("examples: %zu (%lld scored tokens)\n", ds.count, (long long)tokens);
        if (ds.stats.truncated) printf("truncated to --max-len %ld: %lld\n", max_len, (long long)ds.stats.truncated);
        printf("loss: %.4f\nperplexity: %.3f\n", loss, exp(loss));
        if (generate) {
            if (ms.total)
                printf("exact match: %lld / %lld = %.1f%%\n", (long long)ms.correct, (long long)ms.total,
                       100.0 * accuracy);
            else
                printf("exact match: no record with a prompt before its last assistant turn\n");
        }
    }
    rc = 0;
fail:
    if (rc) sft_cli_fail("eval", &err);
    sft_dataset_free(&ds);
    sft_session_close(&s);
    return rc;
}
