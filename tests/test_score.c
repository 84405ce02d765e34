/* test_score.c: `sft data score` and filter's score rules. The model scores
 * are checked against a hand computation through the model API on the HF
 * fixture models: the training encoding and a single-row forward for ppl; the
 * answer's tokens with and without the instruction (the response header
 * written out here, not derived) for IFD. */
#include <math.h>
#include <unistd.h>

#include "data/score.h"
#include "io/file.h"
#include "io/json.h"
#include "model/ops.h"
#include "model/session.h"
#include "test.h"
#include "train/dataset.h"
#include "train/trainer.h"

#define LLAMA3 "tests/fixtures/hf/models/llama3-tiny"
#define GPT2 "tests/fixtures/hf/models/gpt2-tiny"

/* Parses one record of a given format. */
static int parse_record(sft_record *rec, const char *json, sft_data_format format) {
    sft_err err;
    json_t *j = sft_json_loadb(json, strlen(json), "test", &err);
    if (!j) return -1;
    sft_record_init(rec);
    rec->path = "test";
    rec->line = 1;
    return sft_record_from_json(rec, j, format, 1, "test:1", &err);
}

/* Mean -log p of the targets of one sequence, from the model's own forward. */
static double forward_mean_loss(sft_model *m, const int32_t *ids, const int32_t *targets, int n) {
    int32_t *pos = malloc(n * sizeof *pos), *seq = calloc(n, sizeof *seq);
    long supervised = 0;
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        supervised += targets[i] != SFT_IGNORE_INDEX;
    }
    sft_err err;
    double loss = NAN;
    sft_batch b = {1, n, ids, targets, pos, seq, supervised};
    if (sft_model_plan(m, 1, n, &err) || sft_model_forward(m, &b, &loss, &err))
        fprintf(stderr, "%s\n", err.msg);
    free(pos);
    free(seq);
    return loss;
}

/* ppl and IFD by hand for a single-turn record of a chat model: header is the
 * template's text between the user message and the answer. */
static void hand_scores(sft_session *session, const char *model_dir, const sft_record *rec,
                        const char *header, double *ppl, double *ifd) {
    sft_session s = *session;
    sft_err err;
    s.model->training = 0;
    sft_encoder enc;
    CHECK(sft_encoder_init(&enc, s.tok, s.tmpl, model_dir, &err) == 0);
    sft_encoded e = {0};
    CHECK(sft_encode_record(&enc, rec, 0, &e, &err) == 0);
    int n = (int)e.count;
    int32_t *targets = malloc(n * sizeof *targets), *answer_targets = malloc(n * sizeof *targets);
    int from = -1, to = -1;
    for (int i = 0; i < n; i++) {
        targets[i] = i + 1 < n && e.mask[i + 1] ? e.ids[i + 1] : SFT_IGNORE_INDEX;
        if (e.mask[i] && from < 0) from = i;
        if (e.mask[i]) to = i + 1;
    }
    *ppl = exp(forward_mean_loss(s.model, e.ids, targets, n));
    for (int i = 0; i < n; i++)
        answer_targets[i] = i + 1 >= from && i + 1 < to ? e.ids[i + 1] : SFT_IGNORE_INDEX;
    double conditioned = forward_mean_loss(s.model, e.ids, answer_targets, n);
    /* Alone: BOS (when the encoding starts with it), the header, the answer tokens. */
    sft_encoding h = {0};
    CHECK(sft_tokenizer_encode(s.tok, header, strlen(header), 0, &h, &err) == 0);
    int bos = enc.bos_id >= 0 && e.ids[0] == enc.bos_id;
    int context = bos + (int)h.count, alone_n = context + (to - from);
    int32_t *alone = malloc(alone_n * sizeof *alone), *alone_targets = malloc(alone_n * sizeof *alone);
    int k = 0;
    if (bos) alone[k++] = enc.bos_id;
    for (size_t i = 0; i < h.count; i++)
        alone[k++] = h.ids[i];
    for (int i = from; i < to; i++)
        alone[k++] = e.ids[i];
    for (int i = 0; i < alone_n; i++)
        alone_targets[i] = i + 1 >= context && i + 1 < alone_n ? alone[i + 1] : SFT_IGNORE_INDEX;
    double by_itself = forward_mean_loss(s.model, alone, alone_targets, alone_n);
    *ifd = conditioned / by_itself;
    free(targets);
    free(answer_targets);
    free(alone);
    free(alone_targets);
    sft_encoding_free(&h);
    sft_encoded_free(&e);
}

