/* cmd_generate.c: `sft generate`: one reply of a model (optionally with a
 * LoRA adapter) to a prompt, rendered with the model's chat template; greedy
 * by default, sampled with --temperature > 0 (then --top-k, --top-p, --seed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/json.h"
#include "model/session.h"

int sft_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *prompt = NULL, *system = NULL, *template_name = NULL;
    long max_new = 128, top_k = 0, seed = 0, threads = 0;
    double temperature = 0.0, top_p = 1.0;
    int raw = 0, json = 0, temperature_set = 0, top_k_set = 0, top_p_set = 0;
    const sft_arg flags[] = {
        {"model", SFT_ARG_STRING, &model, "model dir (config.json, model.safetensors, tokenizer.json)", NULL},
        {"adapter", SFT_ARG_STRING, &adapter, "PEFT LoRA adapter dir, merged into the weights", NULL},
        {"prompt", SFT_ARG_STRING, &prompt, "the user message (or, with --raw, the text to continue)", NULL},
        {"system", SFT_ARG_STRING, &system, "a system message before the prompt", NULL},
        {"template", SFT_ARG_STRING, &template_name, "chat template name (default: the tokenizer's)", NULL},
        {"raw", SFT_ARG_BOOL, &raw, "continue the prompt text as is, without the chat template", NULL},
        {"max-new-tokens", SFT_ARG_INT, &max_new, "most tokens to generate (default 128)", NULL},
        {"temperature", SFT_ARG_DOUBLE, &temperature, "sample at this temperature (0: greedy, the default)",
         &temperature_set},
        {"top-k", SFT_ARG_INT, &top_k, "sample among the k most likely tokens (0: all)", &top_k_set},
        {"top-p", SFT_ARG_DOUBLE, &top_p, "sample within this probability mass (1: all)", &top_p_set},
        {"seed", SFT_ARG_INT, &seed, "random seed for sampling (default 0)", NULL},
        {"threads", SFT_ARG_INT, &threads, "threads (default: every core)", NULL},
        {"json", SFT_ARG_BOOL, &json, "print {\"text\", \"new_tokens\"} as JSON", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    sft_err err;
    int npos = 0;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos,
                            "sft generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] "
                            "[--temperature X --top-k N --top-p X --seed N]",
                            &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("generate", &err);
    if (!model || !prompt) {
        sft_errf(&err, "--model and --prompt are required (see --help)");
        return sft_cli_fail("generate", &err);
    }
    if (max_new <= 0 || max_new > 1 << 20) {
        sft_errf(&err, "--max-new-tokens %ld must be between 1 and %d", max_new, 1 << 20);
        return sft_cli_fail("generate", &err);
    }
    if (temperature < 0 || top_k < 0 || !(top_p > 0 && top_p <= 1)) {
        sft_errf(&err, "--temperature must be >= 0, --top-k >= 0 and --top-p in (0, 1]");
        return sft_cli_fail("generate", &err);
    }
    if (!temperature_set && (top_k_set || top_p_set)) {
        sft_errf(&err, "--top-k and --top-p apply to sampling: give --temperature too (1.0 leaves the logits "
                       "as they are)");
        return sft_cli_fail("generate", &err);
    }
    sft_set_threads((int)threads);
    sft_session s;
    if (sft_session_open(&s, model, adapter, template_name, !raw, &err))
        return sft_cli_fail("generate", &err);
    sft_sampling sampling = {.greedy = temperature == 0.0,
                             .temperature = temperature,
                             .top_k = (int)top_k,
                             .top_p = top_p,
                             .seed = (uint64_t)seed};
    sft_chat_message messages[2];
    size_t count = 0;
    if (system) messages[count++] = (sft_chat_message){SFT_ROLE_SYSTEM, system, strlen(system)};
    messages[count++] = (sft_chat_message){SFT_ROLE_USER, prompt, strlen(prompt)};
    char *text = NULL;
    int new_tokens = 0;
    rc = sft_session_generate(&s, raw ? NULL : messages, count, prompt, (int)max_new, &sampling, &text,
                              &new_tokens, &err);
    sft_session_close(&s);
    if (rc) return sft_cli_fail("generate", &err);
    if (json) {
        printf("{\"text\": ");
        sft_json_write_string(stdout, text, strlen(text));
        printf(", \"new_tokens\": %d}\n", new_tokens);
    } else {
        printf("%s\n", text);
    }
    free(text);
    return 0;
}
