/* cmd_template.c: `sft template --tokenizer DIR [--template NAME]
 * [--add-generation-prompt]`: JSON lines {"messages": [...]} on stdin to
 * {"text", "ids", "assistant_mask"} on stdout, one line each, rendered and
 * encoded as transformers' apply_chat_template(..., tokenize=True,
 * return_dict=True, return_assistant_tokens_mask=True) does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/json.h"
#include "tok/template.h"
#include "tok/template_json.h"

/* Writes one output record. */
static void write_record(FILE *out, const sft_chat_encoding *enc) {
    fputs("{\"text\": ", out);
    sft_json_write_string(out, enc->render.text, enc->render.len);
    fputs(", \"ids\": [", out);
    for (size_t i = 0; i < enc->tokens.count; i++) fprintf(out, i ? ", %d" : "%d", (int)enc->tokens.ids[i]);
    fputs("], \"assistant_mask\": [", out);
    for (size_t i = 0; i < enc->tokens.count; i++) fputs(i ? (enc->assistant_mask[i] ? ", 1" : ", 0")
                                                           : (enc->assistant_mask[i] ? "1" : "0"), out);
    fputs("]}\n", out);
}

static int blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

int sft_cmd_template(int argc, char **argv) {
    const char *tokenizer_dir = NULL, *template_name = "auto";
    int add_generation_prompt = 0;
    const sft_arg flags[] = {
        {"tokenizer", SFT_ARG_STRING, &tokenizer_dir, "model or tokenizer folder (tokenizer.json, tokenizer_config.json, chat template)", NULL},
        {"template", SFT_ARG_STRING, &template_name, "chat template: auto (detected from the model's template), chatml, qwen2, qwen2.5, smollm2, llama3, llama3.1, llama2, llama2-trim, mistral or alpaca", NULL},
        {"add-generation-prompt", SFT_ARG_BOOL, &add_generation_prompt, "end with the assistant's turn header", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    sft_err err;
    int npos = 0;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos,
                            "sft template --tokenizer DIR [--template NAME] [--add-generation-prompt] < messages.jsonl",
                            &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("template", &err);
    if (!tokenizer_dir) {
        sft_errf(&err, "--tokenizer DIR is required (see --help)");
        return sft_cli_fail("template", &err);
    }
    sft_tokenizer *tok = sft_tokenizer_load(tokenizer_dir, &err);
    if (!tok) return sft_cli_fail("template", &err);
    sft_chat_template *tmpl = sft_chat_template_for_tokenizer(tok, template_name, &err);
    if (!tmpl) {
        sft_err_prefix(&err, "%s", tokenizer_dir);
        sft_tokenizer_free(tok);
        return sft_cli_fail("template", &err);
    }

    static char out_buffer[1 << 16];
    setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);
    sft_chat_message *messages = NULL;
    size_t cap = 0, count;
    sft_chat_encoding enc = {0};
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    long line_no = 0;
    rc = 0;
    while ((len = getline(&line, &line_cap, stdin)) >= 0) {
        line_no++;
        if (blank(line, (size_t)len)) continue;
        json_t *record = sft_json_loadb(line, (size_t)len, "stdin", &err);
        if (!record) {
            /* jansson's line:column are within this one line: name the stdin line instead. */
            sft_err parse = err;
            const char *what = strstr(parse.msg, "invalid JSON");
            sft_errf(&err, "stdin line %ld: %s", line_no, what ? what : parse.msg);
            rc = -1;
            break;
        }
        const json_t *array = json_is_object(record) ? json_object_get(record, "messages") : NULL;
        if (!array) {
            sft_errf(&err, "stdin line %ld: expected an object with \"messages\": [{\"role\", \"content\"}, ...]",
                     line_no);
            rc = -1;
        } else if (sft_chat_messages_from_json(array, &messages, &cap, &count, &err) ||
                   sft_chat_encode(tmpl, tok, messages, count, add_generation_prompt, &enc, &err)) {
            sft_err_prefix(&err, "stdin line %ld", line_no);
            rc = -1;
        } else {
            write_record(stdout, &enc);
        }
        json_decref(record);
        if (rc) break;
    }
    free(line);
    free(messages);
    sft_chat_encoding_free(&enc);
    sft_chat_template_free(tmpl);
    sft_tokenizer_free(tok);
    if (fflush(stdout) || ferror(stdout)) {
        sft_errf(&err, "cannot write to stdout");
        rc = -1;
    }
    return rc ? sft_cli_fail("template", &err) : 0;
}
