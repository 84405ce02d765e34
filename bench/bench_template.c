/* bench_template.c: speed of chat rendering, tokenization and assistant
 * masks (sft_chat_encode, what the trainer runs on every record) on one core.
 *
 *   bench_template [FIXTURE_DIR]
 *
 * Uses the 60 real-text conversations per tokenizer of
 * FIXTURE_DIR/corpus/reference_corpus.json.gz (default tests/fixtures/hf).
 * For each tokenizer it reports conversations and tokens per second of the
 * whole sft_chat_encode, and the share of the time spent outside the
 * tokenizer (rendering + mask), measured by rendering and masking alone.
 * Each figure is the fastest of RUNS runs (the machine is shared: the
 * minimum is the least disturbed). The same 60 conversations come back
 * every pass, so the tokenizer's word cache is warm: tokens/s is an upper
 * figure; the share of rendering and masking is the number this measures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "io/file.h"
#include "io/json.h"
#include "tok/template.h"
#include "tok/template_json.h"

#define REPEAT 20
#define RUNS 5

typedef struct {
    sft_chat_message *messages;
    size_t count;
} conversation;

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : "tests/fixtures/hf";
    sft_err err;
    char path[1024];
    snprintf(path, sizeof path, "%s/corpus/reference_corpus.json.gz", fixtures);
    char *data;
    size_t len;
    if (sft_read_file_maybe_gz(path, &data, &len, &err)) {
        fprintf(stderr, "bench_template: %s\n", err.msg);
        return 1;
    }
    json_t *corpus = sft_json_loadb(data, len, path, &err);
    free(data);
    if (!corpus) {
        fprintf(stderr, "bench_template: %s\n", err.msg);
        return 1;
    }
    printf("%-12s %-12s %12s %14s %18s\n", "tokenizer", "template", "chats/s", "tokens/s", "render+mask share");
    const char *name;
    json_t *entry;
    json_object_foreach(json_object_get(corpus, "tokenizers"), name, entry) {
        snprintf(path, sizeof path, "%s/%s", fixtures, json_string_value(json_object_get(entry, "dir")));
        sft_tokenizer *tok = sft_tokenizer_load(path, &err);
        sft_chat_template *tmpl = tok ? sft_chat_template_for_tokenizer(tok, NULL, &err) : NULL;
        if (!tmpl) {
            fprintf(stderr, "bench_template: %s: %s\n", name, err.msg);
            sft_tokenizer_free(tok);
            continue;
        }
        const json_t *chats = json_object_get(entry, "chat");
        size_t n = json_array_size(chats);
        conversation *convs = calloc(n, sizeof *convs);
        for (size_t i = 0; i < n; i++) {
            size_t cap = 0;
            if (sft_chat_messages_from_json(json_object_get(json_array_get(chats, i), "messages"), &convs[i].messages,
                                            &cap, &convs[i].count, &err)) {
                fprintf(stderr, "bench_template: %s chat %zu: %s\n", name, i, err.msg);
                return 1;
            }
        }
        sft_chat_encoding enc = {0};
        size_t tokens = 0;
        double encode_s = 1e30;
        for (int run = 0; run < RUNS; run++) {
            tokens = 0;
            double t0 = bench_wall_s();
            for (int r = 0; r < REPEAT; r++) {
                for (size_t i = 0; i < n; i++) {
                    if (sft_chat_encode(tmpl, tok, convs[i].messages, convs[i].count, 0, &enc, &err)) {
                        fprintf(stderr, "bench_template: %s: %s\n", name, err.msg);
                        return 1;
                    }
                    tokens += enc.tokens.count;
                }
            }
            double t = bench_wall_s() - t0;
            if (t < encode_s) encode_s = t;
        }
        /* Rendering and masking alone, over the last encoding's offsets
         * reused per conversation (same work as inside sft_chat_encode). */
        sft_chat_encoding *pre = calloc(n, sizeof *pre);
        for (size_t i = 0; i < n; i++)
            sft_chat_encode(tmpl, tok, convs[i].messages, convs[i].count, 0, &pre[i], &err);
        sft_chat_render render = {0};
        double render_s = 1e30;
        for (int run = 0; run < RUNS; run++) {
            double t0 = bench_wall_s();
            for (int r = 0; r < REPEAT; r++) {
                for (size_t i = 0; i < n; i++) {
                    sft_chat_render_messages(tmpl, convs[i].messages, convs[i].count, 0, &render, &err);
                    sft_chat_assistant_mask(render.text, render.len, render.spans, render.span_count,
                                            pre[i].tokens.offsets, pre[i].tokens.count, pre[i].assistant_mask);
                }
            }
            double t = bench_wall_s() - t0;
            if (t < render_s) render_s = t;
        }
        printf("%-12s %-12s %12.0f %14.0f %17.1f%%\n", name, sft_chat_template_name(tmpl), REPEAT * n / encode_s,
               tokens / encode_s, 100.0 * render_s / encode_s);
        for (size_t i = 0; i < n; i++) {
            sft_chat_encoding_free(&pre[i]);
            free(convs[i].messages);
        }
        free(pre);
        free(convs);
        sft_chat_render_free(&render);
        sft_chat_encoding_free(&enc);
        sft_chat_template_free(tmpl);
        sft_tokenizer_free(tok);
    }
    json_decref(corpus);
    return 0;
}
