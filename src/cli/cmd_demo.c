/* cmd_demo.c: `sft demo [--out DIR]`: the embedded default (train/demo.h):
 * generated tasks, a small model from scratch, a three-learning-rate sweep
 * as the training with a live line, exact-match accuracy before and after;
 * prints the numbers and where the report and the best model are. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "train/demo.h"

int sft_cmd_demo(int argc, char **argv) {
    sft_demo_options o;
    sft_demo_options_default(&o);
    const char *out = NULL, *assets = NULL;
    long records = 0, max_steps = 0, threads = 0, seed = 1;
    const sft_arg flags[] = {
        {"out", SFT_ARG_STRING, &out, "the demo's folder (default runs/demo; an earlier demo there is replaced)", NULL},
        {"assets", SFT_ARG_STRING, &assets, "the demo model's config.json and tokenizer (default assets/demo-model)",
         NULL},
        {"seed", SFT_ARG_INT, &seed, "seed of the data, the model and the training (default 1)", NULL},
        {"threads", SFT_ARG_INT, &threads, "threads in all (default: every core)", NULL},
        {"records", SFT_ARG_INT, &records, "training records to generate (default 16000; fewer for a quick look)",
         NULL},
        {"max-steps", SFT_ARG_INT, &max_steps, "optimizer steps per learning rate (default 1000)", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    sft_err err;
    int npos = 0;
    int rc = sft_args_parse(argc, argv, flags, NULL, 0, &npos, "sft demo [--out DIR] [--seed N] [--threads N]", &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("demo", &err);
    if (records < 0 || max_steps < 0 || threads < 0 || seed < 0) {
        sft_errf(&err, "--records, --max-steps, --threads and --seed must not be negative");
        return sft_cli_fail("demo", &err);
    }
    if (out) o.out_dir = out;
    if (assets) o.assets_dir = assets;
    o.records = records, o.max_steps = max_steps, o.threads = threads, o.seed = (uint64_t)seed;
    o.log = stderr;
    printf("sft demo: fine-tuning a small model on generated tasks with checkable answers, offline, into %s\n",
           o.out_dir);
    fflush(stdout);
    sft_demo_result r;
    if (sft_demo_run(&o, &r, &err)) return sft_cli_fail("demo", &err);
    printf("\nchosen learning rate: %g (trial %s, the lowest validation loss of the three)\n", r.chosen_lr,
           r.chosen_trial);
    printf("validation loss: %.3f at step %lld -> %.3f at step %lld (best %.3f at step %lld)\n", r.first_val_loss,
           (long long)r.first_val_step, r.last_val_loss, (long long)r.last_val_step, r.best_val_loss,
           (long long)r.best_step);
    printf("exact-match accuracy on %d held-out prompts: %.1f%% before -> %.1f%% after\n", r.heldout,
           100 * r.accuracy_before, 100 * r.accuracy_after);
    printf("  %-14s %8s %8s\n", "task", "before", "after");
    for (int t = 0; t < r.task_count; t++)
        printf("  %-14s %5d/%-2d %5d/%-2d\n", r.task_names[t], r.correct_before[t], r.heldout_per_task[t],
               r.correct_after[t], r.heldout_per_task[t]);
    printf("time: %.0f s\n", r.wall_s);
    printf("report: %s (the sweep), %s (the chosen run)\n", r.report_path, r.trial_report_path);
    printf("best model: %s\n", r.best_dir);
    printf("try it: sft generate --model %s --prompt \"What is 7 + 5?\"\n", r.best_dir);
    return 0;
}
