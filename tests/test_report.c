/* test_report.c: report.html and the PNG charts of a run written through the
 * monitor: self-contained (no scripts, no external resources), the findings,
 * best step, configuration, manifest and samples on the page, PNGs that are
 * PNGs of the expected size, and a clear error for a run with no metrics. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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
    CHECK_INT(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    /* The verdict, the spike with its records (escaped), the best step, the threshold line. */
    CHECK(strstr(html, "class=\"verdict warning\"") != NULL);
    CHECK(strstr(html, "<b>loss_spike</b> (warning) at step 120") != NULL);
    CHECK(strstr(html, "records: train.jsonl:3 train.jsonl:&lt;9&gt;") != NULL);
    CHECK(strstr(html, "best step</td><td>200 (") != NULL);
    CHECK(strstr(html, "clipping threshold") != NULL);
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
