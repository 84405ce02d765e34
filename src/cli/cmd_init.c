/* cmd_init.c: `sft init`: a randomly initialised model dir from a
 * config.json and a tokenizer folder (model.h: sft_model_init_dir). */
#include <stdio.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "model/model.h"

int sft_cmd_init(int argc, char **argv) {
    const char *config = NULL, *tokenizer = NULL, *out = NULL;
    long seed = 0;
    const sft_arg flags[] = {
        {"config", SFT_ARG_STRING, &config, "config.json of the architecture (gpt2, llama, mistral, qwen2)",
         NULL},
        {"tokenizer", SFT_ARG_STRING, &tokenizer, "folder with tokenizer.json (copied into the model dir)",
         NULL},
        {"out", SFT_ARG_STRING, &out, "the model dir to create (must not exist, or be empty)", NULL},
        {"seed", SFT_ARG_INT, &seed, "seed of the initialisation (default 0)", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    sft_err err;
    int npos = 0;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos,
                            "sft init --config config.json --tokenizer DIR --out DIR [--seed N]", &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("init", &err);
    if (!config || !tokenizer || !out) {
        sft_errf(&err, "--config, --tokenizer and --out are required (see --help)");
        return sft_cli_fail("init", &err);
    }
    if (sft_model_init_dir(config, tokenizer, out, (uint64_t)seed, &err)) return sft_cli_fail("init", &err);
    printf("%s\n", out);
    return 0;
}
