/* test_model_chunked.c: the loss head in row chunks (model.h:
 * sft_model_forward_backward for training, sft_model_forward_loss for
 * evaluation) against the full-logits pair sft_model_forward +
 * sft_model_backward, on the fixture models (GPT-2 with a tied lm_head,
 * Llama 2 with an untied one, Llama 3 with a 128256-token vocabulary, LoRA):
 * the same loss, lse and gradients for any chunk size (1 row, sizes that do
 * not divide the supervised rows, one chunk, more than the batch), masked
 * rows inside and between chunks, dropout; evaluation's loss and per-token
 * losses bit for bit; the full logits never allocated by training or
 * evaluation; a backward without its full forward refused. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "model/model.h"
#include "test.h"

#define GPT2_DIR "tests/fixtures/hf/models/gpt2-tiny"
#define LLAMA2_DIR "tests/fixtures/hf/models/llama2-tiny"
#define LLAMA3_DIR "tests/fixtures/hf/models/llama3-tiny"

#define MAX_TOKENS 64

typedef struct {
    int32_t tokens[MAX_TOKENS], targets[MAX_TOKENS], pos[MAX_TOKENS], seq[MAX_TOKENS];
    sft_batch batch;
} batch_buf;

/* Random tokens and targets below V; the first `prompt` positions of each row
 * are masked (-100) as a chat prompt is, and every 7th position after them
 * too, so that chunks of the supervised rows are gathered across gaps. */
static void make_batch(batch_buf *bb, int B, int T, int V, unsigned seed, int prompt) {
    long supervised = 0;
    for (int i = 0; i < B * T; i++) {
        seed = seed * 1103515245u + 12345u;
        int t = i % T;
        bb->tokens[i] = (int32_t)((seed >> 8) % (unsigned)V);
        bb->targets[i] = t < prompt || i % 7 == 5 ? SFT_IGNORE_INDEX : (int32_t)((seed >> 3) % (unsigned)V);
        bb->pos[i] = t;
        bb->seq[i] = 0;
        supervised += bb->targets[i] != SFT_IGNORE_INDEX;
    }
    /* as a micro-batch of a larger optimizer step: the scale is not 1/supervised */
    bb->batch = (sft_batch){B, T, bb->tokens, bb->targets, bb->pos, bb->seq, supervised + 9};
}

static sft_model *load_full(const char *dir) {
    sft_err err;
    sft_model *m = sft_model_load(dir, &err);
    if (!m) {
        fprintf(stderr, "  load %s: %s\n", dir, err.msg);
        return NULL;
    }
    if (sft_model_train_full(m, &err)) fprintf(stderr, "  train_full: %s\n", err.msg);
    return m;
}

/* A LoRA model with non-zero B (so both adapter matrices get gradients) and
 * adapter dropout: the trainable set is the adapters, lm_head is frozen. */
static sft_model *load_lora(const char *dir) {
    sft_err err;
    sft_model *m = sft_model_load(dir, &err);
    if (!m) return NULL;
    sft_lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.1f};
    sft_lora_default_targets(m, &lc);
    if (sft_lora_attach(m, &lc, 3, &err)) fprintf(stderr, "  lora: %s\n", err.msg);
    for (size_t i = 0; i < m->adapters.numel; i++)
        m->adapters.data[i] += 0.05f * (float)((int)(i % 11) - 5);
    m->training = 1;
    return m;
}

typedef struct {
    double loss;
    float *grad, *lse;
} step_result;

static void step_free(step_result *r) {
    free(r->grad);
    free(r->lse);
}

/* One micro-step from zeroed gradients at a fixed dropout step, by the full
 * pair (chunked 0) or the chunked entry. */
static int run_step(sft_model *m, const sft_batch *b, int chunked, step_result *r) {
    sft_err err;
    size_t n = m->trainable->numel, N = (size_t)b->B * b->T;
    r->grad = malloc(n * sizeof(float));
    r->lse = malloc(N * sizeof(float));
    m->dropout_step = 40;
    sft_model_zero_grad(m);
    int rc =
        chunked ? sft_model_forward_backward(m, b, &r->loss, &err) : sft_model_forward(m, b, &r->loss, &err);
    if (rc) fprintf(stderr, "  step: %s\n", err.msg);
    if (!chunked && !rc) rc = sft_model_backward(m, b);
    memcpy(r->grad, m->trainable->grad, n * sizeof(float));
    memcpy(r->lse, m->lse, N * sizeof(float));
    return rc;
}

/* The chunked step against the full pair for several chunk sizes. The
 * gradients differ by float rounding only: the fused cross-entropy's
 * gradient is within ~1 float ulp of the separate pair's (ops.h) and
 * dlm_head is summed chunk by chunk, so 2e-5 of the largest gradient
 * (float32 has 6e-8) bounds it; a lost, doubled or misplaced row moves
 * gradients by O(1) of their scale. */
