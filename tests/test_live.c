/* test_live.c: the live view (monitor/live.h): the sparkline, the redrawn
 * terminal line (width, throttling, findings), plain lines for logs, the
 * view as a monitor sink, and its cost per step. */
#include <stdint.h>
#include <time.h>

#include "monitor/live.h"
#include "test.h"

/* Everything written to a FILE*, read back as one string. */
typedef struct {
    FILE *f;
    char *text;
    size_t len;
} capture;

static void capture_open(capture *c) {
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
}

static const char *capture_text(capture *c) {
    fflush(c->f);
    return c->text;
}

static void capture_close(capture *c) {
    fclose(c->f);
    free(c->text);
}

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static sft_train_record record(int64_t step, double loss) {
    return (sft_train_record){.step = step, .epoch = step / 100.0, .loss = loss, .grad_norm = 0.8,
                              .grad_norm_clipped = 0.8, .lr = 3e-4, .tokens = 512, .tokens_per_s = 1500,
                              .elapsed_s = step * 0.1};
}

static sft_live *open_view(capture *c, int tty, int columns, double min_redraw_s) {
    sft_live_options o;
    sft_live_options_default(&o);
    o.tty = tty;
    o.columns = columns;
    o.min_redraw_s = min_redraw_s;
    o.color = 0;
    sft_err err;
    sft_live *l = sft_live_open(c->f, &o, &err);
    CHECK(l != NULL);
    return l;
}

/* Display columns of the longest line, a line being what follows a \r or \n. */
static int widest_line(const char *s) {
    int widest = 0, cur = 0;
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') cur = 0;
        else if (*s == '\033') { /* skip CSI ... final byte */
            while (s[1] && !((s[1] >= 'A' && s[1] <= 'Z') || (s[1] >= 'a' && s[1] <= 'z'))) s++;
            if (s[1]) s++;
        } else if (((unsigned char)*s & 0xC0) != 0x80 && ++cur > widest) widest = cur;
    }
    return widest;
}

TEST(sparkline_spans_eight_levels_from_min_to_max) {
    double v[] = {0, 1, 2, 3, 4, 5, 6, 7};
    char out[64];
    CHECK_INT(sft_sparkline(v, 8, out, sizeof out), 8);
    CHECK_STR(out, "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588");
    /* Scale-free: losses around 11 and around 0.5 draw the same shape. */
    double high[] = {11.0, 10.5, 10.0}, low[] = {0.50, 0.45, 0.40};
    char a[64], b[64];
    sft_sparkline(high, 3, a, sizeof a);
    sft_sparkline(low, 3, b, sizeof b);
    CHECK_STR(a, b);
    CHECK_STR(a, "\u2588\u2585\u2581"); /* the middle value rounds up to level 5 of 8 */
}

TEST(sparkline_flat_window_sits_mid_height_and_nan_is_marked) {
    double flat[] = {2, 2, 2};
    char out[64];
    sft_sparkline(flat, 3, out, sizeof out);
    CHECK_STR(out, "\u2584\u2584\u2584");
    double with_nan[] = {1, NAN, 2, INFINITY};
    CHECK_INT(sft_sparkline(with_nan, 4, out, sizeof out), 4);
    CHECK_STR(out, "\u2581!\u2588!");
}

TEST(sparkline_never_overflows_its_buffer) {
    double v[] = {1, 2, 3, 4, 5};
    char out[8]; /* room for two 3-byte characters and the NUL */
    CHECK_INT(sft_sparkline(v, 5, out, sizeof out), 2);
    CHECK_INT(strlen(out), 6);
}

