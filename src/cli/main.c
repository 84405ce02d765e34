/* main.c: the sft command-line entry point: dispatches to one subcommand.
 * A command whose `fn` is NULL is not built yet; it says which issue will
 * bring it rather than pretending to work. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/ops.h"
#include "io/suggest.h"

#define SFT_VERSION "0.1.0"

typedef struct {
    const char *name;
    sft_cmd_fn fn;
    const char *summary;
    const char *pending; /* when fn is NULL: what is missing */
} command;

static const command commands[] = {
    {"demo", sft_cmd_demo, "generate data, fine-tune a small model, sweep, report (offline)", "the training issue (#4)"},
    {"train", sft_cmd_train, "one SFT run into --out DIR", "the training issue (#4)"},
    {"sweep", sft_cmd_sweep, "learning-rate sweep, best model by minimal validation loss", "the sweep issue (#6)"},
    {"eval", sft_cmd_eval, "validation loss, perplexity, exact-match accuracy", "the training issue (#4)"},
    {"diagnose", sft_cmd_diagnose, "diagnosis of a run dir, metrics.jsonl, trainer_state.json, TensorBoard file or CSV", "the monitor issue (#5)"},
    {"report", sft_cmd_report, "HTML report with plots of a run or sweep", "the monitor issue (#5)"},
    {"generate", sft_cmd_generate, "sample from a model with its chat template", "the engine issue (#3)"},
    {"chat", sft_cmd_chat, "interactive chat with a model", "the engine issue (#3)"},
    {"data", sft_cmd_data, "dataset pipeline: stats, filter, dedup, decontaminate, split, convert, generate, augment, score", "the data issue (#7)"},
    {"export", sft_cmd_export, "HF model dir, PEFT adapter dir or GGUF from a checkpoint", "the training issue (#4)"},
    {"init", sft_cmd_init, "a randomly initialised model dir from a config.json and a tokenizer", "the engine issue (#3)"},
    {"tokenize", sft_cmd_tokenize, "JSON lines {\"text\"} on stdin to {\"ids\",\"tokens\"} on stdout", "the foundation issue (#2)"},
    {"template", sft_cmd_template, "JSON lines {\"messages\"} on stdin to {\"text\",\"ids\",\"assistant_mask\"}", "the foundation issue (#2)"},
    {"parity", sft_cmd_parity, "check tokenizers, templates, models and LoRA against a fixture dir", "the foundation issue (#2)"},
};
#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

int sft_cli_fail(const char *cmd, const sft_err *err) {
    fprintf(stderr, "sft %s: %s\n", cmd, err->msg);
    return 1;
}

static void usage(FILE *out) {
    fprintf(out, "sft %s: supervised fine-tuning of language models on CPUs\n\n", SFT_VERSION);
    fprintf(out, "usage: sft COMMAND [flags]   (sft COMMAND --help for its flags)\n\ncommands:\n");
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].fn ? "" : " [not built yet]");
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sft %s\n", SFT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        if (!commands[i].fn) {
            fprintf(stderr, "sft %s: not built yet; it arrives with %s\n", commands[i].name,
                    commands[i].pending);
            return 2;
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    const char *names[COMMAND_COUNT];
    for (size_t i = 0; i < COMMAND_COUNT; i++) names[i] = commands[i].name;
    const char *near = sft_suggest(argv[1], names, COMMAND_COUNT);
    if (near)
        fprintf(stderr, "sft: unknown command '%s' (did you mean '%s'?)\n", argv[1], near);
    else
        fprintf(stderr, "sft: unknown command '%s' (see sft --help)\n", argv[1]);
    return 2;
}
