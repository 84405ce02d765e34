/* cmd_sweep.c: `sft sweep [-c sweep.yaml] --lr a,b,c [train flags]`: the
 * sweep's flags (--lr, --lr-range, --sweep, --parallel, --prune,
 * --prune-factor) beside every training flag of the one key table, then
 * the sweep library (train/sweep.h); prints the trials, the choice, the
 * advice and where the files are. Exit status: 0 when a trial was chosen,
 * 1 on error or when no trial qualified, 130/143 when SIGINT/SIGTERM
 * stopped it (continue with --resume). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/run_flags.h"
#include "io/file.h"
#include "train/sweep.h"

#define USAGE                                                                                                        \
    "sft sweep [-c sweep.yaml] --model DIR --data FILE --val-split X --out SWEEP --lr a,b,c | --lr-range LO:HI:N | " \
    "--sweep KEY=V1,V2 [train flags]\n"                                                                           \
    "       sft sweep --out SWEEP --resume   (continue an interrupted sweep with its own sweep.yaml)"

static char *join_args(int argc, char **argv) {
    size_t len = 8;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    strcpy(s, "sft");
    for (int i = 0; i < argc; i++) strcat(strcat(s, " "), argv[i]);
    return s;
}

typedef struct {
    const char *lr, *lr_range, *prune;
    sft_arg_list sweep;
    long parallel, prune_factor;
    int parallel_set, prune_factor_set;
} sweep_flags;

static void extra_table(sft_arg *t, sweep_flags *f) {
    sft_arg table[] = {
        {"lr", SFT_ARG_STRING, &f->lr, "learning rates to try, comma-separated (1e-5,3e-5,1e-4)", NULL},
        {"lr-range", SFT_ARG_STRING, &f->lr_range, "LO:HI:N, N learning rates evenly spaced in log from LO to HI",
         NULL},
        {"sweep", SFT_ARG_LIST, &f->sweep,
         "KEY=V1,V2: sweep any training key too (a grid of every combination); --sweep a=1,2 b=3,4", NULL},
        {"parallel", SFT_ARG_INT, &f->parallel, "trials at a time, the threads split between them (default 1)",
         &f->parallel_set},
        {"prune", SFT_ARG_STRING, &f->prune,
         "none (default) or halving: successive halving, the best 1/prune-factor of the trials continue at each "
         "rung (needs --max-steps)",
         NULL},
        {"prune-factor", SFT_ARG_INT, &f->prune_factor, "halving keeps 1 in this many trials per rung (default 3)",
         &f->prune_factor_set},
        {NULL, 0, NULL, NULL, NULL},
    };
    memcpy(t, table, sizeof table);
}

/* argv without -c FILE (the sweep file is read here, not as a run.yaml),
 * and `--sweep a=1,2 b=3` spelled `--sweep a=1,2 --sweep b=3`. */
static char **rewrite_args(int argc, char **argv, const char **config, int *out_argc, sft_err *err) {
    char **out = calloc((size_t)argc * 2 + 1, sizeof *out);
    if (!out) {
        sft_errf(err, "out of memory");
        return NULL;
    }
    int n = 0, in_sweep = 0;
    *config = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0 && (!strcmp(a, "-c") || !strcmp(a, "--config") || !strncmp(a, "--config=", 9))) {
            const char *path = !strncmp(a, "--config=", 9) ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!path) {
                sft_errf(err, "%s needs a YAML file", a);
                free(out);
                return NULL;
            }
            if (*config) {
                sft_errf(err, "-c/--config given twice ('%s' and '%s'); give one YAML file", *config, path);
                free(out);
                return NULL;
            }
            *config = path;
            in_sweep = 0;
            continue;
        }
        if (in_sweep && a[0] != '-' && strchr(a, '=')) {
            out[n++] = "--sweep";
            out[n++] = argv[i];
            continue;
        }
        in_sweep = 0;
        if (!strcmp(a, "--sweep") && i + 1 < argc) {
            out[n++] = argv[i++];
            out[n++] = argv[i];
            in_sweep = 1;
            continue;
        }
        out[n++] = argv[i];
    }
    *out_argc = n;
    return out;
}