TEST(terminal_line_is_redrawn_in_place_with_the_sparkline) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 1, 120, 0);
    for (int s = 1; s <= 30; s++) {
        sft_train_record r = record(s, 3.0 - 0.05 * s);
        sft_live_step(l, &r, 100, 42.0);
    }
    const char *t = capture_text(&c);
    CHECK_INT(count(t, "\r\033[K"), 30); /* one redraw per step when not throttled */
    CHECK(strchr(t, '\n') == NULL);       /* the line is never scrolled away */
    CHECK(strstr(t, "step  30/100") != NULL);
    CHECK(strstr(t, "loss 1.5000") != NULL);
    CHECK(strstr(t, "ETA 42s") != NULL);
    CHECK(strstr(t, "1500 tok/s") != NULL);
    /* A falling loss: the last characters of the sparkline are the lowest level. */
    char line[512];
    sft_live_format(l, 120, line, sizeof line);
    CHECK(strstr(line, "\u2582\u2581 loss") == NULL); /* fields are separated by two spaces */
    CHECK(strstr(line, "\u2581  loss 1.5000") != NULL);
    CHECK(strstr(line, "\u2588") != NULL);
    sft_live_end(l);
    t = capture_text(&c);
    CHECK(t[strlen(t) - 1] == '\n');
    sft_live_free(l);
    capture_close(&c);
}

TEST(terminal_line_fits_a_narrow_terminal_dropping_minor_fields) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 1, 40, 0);
    for (int s = 1; s <= 5; s++) {
        sft_train_record r = record(s, 2.0);
        sft_live_step(l, &r, 1000, 3600.0);
    }
    const char *t = capture_text(&c);
    CHECK(widest_line(t) <= 39); /* one column short, so the terminal never wraps */
    CHECK(strstr(t, "step    5/1000") != NULL);
    CHECK(strstr(t, "loss 2.0000") != NULL);
    CHECK(strstr(t, "ETA 1h00m") != NULL);
    CHECK(strstr(t, "lr ") == NULL); /* the least important fields went first */
    char line[256];
    sft_live_format(l, 14, line, sizeof line); /* even the step alone is cut to fit */
    CHECK_INT(strlen(line), 14);
    sft_live_free(l);
    capture_close(&c);
}

TEST(terminal_redraws_are_throttled_but_the_last_step_is_drawn) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 1, 120, 3600); /* at most one redraw an hour */
    for (int s = 1; s <= 200; s++) {
        sft_train_record r = record(s, 2.0);
        sft_live_step(l, &r, 200, NAN);
    }
    const char *t = capture_text(&c);
    CHECK_INT(count(t, "\r\033[K"), 2); /* the first step, then the last */
    CHECK(strstr(t, "step 200/200") != NULL);
    sft_live_free(l);
    capture_close(&c);
}

TEST(finding_is_printed_in_full_above_the_line_and_kept_in_it) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 1, 160, 3600);
    sft_train_record r = record(117, 9.5);
    sft_live_step(l, &r, 500, 10);
    sft_finding f = {.kind = "loss_spike", .severity = SFT_SEVERITY_WARNING, .step = 117, .end_step = 117};
    snprintf(f.message, sizeof f.message, "The training loss jumped to 9.5 at step 117.");
    snprintf(f.advice, sizeof f.advice, "Check the records of that batch.");
    snprintf(f.records, sizeof f.records, "train.jsonl:12 train.jsonl:40");
    sft_live_finding(l, &f);
    const char *t = capture_text(&c);
    CHECK(strstr(t, "\r\033[Kfinding [warning] loss_spike at step 117: The training loss jumped to 9.5 at step 117.\n"
                    "  advice: Check the records of that batch.\n  records: train.jsonl:12 train.jsonl:40\n") != NULL);
    /* The line is redrawn at once (throttling does not hide it), with the finding. */
    const char *after = strstr(t, "records: train.jsonl:12 train.jsonl:40\n");
    CHECK(after && strstr(after, "! loss_spike@117") != NULL);
    /* An info finding does not displace the warning. */
    sft_finding plateau = {.kind = "plateau", .severity = SFT_SEVERITY_INFO, .step = 300, .end_step = 400};
    sft_live_finding(l, &plateau);
    char line[512];
    sft_live_format(l, 160, line, sizeof line);
    CHECK(strstr(line, "! loss_spike@117") != NULL);
    sft_finding critical = {.kind = "non_finite", .severity = SFT_SEVERITY_CRITICAL, .step = 130, .end_step = 130};
    sft_live_finding(l, &critical);
    sft_live_format(l, 160, line, sizeof line);
    CHECK(strstr(line, "!! non_finite@130") != NULL);
    sft_live_free(l);
    capture_close(&c);
}

