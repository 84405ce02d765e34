/* stats.c: `sft data stats`, a streaming profile of an instruction dataset:
 * records and formats, roles and turns, characters per role and per field
 * (with percentiles from a log-scale histogram: constant memory), a length
 * histogram, exact duplicates (normalised, as dedup counts them), empty
 * fields, non-printable characters and the script mix of the letters; with a
 * tokenizer, tokens per message, tokens of each record rendered as training
 * renders it (template, BOS, EOS), the supervised-token share and the share
 * longer than --max-len. Shown
 * as text, JSON or a self-contained HTML page with the histogram as SVG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "data/text.h"
#include "io/file.h"
#include "io/json.h"

/* Lengths up to 2^32 in buckets of width 2^(1/8): percentiles within 9%. */
#define LOG_BUCKETS 257
typedef struct {
    uint64_t count, sum, min, max;
    uint64_t buckets[LOG_BUCKETS];
} length_dist;

static int log_bucket(uint64_t x) {
    if (x == 0) return 0;
    int b = 1 + (int)floor(8.0 * log2((double)x));
    return b >= LOG_BUCKETS ? LOG_BUCKETS - 1 : b;
}

static void dist_add(length_dist *d, uint64_t x) {
    if (!d->count || x < d->min) d->min = x;
    if (x > d->max) d->max = x;
    d->count++;
    d->sum += x;
    d->buckets[log_bucket(x)]++;
}

/* The upper edge of the bucket holding the q-quantile, clamped to [min, max]. */
static double dist_quantile(const length_dist *d, double q) {
    if (!d->count) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)d->count), seen = 0;
    if (rank == 0) rank = 1;
    for (int b = 0; b < LOG_BUCKETS; b++) {
        seen += d->buckets[b];
        if (seen >= rank) {
            double edge = b == 0 ? 0 : floor(pow(2.0, b / 8.0));
            if (edge > (double)d->max) edge = (double)d->max;
            if (edge < (double)d->min) edge = (double)d->min;
            return edge;
        }
    }
    return (double)d->max;
}

#define MAX_FIELDS 64
#define MAX_FILES 64
#define HIST_BINS 24 /* record length histogram: [0,16), [16,32), [32,64), ... */

typedef struct {
    char *name;
    length_dist chars;
    uint64_t empty;
} field_stats;

struct sft_stats {
    size_t records, skipped;
    struct {
        char *path;
        sft_data_format format;
        size_t records;
    } files[MAX_FILES];
    int file_count;
    uint64_t messages[SFT_ROLE_COUNT];
    uint64_t empty_messages[SFT_ROLE_COUNT];
    length_dist role_chars[SFT_ROLE_COUNT];
    length_dist turns; /* assistant turns per record */
    uint64_t with_system, multi_turn;
    length_dist record_chars;
    uint64_t hist[HIST_BINS];
    /* tokens (with a tokenizer) */
    int has_tokens, has_record_tokens;
    long max_len;
    char template_name[64];
    char template_note[SFT_ERR_MSG_MAX];
    length_dist role_tokens[SFT_ROLE_COUNT];
    length_dist record_tokens;
    uint64_t token_hist[HIST_BINS];
    uint64_t supervised_tokens, truncated;
    sft_token_counter *counter;
    uint64_t exact_duplicates;
    uint64_t nonprintable, chars;
    uint64_t scripts[SFT_SCRIPT_COUNT];
    field_stats fields[MAX_FIELDS];
    int field_count;
    uint64_t fields_over; /* distinct fields past MAX_FIELDS */
    /* working state */
    sft_u64map seen;
    sft_text_scratch scratch;
    const char *current_path;
};

void sft_stats_free(sft_stats *s) {
    if (!s) return;
    for (int i = 0; i < s->file_count; i++)
        free(s->files[i].path);
    for (int i = 0; i < s->field_count; i++)
        free(s->fields[i].name);
    sft_u64map_free(&s->seen);
    sft_text_scratch_free(&s->scratch);
    free(s);
}

