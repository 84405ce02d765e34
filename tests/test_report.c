/* test_report.c: report.html and the PNG charts of a run written through the
 * monitor: self-contained (no scripts, no external resources), the findings,
 * best step, configuration, manifest and samples on the page, PNGs that are
 * PNGs of the expected size, and a clear error for a run with no metrics. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/file.h"
#include "monitor/metrics.h"
#include "monitor/report.h"
#include "test.h"

static char dir[256];

static void clean_dir(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') snprintf(path, sizeof path, "%s/%s", dir, e->d_name), unlink(path);
    if (d) closedir(d);
    rmdir(dir);
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* A 200-step run with a spike at 120, clipping early, evaluations every 20. */
static void make_run(void) {
    sft_err err;
    sft_monitor_options o;
    sft_monitor_options_default(&o);
    o.max_grad_norm = 1.0;
    o.planned_steps = 200;
    sft_monitor *m = sft_monitor_open(dir, &o, &err);
    CHECK(m != NULL);
    for (int s = 1; s <= 200; s++) {
        double loss = 1.2 + 3.0 * exp(-s / 25.0) + 0.03 * sin(s * 1.3);
        if (s == 120) loss *= 2.2;
        double grad = 0.6 + 2.0 * exp(-s / 15.0);
        sft_train_record r = {.step = s, .epoch = s / 100.0, .loss = loss, .grad_norm = grad,
                              .grad_norm_clipped = grad > 1 ? 1 : grad, .clipped = grad > 1, .lr = 2e-4 * (1 - s / 250.0),
                              .tokens = 2000, .tokens_per_s = 5000 + 100 * sin(s), .elapsed_s = 0.4 * s,
                              .batch_records = "train.jsonl:3 train.jsonl:<9>"};
        CHECK_INT(sft_monitor_train(m, &r, &err), 0);
        if (s % 20 == 0) {
            sft_eval_record v = {.step = s, .epoch = s / 100.0, .val_loss = 1.3 + 3.0 * exp(-s / 25.0), .val_tokens = 999};
            CHECK_INT(sft_monitor_eval(m, &v, &err), 0);
        }
    }
    CHECK_INT(sft_monitor_close(m, &err), 0);
    write_file("run.yaml", "model: models/tiny\nlr: 0.0002\nmax_grad_norm: 1.0\nnote: \"<b>not bold</b>\"\n");
    write_file("manifest.json", "{\"version\": \"0.1.0\", \"seed\": 42}\n");
    write_file("samples.jsonl", "{\"step\": 200, \"prompt\": \"Say hi & bye\", \"response\": \"<hi> & bye\"}\nnot json\n");
}

static int png_size(const char *path, uint32_t *w, uint32_t *h) {
    unsigned char head[24];
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n != 24 || memcmp(head, "\x89PNG\r\n\x1a\n", 8) || memcmp(head + 12, "IHDR", 4)) return -1;
    *w = (uint32_t)head[16] << 24 | (uint32_t)head[17] << 16 | (uint32_t)head[18] << 8 | head[19];
    *h = (uint32_t)head[20] << 24 | (uint32_t)head[21] << 16 | (uint32_t)head[22] << 8 | head[23];
    return 0;
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) n++;
    return n;
}

