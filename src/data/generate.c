/* generate.c: `sft data generate`, synthetic instruction data with
 * verifiable answers, from built-in task families.
 *
 * Made for the offline demo and the tests: a tiny model trained from scratch
 * for minutes must be able to learn it, so prompts come from a few templates
 * over a small fixed vocabulary, answers are short, deterministic and exactly
 * checkable (every record carries its "task" and "answer"), and everything
 * follows from the seed: record i of a seed is the same on every machine
 * (splitmix64 streams, no libc rand). */
#include <stdlib.h>
#include <string.h>

#include "data/pipeline.h"
#include "io/suggest.h"

const char *const sft_generate_task_names[] = {"add",          "subtract",     "multiply",      "max",
                                               "sort",         "reverse_list", "reverse_word",  "uppercase",
                                               "count_letter", "word_length",  "convert_units", NULL};
const char *const sft_generate_task_descriptions[] = {
    "sum of two numbers",
    "difference of two numbers (never negative)",
    "product of two numbers up to 12",
    "largest of 3 to 5 numbers",
    "3 to 5 numbers in increasing order",
    "a list of 3 to 5 digits backwards",
    "a word spelled backwards",
    "a word in capital letters",
    "how often a letter occurs in a word",
    "number of letters in a word",
    "km to m, m to cm, kg to g, hours to minutes, minutes to seconds",
    NULL};

/* Short common words of lower-case ASCII letters: the whole vocabulary (none
 * of them a word of the prompt templates, so a prompt names its word once). */
static const char *const words[] = {
    "apple",  "banana", "cherry", "lemon",  "mango",  "grape",  "melon",  "peach",  "table",  "chair",
    "house",  "river",  "stone",  "cloud",  "green",  "water",  "light",  "music",  "paper",  "pencil",
    "window", "garden", "yellow", "orange", "planet", "rocket", "silver", "forest", "bottle", "ladder",
    "summer", "winter", "spring", "animal", "button", "candle", "dragon", "finger", "jacket", "kitten"};
#define WORD_COUNT (sizeof words / sizeof words[0])

void sft_generate_options_default(sft_generate_options *o) {
    memset(o, 0, sizeof *o);
    o->count = 1000;
    o->seed = 1;
    o->format = SFT_FORMAT_MESSAGES;
    o->max_number = 99;
}

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static long uniform(uint64_t *s, long lo, long hi) {
    return lo + (long)(next(s) % (uint64_t)(hi - lo + 1));
}

static int task_index(const char *name) {
    for (int i = 0; sft_generate_task_names[i]; i++)
        if (!strcmp(name, sft_generate_task_names[i])) return i;
    return -1;
}

