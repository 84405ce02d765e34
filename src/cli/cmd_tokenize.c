/* cmd_tokenize.c: `sft tokenize --tokenizer DIR [--add-special]`: JSON lines
 * {"text": ...} on stdin, one {"ids": [...], "tokens": [...]} line per input
 * line on stdout, exactly as the tokenizers library encodes them. Empty
 * lines are skipped; a line that is not such an object stops with an error
 * naming its line number. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/json.h"
#include "tok/tokenizer.h"

static int is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

static void write_encoding(const sft_encoding *enc) {
    fputs("{\"ids\": [", stdout);
    for (size_t i = 0; i < enc->count; i++)
        printf(i ? ", %d" : "%d", enc->ids[i]);
    fputs("], \"tokens\": [", stdout);
    for (size_t i = 0; i < enc->count; i++) {
        if (i) fputs(", ", stdout);
        const char *t = enc->tokens[i] ? enc->tokens[i] : "";
        sft_json_write_string(stdout, t, strlen(t));
    }
    fputs("]}\n", stdout);
}

int sft_cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL;
    int add_special = 0;
    const sft_arg flags[] = {
        {"tokenizer", SFT_ARG_STRING, &dir, "model or tokenizer folder with tokenizer.json (required)", NULL},
        {"add-special", SFT_ARG_BOOL, &add_special, "add the post-processor's special tokens (BOS for Llama)",
         NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos,
                            "sft tokenize --tokenizer DIR [--add-special] < lines.jsonl", &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("tokenize", &err);
    if (!dir) {
        sft_errf(&err, "--tokenizer DIR is required (see --help)");
        return sft_cli_fail("tokenize", &err);
    }
    sft_tokenizer *tok = sft_tokenizer_load(dir, &err);
    if (!tok) return sft_cli_fail("tokenize", &err);

    sft_encoding enc = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long line_no = 0;
    rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        if (is_blank(line, (size_t)n)) continue;
        char name[64];
        snprintf(name, sizeof name, "stdin line %ld (line:column)", line_no);
        json_t *j = sft_json_loadb(line, (size_t)n, name, &err);
        if (!j) {
            rc = sft_cli_fail("tokenize", &err);
            break;
        }
        const json_t *text = json_object_get(j, "text");
        if (!json_is_string(text)) {
            json_decref(j);
            sft_errf(&err, "stdin line %ld: expected an object with a string \"text\"", line_no);
            rc = sft_cli_fail("tokenize", &err);
            break;
        }
        if (sft_tokenizer_encode(tok, json_string_value(text), json_string_length(text), add_special, &enc,
                                 &err)) {
            json_decref(j);
            sft_err_prefix(&err, "stdin line %ld", line_no);
            rc = sft_cli_fail("tokenize", &err);
            break;
        }
        json_decref(j);
        write_encoding(&enc);
    }
    if (!rc && ferror(stdin)) {
        sft_errf(&err, "reading stdin failed");
        rc = sft_cli_fail("tokenize", &err);
    }
    if (!rc && fflush(stdout)) {
        sft_errf(&err, "writing stdout failed");
        rc = sft_cli_fail("tokenize", &err);
    }
    free(line);
    sft_encoding_free(&enc);
    sft_tokenizer_free(tok);
    return rc;
}
