/* suggest.h: "did you mean" for unknown flags, keys and names. */
#ifndef SFT_IO_SUGGEST_H
#define SFT_IO_SUGGEST_H

#include <stddef.h>

/* Edit (Levenshtein) distance between two strings. */
size_t sft_edit_distance(const char *a, const char *b);

/* The candidate nearest to `word`, or NULL when none is within a third of
 * its length (at least 2 edits). */
const char *sft_suggest(const char *word, const char *const *candidates, size_t count);

#endif