TEST(run_report_is_self_contained_with_charts_findings_config_and_samples) {
    snprintf(dir, sizeof dir, "/tmp/sft-test-report-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    make_run();
    sft_err err;
    char html_path[4096];
    sft_report_options o = {.out_dir = NULL, .png = 1};
    int rc = sft_report_write(dir, &o, html_path, sizeof html_path, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    CHECK_INT(rc, 0);
    char want[512];
    snprintf(want, sizeof want, "%s/report.html", dir);
    CHECK_STR(html_path, want);
    char *html;
    size_t len;
    CHECK_INT(sft_read_file(html_path, &html, &len, &err), 0);
    CHECK(!strncmp(html, "<!DOCTYPE html>", 15));
    CHECK(strstr(html, "</html>\n") != NULL);
    /* Self-contained: inline SVG only, nothing fetched, no scripts. */
    CHECK_INT(count(html, "<svg "), 4); /* loss, grad norm, lr, tokens/s */
    CHECK_INT(count(html, "</svg>"), 4);
    CHECK_INT(count(html, "<script"), 0);
    CHECK_INT(count(html, "<link"), 0);
    CHECK_INT(count(html, "src="), 0);
    CHECK_INT(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\"") + 1); /* + the XHTML namespace */
    CHECK_INT(count(html, "xmlns=\"http://www.w3.org/1999/xhtml\""), 1);
    /* The verdict, the spike with its records (escaped), the best step, the threshold line. */
    CHECK(strstr(html, "class=\"verdict warning\"") != NULL);
    CHECK(strstr(html, "<b>loss_spike</b> (warning) at step 120") != NULL);
    CHECK(strstr(html, "records: train.jsonl:3 train.jsonl:&lt;9&gt;") != NULL);
    CHECK(strstr(html, "best step</td><td>200 (") != NULL);
    CHECK(strstr(html, "clipping threshold") != NULL);
    /* grad > 1 while 0.6 + 2 exp(-s/15) > 1, i.e. steps 1 to 24. */
    CHECK(strstr(html, "clipped (24 of 200 steps)") != NULL);
    CHECK(strstr(html, "clipped steps</td><td>24 of 200 (12%)") != NULL);
    /* 200 points: smoothed with an EMA of span 5 (weight 1 - 2/6). */
    CHECK(strstr(html, "train (smoothed)") != NULL);
    CHECK(strstr(html, "weight 0.667") != NULL);
    CHECK(strstr(html, "Loss (log scale)") == NULL); /* 4.2 to 1.2: a linear axis */
    CHECK(strstr(html, "<title>The training loss jumped") != NULL); /* tooltip on the marker */
    /* Configuration, manifest and samples, escaped. */
    CHECK(strstr(html, "note: &quot;&lt;b&gt;not bold&lt;/b&gt;&quot;") != NULL);
    CHECK(strstr(html, "&quot;seed&quot;: 42") != NULL);
    CHECK(strstr(html, "Say hi &amp; bye") && strstr(html, "&lt;hi&gt; &amp; bye"));
    free(html);
    const char *pngs[] = {"loss.png", "grad_norm.png", "lr.png"};
    const uint32_t heights[] = {680, 520, 520};
    for (int i = 0; i < 3; i++) {
        char path[512];
        uint32_t w = 0, h = 0;
        snprintf(path, sizeof path, "%s/%s", dir, pngs[i]);
        CHECK_INT(png_size(path, &w, &h), 0);
        CHECK_INT(w, 1720);
        CHECK_INT(h, heights[i]);
    }
    clean_dir();
}

TEST(report_of_a_folder_without_metrics_names_what_is_missing) {
    snprintf(dir, sizeof dir, "/tmp/sft-test-report-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    sft_err err;
    sft_report_options o = {.png = 1};
    CHECK_INT(sft_report_write(dir, &o, NULL, 0, &err), -1);
    CHECK_ERR_HAS(err.msg, "no metrics.jsonl, trainer_state.json or events.out.tfevents");
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", dir);
    CHECK(!sft_file_exists(path));
    clean_dir();
}

TEST(smoothing_is_tensorboards_debiased_ema) {
    /* w = 0.6: last = 0.4, 1.04, 1.824; divided by 1 - 0.6^k = 0.4, 0.64, 0.784. */
    double v[] = {1, 2, 3}, out[3];
    sft_report_smooth(v, 3, 0.6, out);
    CHECK_NEAR(out[0], 1.0, 1e-12); /* debiased: the first value is itself */
    CHECK_NEAR(out[1], 1.625, 1e-12);
    CHECK_NEAR(out[2], 1.824 / 0.784, 1e-12);
    /* A NaN passes through and does not enter the average. */
    double with_nan[] = {1, NAN, 2}, out_nan[3];
    sft_report_smooth(with_nan, 3, 0.6, out_nan);
    CHECK(isnan(out_nan[1]));
    CHECK_NEAR(out_nan[2], 1.625, 1e-12);
    /* A constant series is left as it is (no rounding drift). */
    double flat[] = {0.1, 0.1, 0.1, 0.1}, out_flat[4];
    sft_report_smooth(flat, 4, 0.99, out_flat);
    for (int i = 0; i < 4; i++) CHECK(out_flat[i] == 0.1);
}

/* A metrics.jsonl written by hand (SPEC.md): loss from `start` falling by
 * `decay` a step over `steps` steps, evaluations every 10 at val_offset above. */
static void write_metrics(const char *run_dir, int steps, double start, double decay, double val_offset) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "w");
    for (int s = 1; s <= steps; s++) {
        double loss = start * pow(decay, s);
        fprintf(f, "{\"type\":\"train\",\"step\":%d,\"loss\":%.17g,\"grad_norm\":0.5,\"lr\":1e-4}\n", s, loss);
        if (s % 10 == 0) fprintf(f, "{\"type\":\"eval\",\"step\":%d,\"val_loss\":%.17g}\n", s, loss + val_offset);
    }
    fclose(f);
}

static char *read_text(const char *path) {
    char *text = NULL;
    size_t len;
    sft_err err;
    if (sft_read_file(path, &text, &len, &err)) return NULL;
    return text;
}