TEST(clear_erases_the_line_and_forces_the_next_redraw) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 1, 120, 3600);
    sft_train_record r = record(1, 2.0);
    sft_live_step(l, &r, 100, NAN);
    sft_live_clear(l);
    fputs("eval at step 1: val_loss 2.1\n", c.f);
    r = record(2, 1.9);
    sft_live_step(l, &r, 100, NAN); /* inside the throttle interval, but the line was erased */
    const char *t = capture_text(&c);
    CHECK(strstr(t, "\r\033[Keval at step 1: val_loss 2.1\n\r\033[Kstep   2/100") != NULL);
    sft_live_free(l);
    capture_close(&c);
}

TEST(plain_lines_when_not_a_terminal) {
    capture c;
    capture_open(&c);
    sft_live_options o;
    sft_live_options_default(&o);
    o.tty = 0;
    o.plain_every = 10;
    sft_err err;
    sft_live *l = sft_live_open(c.f, &o, &err);
    for (int s = 1; s <= 25; s++) {
        sft_train_record r = record(s, 2.0);
        sft_live_step(l, &r, 25, 5);
        if (s == 12) {
            sft_eval_record e = {.step = 12, .val_loss = 2.25};
            sft_live_eval(l, &e);
        }
    }
    sft_live_end(l);
    const char *t = capture_text(&c);
    CHECK(strchr(t, '\r') == NULL && strchr(t, '\033') == NULL);
    CHECK(strstr(t, "\xE2\x96") == NULL); /* no block characters in a log */
    CHECK_INT(count(t, "\n"), 3);         /* steps 10, 20 and the last */
    CHECK(strstr(t, "step 10/25  loss 2.0000  grad 0.8  lr 3.00e-04  1500 tok/s  ETA 5s\n") != NULL);
    CHECK(strstr(t, "step 20/25  loss 2.0000  val 2.2500") != NULL);
    CHECK(strstr(t, "step 25/25") != NULL);
    sft_live_free(l);
    capture_close(&c);
}

TEST(plain_end_prints_the_last_step_when_it_was_skipped) {
    capture c;
    capture_open(&c);
    sft_live_options o;
    sft_live_options_default(&o);
    o.tty = 0;
    o.plain_every = 100;
    sft_err err;
    sft_live *l = sft_live_open(c.f, &o, &err);
    sft_train_record r = record(7, 2.0);
    sft_live_step(l, &r, 0, NAN); /* total unknown: no ETA, no "/N" */
    CHECK(capture_text(&c) == NULL || capture_text(&c)[0] == '\0');
    sft_live_end(l);
    CHECK_STR(capture_text(&c), "step 7  loss 2.0000  grad 0.8  lr 3.00e-04  1500 tok/s\n");
    sft_live_free(l);
    capture_close(&c);
}

TEST(view_is_a_monitor_sink) {
    capture c;
    capture_open(&c);
    sft_live *l = open_view(&c, 0, 0, 0);
    sft_metrics_sink sink;
    sft_live_sink(l, 3, &sink);
    sft_err err;
    for (int s = 1; s <= 3; s++) {
        sft_train_record r = record(s, 2.0);
        CHECK_INT(sink.on_train(sink.ctx, &r, &err), 0);
    }
    sft_eval_record e = {.step = 3, .val_loss = 1.75};
    CHECK_INT(sink.on_eval(sink.ctx, &e, &err), 0);
    sft_finding f = {.kind = "overfitting", .severity = SFT_SEVERITY_WARNING, .step = 2, .end_step = 3};
    snprintf(f.message, sizeof f.message, "Validation rose.");
    CHECK_INT(sink.on_finding(sink.ctx, &f, &err), 0);
    CHECK_INT(sink.close(sink.ctx, &err), 0); /* ends and frees the view */
    const char *t = capture_text(&c);
    CHECK(strstr(t, "step 3/3  loss 2.0000") != NULL);
    CHECK(strstr(t, "finding [warning] overfitting at step 2: Validation rose.\n") != NULL);
    capture_close(&c);
}