static void check_chunked_training(sft_model *m, const char *what, int B, int T, int prompt) {
    if (!m) {
        sft_test_failures++;
        return;
    }
    batch_buf bb;
    make_batch(&bb, B, T, m->cfg.vocab_size, 17, prompt);
    const int N = B * T;
    const int sizes[] = {1, 2, 5, 7, N, N + 3, 0};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        sft_err err;
        m->loss_chunk_rows = sizes[si];
        CHECK(sft_model_plan(m, B, T, &err) == 0);
        step_result chunk, full;
        CHECK(run_step(m, &bb.batch, 1, &chunk) == 0);
        CHECK(m->logits == NULL); /* training never holds the full logits */
        CHECK(run_step(m, &bb.batch, 0, &full) == 0);
        double worst = 0, scale = 0, lse_worst = 0;
        for (size_t i = 0; i < m->trainable->numel; i++) {
            worst = fmax(worst, fabs((double)chunk.grad[i] - full.grad[i]));
            scale = fmax(scale, fabs(full.grad[i]));
        }
        for (int i = 0; i < N; i++) {
            if (bb.targets[i] == SFT_IGNORE_INDEX) {
                CHECK(isnan(chunk.lse[i]));
                continue;
            }
            lse_worst = fmax(lse_worst, fabs((double)chunk.lse[i] - full.lse[i]) / fabs(full.lse[i]));
        }
        if (!(fabs(chunk.loss - full.loss) <= 1e-6 * fabs(full.loss)) || !(worst <= 2e-5 * scale) ||
            !(scale > 0) || !(lse_worst <= 1e-6)) {
            fprintf(
                stderr,
                "  %s, chunk %d rows: loss %.9g vs %.9g, gradient off by %.3g of scale %.3g, lse by %.3g\n",
                what, sizes[si], chunk.loss, full.loss, worst, scale, lse_worst);
            sft_test_failures++;
        }
        step_free(&chunk);
        step_free(&full);
    }
}

TEST(chunked_step_equals_forward_and_backward_gpt2_tied_head) {
    sft_model *m = load_full(GPT2_DIR);
    check_chunked_training(m, "gpt2", 2, 12, 3);
    sft_model_free(m);
}

TEST(chunked_step_equals_forward_and_backward_gpt2_with_dropout) {
    sft_model *m = load_full(GPT2_DIR);
    if (m) m->cfg.embedding_dropout = 0.1, m->cfg.attention_dropout = 0.2, m->cfg.residual_dropout = 0.15;
    check_chunked_training(m, "gpt2 dropout", 2, 12, 3);
    sft_model_free(m);
}

TEST(chunked_step_equals_forward_and_backward_llama2_untied_head) {
    sft_model *m = load_full(LLAMA2_DIR);
    CHECK(m && m->lm_head != m->wte);
    check_chunked_training(m, "llama2", 3, 8, 2);
    sft_model_free(m);
}

TEST(chunked_step_equals_forward_and_backward_llama3_large_vocabulary) {
    sft_model *m = load_full(LLAMA3_DIR);
    check_chunked_training(m, "llama3", 2, 10, 4);
    sft_model_free(m);
}

TEST(chunked_step_equals_forward_and_backward_lora_with_frozen_head) {
    sft_model *m = load_lora(LLAMA2_DIR);
    CHECK(m && m->dlm_head == NULL);
    check_chunked_training(m, "llama2 lora", 2, 12, 3);
    sft_model_free(m);
    m = load_lora(GPT2_DIR);
    check_chunked_training(m, "gpt2 lora", 2, 12, 3);
    sft_model_free(m);
}

TEST(a_micro_batch_without_supervised_rows_adds_nothing) {
    sft_model *m = load_full(GPT2_DIR);
    if (!m) return;
    sft_err err;
    CHECK(sft_model_plan(m, 1, 8, &err) == 0);
    batch_buf bb;
    make_batch(&bb, 1, 8, m->cfg.vocab_size, 5, 8); /* all masked */
    bb.batch.step_supervised_tokens = 12;           /* other micro-batches of the step have targets */
    for (size_t i = 0; i < m->trainable->numel; i++)
        m->trainable->grad[i] = 0.25f;
    double loss = NAN;
    CHECK(sft_model_forward_backward(m, &bb.batch, &loss, &err) == 0);
    CHECK(loss == 0.0);
    int unchanged = 1;
    for (size_t i = 0; i < m->trainable->numel; i++)
        unchanged &= m->trainable->grad[i] == 0.25f;
    CHECK(unchanged);
    sft_model_free(m);
}

/* Evaluation sums the same per-row terms in the same order as the full
 * forward; the lm_head product gives each row's logits the same bits
 * whatever the number of rows it runs on, so the loss is equal bit for bit. */