static sft_scorer *open_scorer(const char *model, long max_len, int batch_size) {
    sft_score_options o;
    sft_score_options_default(&o);
    o.model_dir = model;
    o.max_len = max_len;
    o.batch_size = batch_size;
    sft_err err;
    sft_scorer *sc = sft_scorer_open(&o, &err);
    if (!sc) fprintf(stderr, "  %s\n", err.msg);
    return sc;
}

static const char *const chat_records[] = {
    "{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"What is the capital of France?\"}, "
    "{\"role\": \"assistant\", \"content\": \"The capital of France is Paris.\"}]}",
    "{\"id\": \"b\", \"messages\": [{\"role\": \"user\", \"content\": \"Name three colours.\"}, {\"role\": "
    "\"assistant\", \"content\": \"Red, green and blue are three colours.\"}]}",
    "{\"id\": \"c\", \"messages\": [{\"role\": \"user\", \"content\": \"Count to five.\"}, {\"role\": "
    "\"assistant\", \"content\": \"1 2 3 4 5\"}]}",
};

static void check_against_hand(const char *model, const char *header) {
    sft_record recs[3];
    const sft_record *ptrs[3];
    for (int i = 0; i < 3; i++) {
        CHECK(parse_record(&recs[i], chat_records[i], SFT_FORMAT_MESSAGES) == 0);
        ptrs[i] = &recs[i];
    }
    /* batch_size 2 rows of 64 tokens: the three records pack into rows with
     * each other, so the check covers packing and row offsets. */
    sft_scorer *sc = open_scorer(model, 64, 2);
    CHECK(sc != NULL);
    if (!sc) return;
    sft_record_scores s[3];
    sft_err err;
    CHECK(sft_scorer_run(sc, ptrs, 3, 1, s, &err) == 0);
    sft_session session;
    CHECK(sft_session_open(&session, model, NULL, NULL, 1, &err) == 0);
    for (int i = 0; i < 3; i++) {
        double ppl, ifd;
        hand_scores(&session, model, &recs[i], header, &ppl, &ifd);
        CHECK(s[i].has_model && s[i].has_ifd);
        /* float32 forward, packed rows vs a row of its own: ~1e-6 relative */
        CHECK_NEAR(s[i].ppl / ppl, 1.0, 1e-4);
        CHECK_NEAR(s[i].ifd, ifd, 1e-5);
        /* a random model: the instruction barely changes the answer's loss */
        CHECK(s[i].ifd > 0.9 && s[i].ifd < 1.1);
    }
    sft_session_close(&session);
    /* The same record alone gives the same scores as in a batch. */
    sft_record_scores one;
    CHECK(sft_scorer_run(sc, ptrs + 1, 1, 1, &one, &err) == 0);
    CHECK_NEAR(one.ifd, s[1].ifd, 1e-5);
    CHECK_NEAR(one.loss, s[1].loss, 1e-5);
    sft_scorer_free(sc);
    for (int i = 0; i < 3; i++)
        sft_record_free(&recs[i]);
}

