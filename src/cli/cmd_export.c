/* cmd_export.c: `sft export CKPT --out DIR [--merge] [--save-dtype D]
 * [--base DIR]`: a Hugging Face model dir from a training checkpoint (or
 * from best/, final/, any HF model dir), or with --merge a LoRA adapter
 * merged into its base model; an adapter without --merge is written as a
 * PEFT adapter dir. GGUF export is not built. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "train/export.h"

#define USAGE "sft export CKPT --out DIR [--merge] [--save-dtype auto|float32|bfloat16|float16] [--base DIR]"

int sft_cmd_export(int argc, char **argv) {
    const char *out = NULL, *dtype_name = "auto", *base = NULL, *gguf = NULL;
    int merge = 0;
    const sft_arg flags[] = {
        {"out", SFT_ARG_STRING, &out, "the folder to write (replaced atomically; required)", NULL},
        {"merge", SFT_ARG_BOOL, &merge, "merge a LoRA adapter into its base model: a full model dir", NULL},
        {"save-dtype", SFT_ARG_STRING, &dtype_name, "weights dtype: auto (config.json's), float32, bfloat16, float16",
         NULL},
        {"base", SFT_ARG_STRING, &base, "base model of an adapter (default: adapter_config.json's)", NULL},
        {"gguf", SFT_ARG_STRING, &gguf, "GGUF file (not built yet)", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    const char *positional[1];
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, positional, 1, &npos, USAGE, &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("export", &err);
    if (gguf) {
        sft_errf(&err, "--gguf is not built yet: export an HF model dir (--out) and convert it with llama.cpp's "
                       "convert_hf_to_gguf.py");
        return sft_cli_fail("export", &err);
    }
    if (npos != 1 || !out) {
        sft_errf(&err, "expected a checkpoint folder and --out DIR (usage: %s)", USAGE);
        return sft_cli_fail("export", &err);
    }
    sft_export_request req = {.checkpoint = positional[0], .out_dir = out, .merge = merge, .base_model = base};
    if (sft_export_dtype_parse(dtype_name, &req.dtype, &err) || sft_export_checkpoint(&req, &err))
        return sft_cli_fail("export", &err);
    printf("%s\n", out);
    return 0;
}
