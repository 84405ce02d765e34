/* cmd_diagnose.c: `sft diagnose PATH [--json] [--THRESHOLD X ...]`: reads a
 * run dir, metrics.jsonl, HF trainer_state.json, TensorBoard event file or
 * CSV, and prints the findings (plain text) or diagnosis.json (--json).
 * `--to-trainer-state FILE` also writes the curve as HF's trainer_state.json.
 * Exit status: 0 when the diagnosis was made (whatever the verdict), 1 when
 * the input could not be read. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "monitor/diagnose.h"
#include "io/file.h"
#include "monitor/readers.h"
#include "train/run_config.h"

/* --to-trainer-state: the run's own settings (eval_every, save_every,
 * batch_size from its run.yaml) go into the file when PATH is a run dir. */
static int write_trainer_state(const char *input, const sft_curve *curve, long logging_steps, const char *out,
                               sft_err *err) {
    if (logging_steps < 1) return sft_errf(err, "--logging-steps must be >= 1, got %ld", logging_steps);
    sft_trainer_state_options o = {.logging_steps = logging_steps};
    char run_yaml[4200];
    snprintf(run_yaml, sizeof run_yaml, "%s/run.yaml", input);
    if (sft_dir_exists(input) && sft_file_exists(run_yaml)) {
        sft_run_config run;
        sft_run_config_init(&run);
        if (sft_run_config_load_yaml(&run, run_yaml, err)) {
            sft_run_config_free(&run);
            return -1;
        }
        o.eval_steps = run.eval_every;
        o.save_steps = run.save_every;
        o.train_batch_size = run.batch_size;
        sft_run_config_free(&run);
    }
    return sft_trainer_state_write(curve, &o, out, err);
}

int sft_cmd_diagnose(int argc, char **argv) {
    int json = 0;
    sft_diagnose_config cfg;
    sft_diagnose_config_default(&cfg);
    /* One flag per threshold, named after its YAML key with '-' for '_'. */
    size_t param_count;
    const sft_diagnose_param *params = sft_diagnose_params(&param_count);
    enum { MAX_FLAGS = 64 };
    sft_arg flags[MAX_FLAGS];
    char names[MAX_FLAGS][48];
    long int_values[MAX_FLAGS];
    double dbl_values[MAX_FLAGS];
    int was_set[MAX_FLAGS] = {0};
    size_t n = 0;
    const char *trainer_state_out = NULL;
    long logging_steps = 1;
    flags[n++] = (sft_arg){"json", SFT_ARG_BOOL, &json, "print diagnosis.json instead of text", NULL};
    flags[n++] = (sft_arg){"to-trainer-state", SFT_ARG_STRING, &trainer_state_out,
                           "also write the curve read as HF Trainer's trainer_state.json to this file", NULL};
    flags[n++] = (sft_arg){"logging-steps", SFT_ARG_INT, &logging_steps,
                           "with --to-trainer-state: optimizer steps per log_history entry, averaged as HF logs them "
                           "(default 1)",
                           NULL};
    const size_t first_param_flag = n;
    char helps[MAX_FLAGS][256];
    for (size_t i = 0; i < param_count && n + 1 < MAX_FLAGS; i++, n++) {
        snprintf(names[n], sizeof names[n], "%s", params[i].name);
        for (char *c = names[n]; *c; c++)
            if (*c == '_') *c = '-';
        const char *field = (const char *)&cfg + params[i].offset;
        if (params[i].is_int)
            snprintf(helps[n], sizeof helps[n], "%s (default: %lld)", params[i].help,
                     (long long)*(const int64_t *)field);
        else
            snprintf(helps[n], sizeof helps[n], "%s (default: %g)", params[i].help, *(const double *)field);
        flags[n] = (sft_arg){names[n], params[i].is_int ? SFT_ARG_INT : SFT_ARG_DOUBLE,
                             params[i].is_int ? (void *)&int_values[n] : (void *)&dbl_values[n], helps[n],
                             &was_set[n]};
    }
    flags[n] = (sft_arg){NULL, 0, NULL, NULL, NULL};

    const char *pos[1];
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, pos, 1, &npos,
                            "sft diagnose PATH [--json]   (PATH: run dir, metrics.jsonl, trainer_state.json, "
                            "events.out.tfevents.*, or CSV)",
                            &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("diagnose", &err);
    if (npos != 1) {
        sft_errf(&err, "expected one PATH (a run dir, metrics.jsonl, trainer_state.json, TensorBoard event file or "
                       "CSV; see --help)");
        return sft_cli_fail("diagnose", &err);
    }
    for (size_t i = first_param_flag; i < n; i++) {
        if (!was_set[i]) continue;
        const sft_diagnose_param *param = &params[i - first_param_flag];
        double value = param->is_int ? (double)int_values[i] : dbl_values[i];
        if (sft_diagnose_config_set(&cfg, param->name, value, &err)) {
            sft_err_prefix(&err, "--%s", names[i]);
            return sft_cli_fail("diagnose", &err);
        }
    }

    sft_curve curve;
    sft_curve_init(&curve);
    if (sft_curve_read(pos[0], &curve, &err)) {
        sft_curve_free(&curve);
        return sft_cli_fail("diagnose", &err);
    }
    if (trainer_state_out && write_trainer_state(pos[0], &curve, logging_steps, trainer_state_out, &err)) {
        sft_curve_free(&curve);
        return sft_cli_fail("diagnose", &err);
    }
    sft_diagnosis diagnosis;
    sft_diagnosis_init(&diagnosis);
    if (sft_diagnose(&curve, &cfg, &diagnosis, &err)) {
        sft_curve_free(&curve);
        return sft_cli_fail("diagnose", &err);
    }
    if (json) sft_diagnosis_write_json(stdout, &diagnosis);
    else {
        char source[4200];
        snprintf(source, sizeof source, "%s (%s, %zu training points, %zu evaluations)", pos[0], curve.source,
                 curve.train_count, curve.eval_count);
        sft_diagnosis_print_text(stdout, &diagnosis, source);
    }
    sft_diagnosis_free(&diagnosis);
    sft_curve_free(&curve);
    if (fflush(stdout)) {
        sft_errf(&err, "writing to standard output failed");
        return sft_cli_fail("diagnose", &err);
    }
    return 0;
}