static field_stats *field(sft_stats *s, const char *name) {
    for (int i = 0; i < s->field_count; i++)
        if (!strcmp(s->fields[i].name, name)) return &s->fields[i];
    if (s->field_count == MAX_FIELDS) {
        s->fields_over++;
        return NULL;
    }
    field_stats *f = &s->fields[s->field_count];
    memset(f, 0, sizeof *f);
    if (!(f->name = strdup(name))) return NULL;
    s->field_count++;
    return f;
}

static int hist_bin(uint64_t n) {
    int bin = n < 16 ? 0 : (int)floor(log2((double)n)) - 3;
    return bin >= HIST_BINS ? HIST_BINS - 1 : bin;
}

static int count_tokens(sft_stats *s, const sft_record *rec, sft_err *err) {
    for (size_t i = 0; i < rec->message_count; i++) {
        size_t n;
        if (sft_token_count_text(s->counter, rec->messages[i].content, rec->messages[i].content_len, &n, err))
            return sft_err_prefix(err, "%s:%zu", rec->path, rec->line);
        dist_add(&s->role_tokens[rec->messages[i].role], n);
    }
    if (!s->has_record_tokens && rec->format != SFT_FORMAT_TEXT) return 0;
    size_t tokens, supervised;
    if (sft_token_count_record(s->counter, rec, &tokens, &supervised, err))
        return sft_err_prefix(err, "%s:%zu", rec->path, rec->line);
    dist_add(&s->record_tokens, tokens);
    s->token_hist[hist_bin(tokens)]++;
    s->supervised_tokens += supervised;
    s->truncated += s->max_len > 0 && tokens > (size_t)s->max_len;
    return 0;
}

static int stats_one(sft_record *rec, void *p, sft_err *err) {
    sft_stats *s = p;
    if (s->counter && count_tokens(s, rec, err)) return -1;
    if (s->current_path != rec->path) {
        s->current_path = rec->path;
        if (s->file_count < MAX_FILES) {
            s->files[s->file_count].path = strdup(rec->path);
            s->files[s->file_count].format = rec->format;
            s->file_count++;
        }
    }
    if (s->file_count) s->files[s->file_count - 1].records++;
    uint64_t total = 0;
    for (size_t i = 0; i < rec->message_count; i++) {
        const sft_message *m = &rec->messages[i];
        uint64_t chars = sft_text_chars(m->content, m->content_len);
        s->messages[m->role]++;
        dist_add(&s->role_chars[m->role], chars);
        if (sft_text_is_blank(m->content, m->content_len)) s->empty_messages[m->role]++;
        s->nonprintable += sft_text_nonprintable(m->content, m->content_len);
        if (sft_text_script_counts(m->content, m->content_len, s->scripts, err)) return -1;
        total += chars;
    }
    s->chars += total;
    dist_add(&s->record_chars, total);
    s->hist[hist_bin(total)]++;
    size_t assistants = sft_record_count_role(rec, SFT_ROLE_ASSISTANT);
    dist_add(&s->turns, assistants);
    s->with_system += sft_record_count_role(rec, SFT_ROLE_SYSTEM) > 0;
    s->multi_turn += assistants > 1;
    uint64_t key;
    if (sft_record_exact_hash(rec, &s->scratch, &key, err)) return -1;
    if (sft_u64map_first(&s->seen, key) >= 0)
        s->exact_duplicates++;
    else if (sft_u64map_add(&s->seen, key, 0))
        return sft_errf(err, "out of memory");
    /* Top-level string fields, whatever the format: characters and empties. */
    const char *k;
    json_t *v;
    json_object_foreach(rec->json, k, v) {
        if (!json_is_string(v)) continue;
        field_stats *f = field(s, k);
        if (!f) continue;
        dist_add(&f->chars, sft_text_chars(json_string_value(v), json_string_length(v)));
        if (sft_text_is_blank(json_string_value(v), json_string_length(v))) f->empty++;
    }
    return 0;
}

