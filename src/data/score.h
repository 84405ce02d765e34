/* score.h: `sft data score`, quality scores of instruction records.
 *
 * Heuristic score (no model): the product of one factor in [0, 1] per check,
 * with filter's own measures (rules.h), so one severe problem sinks a record
 * and mild ones shave it (docs/data.md has the table):
 *   no_answer, empty_turn                    0
 *   no_words      the answer has no letter or digit                 0.1
 *   long_turn     a user/assistant turn over 32768 characters       0.5
 *   nonprintable  share p of non-printable characters               1 - 50 p (0 from 2%)
 *   refusal       a refusal/boilerplate phrase in an answer         0.1
 *   repetition    Gopher's repeated word 3-gram share r             1 - (r - 0.1) / 0.4 above 0.1
 *   cut_off       the last answer ends mid sentence                 0.5
 *   copies_prompt share c of the answer's word 3-grams found in the
 *                 prompt (answers under 12 words: c = 1 when equal to
 *                 the last user turn, else 0)           1 - (c - 0.5) / 0.5 above 0.5
 *
 * Model scores (--model DIR, any local HF model, a PEFT adapter merged in):
 *   loss, ppl  the mean -log p of the supervised tokens of the record rendered
 *              and masked exactly as training renders it (train/dataset.h:
 *              chat template, one BOS, assistant tokens with their end-of-turn
 *              token, truncated at max_len), and exp(loss).
 *   ifd        Instruction-Following Difficulty (Li et al. 2023, "From
 *              Quantity to Quality", Cherry LLM): s(A|Q) / s(A), the mean loss
 *              of the answer tokens given the instruction divided by their mean
 *              loss without it. As in Cherry LLM's code, the answer keeps its
 *              response header when alone ("### Response:" + output there; here
 *              BOS when the model's sequences start with one, then the
 *              template's text between the last prompt message and the answer,
 *              e.g. "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
 *              and both losses are over the same answer tokens (taken from the
 *              full encoding, so tokenization cannot differ). A is the last
 *              assistant turn (its tokens as the training mask marks them: the
 *              text and its end-of-turn token), Q everything before it; records
 *              without a turn before the answer (and text records) get none.
 * The forward passes are batched: records are packed (train/dataset.h's
 * loader) into rows of max_len tokens, batch_size rows a forward, on all
 * threads. */
#ifndef SFT_DATA_SCORE_H
#define SFT_DATA_SCORE_H

#include "data/pipeline.h"

enum {
    SFT_HEUR_NO_ANSWER,
    SFT_HEUR_EMPTY_TURN,
    SFT_HEUR_NO_WORDS,
    SFT_HEUR_LONG_TURN,
    SFT_HEUR_NONPRINTABLE,
    SFT_HEUR_REFUSAL,
    SFT_HEUR_REPETITION,
    SFT_HEUR_CUT_OFF,
    SFT_HEUR_COPIES_PROMPT,
    SFT_HEUR_COUNT
};
const char *sft_heuristic_name(int check);

typedef struct sft_score_options {
    int check_refusal;        /* default 1 */
    const char *refusal_file; /* NULL: the built-in phrases */
    int cut_min_words;        /* default 20, as filter */
    /* model scores: NULL model_dir = heuristic only */
    const char *model_dir, *adapter_dir;
    const char *tokenizer_dir; /* NULL: the model's own */
    const char *template_name; /* NULL/"auto": the tokenizer's */
    long max_len;              /* default 1024, as training */
    int batch_size;            /* rows of max_len tokens per forward, default 4 */
} sft_score_options;
void sft_score_options_default(sft_score_options *o);

typedef struct sft_record_scores {
    double heuristic;
    unsigned flags; /* bit k: check k lowered the score */
    int has_model;  /* loss and ppl set */
    double loss, ppl;
    long tokens;   /* supervised tokens scored */
    int truncated; /* longer than max_len */
    int has_ifd;
    double ifd, answer_loss, answer_loss_alone;
    long answer_tokens;
    const char *no_ifd; /* why there is no IFD (static text), or NULL */
} sft_record_scores;

/* A scorer: the heuristic rules and, with a model dir, the loaded model. */
typedef struct sft_scorer sft_scorer;
sft_scorer *sft_scorer_open(const sft_score_options *o, sft_err *err);
void sft_scorer_free(sft_scorer *sc);
int sft_scorer_has_model(const sft_scorer *sc);
/* Scores n records (out[n]); model scores are computed when the scorer has a
 * model and want_model is set. Errors name "FILE:LINE". */
int sft_scorer_run(sft_scorer *sc, const sft_record *const *recs, size_t n, int want_model,
                   sft_record_scores *out, sft_err *err);
/* The scores as the "sft_scores" object written into records (new reference). */
json_t *sft_record_scores_json(const sft_scorer *sc, const sft_record_scores *s);

typedef struct sft_score_summary {
    size_t records, skipped, with_model, with_ifd, truncated;
    double heuristic_sum, loss_sum, ifd_sum; /* for the means */
    size_t flagged[SFT_HEUR_COUNT];
} sft_score_summary;
/* Every record is written with "sft_scores" added (replacing an older one),
 * every other field kept. */
int sft_data_score(const sft_data_io *io, const sft_score_options *o, sft_score_summary *s, sft_err *err);

#endif