TEST(ppl_and_ifd_equal_a_hand_computation_llama3) {
    check_against_hand(LLAMA3, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ppl_and_ifd_equal_a_hand_computation_alpaca_template) {
    /* gpt2-tiny's template is Alpaca's: the alone text is "### Response:" + answer, as Cherry LLM's. */
    check_against_hand(GPT2, "\n\n### Response:\n");
}

TEST(records_without_an_instruction_get_ppl_but_no_ifd) {
    sft_record rec;
    CHECK(parse_record(&rec, "{\"text\": \"Plain text to model.\"}", SFT_FORMAT_TEXT) == 0);
    sft_scorer *sc = open_scorer(LLAMA3, 64, 1);
    const sft_record *p = &rec;
    sft_record_scores s;
    sft_err err;
    CHECK(sc && sft_scorer_run(sc, &p, 1, 1, &s, &err) == 0);
    CHECK(s.has_model && !s.has_ifd && s.no_ifd != NULL);
    sft_scorer_free(sc);
    sft_record_free(&rec);
}

TEST(truncation_follows_max_len) {
    sft_record rec;
    CHECK(parse_record(&rec, chat_records[0], SFT_FORMAT_MESSAGES) == 0);
    /* 12 tokens: the prompt fits, the answer is cut */
    sft_scorer *sc = open_scorer(LLAMA3, 12, 1);
    const sft_record *p = &rec;
    sft_record_scores s;
    sft_err err;
    CHECK(sc && sft_scorer_run(sc, &p, 1, 1, &s, &err) == 0);
    CHECK(s.truncated);
    CHECK(s.tokens < 8);
    sft_scorer_free(sc);
    sft_record_free(&rec);
}

typedef struct {
    const char *json;
    int flag; /* expected heuristic flag, -1 for a clean record */
} planted;

static const planted heuristic_cases[] = {
    {"{\"instruction\": \"What is 17 + 25?\", \"output\": \"42\"}", -1},
    {"{\"instruction\": \"Explain rain.\", \"output\": \"Rain forms when water vapour in the air cools, "
     "condenses "
     "into droplets around tiny particles, and the droplets grow heavy enough to fall.\"}",
     -1},
    {"{\"instruction\": \"Is it Paris or Rome?\", \"output\": \"Paris\"}", -1},
    {"{\"instruction\": \"Describe the sea.\", \"output\": \"  \"}", SFT_HEUR_EMPTY_TURN},
    {"{\"instruction\": \"Draw a line.\", \"output\": \"----------\"}", SFT_HEUR_NO_WORDS},
    {"{\"instruction\": \"Your opinion?\", \"output\": \"As an AI language model, I do not have opinions.\"}",
     SFT_HEUR_REFUSAL},
    {"{\"instruction\": \"Tell a story.\", \"output\": \"the cat sat on the mat the cat sat on the mat the "
     "cat "
     "sat on the mat the cat sat on the mat.\"}",
     SFT_HEUR_REPETITION},
    {"{\"instruction\": \"Explain binary.\", \"output\": \"Binary numbers use only the digits zero and one, "
     "and "
     "every position stands for a power of two, so that the number five is written as\"}",
     SFT_HEUR_CUT_OFF},
    {"{\"instruction\": \"Summarise: the quick brown fox jumps over the lazy dog while the farmer sleeps in "
     "the warm barn\", \"output\": \"The quick brown fox jumps over the lazy dog while the farmer sleeps in "
     "the "
     "warm barn.\"}",
     SFT_HEUR_COPIES_PROMPT},
    {"{\"instruction\": \"Repeat after me: good night\", \"output\": \"repeat after me:  Good night\"}",
     SFT_HEUR_COPIES_PROMPT},
    /* a reversed list shares trigrams with its prompt by chance: too short to judge */
    {"{\"instruction\": \"Reverse the order of: 6 2 6 6 2\", \"output\": \"2 6 6 2 6\"}", -1},
    {"{\"instruction\": \"Say hi.\", \"output\": \"hi\\u0001\\u0002\\u0003\"}", SFT_HEUR_NONPRINTABLE},
};

TEST(heuristic_checks_fire_on_their_planted_records_only) {
    sft_score_options o;
    sft_score_options_default(&o);
    sft_err err;
    sft_scorer *sc = sft_scorer_open(&o, &err);
    CHECK(sc != NULL && !sft_scorer_has_model(sc));
    size_t n = sizeof heuristic_cases / sizeof heuristic_cases[0];
    for (size_t i = 0; i < n; i++) {
        sft_record rec;
        CHECK(parse_record(&rec, heuristic_cases[i].json, SFT_FORMAT_ALPACA) == 0);
        const sft_record *p = &rec;
        sft_record_scores s;
        CHECK(sft_scorer_run(sc, &p, 1, 1, &s, &err) == 0);
        int want = heuristic_cases[i].flag;
        if (want < 0) {
            if (s.flags || s.heuristic != 1.0) fprintf(stderr, "  clean case %zu: flags %x\n", i, s.flags);
            CHECK(s.flags == 0 && s.heuristic == 1.0);
        } else {
            if (s.flags != (1u << want))
                fprintf(stderr, "  case %zu: flags %x, want %s\n", i, s.flags, sft_heuristic_name(want));
            CHECK(s.flags == (1u << want));
            CHECK(s.heuristic < 1.0);
        }
        sft_record_free(&rec);
    }
    sft_scorer_free(sc);
}

TEST(score_keeps_every_field_and_filter_uses_the_scores) {
    const char *in = sft_test_tmp_path("in.jsonl"), *out = sft_test_tmp_path("out.jsonl"), *kept = sft_test_tmp_path("kept.jsonl");
    sft_test_write_text(
        in, "{\"id\": 7, \"meta\": {\"src\": \"x\", \"n\": [1, 2.5]}, \"messages\": [{\"role\": \"user\", "
            "\"content\": \"Hi \\u00e9\"}, {\"role\": \"assistant\", \"content\": \"Hello there, friend.\", "
            "\"weight\": 1}], \"sft_scores\": {\"heuristic\": 0.01}}\n"
            "{\"id\": 8, \"messages\": [{\"role\": \"user\", \"content\": \"Opinion?\"}, {\"role\": "
            "\"assistant\", \"content\": \"As an AI language model, I cannot say.\"}]}\n");
    const char *inputs[] = {in};
    sft_data_io io = {inputs, 1, SFT_FORMAT_AUTO, 0, out, NULL, 0};
    sft_score_options o;
    sft_score_options_default(&o);
    o.model_dir = LLAMA3;
    o.max_len = 64;
    o.batch_size = 2;
    sft_score_summary s;
    sft_err err;
    CHECK(sft_data_score(&io, &o, &s, &err) == 0);
    CHECK_INT(s.records, 2);
    CHECK_INT(s.with_model, 2);
    CHECK_INT(s.with_ifd, 2);
    json_t *b = NULL;
    /* every input field is there with its value; the old sft_scores replaced */
    char *text;
    size_t len;
    CHECK(sft_read_file(out, &text, &len, &err) == 0);
    char *line2 = strchr(text, '\n');
    *line2 = 0;
    b = sft_json_loadb(text, strlen(text), "out", &err);
    const char *orig_text =
        "{\"id\": 7, \"meta\": {\"src\": \"x\", \"n\": [1, 2.5]}, \"messages\": [{\"role\": \"user\", "
        "\"content\": "
        "\"Hi \\u00e9\"}, {\"role\": \"assistant\", \"content\": \"Hello there, friend.\", \"weight\": 1}]}";
    json_t *orig = sft_json_loadb(orig_text, strlen(orig_text), "orig", &err);
    CHECK(b != NULL && orig != NULL);
    if (b && orig) {
        const char *key;
        json_t *v;
        json_object_foreach(orig, key, v) CHECK(json_equal(v, json_object_get(b, key)));
        json_t *scores = json_object_get(b, "sft_scores");
        double h = 0;
        CHECK(sft_json_number(json_object_get(scores, "heuristic"), &h) == 0 && h == 1.0);
        CHECK(json_object_get(scores, "ppl") && json_object_get(scores, "ifd"));
        CHECK_INT(json_object_size(b), json_object_size(orig) + 1);
    }
    json_decref(b);
    json_decref(orig);
    free(text);
    /* filter on the stored scores: the refusal has a low heuristic score */
    sft_filter_options fo;
    sft_filter_options_default(&fo);
    fo.check_refusal = 0;
    fo.min_score = 0.5;
    const char *scored[] = {out};
    sft_data_io fio = {scored, 1, SFT_FORMAT_AUTO, 0, kept, NULL, 0};
    sft_filter_summary fs;
    CHECK(sft_data_filter(&fio, &fo, &fs, &err) == 0);
    CHECK_INT(fs.kept, 1);
    CHECK_INT(fs.per_rule[SFT_RULE_LOW_SCORE], 1);
    /* --max-ifd on records without scores and without a model: a clear error */
    sft_filter_options_default(&fo);
    fo.max_ifd = 0.9;
    sft_data_io raw = {inputs, 1, SFT_FORMAT_AUTO, 0, kept, NULL, 0};
    CHECK(sft_data_filter(&raw, &fo, &fs, &err) != 0);
    CHECK_ERR_HAS(err.msg, "in.jsonl:1");
    CHECK_ERR_HAS(err.msg, "sft data score --model");
}

TEST(a_tokenizer_that_does_not_fit_the_model_is_refused) {
    sft_score_options o;
    sft_score_options_default(&o);
    o.model_dir = GPT2;
    o.tokenizer_dir = LLAMA3;
    sft_err err;
    CHECK(sft_scorer_open(&o, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "does not fit the model");
    CHECK_ERR_HAS(err.msg, "llama3-tiny");
}

/* The training masking, exactly: the token-weighted mean of the records'
 * losses equals the validation loss the trainer computes on the same file. */
TEST(loss_equals_the_trainers_validation_loss) {
    const char *path = sft_test_tmp_path("val.jsonl");
    char text[2048] = "";
    for (int i = 0; i < 3; i++) {
        strcat(text, chat_records[i]);
        strcat(text, "\n");
    }
    sft_test_write_text(path, text);
    sft_session s;
    sft_err err;
    CHECK(sft_session_open(&s, LLAMA3, NULL, NULL, 1, &err) == 0);
    sft_encoder enc;
    CHECK(sft_encoder_init(&enc, s.tok, s.tmpl, LLAMA3, &err) == 0);
    sft_dataset ds = {0};
    sft_dataset_options dopt = {.format = SFT_FORMAT_AUTO, .max_len = 64, .cache_dir = ""};
    CHECK(sft_dataset_load(&ds, &path, 1, &enc, &dopt, &err) == 0);
    CHECK(sft_model_plan(s.model, 3, 64, &err) == 0);
    double val_loss;
    int64_t val_tokens;
    CHECK(sft_eval_dataset(s.model, &ds, 3, 0, &val_loss, &val_tokens, &err) == 0);
    sft_dataset_free(&ds);
    sft_session_close(&s);

    sft_record recs[3];
    const sft_record *ptrs[3];
    for (int i = 0; i < 3; i++) {
        CHECK(parse_record(&recs[i], chat_records[i], SFT_FORMAT_MESSAGES) == 0);
        ptrs[i] = &recs[i];
    }
    sft_scorer *sc = open_scorer(LLAMA3, 64, 2);
    sft_record_scores scores[3];
    CHECK(sc && sft_scorer_run(sc, ptrs, 3, 1, scores, &err) == 0);
    double sum = 0;
    long tokens = 0;
    for (int i = 0; i < 3; i++) {
        sum += scores[i].loss * (double)scores[i].tokens;
        tokens += scores[i].tokens;
        sft_record_free(&recs[i]);
    }
    CHECK_INT(tokens, val_tokens);
    CHECK_NEAR(sum / (double)tokens, val_loss, 1e-5);
    sft_scorer_free(sc);
}

TEST(an_adapter_is_merged_and_named) {
    sft_record rec;
    CHECK(parse_record(&rec, chat_records[0], SFT_FORMAT_MESSAGES) == 0);
    const sft_record *p = &rec;
    sft_score_options o;
    sft_score_options_default(&o);
    o.model_dir = "tests/fixtures/hf/models/llama2-tiny";
    o.max_len = 64;
    sft_err err;
    sft_scorer *base = sft_scorer_open(&o, &err);
    o.adapter_dir = "tests/fixtures/hf/models/llama2-tiny-lora";
    sft_scorer *adapted = sft_scorer_open(&o, &err);
    CHECK(base && adapted);
    if (base && adapted) {
        sft_record_scores a, b;
        CHECK(sft_scorer_run(base, &p, 1, 1, &a, &err) == 0);
        CHECK(sft_scorer_run(adapted, &p, 1, 1, &b, &err) == 0);
        /* the fixture adapter is trained: it moves the loss */
        CHECK(fabs(a.loss - b.loss) > 1e-4);
        json_t *j = sft_record_scores_json(adapted, &b);
        CHECK_STR(json_string_value(json_object_get(j, "adapter")), o.adapter_dir);
        json_decref(j);
    }
    sft_scorer_free(base);
    sft_scorer_free(adapted);
    sft_record_free(&rec);
}