int sft_data_stats(const sft_data_io *io, const sft_stats_options *o, sft_stats **out, sft_err *err) {
    sft_stats *s = calloc(1, sizeof *s);
    if (!s) return sft_errf(err, "out of memory");
    if (o && o->tokens) {
        s->counter = o->tokens;
        s->has_tokens = 1;
        s->has_record_tokens = sft_token_counter_has_template(o->tokens);
        s->max_len = o->max_len > 0 ? o->max_len : 1024;
        snprintf(s->template_name, sizeof s->template_name, "%s", sft_token_counter_template_name(o->tokens));
        snprintf(s->template_note, sizeof s->template_note, "%s", sft_token_counter_template_note(o->tokens));
    }
    sft_each_summary each;
    if (sft_data_each(io, 1, stats_one, s, &each, err)) {
        sft_stats_free(s);
        return -1;
    }
    s->records = each.records;
    s->skipped = each.skipped;
    s->counter = NULL;
    *out = s;
    return 0;
}

static double mean(const length_dist *d) {
    return d->count ? (double)d->sum / (double)d->count : 0;
}

static void hist_label(int b, char *out, size_t cap) {
    if (b == 0)
        snprintf(out, cap, "<16");
    else if (b == HIST_BINS - 1)
        snprintf(out, cap, ">=%llu", 1ULL << (b + 3));
    else
        snprintf(out, cap, "%llu-%llu", 1ULL << (b + 3), (1ULL << (b + 4)) - 1);
}

static int last_bin(const uint64_t *hist) {
    int last = 0;
    for (int b = 0; b < HIST_BINS; b++)
        if (hist[b]) last = b;
    return last;
}

static int first_bin(const uint64_t *hist) {
    for (int b = 0; b < HIST_BINS; b++)
        if (hist[b]) return b;
    return 0;
}

static void print_hist(FILE *f, const uint64_t *hist) {
    uint64_t top = 1;
    for (int b = 0; b < HIST_BINS; b++)
        if (hist[b] > top) top = hist[b];
    for (int b = first_bin(hist); b <= last_bin(hist); b++) {
        char label[48];
        hist_label(b, label, sizeof label);
        int bar = (int)(40.0 * (double)hist[b] / (double)top + 0.5);
        fprintf(f, "  %14s %8llu |%.*s\n", label, (unsigned long long)hist[b], bar,
                "########################################");
    }
}

static uint64_t letters(const sft_stats *s) {
    uint64_t n = 0;
    for (int k = 0; k < SFT_SCRIPT_COUNT; k++)
        n += s->scripts[k];
    return n;
}

static void print_dist(FILE *f, const char *name, const length_dist *d) {
    fprintf(f, "  %-14s %8llu  mean %8.1f  min %6llu  p50 %7.0f  p95 %7.0f  max %7llu\n", name,
            (unsigned long long)d->count, mean(d), (unsigned long long)d->min, dist_quantile(d, 0.5),
            dist_quantile(d, 0.95), (unsigned long long)d->max);
}