static void check_chunked_evaluation(const char *dir, int chunk_rows) {
    sft_model *m = load_full(dir);
    if (!m) {
        sft_test_failures++;
        return;
    }
    sft_err err;
    m->training = 0;
    m->loss_chunk_rows = chunk_rows;
    const int B = 2, T = 12, N = B * T, V = m->cfg.vocab_size;
    CHECK(sft_model_plan(m, B, T, &err) == 0);
    batch_buf bb;
    make_batch(&bb, B, T, V, 23, 2);
    double chunked = NAN, full = NAN, nll[MAX_TOKENS];
    CHECK(sft_model_forward_loss(m, &bb.batch, &chunked, nll, &err) == 0);
    CHECK(m->logits == NULL);
    CHECK(sft_model_forward(m, &bb.batch, &full, &err) == 0);
    CHECK(chunked == full);
    int same = 1;
    for (int i = 0; i < N; i++) {
        if (bb.targets[i] == SFT_IGNORE_INDEX) {
            same &= isnan(nll[i]) != 0;
            continue;
        }
        double want = (double)m->lse[i] - (double)m->logits[(size_t)i * V + bb.targets[i]];
        same &= nll[i] == want;
    }
    CHECK(same);
    sft_model_free(m);
}

TEST(chunked_evaluation_gives_the_forward_loss_and_token_losses_bit_for_bit) {
    check_chunked_evaluation(GPT2_DIR, 5);
    check_chunked_evaluation(LLAMA2_DIR, 0);
    check_chunked_evaluation(LLAMA3_DIR, 7);
}

TEST(backward_needs_its_full_forward) {
    sft_model *m = load_full(GPT2_DIR);
    if (!m) return;
    sft_err err;
    CHECK(sft_model_plan(m, 2, 6, &err) == 0);
    batch_buf bb, other;
    make_batch(&bb, 2, 6, m->cfg.vocab_size, 9, 1);
    make_batch(&other, 1, 6, m->cfg.vocab_size, 9, 1);
    double loss;
    sft_model_zero_grad(m);
    CHECK(sft_model_backward(m, &bb.batch) == -1); /* no forward yet */
    CHECK(sft_model_forward_backward(m, &bb.batch, &loss, &err) == 0);
    CHECK(sft_model_backward(m, &bb.batch) == -1); /* the chunked step has no full logits */
    CHECK(sft_model_forward(m, &bb.batch, &loss, &err) == 0);
    CHECK(sft_model_backward(m, &other.batch) == -1); /* another batch shape */
    CHECK(sft_model_backward(m, &bb.batch) == 0);
    CHECK(sft_model_backward(m, &bb.batch) == -1); /* the logits hold their gradient now */
    CHECK(sft_model_forward(m, &bb.batch, &loss, &err) == 0);
    CHECK(sft_model_forward_loss(m, &bb.batch, &loss, NULL, &err) == 0);
    CHECK(sft_model_backward(m, &bb.batch) == -1); /* the last forward was the chunked one */
    sft_model_free(m);
}

static sft_model *head_model(int vocab) {
    /* one GPT-2 layer of width 8 with a real vocabulary */
    sft_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = SFT_ARCH_GPT2;
    snprintf(c.model_type, sizeof c.model_type, "gpt2");
    snprintf(c.hidden_act, sizeof c.hidden_act, "gelu_new");
    c.vocab_size = vocab, c.hidden_size = 8, c.num_layers = 1, c.num_heads = 2, c.num_kv_heads = 2;
    c.intermediate_size = 16, c.max_position_embeddings = 256, c.norm_eps = 1e-5, c.tie_word_embeddings = 1;
    c.bos_token_id = c.pad_token_id = -1;
    sft_err err;
    sft_model *m = sft_model_create(&c, &err);
    if (!m) fprintf(stderr, "  create: %s\n", err.msg);
    return m;
}

TEST(the_chunk_has_at_least_512_rows_more_within_64_mib_never_more_than_the_batch) {
    const struct {
        int vocab, B, T, rows;
    } cases[] = {
        {151936, 4, 2048, 512}, /* Qwen2: 64 MiB would be 110 rows, too few for the products */
        {128256, 4, 2048, 512}, /* Llama 3 */
        {50257, 4, 256, 512},   /* GPT-2 */
        {32000, 4, 2048, 524},  /* Llama 2: 64 MiB / (32000 x 4 bytes) */
        {8000, 4, 2048, 2097},  {8000, 2, 1000, 2000}, /* never more than the batch */
        {50257, 1, 100, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sft_model *m = head_model(cases[i].vocab);
        if (!m) {
            sft_test_failures++;
            continue;
        }
        CHECK_INT(sft_model_loss_chunk_rows(m, cases[i].B, cases[i].T), cases[i].rows);
        m->loss_chunk_rows = 3;
        CHECK_INT(sft_model_loss_chunk_rows(m, cases[i].B, cases[i].T), 3);
        sft_model_free(m);
    }
}

TEST(the_plan_holds_one_chunk_of_logits_not_the_batch) {
    /* GPT-2's vocabulary at 4 x 256: the full logits would be 1024 x 50257
     * floats (206 MB), the chunk is 512 rows */
    sft_model *m = head_model(50257);
    if (!m) {
        sft_test_failures++;
        return;
    }
    sft_err err;
    CHECK(sft_model_plan(m, 4, 256, &err) == 0);
    CHECK_INT(m->chunk_rows, 512);
    CHECK(m->logits == NULL);
    CHECK(m->arena_floats < (size_t)600 * 50257);
    sft_model_free(m);
}
