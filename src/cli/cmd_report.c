/* cmd_report.c: `sft report PATH [--out DIR] [--no-png]`: report.html (inline
 * SVG charts, findings, configuration, manifest, samples) and loss.png,
 * grad_norm.png, lr.png for a run dir or any metrics file sft diagnose reads. */
#include <stdio.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "monitor/report.h"

int sft_cmd_report(int argc, char **argv) {
    const char *out = NULL;
    int no_png = 0;
    const sft_arg flags[] = {
        {"out", SFT_ARG_STRING, &out, "folder for report.html and the PNGs (default: the run dir)", NULL},
        {"no-png", SFT_ARG_BOOL, &no_png, "write only report.html", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, pos, 1, &npos,
                            "sft report PATH [--out DIR] [--no-png]   (PATH: run dir, metrics.jsonl, "
                            "trainer_state.json, events.out.tfevents.*, or CSV)",
                            &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("report", &err);
    if (npos != 1) {
        sft_errf(&err, "expected one PATH (a run dir or a metrics file; see --help)");
        return sft_cli_fail("report", &err);
    }
    sft_report_options o = {.out_dir = out, .png = !no_png};
    char html[4096];
    if (sft_report_write(pos[0], &o, html, sizeof html, &err)) return sft_cli_fail("report", &err);
    printf("%s\n", html);
    return 0;
}