void sft_stats_print_text(const sft_stats *s, FILE *f) {
    fprintf(f, "records: %zu", s->records);
    if (s->skipped) fprintf(f, " (%zu bad records skipped)", s->skipped);
    fprintf(f, "\n");
    for (int i = 0; i < s->file_count; i++)
        fprintf(f, "  %s: %zu records, %s format\n", s->files[i].path, s->files[i].records,
                sft_data_format_name(s->files[i].format));
    fprintf(f, "messages: system %llu, user %llu, assistant %llu\n", (unsigned long long)s->messages[0],
            (unsigned long long)s->messages[1], (unsigned long long)s->messages[2]);
    fprintf(f,
            "turns: %.2f assistant turns per record (max %llu); %llu multi-turn records; %llu with a system "
            "prompt\n",
            mean(&s->turns), (unsigned long long)s->turns.max, (unsigned long long)s->multi_turn,
            (unsigned long long)s->with_system);
    fprintf(f, "characters per message:\n");
    for (int r = 0; r < SFT_ROLE_COUNT; r++)
        if (s->role_chars[r].count) print_dist(f, sft_role_name((sft_role)r), &s->role_chars[r]);
    print_dist(f, "whole record", &s->record_chars);
    fprintf(f, "characters per field:\n");
    for (int i = 0; i < s->field_count; i++) {
        print_dist(f, s->fields[i].name, &s->fields[i].chars);
    }
    fprintf(f, "record length histogram (characters):\n");
    print_hist(f, s->hist);
    if (s->has_tokens) {
        fprintf(f, "tokens per message:\n");
        for (int r = 0; r < SFT_ROLE_COUNT; r++)
            if (s->role_tokens[r].count) print_dist(f, sft_role_name((sft_role)r), &s->role_tokens[r]);
        if (s->record_tokens.count) {
            fprintf(f, "tokens per record as trained (template %s, BOS/EOS included):\n", s->template_name);
            print_dist(f, "whole record", &s->record_tokens);
            print_hist(f, s->token_hist);
            fprintf(f, "supervised tokens: %llu of %llu (%.1f%%)\n", (unsigned long long)s->supervised_tokens,
                    (unsigned long long)s->record_tokens.sum,
                    s->record_tokens.sum ? 100.0 * (double)s->supervised_tokens / (double)s->record_tokens.sum
                                         : 0);
            fprintf(f, "longer than --max-len %ld: %llu records (%.1f%%)\n", s->max_len,
                    (unsigned long long)s->truncated,
                    s->record_tokens.count ? 100.0 * (double)s->truncated / (double)s->record_tokens.count
                                           : 0);
        }
        if (!s->has_record_tokens)
            fprintf(f, "no chat template, so no record-level token counts: %s\n", s->template_note);
    }
    fprintf(f, "exact duplicates (normalised): %llu (%.1f%%)\n", (unsigned long long)s->exact_duplicates,
            s->records ? 100.0 * (double)s->exact_duplicates / (double)s->records : 0);
    fprintf(f, "empty or white-space messages: system %llu, user %llu, assistant %llu\n",
            (unsigned long long)s->empty_messages[0], (unsigned long long)s->empty_messages[1],
            (unsigned long long)s->empty_messages[2]);
    fprintf(f, "empty string fields:");
    int any = 0;
    for (int i = 0; i < s->field_count; i++)
        if (s->fields[i].empty) {
            fprintf(f, "%s %s %llu", any ? "," : "", s->fields[i].name,
                    (unsigned long long)s->fields[i].empty);
            any = 1;
        }
    fprintf(f, "%s\n", any ? "" : " none");
    fprintf(f, "non-printable characters: %llu of %llu\n", (unsigned long long)s->nonprintable,
            (unsigned long long)s->chars);
    uint64_t total = letters(s);
    fprintf(f, "script mix (letters): ");
    any = 0;
    for (int k = 0; k < SFT_SCRIPT_COUNT; k++)
        if (s->scripts[k] && total) {
            fprintf(f, "%s%s %.1f%%", any ? ", " : "", sft_script_name(k),
                    100.0 * (double)s->scripts[k] / (double)total);
            any = 1;
        }
    fprintf(f, "%s\n", any ? "" : "no letters");
}

static void json_dist(FILE *f, const length_dist *d) {
    fprintf(
        f,
        "{\"count\":%llu,\"mean\":%.2f,\"min\":%llu,\"p50\":%.0f,\"p95\":%.0f,\"max\":%llu,\"total\":%llu}",
        (unsigned long long)d->count, mean(d), (unsigned long long)d->min, dist_quantile(d, 0.5),
        dist_quantile(d, 0.95), (unsigned long long)d->max, (unsigned long long)d->sum);
}