/* Writes "a b c" of n numbers. */
static void join_numbers(const long *v, int n, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%ld", i ? " " : "", v[i]);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static void task_record(int task, uint64_t *rng, long max_number, char *prompt, size_t pcap, char *answer,
                        size_t acap) {
    long a = uniform(rng, 0, max_number), b = uniform(rng, 0, max_number);
    int form = (int)uniform(rng, 0, 2);
    const char *w = words[next(rng) % WORD_COUNT];
    long v[5];
    int n = (int)uniform(rng, 3, 5);
    char list[128];
    switch (task) {
    case 0: /* add */
        snprintf(prompt, pcap,
                 form == 0   ? "What is %ld + %ld?"
                 : form == 1 ? "Add %ld and %ld."
                             : "Compute %ld plus %ld.",
                 a, b);
        snprintf(answer, acap, "%ld", a + b);
        break;
    case 1: /* subtract */
        if (a < b) {
            long t = a;
            a = b;
            b = t;
        }
        snprintf(prompt, pcap,
                 form == 0   ? "What is %ld - %ld?"
                 : form == 1 ? "Subtract %ld from %ld."
                             : "Compute %ld minus %ld.",
                 form == 1 ? b : a, form == 1 ? a : b);
        snprintf(answer, acap, "%ld", a - b);
        break;
    case 2: { /* multiply */
        long top = max_number < 12 ? max_number : 12;
        a = uniform(rng, 0, top);
        b = uniform(rng, 0, top);
        snprintf(prompt, pcap,
                 form == 0   ? "What is %ld * %ld?"
                 : form == 1 ? "Multiply %ld by %ld."
                             : "Compute %ld times %ld.",
                 a, b);
        snprintf(answer, acap, "%ld", a * b);
        break;
    }
    case 3: /* max */
        for (int i = 0; i < n; i++)
            v[i] = uniform(rng, 0, max_number);
        join_numbers(v, n, list, sizeof list);
        snprintf(prompt, pcap,
                 form == 0   ? "What is the largest number in: %s?"
                 : form == 1 ? "Find the maximum of %s."
                             : "Which is biggest: %s?",
                 list);
        qsort(v, (size_t)n, sizeof *v, cmp_long);
        snprintf(answer, acap, "%ld", v[n - 1]);
        break;
    case 4: /* sort */
        for (int i = 0; i < n; i++)
            v[i] = uniform(rng, 0, max_number);
        join_numbers(v, n, list, sizeof list);
        snprintf(prompt, pcap,
                 form == 0   ? "Sort these numbers: %s"
                 : form == 1 ? "Sort in increasing order: %s"
                             : "Put in order from small to large: %s",
                 list);
        qsort(v, (size_t)n, sizeof *v, cmp_long);
        join_numbers(v, n, answer, acap);
        break;
    case 5: { /* reverse_list */
        for (int i = 0; i < n; i++)
            v[i] = uniform(rng, 0, 9);
        join_numbers(v, n, list, sizeof list);
        snprintf(prompt, pcap,
                 form == 0   ? "Reverse the list: %s"
                 : form == 1 ? "Write this list backwards: %s"
                             : "Reverse the order of: %s",
                 list);
        long r[5];
        for (int i = 0; i < n; i++)
            r[i] = v[n - 1 - i];
        join_numbers(r, n, answer, acap);
        break;
    }
    case 6: { /* reverse_word */
        snprintf(prompt, pcap,
                 form == 0   ? "Reverse the word %s."
                 : form == 1 ? "Spell %s backwards."
                             : "Write the word %s in reverse.",
                 w);
        size_t len = strlen(w);
        for (size_t i = 0; i < len && i + 1 < acap; i++)
            answer[i] = w[len - 1 - i];
        answer[len < acap ? len : acap - 1] = 0;
        break;
    }
    case 7: { /* uppercase */
        snprintf(prompt, pcap,
                 form == 0   ? "Write %s in capital letters."
                 : form == 1 ? "Make the word %s upper case."
                             : "Spell %s in capitals.",
                 w);
        size_t len = strlen(w);
        for (size_t i = 0; i <= len && i < acap; i++)
            answer[i] = (char)(w[i] >= 'a' && w[i] <= 'z' ? w[i] - 32 : w[i]);
        break;
    }
    case 8: { /* count_letter: a letter of the word most of the time, sometimes one it lacks */
        size_t len = strlen(w);
        char letter = (next(rng) % 4) ? w[next(rng) % len] : (char)('a' + next(rng) % 26);
        int count = 0;
        for (size_t i = 0; i < len; i++)
            count += w[i] == letter;
        snprintf(prompt, pcap,
                 form == 0   ? "How many times does the letter %c appear in %s?"
                 : form == 1 ? "Count the letter %c in the word %s."
                             : "How often is %c in %s?",
                 letter, w);
        snprintf(answer, acap, "%d", count);
        break;
    }
    case 9: /* word_length */
        snprintf(prompt, pcap,
                 form == 0   ? "How many letters are in the word %s?"
                 : form == 1 ? "Count the letters of %s."
                             : "What is the length of the word %s?",
                 w);
        snprintf(answer, acap, "%zu", strlen(w));
        break;
    default: { /* convert_units */
        static const struct {
            const char *from, *to;
            long factor;
        } units[] = {{"km", "m", 1000},
                     {"m", "cm", 100},
                     {"kg", "g", 1000},
                     {"hours", "minutes", 60},
                     {"minutes", "seconds", 60}};
        int u = (int)(next(rng) % 5);
        long q = uniform(rng, 1, max_number);
        if (form == 0)
            snprintf(prompt, pcap, "Convert %ld %s to %s.", q, units[u].from, units[u].to);
        else if (form == 1)
            snprintf(prompt, pcap, "How many %s are in %ld %s?", units[u].to, q, units[u].from);
        else
            snprintf(prompt, pcap, "Express %ld %s in %s.", q, units[u].from, units[u].to);
        snprintf(answer, acap, "%ld", q * units[u].factor);
        break;
    }
    }
}

/* Record `index` of a seed: its own stream, so records do not depend on each other. */
static uint64_t record_stream(uint64_t seed, uint64_t index) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL ^ (index + 1) * 0xD1B54A32D192ED03ULL;
    next(&s);
    return s;
}