TEST(loss_over_decades_is_drawn_on_a_log_axis) {
    snprintf(dir, sizeof dir, "/tmp/sft-test-report-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    write_metrics(dir, 100, 10.0, 0.95, 0.5); /* 9.5 down to 0.06: over two decades */
    sft_err err;
    sft_report_options o = {.png = 0, .smoothing = -1};
    CHECK_INT(sft_report_write(dir, &o, NULL, 0, &err), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/report.html", dir);
    char *html = read_text(path);
    CHECK(html && strstr(html, "Loss (log scale)") != NULL);
    CHECK(html && strstr(html, ">0.1</text>") != NULL); /* a labelled power of ten */
    CHECK(html && strstr(html, "train (smoothed)") == NULL); /* smoothing -1: raw only */
    snprintf(path, sizeof path, "%s/loss.png", dir);
    CHECK(!sft_file_exists(path)); /* png = 0 */
    free(html);
    clean_dir();
}

TEST(samples_show_prompt_output_reference_and_name_bad_lines) {
    snprintf(dir, sizeof dir, "/tmp/sft-test-report-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    write_metrics(dir, 30, 3.0, 0.98, 0.1);
    write_file("samples.jsonl",
               "{\"step\": 10, \"prompt\": \"2+3?\", \"output\": \"5\", \"reference\": \"5\"}\n"
               "{\"step\": 20, \"prompt\": \"no output\"}\n"
               "\n"
               "{\"step\": 30, \"prompt\": \"a <tag>\", \"output\": \"x & y\", \"reference\": \"z\"}\n"
               "{broken\n");
    /* Bytes that are not UTF-8 and a control character in run.yaml. */
    write_file("run.yaml", "lr: 0.001\nname: \"caf\xE9\x01\"\n");
    sft_err err;
    char out[512];
    snprintf(out, sizeof out, "%s/out/page.html", dir);
    sft_report_options o = {.out_html = out, .png = 1};
    char html_path[512];
    CHECK_INT(sft_report_write(dir, &o, html_path, sizeof html_path, &err), 0);
    CHECK_STR(html_path, out);
    char *html = read_text(out);
    CHECK(html != NULL);
    if (!html) return;
    CHECK(strstr(html, "<p class=\"meta\">step 10</p>") != NULL);
    CHECK(strstr(html, "<th>output</th><td><pre>5</pre>") != NULL);
    CHECK(strstr(html, "<pre class=\"match\">5</pre>") != NULL); /* the output matches the reference */
    CHECK(strstr(html, "a &lt;tag&gt;") && strstr(html, "x &amp; y"));
    CHECK(strstr(html, "samples.jsonl line 2 skipped: expected an object with string members") != NULL);
    CHECK(strstr(html, "samples.jsonl line 5 skipped: ") != NULL);
    CHECK(strstr(html, "samples.jsonl line 3") == NULL); /* a blank line is no sample and no error */
    CHECK(strstr(html, "name: &quot;caf\xEF\xBF\xBD\xEF\xBF\xBD&quot;") != NULL);
    free(html);
    /* The PNGs go beside the page; nothing into the run dir. */
    char path[512];
    snprintf(path, sizeof path, "%s/out/loss.png", dir);
    CHECK(sft_file_exists(path));
    snprintf(path, sizeof path, "%s/report.html", dir);
    CHECK(!sft_file_exists(path));
    const char *names[] = {"out/loss.png", "out/grad_norm.png", "out/lr.png", "out/page.html"};
    for (int i = 0; i < 4; i++) snprintf(path, sizeof path, "%s/%s", dir, names[i]), unlink(path);
    snprintf(path, sizeof path, "%s/out", dir);
    rmdir(path);
    clean_dir();
}

TEST(comparison_overlays_runs_and_names_the_best) {
    char root[64], a[128], b[128], c[128], out[128];
    snprintf(root, sizeof root, "/tmp/sft-test-compare-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    snprintf(a, sizeof a, "%s/lr-a", root);
    snprintf(b, sizeof b, "%s/lr-b", root);
    snprintf(c, sizeof c, "%s/missing", root);
    mkdir(a, 0755);
    mkdir(b, 0755);
    write_metrics(a, 50, 3.0, 0.99, 0.3);
    write_metrics(b, 50, 3.0, 0.97, 0.2); /* falls faster: lower validation loss */
    snprintf(out, sizeof out, "%s/sweep.html", root);
    sft_report_run runs[] = {{"slow", a}, {NULL, b}, {"gone", c}};
    sft_err err;
    CHECK_INT(sft_report_compare_write(runs, 2, "lr sweep", out, 1, &err), 0);
    char *html = read_text(out);
    CHECK(html != NULL);
    if (html) {
        CHECK(strstr(html, "Best run: <b>lr-b</b>") != NULL); /* named by its folder */
        CHECK_INT(count(html, "<svg "), 2);                   /* validation, training */
        CHECK(strstr(html, ">slow</text>") && strstr(html, ">lr-b</text>")); /* the legend */
        CHECK(strstr(html, "best: lr-b") != NULL);
        CHECK(strstr(html, "<tr class=\"best\"><td>lr-b</td>") != NULL);
    }
    free(html);
    char png[160];
    snprintf(png, sizeof png, "%s/val_loss.png", root);
    uint32_t w, h;
    CHECK_INT(png_size(png, &w, &h), 0);
    /* A run that cannot be read: an error naming it, no page written. */
    unlink(out);
    unlink(png);
    CHECK_INT(sft_report_compare_write(runs, 3, "lr sweep", out, 1, &err), -1);
    CHECK_ERR_HAS(err.msg, "run gone");
    CHECK(!sft_file_exists(out));
    snprintf(dir, sizeof dir, "%s", a);
    clean_dir();
    snprintf(dir, sizeof dir, "%s", b);
    clean_dir();
    rmdir(root);
}
