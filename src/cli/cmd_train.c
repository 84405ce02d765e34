/* cmd_train.c: `sft train [-c run.yaml] [flags]`: parses the run
 * configuration (flags and YAML from the one key table), resolves it, and
 * calls the training library (train/trainer.h); prints where the results
 * are. Exit status: 0 when the run finished (or stopped early), 130/143
 * when SIGINT/SIGTERM stopped it after saving a checkpoint, 1 on error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/run_flags.h"
#include "train/trainer.h"

#define USAGE "sft train [-c run.yaml] --model DIR --data FILE --out DIR [flags]"

/* The command line, for manifest.json. */
static char *join_args(int argc, char **argv) {
    size_t len = 4;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = malloc(len + 4);
    if (!s) return NULL;
    strcpy(s, "sft");
    for (int i = 0; i < argc; i++) strcat(strcat(s, " "), argv[i]);
    return s;
}

int sft_cmd_train(int argc, char **argv) {
    sft_run_config cfg;
    sft_run_config_init(&cfg);
    sft_err err;
    int rc = sft_run_flags_parse(&cfg, argc, argv, NULL, USAGE, &err);
    if (rc) {
        sft_run_config_free(&cfg);
        return rc > 0 ? 0 : sft_cli_fail("train", &err);
    }
    if (sft_run_config_finish(&cfg, &err)) {
        sft_run_config_free(&cfg);
        return sft_cli_fail("train", &err);
    }
    char *command_line = join_args(argc, argv);
    sft_train_options opts = {.log = stderr,
                              .progress = 1,
                              .handle_signals = 1,
                              .program_version = "0.1.0",
                              .command_line = command_line};
    sft_train_result res;
    rc = sft_train_run(&cfg, &opts, &res, &err);
    free(command_line);
    if (rc) {
        sft_run_config_free(&cfg);
        return sft_cli_fail("train", &err);
    }
    if (res.interrupted) {
        fprintf(stderr, "sft train: interrupted at step %lld of %lld; checkpoint saved in %s\n"
                        "continue with: sft train -c %s/run.yaml --resume\n",
                (long long)res.steps, (long long)res.total_steps, res.last_checkpoint, res.run_dir);
        sft_run_config_free(&cfg);
        return res.interrupted > 0 ? 128 + res.interrupted : 1;
    }
    printf("run: %s (%lld steps in %.1f s%s)\n", res.run_dir, (long long)res.steps, res.wall_s,
           res.stopped_early ? ", stopped early" : "");
    printf("final train loss: %.4f\n", res.final_train_loss);
    if (res.best_step >= 0)
        printf("best val loss: %.4f at step %lld -> %s\n", res.best_val_loss, (long long)res.best_step, res.best_dir);
    printf("final model: %s\n", res.final_dir);
    printf("diagnosis: %s", res.verdict);
    for (int i = 0; i < res.finding_count; i++) printf("%s%s", i ? ", " : " (", res.finding_kinds[i]);
    printf("%s -> %s/diagnosis.json\n", res.finding_count ? ")" : "", res.run_dir);
    sft_run_config_free(&cfg);
    return 0;
}