char *sft_stats_json(const sft_stats *s) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    fprintf(f, "{\"records\":%zu,\"skipped\":%zu,\"files\":[", s->records, s->skipped);
    for (int i = 0; i < s->file_count; i++) {
        fprintf(f, "%s{\"path\":", i ? "," : "");
        sft_json_write_string(f, s->files[i].path, strlen(s->files[i].path));
        fprintf(f, ",\"format\":\"%s\",\"records\":%zu}", sft_data_format_name(s->files[i].format),
                s->files[i].records);
    }
    fprintf(f, "],\"messages\":{");
    for (int r = 0; r < SFT_ROLE_COUNT; r++)
        fprintf(f, "%s\"%s\":%llu", r ? "," : "", sft_role_name((sft_role)r),
                (unsigned long long)s->messages[r]);
    fprintf(f, "},\"assistant_turns\":");
    json_dist(f, &s->turns);
    fprintf(f, ",\"multi_turn_records\":%llu,\"records_with_system\":%llu,\"chars_per_role\":{",
            (unsigned long long)s->multi_turn, (unsigned long long)s->with_system);
    for (int r = 0; r < SFT_ROLE_COUNT; r++) {
        fprintf(f, "%s\"%s\":", r ? "," : "", sft_role_name((sft_role)r));
        json_dist(f, &s->role_chars[r]);
    }
    fprintf(f, "},\"chars_per_record\":");
    json_dist(f, &s->record_chars);
    fprintf(f, ",\"fields\":{");
    for (int i = 0; i < s->field_count; i++) {
        fprintf(f, "%s", i ? "," : "");
        sft_json_write_string(f, s->fields[i].name, strlen(s->fields[i].name));
        fprintf(f, ":{\"chars\":");
        json_dist(f, &s->fields[i].chars);
        fprintf(f, ",\"empty\":%llu}", (unsigned long long)s->fields[i].empty);
    }
    fprintf(f, "},\"length_histogram\":[");
    int first = 1;
    for (int b = first_bin(s->hist); b <= last_bin(s->hist) && s->records; b++) {
        char label[48];
        hist_label(b, label, sizeof label);
        fprintf(f, "%s{\"chars\":\"%s\",\"records\":%llu}", first ? "" : ",", label,
                (unsigned long long)s->hist[b]);
        first = 0;
    }
    fprintf(f, "],\"exact_duplicates\":%llu,\"empty_messages\":{", (unsigned long long)s->exact_duplicates);
    for (int r = 0; r < SFT_ROLE_COUNT; r++)
        fprintf(f, "%s\"%s\":%llu", r ? "," : "", sft_role_name((sft_role)r),
                (unsigned long long)s->empty_messages[r]);
    fprintf(f, "},\"nonprintable_chars\":%llu,\"chars\":%llu,\"scripts\":{",
            (unsigned long long)s->nonprintable, (unsigned long long)s->chars);
    first = 1;
    for (int k = 0; k < SFT_SCRIPT_COUNT; k++)
        if (s->scripts[k]) {
            fprintf(f, "%s\"%s\":%llu", first ? "" : ",", sft_script_name(k),
                    (unsigned long long)s->scripts[k]);
            first = 0;
        }
    fprintf(f, "}");
    if (s->has_tokens) {
        fprintf(f, ",\"tokens\":{\"per_role\":{");
        for (int r = 0; r < SFT_ROLE_COUNT; r++) {
            fprintf(f, "%s\"%s\":", r ? "," : "", sft_role_name((sft_role)r));
            json_dist(f, &s->role_tokens[r]);
        }
        fprintf(f, "},\"template\":\"%s\"", s->template_name);
        if (s->record_tokens.count) {
            fprintf(f, ",\"per_record\":");
            json_dist(f, &s->record_tokens);
            fprintf(f, ",\"histogram\":[");
            int first_entry = 1;
            for (int b = first_bin(s->token_hist); b <= last_bin(s->token_hist); b++) {
                char label[48];
                hist_label(b, label, sizeof label);
                fprintf(f, "%s{\"tokens\":\"%s\",\"records\":%llu}", first_entry ? "" : ",", label,
                        (unsigned long long)s->token_hist[b]);
                first_entry = 0;
            }
            fprintf(f,
                    "],\"supervised_tokens\":%llu,\"supervised_share\":%.4f,\"max_len\":%ld,"
                    "\"longer_than_max_len\":%llu,\"longer_share\":%.4f",
                    (unsigned long long)s->supervised_tokens,
                    s->record_tokens.sum ? (double)s->supervised_tokens / (double)s->record_tokens.sum : 0,
                    s->max_len, (unsigned long long)s->truncated,
                    s->record_tokens.count ? (double)s->truncated / (double)s->record_tokens.count : 0);
        }
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
    fclose(f);
    return text;
}

static void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