int sft_generate_one(const char *task, uint64_t seed, uint64_t index, long max_number, char *prompt,
                     size_t prompt_cap, char *answer, size_t answer_cap, sft_err *err) {
    int t = task_index(task);
    if (t < 0) return sft_errf(err, "unknown task family '%s'", task);
    if (max_number < 1) return sft_errf(err, "--max-number must be at least 1");
    uint64_t rng = record_stream(seed, index);
    task_record(t, &rng, max_number, prompt, prompt_cap, answer, answer_cap);
    return 0;
}

int sft_data_generate(const sft_generate_options *o, const char *output, sft_err *err) {
    if (!output) return sft_errf(err, "generate needs an output file (-o)");
    if (o->count < 1) return sft_errf(err, "--count must be at least 1");
    if (o->max_number < 1) return sft_errf(err, "--max-number must be at least 1");
    if (o->format == SFT_FORMAT_AUTO || o->format == SFT_FORMAT_TEXT)
        return sft_errf(err, "generate writes alpaca, sharegpt, messages or prompt-completion, not %s",
                        sft_data_format_name(o->format));
    int tasks[32], task_count = 0;
    if (o->tasks) {
        char list[1024];
        snprintf(list, sizeof list, "%s", o->tasks);
        for (char *save = NULL, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            int t = task_index(name);
            if (t < 0) {
                size_t n = 0;
                while (sft_generate_task_names[n])
                    n++;
                const char *near = sft_suggest(name, sft_generate_task_names, n);
                return sft_errf(err, "--tasks: unknown task family '%s'%s%s%s (see sft data generate --list)",
                                name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            }
            if (task_count < 32) tasks[task_count++] = t;
        }
    } else
        for (int t = 0; sft_generate_task_names[t]; t++)
            tasks[task_count++] = t;
    if (!task_count) return sft_errf(err, "--tasks: no task family given");
    sft_writer *w = sft_writer_open(output, err);
    if (!w) return -1;
    char prompt[512], answer[256], id[32];
    sft_u64map seen = {0};
    sft_buf normalized = {0};
    for (long i = 0; i < o->count; i++) {
        /* Round robin over the families keeps them balanced in any prefix of the file. */
        int t = tasks[i % task_count];
        uint64_t rng = record_stream(o->seed, (uint64_t)i);
        task_record(t, &rng, o->max_number, prompt, sizeof prompt, answer, sizeof answer);
        /* --unique: redraw (from streams of their own, so the file stays a
         * function of the seed) until the prompt is new. */
        for (int attempt = 1; o->unique; attempt++) {
            if (sft_text_normalize(prompt, strlen(prompt), &normalized, err)) goto fail;
            uint64_t key = sft_hash64(normalized.data, normalized.len, 0);
            if (sft_u64map_first(&seen, key) < 0) {
                if (sft_u64map_add(&seen, key, 0)) {
                    sft_errf(err, "out of memory");
                    goto fail;
                }
                break;
            }
            if (attempt == 1000) {
                sft_errf(err,
                         "--unique: task family '%s' has no new prompt left at record %ld (about %ld records "
                         "a family); ask for fewer records, more families or a larger --max-number",
                         sft_generate_task_names[t], i, i / task_count);
                goto fail;
            }
            rng = record_stream(o->seed, (uint64_t)i + ((uint64_t)attempt << 40));
            task_record(t, &rng, o->max_number, prompt, sizeof prompt, answer, sizeof answer);
        }
        sft_message m[2] = {{SFT_ROLE_USER, prompt, strlen(prompt), NULL},
                            {SFT_ROLE_ASSISTANT, answer, strlen(answer), NULL}};
        json_t *head = json_object();
        snprintf(id, sizeof id, "gen-%06ld", i);
        json_object_set_new(head, "id", json_string(id));
        json_object_set_new(head, "task", json_string(sft_generate_task_names[t]));
        json_object_set_new(head, "answer", json_string(answer));
        json_t *rec = sft_record_build(head, SFT_FORMAT_AUTO, m, 2, o->format, "generate", err);
        json_decref(head);
        if (!rec || sft_writer_put_json(w, rec, err)) {
            json_decref(rec);
            goto fail;
        }
        json_decref(rec);
    }
    sft_u64map_free(&seen);
    sft_buf_free(&normalized);
    return sft_writer_commit(w, err);
fail:
    sft_u64map_free(&seen);
    sft_buf_free(&normalized);
    sft_writer_abort(w);
    return -1;
}
