/* cmd_report.c: `sft report PATH [--out FILE.html|DIR] [--no-png]
 * [--smoothing W]`: report.html (inline SVG charts, findings, configuration,
 * manifest, samples) and loss.png, grad_norm.png, lr.png for a run dir or
 * any metrics file sft diagnose reads; for a sweep dir, the comparison of
 * its trials (monitor/report.h). */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/file.h"
#include "monitor/report.h"
#include "train/sweep.h"

int sft_cmd_report(int argc, char **argv) {
    const char *out = NULL;
    int no_png = 0;
    double smoothing = 0;
    const sft_arg flags[] = {
        {"out", SFT_ARG_STRING, &out,
         "FILE.html: the report's path (PNGs beside it); DIR: the folder for report.html and the PNGs "
         "(default: the run dir, or the folder of the metrics file)",
         NULL},
        {"no-png", SFT_ARG_BOOL, &no_png, "write only report.html", NULL},
        {"smoothing", SFT_ARG_DOUBLE, &smoothing,
         "weight of the training loss's moving average in [0, 1), as TensorBoard's slider (default: from the "
         "number of points, at least 0.6); -1: no smoothed line",
         NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, pos, 1, &npos,
                            "sft report PATH [--out FILE.html|DIR] [--no-png] [--smoothing W]   (PATH: run dir, "
                            "sweep dir, metrics.jsonl, trainer_state.json, events.out.tfevents.*, or CSV)",
                            &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("report", &err);
    if (npos != 1) {
        sft_errf(&err, "expected one PATH (a run dir or a metrics file; see --help)");
        return sft_cli_fail("report", &err);
    }
    if (!(smoothing < 1)) {
        sft_errf(&err, "--smoothing %g: expected a weight below 1 (0: automatic, -1: none)", smoothing);
        return sft_cli_fail("report", &err);
    }
    sft_report_options o = {.png = !no_png, .smoothing = smoothing};
    size_t len = out ? strlen(out) : 0;
    if ((len > 5 && !strcmp(out + len - 5, ".html")) || (len > 4 && !strcmp(out + len - 4, ".htm")))
        o.out_html = out;
    else o.out_dir = out;
    char html[4096], state[4200];
    /* A folder sft sweep made: its own comparison page (the choice, each
     * trial's status, the advice; train/sweep.h). */
    snprintf(state, sizeof state, "%s/sweep.json", pos[0]);
    if (sft_file_exists(state)) {
        char in_dir[4200];
        const char *target = o.out_html;
        if (o.out_dir) {
            if (sft_mkdir_p(o.out_dir, &err) || sft_path_join(in_dir, sizeof in_dir, o.out_dir, "report.html", &err))
                return sft_cli_fail("report", &err);
            target = in_dir;
        }
        if (sft_sweep_report(pos[0], target, html, sizeof html, &err)) return sft_cli_fail("report", &err);
        printf("%s\n", html);
        return 0;
    }
    if (sft_report_write(pos[0], &o, html, sizeof html, &err)) return sft_cli_fail("report", &err);
    printf("%s\n", html);
    return 0;
}
