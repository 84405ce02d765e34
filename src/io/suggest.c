/* suggest.c: nearest-name suggestions by edit distance. */
#include "io/suggest.h"

#include <stdlib.h>
#include <string.h>

size_t sft_edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    size_t *row = malloc((m + 1) * sizeof *row);
    if (!row) return (size_t)-1;
    for (size_t j = 0; j <= m; j++) row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[m];
    free(row);
    return d;
}

const char *sft_suggest(const char *word, const char *const *candidates, size_t count) {
    size_t limit = strlen(word) / 3;
    if (limit < 2) limit = 2;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < count; i++) {
        size_t d = sft_edit_distance(word, candidates[i]);
        if (d < best_d) best_d = d, best = candidates[i];
    }
    return best;
}