TEST(open_rejects_bad_options) {
    sft_live_options o;
    sft_live_options_default(&o);
    o.sparkline_width = 100000;
    sft_err err;
    CHECK(sft_live_open(stderr, &o, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "sparkline_width");
    CHECK(sft_live_open(NULL, NULL, &err) == NULL);
}

/* The view's cost per step, drawing every step (no throttling) into
 * /dev/null. A training step of the smallest model sft trains takes
 * milliseconds; 1% of 1 ms is 10 us, so the bound is checked against that
 * (the throttled default costs less still). */
TEST(cost_per_step_is_far_under_one_percent_of_a_step) {
    FILE *null = fopen("/dev/null", "w");
    CHECK(null != NULL);
    if (!null) return;
    sft_live_options o;
    sft_live_options_default(&o);
    o.tty = 1;
    o.columns = 120;
    o.min_redraw_s = 0;
    sft_err err;
    sft_live *l = sft_live_open(null, &o, &err);
    const int steps = 20000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int s = 1; s <= steps; s++) {
        sft_train_record r = record(s, 2.0 + 0.1 * sin(s));
        sft_live_step(l, &r, steps, NAN);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double per_call = ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) / steps;
    /* The throttled default: formatting skipped between redraws. */
    sft_live_free(l);
    o.min_redraw_s = 0.1;
    l = sft_live_open(null, &o, &err);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int s = 1; s <= steps; s++) {
        sft_train_record r = record(s, 2.0 + 0.1 * sin(s));
        sft_live_step(l, &r, steps, NAN);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double per_call_throttled = ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) / steps;
#if defined(__SANITIZE_ADDRESS__)
    const double bound = 100e-6; /* instrumented memory accesses: about 4x slower, measured */
#else
    const double bound = 10e-6;
#endif
    /* Plain lines (a log file), one per step. */
    sft_live_free(l);
    o.tty = 0;
    l = sft_live_open(null, &o, &err);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int s = 1; s <= steps; s++) {
        sft_train_record r = record(s, 2.0 + 0.1 * sin(s));
        sft_live_step(l, &r, steps, NAN);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double per_call_plain = ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) / steps;
    fprintf(stderr, "  live view: %.2f us per step drawn, %.3f us throttled, %.2f us as a plain line\n",
            per_call * 1e6, per_call_throttled * 1e6, per_call_plain * 1e6);
    CHECK(per_call_plain < bound);
    CHECK(per_call < bound);
    CHECK(per_call_throttled < bound);
    sft_live_free(l);
    fclose(null);
}

TEST(colour_marks_only_the_finding) {
    capture c;
    capture_open(&c);
    sft_live_options o;
    sft_live_options_default(&o);
    o.tty = 1;
    o.columns = 200;
    o.min_redraw_s = 0;
    o.color = 1;
    sft_err err;
    sft_live *l = sft_live_open(c.f, &o, &err);
    sft_train_record r = record(5, 2.0);
    sft_live_step(l, &r, 10, 1);
    sft_finding f = {.kind = "loss_spike", .severity = SFT_SEVERITY_CRITICAL, .step = 5, .end_step = 5};
    sft_live_finding(l, &f);
    const char *t = capture_text(&c);
    /* The finding's own line and its tag in the live line: two coloured spans, nothing else. */
    CHECK_INT(count(t, "\033[1;31m"), 2);
    CHECK_INT(count(t, "\033[0m"), 2);
    CHECK(strstr(t, "\033[1;31m!! loss_spike@5\033[0m") != NULL);
    CHECK(strstr(t, "\r\033[Kstep  5/10  loss 2.0000") != NULL);
    sft_live_free(l);
    capture_close(&c);
}
