/* cmd_chat.c: `sft chat`: a conversation with a model on the terminal. Each
 * line read from stdin is a user turn; the reply is generated with the chat
 * template over the whole conversation so far (the KV cache is rebuilt per
 * turn). "/reset" starts over; end of input ends the chat. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "model/session.h"

#define CHAT_MAX_MESSAGES 256

int sft_cmd_chat(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *system = NULL, *template_name = NULL;
    long max_new = 256, top_k = 0, seed = 0, threads = 0;
    double temperature = 0.0, top_p = 1.0;
    const sft_arg flags[] = {
        {"model", SFT_ARG_STRING, &model, "model dir", NULL},
        {"adapter", SFT_ARG_STRING, &adapter, "PEFT LoRA adapter dir, merged into the weights", NULL},
        {"system", SFT_ARG_STRING, &system, "a system message opening the conversation", NULL},
        {"template", SFT_ARG_STRING, &template_name, "chat template name (default: the tokenizer's)", NULL},
        {"max-new-tokens", SFT_ARG_INT, &max_new, "most tokens per reply (default 256)", NULL},
        {"temperature", SFT_ARG_DOUBLE, &temperature, "sample at this temperature (0: greedy, the default)",
         NULL},
        {"top-k", SFT_ARG_INT, &top_k, "sample among the k most likely tokens (0: all)", NULL},
        {"top-p", SFT_ARG_DOUBLE, &top_p, "sample within this probability mass (1: all)", NULL},
        {"seed", SFT_ARG_INT, &seed, "random seed for sampling", NULL},
        {"threads", SFT_ARG_INT, &threads, "threads (default: every core)", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    sft_err err;
    int npos = 0;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos,
                            "sft chat --model DIR [--adapter DIR] [--system TEXT]", &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("chat", &err);
    if (!model) {
        sft_errf(&err, "--model is required (see --help)");
        return sft_cli_fail("chat", &err);
    }
    if (max_new <= 0 || temperature < 0 || top_k < 0 || !(top_p > 0 && top_p <= 1)) {
        sft_errf(&err,
                 "--max-new-tokens must be positive, --temperature >= 0, --top-k >= 0, --top-p in (0, 1]");
        return sft_cli_fail("chat", &err);
    }
    sft_set_threads((int)threads);
    sft_session s;
    if (sft_session_open(&s, model, adapter, template_name, 1, &err)) return sft_cli_fail("chat", &err);
    sft_sampling sampling = {.greedy = temperature == 0.0,
                             .temperature = temperature,
                             .top_k = (int)top_k,
                             .top_p = top_p,
                             .seed = (uint64_t)seed};
    sft_chat_message messages[CHAT_MAX_MESSAGES];
    char *owned[CHAT_MAX_MESSAGES] = {0};
    size_t count = 0, first = 0;
    if (system) messages[count++] = (sft_chat_message){SFT_ROLE_SYSTEM, system, strlen(system)};
    first = count;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    rc = 0;
    fprintf(stderr, "chat with %s (%s); /reset starts over, end of input (Ctrl-D) quits\n", model,
            sft_chat_template_name(s.tmpl));
    while (fprintf(stderr, "> "), (len = getline(&line, &cap, stdin)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len) continue;
        if (!strcmp(line, "/reset")) {
            for (size_t i = first; i < count; i++)
                free(owned[i]), owned[i] = NULL;
            count = first;
            continue;
        }
        if (count + 2 > CHAT_MAX_MESSAGES) {
            fprintf(stderr, "the conversation is full (%d messages); /reset to start over\n",
                    CHAT_MAX_MESSAGES);
            continue;
        }
        owned[count] = strdup(line);
        messages[count] = (sft_chat_message){SFT_ROLE_USER, owned[count], (size_t)len};
        count++;
        char *reply = NULL;
        int n = 0;
        sampling.seed++;
        if (sft_session_generate(&s, messages, count, NULL, (int)max_new, &sampling, &reply, &n, &err)) {
            rc = sft_cli_fail("chat", &err);
            break;
        }
        printf("%s\n", reply);
        fflush(stdout);
        owned[count] = reply;
        messages[count] = (sft_chat_message){SFT_ROLE_ASSISTANT, reply, strlen(reply)};
        count++;
    }
    for (size_t i = 0; i < count; i++)
        free(owned[i]);
    free(line);
    sft_session_close(&s);
    return rc;
}
