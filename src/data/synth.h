/* synth.h: model-based data generation for `sft data generate --model` and
 * `sft data augment --evolve`, with any local HF model through the project's
 * own inference (model/session.h: KV-cache decoding, the model's chat
 * template; raw text continuation for a model without one).
 *
 * - answers       an answer for every record that has none (a conversation
 *                 ending with a user turn, an empty alpaca "output" or
 *                 "completion"), or for each line of a plain prompts file.
 * - self-instruct new instructions from seed examples (Wang et al. 2022,
 *                 "Self-Instruct"): the model continues a numbered list of
 *                 sampled instructions, the new ones are parsed, filtered, kept
 *                 when no instruction of the pool is a near duplicate, then
 *                 answered.
 * - evolve        Evol-Instruct (Xu et al. 2023, "WizardLM"): the model rewrites
 *                 an instruction with an in-depth prompt (add constraints,
 *                 deepen, concretize, increase reasoning) or an in-breadth one
 *                 (a new, rarer instruction of the same domain); failed
 *                 evolutions are eliminated as in the paper; the survivors are
 *                 answered.
 * Sampling is seeded per record and attempt (not per run order), so a seed
 * gives the same records on every machine. docs/data.md has the prompts. */
#ifndef SFT_DATA_SYNTH_H
#define SFT_DATA_SYNTH_H

#include <stdint.h>

#include "data/pipeline.h"

typedef struct sft_synth_options {
    const char *model_dir, *adapter_dir;
    const char *template_name; /* NULL/"auto": the model's own */
    int max_new_tokens;        /* per generation, default 256 */
    double temperature;        /* default 0.7; 0 = greedy */
    double top_p;              /* default 0.9 */
    int top_k;                 /* default 0 (off) */
    uint64_t seed;             /* default 1 */
} sft_synth_options;
void sft_synth_options_default(sft_synth_options *o);

typedef struct sft_synth_summary {
    size_t records;    /* read */
    size_t written;    /* records written */
    size_t created;    /* new records (answers, instructions, evolutions) */
    size_t unchanged;  /* records passed on as they were */
    size_t rejected;   /* candidates eliminated (self-instruct, evolve) */
    size_t unfinished; /* answers cut by max_new_tokens */
    size_t attempts;   /* model calls for instructions */
    size_t skipped;
    size_t per_reason[8]; /* eliminations by reason (sft_synth_reason_name) */
} sft_synth_summary;
const char *sft_synth_reason_name(int reason); /* NULL past the last */

/* Answers: io's records, or, when prompts_file is given (and io has no
 * inputs), one user prompt a line written as new records in `format`. */
int sft_data_answer(const sft_data_io *io, const char *prompts_file, sft_data_format format,
                    const sft_synth_options *o, sft_synth_summary *s, sft_err *err);

typedef struct sft_self_instruct_options {
    long count;              /* new records, default 100 */
    int prompt_instructions; /* instructions shown per prompt, default 8 (the paper's) */
    int prompt_generated;    /* of which from the generated pool once it has some, default 2 */
    double similarity;       /* reject a new instruction with word-set Jaccard >= this to the pool, 0.7 */
    long max_attempts;       /* model calls before giving up, default 20 * count */
    sft_data_format format;  /* output format, default messages */
} sft_self_instruct_options;
void sft_self_instruct_options_default(sft_self_instruct_options *o);
/* Self-Instruct's filters of one parsed instruction, before the
 * near-duplicate check: a reason (sft_synth_reason_name), -1 when it passes,
 * -2 on error. */
int sft_self_instruct_rejects(const char *candidate, sft_err *err);
/* io's records are the seeds (their first user message is the instruction). */
int sft_data_self_instruct(const sft_data_io *io, const sft_self_instruct_options *si,
                           const sft_synth_options *o, sft_synth_summary *s, sft_err *err);

/* Evol-Instruct methods. */
enum {
    SFT_EVOL_CONSTRAINTS,
    SFT_EVOL_DEEPEN,
    SFT_EVOL_CONCRETIZE,
    SFT_EVOL_REASONING,
    SFT_EVOL_BREADTH,
    SFT_EVOL_COUNT
};
const char *sft_evol_method_name(int method);
/* The full prompt the model gets for an instruction (malloc'ed). */
char *sft_evol_prompt(int method, const char *instruction);

/* Evol-Instruct's elimination (WizardLM section 3.3): a reason, -1 when the
 * evolution survives, -2 on error. answer may be NULL (instruction checks
 * only). Checks: empty or under 3 words; a copy of the original (word-set
 * Jaccard >= 0.9) or the evolving prompt's own words ("given prompt",
 * "#Rewritten Prompt#", ...); an answer with "sorry" in under 80 words, or
 * with nothing but punctuation and stop words. */
int sft_evol_eliminates(const char *original, const char *evolved, const char *answer, sft_err *err);

typedef struct sft_evolve_options {
    int variants;      /* evolutions per record, default 1 */
    unsigned methods;  /* bit per SFT_EVOL_*, default all */
    int keep_original; /* default 1 */
} sft_evolve_options;
void sft_evolve_options_default(sft_evolve_options *o);
int sft_data_evolve(const sft_data_io *io, const sft_evolve_options *eo, const sft_synth_options *o,
                    sft_synth_summary *s, sft_err *err);

#endif
