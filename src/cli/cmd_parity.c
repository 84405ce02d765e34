/* cmd_parity.c: `sft parity DIR`: walks DIR/reference.json by key prefix
 * (tokenizer_*, model_*, lora_*) and DIR/corpus/reference_corpus.json.gz,
 * hands each entry to the library checker for that prefix, prints one line
 * per entry (and per failed check), exits 1 on any mismatch. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "io/file.h"
#include "io/json.h"
#include "io/parity.h"
#include "model/parity_model.h"
#include "tok/parity.h"

/* A checker gets the entry, its key and the fixture dir; it records its checks
 * in p and returns -1 only when it could not run (err says why). */
typedef int (*entry_checker)(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                             sft_err *err);

static const struct {
    const char *prefix;
    entry_checker check;
} checkers[] = {
    {"tokenizer_", sft_parity_check_tokenizer},
    {"model_", sft_parity_check_model},
    {"lora_", sft_parity_check_lora},
};

int sft_cmd_parity(int argc, char **argv) {
    int verbose = 0;
    const char *only = NULL;
    const sft_arg flags[] = {
        {"verbose", SFT_ARG_BOOL, &verbose, "print every check, not only failures", NULL},
        {"only", SFT_ARG_STRING, &only,
         "check only the entries whose key starts with this prefix (e.g. tokenizer_; 'corpus' for the corpus)", NULL},
        {NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    sft_err err;
    int rc = sft_args_parse(argc, argv, flags, pos, 1, &npos, "sft parity DIR [--verbose] [--only PREFIX]", &err);
    if (rc) return rc > 0 ? 0 : sft_cli_fail("parity", &err);
    if (npos != 1) {
        sft_errf(&err, "expected one fixture folder (see --help)");
        return sft_cli_fail("parity", &err);
    }
    const char *dir = pos[0];
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "reference.json", &err)) return sft_cli_fail("parity", &err);
    json_t *ref = sft_json_load_file(path, &err);
    if (!ref) return sft_cli_fail("parity", &err);

    sft_parity p = {.out = stdout, .verbose = verbose};
    const char *key;
    json_t *entry;
    json_object_foreach(ref, key, entry) {
        entry_checker check = NULL;
        int known = 0;
        for (size_t i = 0; i < sizeof checkers / sizeof checkers[0]; i++) {
            if (!strncmp(key, checkers[i].prefix, strlen(checkers[i].prefix))) {
                check = checkers[i].check;
                known = 1;
            }
        }
        if (!known) continue; /* a later issue's entry kind: not ours to judge */
        if (only && strncmp(key, only, strlen(only))) continue;
        long failures_before = p.failures, checks_before = p.checks;
        if (!check) {
            sft_parity_line(&p, 0, "%s: no checker for this entry kind yet", key);
            continue;
        }
        if (check(entry, key, dir, &p, &err)) {
            sft_parity_line(&p, 0, "%s: %s", key, err.msg);
            continue;
        }
        long failed = p.failures - failures_before;
        printf("%s %s: %ld checks, %ld failed\n", failed ? "FAIL" : "ok  ", key, p.checks - checks_before, failed);
    }
    json_decref(ref);
    /* The real-text corpus (tokenizers and chat templates), when the folder has one. */
    if ((!only || !strncmp("corpus", only, strlen(only)) || !strncmp(only, "tokenizer_", strlen(only))) &&
        sft_parity_check_corpus(dir, &p, &err))
        sft_parity_line(&p, 0, "corpus: %s", err.msg);
    printf("parity %s: %ld checks, %ld failed\n", p.failures ? "FAILED" : "passed", p.checks, p.failures);
    return p.failures ? 1 : 0;
}
