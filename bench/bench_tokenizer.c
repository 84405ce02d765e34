/* bench_tokenizer.c: encoding speed of the tokenizer on one core.
 *
 *   bench_tokenizer [TOKENIZER_DIR [TEXT_FILE...]]
 *
 * Defaults: the GPT-2 tokenizer of the fixtures and the English licence
 * texts of /usr/share/common-licenses (GPL, Apache, BSD, ...). Each file is
 * one document; a run encodes every document REPEAT times (about two
 * million tokens), single-threaded, and reports tokens per second. The first
 * run starts with an empty word cache ("cold"); the number to quote is the
 * median of the runs after it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "io/file.h"
#include "tok/tokenizer.h"

#define RUNS 7
#define MAX_DOCS 256

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/hf/models/gpt2-tiny";
    char *docs[MAX_DOCS];
    size_t lens[MAX_DOCS], ndocs = 0, bytes = 0;
    sft_err err;
    if (argc > 2) {
        for (int i = 2; i < argc && ndocs < MAX_DOCS; i++) {
            if (sft_read_file(argv[i], &docs[ndocs], &lens[ndocs], &err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                return 1;
            }
            bytes += lens[ndocs++];
        }
    } else {
        const char *lic = "/usr/share/common-licenses";
        DIR *d = opendir(lic);
        struct dirent *e;
        while (d && (e = readdir(d)) && ndocs < MAX_DOCS) {
            char path[1024];
            if (e->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", lic, e->d_name);
            if (sft_dir_exists(path) || sft_read_file(path, &docs[ndocs], &lens[ndocs], &err)) continue;
            bytes += lens[ndocs++];
        }
        if (d) closedir(d);
    }
    if (!ndocs) {
        fprintf(stderr, "bench_tokenizer: no text to encode (give TEXT_FILE arguments)\n");
        return 1;
    }
    sft_tokenizer *tok = sft_tokenizer_load(dir, &err);
    if (!tok) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    sft_encoding enc = {0};
    /* One pass to size the runs: ~2M tokens per run. */
    size_t tokens_once = 0;
    for (size_t k = 0; k < ndocs; k++) {
        if (sft_tokenizer_encode(tok, docs[k], lens[k], 0, &enc, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        tokens_once += enc.count;
    }
    sft_tokenizer_free(tok);
    tok = sft_tokenizer_load(dir, &err); /* fresh: the first run below starts cold */
    if (!tok) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    size_t repeat = tokens_once ? 2000000 / tokens_once + 1 : 1;
    double rate[RUNS];
    size_t tokens = 0;
    for (int r = 0; r < RUNS; r++) {
        tokens = 0;
        double t0 = bench_wall_s();
        for (size_t rep = 0; rep < repeat; rep++)
            for (size_t k = 0; k < ndocs; k++) {
                if (sft_tokenizer_encode(tok, docs[k], lens[k], 0, &enc, &err)) {
                    fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
                    return 1;
                }
                tokens += enc.count;
            }
        rate[r] = (double)tokens / (bench_wall_s() - t0);
    }
    double cold = rate[0];
    qsort(rate + 1, RUNS - 1, sizeof rate[0], bench_cmp_double);
    printf("tokenizer %s: %zu documents, %zu bytes, %zu tokens per pass, %zu passes per run\n", dir, ndocs,
           bytes, tokens_once, repeat);
    printf("first run (cold word cache): %.0f tokens/s\n", cold);
    printf("median of %d runs: %.0f tokens/s (min %.0f, max %.0f), %.1f MB/s, one thread\n", RUNS - 1,
           rate[RUNS / 2], rate[1], rate[RUNS - 1],
           (double)bytes * (double)repeat / ((double)tokens / rate[RUNS / 2]) / 1e6);
    sft_encoding_free(&enc);
    sft_tokenizer_free(tok);
    for (size_t k = 0; k < ndocs; k++)
        free(docs[k]);
    return 0;
}