static int parse(sft_sweep_config *c, int argc, char **argv, sft_err *err) {
    const char *config = NULL;
    int n;
    char **args = rewrite_args(argc, argv, &config, &n, err);
    if (!args) return -1;
    sweep_flags f;
    sft_arg extra[8];
    int rc = -1;
    /* A first pass for --out and --resume: `sft sweep --out SWEEP --resume`
     * alone continues the sweep from its own sweep.yaml. */
    {
        memset(&f, 0, sizeof f);
        extra_table(extra, &f);
        sft_run_config probe;
        sft_run_config_init(&probe);
        int prc = sft_run_flags_parse(&probe, n, args, extra, USAGE, err);
        char saved[4300] = "";
        if (prc == 0 && probe.resume && !config && probe.out)
            snprintf(saved, sizeof saved, "%s/sweep.yaml", probe.out);
        sft_run_config_free(&probe);
        if (prc) {
            rc = prc;
            goto done;
        }
        if (saved[0] && sft_file_exists(saved)) config = saved;
        if (config && sft_sweep_load_yaml(c, config, err)) goto done;
    }
    memset(&f, 0, sizeof f);
    extra_table(extra, &f);
    if (sft_run_flags_parse(&c->base, n, args, extra, USAGE, err)) goto done;
    if (f.lr && f.lr_range) {
        sft_errf(err, "--lr and --lr-range both given; give one of them");
        goto done;
    }
    if (f.lr && sft_sweep_set_values(c, "lr", f.lr, "--lr", err)) goto done;
    if (f.lr_range && sft_sweep_set_lr_range(c, f.lr_range, "--lr-range", err)) goto done;
    for (int i = 0; i < f.sweep.count; i++)
        if (sft_sweep_set_spec(c, f.sweep.items[i], "--sweep", err)) goto done;
    if (f.parallel_set) {
        if (f.parallel < 1) {
            sft_errf(err, "--parallel must be at least 1, got %ld", f.parallel);
            goto done;
        }
        c->parallel = f.parallel;
    }
    if (f.prune) {
        if (!strcmp(f.prune, "none")) c->prune = SFT_SWEEP_PRUNE_NONE;
        else if (!strcmp(f.prune, "halving")) c->prune = SFT_SWEEP_PRUNE_HALVING;
        else {
            sft_errf(err, "--prune expects none or halving, got '%s'", f.prune);
            goto done;
        }
    }
    if (f.prune_factor_set) {
        if (f.prune_factor < 2) {
            sft_errf(err, "--prune-factor must be at least 2, got %ld", f.prune_factor);
            goto done;
        }
        c->prune_factor = f.prune_factor;
    }
    rc = 0;
done:
    free(args);
    return rc;
}

static void print_result(const sft_sweep_result *r) {
    printf("sweep: %s (%d trials, %.1f s)\n", r->sweep_dir, r->trial_count, r->wall_s);
    printf("  %-32s %13s %7s  %-8s %s\n", "trial", "best val loss", "step", "verdict", "findings");
    for (int i = 0; i < r->trial_count; i++) {
        const sft_sweep_trial *t = &r->trials[i];
        char loss[32] = "-", step[32] = "-";
        if (isfinite(t->best_val_loss)) {
            snprintf(loss, sizeof loss, "%.4f", t->best_val_loss);
            snprintf(step, sizeof step, "%lld", (long long)t->best_step);
        }
        printf("%c %-32s %13s %7s  %-8s ", i == r->best ? '*' : ' ', t->name, loss, step, t->verdict);
        for (int k = 0; k < t->kind_count; k++) printf("%s%s", k ? "," : "", t->kinds[k]);
        if (t->excluded) printf("%s(excluded: %s)", t->kind_count ? " " : "", t->why_excluded);
        else if (t->status == SFT_TRIAL_PRUNED) printf("%s(pruned at step %lld)", t->kind_count ? " " : "", (long long)t->steps);
        printf("\n");
    }
    if (r->best >= 0) printf("best: %s -> %s\n", r->trials[r->best].name, r->best_dir);
    else printf("best: none (no trial qualified)\n");
    printf("summary: %s\n", r->summary_path);
    if (r->report_path[0]) printf("report: %s\n", r->report_path);
    if (r->advice_count) printf("advice:\n");
    for (int k = 0; k < r->advice_count; k++) printf("  - %s\n", r->advice[k]);
}

int sft_cmd_sweep(int argc, char **argv) {
    sft_sweep_config c;
    sft_sweep_config_init(&c);
    sft_err err;
    int rc = parse(&c, argc, argv, &err);
    if (rc) {
        sft_sweep_config_free(&c);
        return rc > 0 ? 0 : sft_cli_fail("sweep", &err);
    }
    char *command_line = join_args(argc, argv);
    sft_sweep_options o = {.log = stderr,
                           .progress = 1,
                           .handle_signals = 1,
                           .program_version = "0.1.0",
                           .command_line = command_line};
    sft_sweep_result r;
    rc = sft_sweep_run(&c, &o, &r, &err);
    free(command_line);
    if (rc) {
        sft_sweep_result_free(&r);
        sft_sweep_config_free(&c);
        return sft_cli_fail("sweep", &err);
    }
    int status = 0;
    if (r.interrupted) {
        fprintf(stderr, "sft sweep: interrupted; continue with: sft sweep --out %s --resume\n", r.sweep_dir);
        status = r.interrupted > 0 ? 128 + r.interrupted : 1;
    } else {
        print_result(&r);
        if (r.best < 0) {
            fprintf(stderr, "sft sweep: no trial qualified (all failed, diverged or went non-finite)\n");
            status = 1;
        }
    }
    sft_sweep_result_free(&r);
    sft_sweep_config_free(&c);
    return status;
}