/* A bar chart of a histogram as inline SVG. */
static void svg_histogram(FILE *f, const uint64_t *hist, const char *title) {
    int lo = first_bin(hist), hi = last_bin(hist);
    int bins = hi - lo + 1;
    uint64_t top = 1;
    for (int b = lo; b <= hi; b++)
        if (hist[b] > top) top = hist[b];
    int bar_w = 48, chart_h = 200, left = 50;
    fprintf(f, "<h2>");
    html_escape(f, title);
    fprintf(f, "</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\">\n",
            left + bins * bar_w + 10, chart_h + 60);
    fprintf(f, "<line x1=\"%d\" y1=\"10\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", left, left, chart_h + 10);
    fprintf(f, "<text x=\"%d\" y=\"16\" font-size=\"11\" text-anchor=\"end\">%llu</text>\n", left - 4,
            (unsigned long long)top);
    for (int b = lo; b <= hi; b++) {
        double h = (double)chart_h * (double)hist[b] / (double)top;
        int x = left + (b - lo) * bar_w + 4;
        char label[48];
        hist_label(b, label, sizeof label);
        fprintf(f,
                "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#4a7bd0\"><title>%s: "
                "%llu</title></rect>\n",
                x, 10 + chart_h - h, bar_w - 8, h, label, (unsigned long long)hist[b]);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%s</text>\n",
                x + (bar_w - 8) / 2, chart_h + 26 + ((b - lo) % 2) * 12, label);
    }
    fprintf(f, "</svg>\n");
}

int sft_stats_write_html(const sft_stats *s, const char *path, sft_err *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>sft data stats</title>\n"
               "<style>body{font-family:sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}"
               "td:first-child{text-align:left}pre{background:#f6f6f6;padding:1em}</style></head><body>\n"
               "<h1>Dataset statistics</h1>\n");
    svg_histogram(f, s->hist, "Record length (characters)");
    if (s->record_tokens.count) {
        char title[128];
        snprintf(title, sizeof title, "Record length (tokens, template %s; max-len %ld)", s->template_name,
                 s->max_len);
        svg_histogram(f, s->token_hist, title);
    }
    fprintf(f,
            "<h2>Characters per message and field</h2>\n<table><tr><th>what</th><th>count</th><th>mean</th>"
            "<th>min</th><th>p50</th><th>p95</th><th>max</th><th>empty</th></tr>\n");
    for (int r = 0; r < SFT_ROLE_COUNT; r++) {
        const length_dist *d = &s->role_chars[r];
        if (!d->count) continue;
        fprintf(f,
                "<tr><td>%s "
                "messages</td><td>%llu</td><td>%.1f</td><td>%llu</td><td>%.0f</td><td>%.0f</td><td>%llu</"
                "td><td>%llu</td></tr>\n",
                sft_role_name((sft_role)r), (unsigned long long)d->count, mean(d), (unsigned long long)d->min,
                dist_quantile(d, 0.5), dist_quantile(d, 0.95), (unsigned long long)d->max,
                (unsigned long long)s->empty_messages[r]);
    }
    for (int i = 0; i < s->field_count; i++) {
        const length_dist *d = &s->fields[i].chars;
        fprintf(f, "<tr><td>field ");
        html_escape(f, s->fields[i].name);
        fprintf(f,
                "</td><td>%llu</td><td>%.1f</td><td>%llu</td><td>%.0f</td><td>%.0f</td><td>%llu</"
                "td><td>%llu</td></tr>\n",
                (unsigned long long)d->count, mean(d), (unsigned long long)d->min, dist_quantile(d, 0.5),
                dist_quantile(d, 0.95), (unsigned long long)d->max, (unsigned long long)s->fields[i].empty);
    }
    fprintf(f, "</table>\n<h2>Summary</h2>\n<pre>");
    char *summary = NULL;
    size_t slen = 0;
    FILE *sf = open_memstream(&summary, &slen);
    if (sf) {
        sft_stats_print_text(s, sf);
        fclose(sf);
        html_escape(f, summary);
        free(summary);
    }
    fprintf(f, "</pre>\n</body></html>\n");
    fclose(f);
    int rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}
