/* parity.h: the report that `sft parity` checkers write into: one line per
 * check ("ok" or "FAIL" with what differed), counted, so that every checker
 * (tokenizers, chat templates, models, LoRA) reports the same way. */
#ifndef SFT_IO_PARITY_H
#define SFT_IO_PARITY_H

#include <stdio.h>

typedef struct sft_parity {
    FILE *out;
    int verbose; /* print ok lines too (failures are always printed) */
    long checks;
    long failures;
} sft_parity;

/* Counts one check and prints "ok   WHAT" (verbose) or "FAIL WHAT". */
void sft_parity_line(sft_parity *p, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* |a-b| <= rel * max(|b|, floor): the fixtures' relative tolerance with a floor for values near 0. */
int sft_parity_close(double a, double b, double rel, double floor);

#endif
