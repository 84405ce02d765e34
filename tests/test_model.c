/* test_model.c: the model families of src/model as a whole: loading errors
 * name the tensor or key; packed records behave exactly like separate ones;
 * gradient accumulation equals one big batch; the backward matches finite
 * differences of the loss for every family feature (GPT-2, Llama with q/k/v
 * biases, llama3 rope, one KV head, LoRA with dropout); LoRA files round-trip
 * and merge; KV-cache generation agrees with the full forward. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "model/generate.h"
#include "model/lora.h"
#include "model/model.h"
#include "test.h"

#define GPT2_DIR "tests/fixtures/hf/models/gpt2-tiny"
#define LLAMA3_DIR "tests/fixtures/hf/models/llama3-tiny"

/* ------------------------------------------------------------- helpers */

static sft_model_config tiny_config(sft_arch arch) {
    sft_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = arch;
    snprintf(c.model_type, sizeof c.model_type, "%s", arch == SFT_ARCH_GPT2 ? "gpt2" : "llama");
    c.vocab_size = 37;
    c.hidden_size = 16;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 4;
    c.head_dim = 4;
    c.intermediate_size = 24;
    c.max_position_embeddings = 32;
    c.norm_eps = 1e-5;
    c.initializer_range = 0.2; /* large weights: gradients well above float32 noise */
    c.tie_word_embeddings = 1;
    snprintf(c.hidden_act, sizeof c.hidden_act, "%s", arch == SFT_ARCH_GPT2 ? "gelu_new" : "silu");
    c.rope_theta = 10000.0;
    c.bos_token_id = -1;
    c.pad_token_id = -1;
    return c;
}

typedef struct {
    int B, T;
    int32_t tokens[64], targets[64], pos[64], seq[64];
    sft_batch batch;
} batch_buf;

static void make_batch(batch_buf *bb, int B, int T, int V, unsigned seed) {
    bb->B = B, bb->T = T;
    long sup = 0;
    for (int i = 0; i < B * T; i++) {
        seed = seed * 1103515245u + 12345u;
        bb->tokens[i] = (int32_t)((seed >> 8) % (unsigned)V);
        bb->targets[i] = (i % 5 == 3) ? SFT_IGNORE_INDEX : (int32_t)((seed >> 16) % (unsigned)V);
        bb->pos[i] = i % T;
        bb->seq[i] = 0;
        sup += bb->targets[i] != SFT_IGNORE_INDEX;
    }
    bb->batch = (sft_batch){B, T, bb->tokens, bb->targets, bb->pos, bb->seq, sup};
}

static double loss_of(sft_model *m, const sft_batch *b) {
    double loss = NAN;
    sft_err err;
    if (sft_model_forward(m, b, &loss, &err)) fprintf(stderr, "  forward: %s\n", err.msg);
    return loss;
}

/* Directional finite differences of the float32 loss along random
 * directions of the trainable set against grad . direction. With weights of
 * scale 0.2 and a step of 1e-2 along a unit direction, the central difference
 * is accurate to ~1e-3 relative; a wrong gradient formula is off by O(1). */
static void check_model_gradient(sft_model *m, const sft_batch *b, const char *what) {
    sft_param_set *set = m->trainable;
    float *dir = malloc(set->numel * sizeof(float));
    float *base = malloc(set->numel * sizeof(float));
    memcpy(base, set->data, set->numel * sizeof(float));
    /* each training forward draws new dropout masks; replay the same step so
     * that every evaluation below sees the masks of the backward */
    const uint64_t step0 = m->dropout_step;
    sft_model_zero_grad(m);
    loss_of(m, b);
    sft_model_backward(m, b);
    unsigned s = 7;
    for (int trial = 0; trial < 3; trial++) {
        double norm = 0, gd = 0;
        for (size_t i = 0; i < set->numel; i++) {
            s = s * 1664525u + 1013904223u;
            dir[i] = (float)(((s >> 9) / 8388608.0) - 0.5);
            norm += (double)dir[i] * dir[i];
        }
        norm = sqrt(norm);
        for (size_t i = 0; i < set->numel; i++)
            dir[i] = (float)(dir[i] / norm), gd += (double)dir[i] * set->grad[i];
        const double h = 1e-2;
        for (size_t i = 0; i < set->numel; i++)
            set->data[i] = base[i] + (float)(h * dir[i]);
        m->dropout_step = step0;
        double lp = loss_of(m, b);
        for (size_t i = 0; i < set->numel; i++)
            set->data[i] = base[i] - (float)(h * dir[i]);
        m->dropout_step = step0;
        double lm = loss_of(m, b);
        memcpy(set->data, base, set->numel * sizeof(float));
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(fd - gd) <= 1e-2 * fabs(gd) + 1e-4)) {
            fprintf(stderr, "  %s: direction %d: finite difference %.6g, gradient %.6g\n", what, trial, fd,
                    gd);
            sft_test_failures++;
        }
    }
    free(dir);
    free(base);
}

static sft_model *tiny_model(sft_model_config cfg, int B, int T, int full) {
    sft_err err;
    sft_model *m = sft_model_create(&cfg, &err);
    if (!m) {
        fprintf(stderr, "  create: %s\n", err.msg);
        return NULL;
    }
    sft_model_init_weights(m, 42);
    if (full && sft_model_train_full(m, &err)) fprintf(stderr, "  train_full: %s\n", err.msg);
    if (full && sft_model_plan(m, B, T, &err)) fprintf(stderr, "  plan: %s\n", err.msg);
    return m;
}

/* --------------------------------------------------- gradients of models */

TEST(gpt2_backward_matches_finite_differences_of_the_loss) {
    sft_model *m = tiny_model(tiny_config(SFT_ARCH_GPT2), 2, 6, 1);
    batch_buf bb;
    make_batch(&bb, 2, 6, 37, 1);
    check_model_gradient(m, &bb.batch, "gpt2");
    sft_model_free(m);
}

TEST(gpt2_with_embedding_attention_and_residual_dropout_matches_finite_differences) {
    sft_model_config c = tiny_config(SFT_ARCH_GPT2);
    c.embedding_dropout = 0.1, c.attention_dropout = 0.2, c.residual_dropout = 0.15;
    sft_model *m = tiny_model(c, 2, 6, 1);
    batch_buf bb;
    make_batch(&bb, 2, 6, 37, 6);
    check_model_gradient(m, &bb.batch, "gpt2 dropout");
    /* dropout is on in training only: evaluation is deterministic and differs */
    double train1 = loss_of(m, &bb.batch), train2 = loss_of(m, &bb.batch);
    m->training = 0;
    double eval1 = loss_of(m, &bb.batch), eval2 = loss_of(m, &bb.batch);
    CHECK(train1 != train2); /* a new mask per step */
    CHECK(eval1 == eval2);
    sft_model_free(m);
}

TEST(llama_with_qkv_biases_untied_head_and_one_kv_head_matches_finite_differences) {
    sft_model_config c = tiny_config(SFT_ARCH_LLAMA);
    c.attention_bias = 1; /* Qwen2's q/k/v biases */
    c.num_kv_heads = 1;
    c.tie_word_embeddings = 0;
    sft_model *m = tiny_model(c, 2, 6, 1);
    /* biases start at zero: give them values so their gradient path matters */
    for (int i = 0; i < m->weights.count; i++)
        if (strstr(m->weights.tensors[i].name, ".bias"))
            for (size_t j = 0; j < m->weights.tensors[i].numel; j++)
                m->weights.data[m->weights.tensors[i].offset + j] = 0.1f * (float)((j % 7) - 3);
    batch_buf bb;
    make_batch(&bb, 2, 6, 37, 2);
    check_model_gradient(m, &bb.batch, "llama+bias+1kv");
    sft_model_free(m);
}

TEST(llama3_rope_scaling_with_grouped_kv_heads_matches_finite_differences) {
    sft_model_config c = tiny_config(SFT_ARCH_LLAMA);
    c.num_kv_heads = 2;
    c.head_dim = 8; /* head_dim independent of hidden_size / heads */
    c.rope_type = SFT_ROPE_LLAMA3;
    c.rope_theta = 500000.0;
    c.rope_factor = 8, c.rope_low_freq_factor = 1, c.rope_high_freq_factor = 4,
    c.rope_original_max_position = 16;
    sft_model *m = tiny_model(c, 1, 12, 1);
    batch_buf bb;
    make_batch(&bb, 1, 12, 37, 3);
    check_model_gradient(m, &bb.batch, "llama3 rope");
    sft_model_free(m);
}

TEST(lora_with_dropout_backward_matches_finite_differences) {
    sft_model_config c = tiny_config(SFT_ARCH_LLAMA);
    sft_model *m = tiny_model(c, 2, 5, 0);
    sft_err err;
    sft_lora_config lc = {.r = 3, .alpha = 6, .dropout = 0.3};
    sft_lora_default_targets(m, &lc);
    CHECK(sft_lora_attach(m, &lc, 9, &err) == 0);
    CHECK(sft_model_plan(m, 2, 5, &err) == 0);
    CHECK(m->trainable == &m->adapters && m->weights.grad == NULL);
    /* B starts at zero; make it non-zero so both adapter matrices matter */
    for (size_t i = 0; i < m->adapters.numel; i++)
        m->adapters.data[i] += 0.05f * (float)((int)(i % 11) - 5);
    m->training = 1;
    batch_buf bb;
    make_batch(&bb, 2, 5, 37, 4);
    /* dropout draws a new mask per forward; hold the step fixed so every
     * evaluation of the finite difference sees the same mask */
    m->dropout_step = 100;
    sft_param_set *set = m->trainable;
    float *g = malloc(set->numel * sizeof(float));
    sft_model_zero_grad(m);
    double l0 = loss_of(m, &bb.batch);
    sft_model_backward(m, &bb.batch);
    memcpy(g, set->grad, set->numel * sizeof(float));
    double norm = 0;
    for (size_t i = 0; i < set->numel; i++)
        norm += (double)g[i] * g[i];
    norm = sqrt(norm);
    const double h = 1e-2;
    for (size_t i = 0; i < set->numel; i++)
        set->data[i] += (float)(h * g[i] / norm);
    m->dropout_step = 100;
    double lp = loss_of(m, &bb.batch);
    for (size_t i = 0; i < set->numel; i++)
        set->data[i] -= (float)(2 * h * g[i] / norm);
    m->dropout_step = 100;
    double lm = loss_of(m, &bb.batch);
    CHECK(isfinite(l0));
    CHECK_NEAR((lp - lm) / (2 * h), norm, 1e-2 * norm);
    free(g);
    sft_model_free(m);
}

/* -------------------------------------------------------------- packing */

/* Two records packed in one row (positions restart, seq ids differ) give the
 * same logits as each record alone. */
static void packing_case(const char *dir) {
    sft_err err;
    sft_model *m = sft_model_load(dir, &err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK(sft_model_plan(m, 1, 12, &err) == 0);
    const int V = m->cfg.vocab_size, L1 = 5, L2 = 7;
    int32_t tok[12], tgt[12], pos[12], seq[12];
    for (int i = 0; i < 12; i++) {
        tok[i] = (int32_t)((i * 7919 + 13) % V);
        tgt[i] = (int32_t)((i * 104729 + 5) % V);
        pos[i] = i < L1 ? i : i - L1;
        seq[i] = i < L1 ? 0 : 1;
    }
    double loss;
    sft_batch packed = {1, 12, tok, tgt, pos, seq, 12};
    CHECK(sft_model_forward(m, &packed, &loss, &err) == 0);
    float *packed_logits = malloc(sizeof(float) * 12 * V);
    memcpy(packed_logits, m->logits, sizeof(float) * 12 * V);
    double worst = 0;
    for (int r = 0; r < 2; r++) {
        int off = r ? L1 : 0, len = r ? L2 : L1;
        sft_batch alone = {1, len, tok + off, tgt + off, pos + off, seq + off, 12};
        CHECK(sft_model_forward(m, &alone, &loss, &err) == 0);
        for (int i = 0; i < len * V; i++)
            worst = fmax(worst, fabs(m->logits[i] - packed_logits[(size_t)off * V + i]));
    }
    /* same arithmetic on the same rows: only summation order may differ */
    CHECK(worst < 1e-5);
    free(packed_logits);
    sft_model_free(m);
}

TEST(packed_records_give_the_logits_of_each_record_alone_gpt2) {
    packing_case(GPT2_DIR);
}
TEST(packed_records_give_the_logits_of_each_record_alone_llama) {
    packing_case(LLAMA3_DIR);
}

/* ------------------------------------------------------- accumulation */

TEST(gradient_accumulation_equals_one_big_batch) {
    sft_model *m = tiny_model(tiny_config(SFT_ARCH_LLAMA), 2, 6, 1);
    batch_buf bb;
    make_batch(&bb, 2, 6, 37, 5);
    sft_param_set *set = m->trainable;
    sft_model_zero_grad(m);
    double big = loss_of(m, &bb.batch);
    sft_model_backward(m, &bb.batch);
    float *g_big = malloc(set->numel * sizeof(float));
    memcpy(g_big, set->grad, set->numel * sizeof(float));
    /* the same rows as two micro-batches of one row, normalised by the step's count */
    sft_model_zero_grad(m);
    double sum = 0;
    for (int r = 0; r < 2; r++) {
        sft_batch half = {1,
                          6,
                          bb.tokens + 6 * r,
                          bb.targets + 6 * r,
                          bb.pos + 6 * r,
                          bb.seq + 6 * r,
                          bb.batch.step_supervised_tokens};
        sum += loss_of(m, &half);
        sft_model_backward(m, &half);
    }
    CHECK_NEAR(sum, big, 1e-5 * big);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < set->numel; i++) {
        worst = fmax(worst, fabs(set->grad[i] - g_big[i]));
        scale = fmax(scale, fabs(g_big[i]));
    }
    CHECK(worst <= 1e-5 * scale);
    free(g_big);
    sft_model_free(m);
}

/* ------------------------------------------------------- load errors */

static char tmp_root[256];

static const char *tmp_model_dir(const char *name) {
    static char path[512];
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/sft_test_model_XXXXXX");
        if (!mkdtemp(tmp_root)) return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", tmp_root, name);
    sft_err err;
    sft_mkdir_p(path, &err);
    return path;
}

static void copy_file(const char *from, const char *to) {
    char *data;
    size_t len;
    sft_err err;
    if (sft_read_file(from, &data, &len, &err)) return;
    sft_write_file_atomic(to, data, len, &err);
    free(data);
}

/* Writes gpt2-tiny's config and its weights, with `drop` left out, `reshape`
 * given one fewer row, and `extra` added. */
static const char *broken_gpt2(const char *name, const char *drop, const char *reshape, const char *extra) {
    const char *dir = tmp_model_dir(name);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(GPT2_DIR "/config.json", path);
    sft_err err;
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    if (!m) return dir;
    sft_tensor_out out[64];
    size_t n = 0;
    for (int i = 0; i < m->weights.count; i++) {
        const sft_tensor *t = &m->weights.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        out[n] = (sft_tensor_out){.name = t->name,
                                  .ndim = t->ndim,
                                  .shape = {t->shape[0], t->shape[1]},
                                  .data = m->weights.data + t->offset};
        if (reshape && !strcmp(t->name, reshape)) out[n].shape[0]--;
        n++;
    }
    if (extra) out[n++] = (sft_tensor_out){.name = extra, .ndim = 1, .shape = {4}, .data = m->weights.data};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    sft_safetensors_write(path, out, n, SFT_DTYPE_F32, &err);
    sft_model_free(m);
    return dir;
}

TEST(missing_tensor_is_an_error_naming_it) {
    sft_err err = {0};
    const char *dir = broken_gpt2("missing", "transformer.h.1.mlp.c_fc.bias", NULL, NULL);
    CHECK(sft_model_load(dir, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "missing tensor 'transformer.h.1.mlp.c_fc.bias'");
    CHECK_ERR_HAS(err.msg, "[128]");
}

TEST(wrong_shape_is_an_error_naming_the_tensor_and_both_shapes) {
    sft_err err = {0};
    const char *dir = broken_gpt2("shape", NULL, "transformer.h.0.attn.c_attn.weight", NULL);
    CHECK(sft_model_load(dir, &err) == NULL);
    CHECK_ERR_HAS(err.msg,
                  "tensor 'transformer.h.0.attn.c_attn.weight' has shape [31, 96], expected [32, 96]");
}

TEST(unexpected_tensor_is_an_error_naming_it) {
    sft_err err = {0};
    const char *dir = broken_gpt2("extra", NULL, NULL, "transformer.h.0.attn.q_norm.weight");
    CHECK(sft_model_load(dir, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "unexpected tensor 'transformer.h.0.attn.q_norm.weight'");
}

TEST(unsupported_architecture_is_an_error_naming_the_key) {
    const char *dir = tmp_model_dir("bert");
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"bert\", \"architectures\": [\"BertModel\"], \"vocab_size\": 10}";
    sft_err err = {0};
    sft_write_file_atomic(path, cfg, strlen(cfg), &err);
    CHECK(sft_model_load(dir, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "bert");
}

TEST(tokenizer_larger_than_the_vocabulary_is_an_error) {
    sft_err err = {0};
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(sft_model_check_vocab(m, 50257, &err) == 0);
    CHECK(sft_model_check_vocab(m, 50000, &err) == 0); /* padded embedding tables are fine */
    CHECK(sft_model_check_vocab(m, 50259, &err) == -1);
    CHECK_ERR_HAS(err.msg, "tokenizer has 50259 tokens but config.json vocab_size is 50257");
    sft_model_free(m);
}

TEST(bad_batches_are_errors_not_crashes) {
    sft_model *m = tiny_model(tiny_config(SFT_ARCH_GPT2), 1, 4, 1);
    int32_t tok[4] = {1, 2, 99, 3}, tgt[4] = {1, -100, 2, 3}, pos[4] = {0, 1, 2, 3}, seq[4] = {0};
    sft_batch b = {1, 4, tok, tgt, pos, seq, 3};
    sft_err err = {0};
    double loss;
    CHECK(sft_model_forward(m, &b, &loss, &err) == -1);
    CHECK_ERR_HAS(err.msg, "token id 99 outside the vocabulary");
    tok[2] = 2, pos[3] = 40;
    CHECK(sft_model_forward(m, &b, &loss, &err) == -1);
    CHECK_ERR_HAS(err.msg, "position id 40 past n_positions 32");
    pos[3] = 3;
    b.T = 8;
    CHECK(sft_model_forward(m, &b, &loss, &err) == -1);
    CHECK_ERR_HAS(err.msg, "exceeds the planned 1 x 4");
    sft_model_free(m);
}

/* Sliding-window attention (Mistral): the logits of the last token equal
 * those of a forward over its window alone (RoPE is relative, so shifting the
 * positions does not change the scores); with the window off they differ. */
TEST(sliding_window_limits_attention_to_the_last_window_tokens) {
    sft_model_config c = tiny_config(SFT_ARCH_LLAMA);
    c.sliding_window = 3;
    c.num_layers = 1; /* one layer: token 5 sees exactly tokens 3..5 (two layers would widen the reach) */
    sft_model *m = tiny_model(c, 1, 6, 1);
    const int V = c.vocab_size;
    int32_t tok[6] = {1, 2, 3, 4, 5, 6}, tgt[6] = {1, 2, 3, 4, 5, 6}, pos[6] = {0, 1, 2, 3, 4, 5},
            seq[6] = {0};
    sft_batch full = {1, 6, tok, tgt, pos, seq, 6};
    sft_err err = {0};
    double loss;
    float last[37];
    CHECK(sft_model_forward(m, &full, &loss, &err) == 0);
    memcpy(last, m->logits + 5 * V, sizeof last);
    int32_t wpos[3] = {3, 4, 5};
    sft_batch window = {1, 3, tok + 3, tgt + 3, wpos, seq, 6};
    CHECK(sft_model_forward(m, &window, &loss, &err) == 0);
    double worst = 0;
    for (int v = 0; v < V; v++)
        worst = fmax(worst, fabs(m->logits[2 * V + v] - last[v]));
    CHECK(worst < 1e-5);
    m->cfg.sliding_window = 0; /* full attention: the earlier tokens now matter */
    CHECK(sft_model_forward(m, &full, &loss, &err) == 0);
    worst = 0;
    for (int v = 0; v < V; v++)
        worst = fmax(worst, fabs(m->logits[5 * V + v] - last[v]));
    CHECK(worst > 1e-4);
    sft_model_free(m);
}

TEST(kv_cache_generation_applies_the_sliding_window) {
    sft_model_config c = tiny_config(SFT_ARCH_LLAMA);
    c.sliding_window = 3;
    sft_model *m = tiny_model(c, 1, 10, 1);
    int32_t prompt[10] = {3, 7, 1, 9, 4, 4, 2, 8, 5, 6}, out[4];
    int n;
    sft_err err;
    sft_sampling greedy = {.greedy = 1};
    CHECK(sft_generate(m, prompt, 5, 4, &greedy, NULL, 0, out, &n, &err) == 0);
    int32_t tgt[10], pos[10], seq[10] = {0};
    memcpy(prompt + 5, out, sizeof out);
    for (int i = 0; i < 9; i++)
        tgt[i] = -100, pos[i] = i;
    sft_batch b = {1, 9, prompt, tgt, pos, seq, 1};
    double loss;
    CHECK(sft_model_forward(m, &b, &loss, &err) == 0);
    for (int i = 0; i < 4; i++) {
        const float *z = m->logits + (size_t)(4 + i) * c.vocab_size;
        int best = 0;
        for (int v = 1; v < c.vocab_size; v++)
            if (z[v] > z[best]) best = v;
        CHECK_INT(out[i], best);
    }
    sft_model_free(m);
}

/* ---------------------------------------------------------------- LoRA */

TEST(lora_adapter_round_trips_through_peft_files_and_merges) {
    sft_err err;
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    sft_lora_config lc = {.r = 4, .alpha = 8};
    CHECK(sft_lora_parse_targets(m, "c_attn, c_fc", &lc, &err) == 0);
    CHECK(sft_lora_attach(m, &lc, 3, &err) == 0);
    CHECK(sft_param_set_find(&m->adapters, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight") !=
          NULL);
    CHECK(sft_param_set_find(&m->adapters, "base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight") !=
          NULL);
    CHECK_INT(m->adapters.count, 8);
    for (size_t i = 0; i < m->adapters.numel; i++)
        m->adapters.data[i] += 0.01f * (float)((int)(i % 13) - 6);
    CHECK(sft_model_plan(m, 1, 8, &err) == 0);
    int32_t tok[8] = {10, 20, 30, 40, 50, 60, 70, 80}, tgt[8] = {20, 30, 40, 50, 60, 70, 80, -100};
    int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7}, seq[8] = {0};
    sft_batch b = {1, 8, tok, tgt, pos, seq, 7};
    double with_adapter = loss_of(m, &b);
    const char *dir = tmp_model_dir("adapter");
    CHECK(sft_lora_save(m, dir, GPT2_DIR, &err) == 0);

    sft_model *m2 = sft_model_load(GPT2_DIR, &err);
    CHECK(sft_lora_load(m2, dir, &err) == 0);
    CHECK(sft_model_plan(m2, 1, 8, &err) == 0);
    CHECK_NEAR(loss_of(m2, &b), with_adapter, 1e-6);
    double base_loss;
    {
        sft_model *m3 = sft_model_load(GPT2_DIR, &err);
        sft_model_plan(m3, 1, 8, &err);
        base_loss = loss_of(m3, &b);
        sft_model_free(m3);
    }
    CHECK(fabs(base_loss - with_adapter) > 1e-4); /* the adapter changes the output */
    /* merged: a plain model with the same function */
    sft_lora_merge(m2);
    CHECK_INT(m2->lora_r, 0);
    CHECK_NEAR(loss_of(m2, &b), with_adapter, 1e-5);
    sft_model_free(m2);
    sft_model_free(m);
}

TEST(generation_applies_an_unmerged_adapter_like_the_merged_one) {
    sft_err err;
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t prompt[4] = {464, 3290, 318, 257}, base[6], unmerged[6], merged[6];
    int nb = 0, nu = 0, nm = 0;
    sft_sampling greedy = {.greedy = 1};
    CHECK(sft_generate(m, prompt, 4, 6, &greedy, NULL, 0, base, &nb, &err) == 0);
    sft_lora_config lc = {.r = 4, .alpha = 8};
    sft_lora_default_targets(m, &lc);
    CHECK(sft_lora_attach(m, &lc, 5, &err) == 0);
    /* a strong adapter, so that it decides the tokens */
    for (size_t i = 0; i < m->adapters.numel; i++)
        m->adapters.data[i] += 0.3f * (float)((int)(i % 7) - 3);
    CHECK(sft_generate(m, prompt, 4, 6, &greedy, NULL, 0, unmerged, &nu, &err) == 0);
    sft_lora_merge(m);
    CHECK(sft_generate(m, prompt, 4, 6, &greedy, NULL, 0, merged, &nm, &err) == 0);
    CHECK(nu == 6 && nm == 6 && nb == 6);
    CHECK(!memcmp(unmerged, merged, sizeof merged));
    CHECK(memcmp(base, merged, sizeof merged) != 0); /* the adapter matters */
    sft_model_free(m);
}

TEST(lora_targets_follow_peft_suffix_matching_and_save_the_same_set) {
    sft_err err;
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    sft_lora_config lc = {.r = 2, .alpha = 4};
    CHECK(sft_lora_parse_targets(m, "mlp.c_proj", &lc, &err) ==
          0); /* the MLP's c_proj, not the attention's */
    CHECK(sft_lora_attach(m, &lc, 1, &err) == 0);
    CHECK_INT(m->adapters.count, 4);
    CHECK(sft_param_set_find(&m->adapters, "base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight") !=
          NULL);
    CHECK(sft_param_set_find(&m->adapters, "base_model.model.transformer.h.1.attn.c_proj.lora_B.weight") ==
          NULL);
    const char *dir = tmp_model_dir("suffix_adapter");
    CHECK(sft_lora_save(m, dir, GPT2_DIR, &err) == 0);
    char path[600], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    CHECK(sft_read_file(path, &text, &len, &err) == 0);
    CHECK(text && strstr(text, "\"target_modules\": [\"mlp.c_proj\"]"));
    free(text);
    sft_model *m2 = sft_model_load(GPT2_DIR, &err);
    CHECK(sft_lora_load(m2, dir, &err) == 0);
    CHECK_INT(m2->adapters.count, 4);
    sft_model_free(m2);
    sft_model_free(m);
}

TEST(peft_regex_target_modules_select_the_same_linears_as_the_list) {
    const char *dir = tmp_model_dir("regex_adapter");
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, \"target_modules\": "
                      "\".*\\\\.(q|k|v|o|gate|up|down)_proj\"}";
    sft_err err = {0};
    sft_write_file_atomic(path, cfg, strlen(cfg), &err);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    copy_file("tests/fixtures/hf/models/llama2-tiny-lora/adapter_model.safetensors", path);
    double loss[2];
    for (int k = 0; k < 2; k++) {
        sft_model *m = sft_model_load("tests/fixtures/hf/models/llama2-tiny", &err);
        CHECK(m != NULL);
        if (!m) return;
        CHECK(sft_lora_load(m, k ? dir : "tests/fixtures/hf/models/llama2-tiny-lora", &err) == 0);
        CHECK_INT(m->adapters.count, 28);
        sft_model_plan(m, 1, 6, &err);
        int32_t tok[6] = {1, 450, 4996, 17354, 1701, 29889}, tgt[6] = {450, 4996, 17354, 1701, 29889, -100};
        int32_t pos[6] = {0, 1, 2, 3, 4, 5}, seq[6] = {0};
        sft_batch b = {1, 6, tok, tgt, pos, seq, 5};
        loss[k] = loss_of(m, &b);
        sft_model_free(m);
    }
    CHECK_NEAR(loss[0], loss[1], 0);
}

TEST(lora_unknown_target_suggests_the_nearest_module) {
    sft_err err = {0};
    sft_model *m = sft_model_load(LLAMA3_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    sft_lora_config lc = {.r = 4, .alpha = 8};
    CHECK(sft_lora_parse_targets(m, "q_proj,vproj", &lc, &err) == -1);
    CHECK_ERR_HAS(err.msg, "\"vproj\"");
    CHECK_ERR_HAS(err.msg, "did you mean \"v_proj\"");
    sft_model_free(m);
}

TEST(peft_adapter_with_a_wrong_rank_is_an_error_naming_the_tensor) {
    const char *dir = tmp_model_dir("bad_adapter");
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    copy_file("tests/fixtures/hf/models/llama2-tiny-lora/adapter_config.json", path);
    /* an adapter_model.safetensors from rank 8 under a config claiming rank 4 */
    const char *cfg =
        "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\"]}";
    sft_err err = {0};
    sft_write_file_atomic(path, cfg, strlen(cfg), &err);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    copy_file("tests/fixtures/hf/models/llama2-tiny-lora/adapter_model.safetensors", path);
    sft_model *m = sft_model_load("tests/fixtures/hf/models/llama2-tiny", &err);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(sft_lora_load(m, dir, &err) == -1);
    CHECK_ERR_HAS(err.msg, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    CHECK_ERR_HAS(err.msg, "expected [4, 64]");
    sft_model_free(m);
}

/* ---------------------------------------------------------- generation */

TEST(kv_cache_greedy_decoding_matches_argmax_of_the_full_forward) {
    sft_err err;
    sft_model *m = sft_model_load(LLAMA3_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    const int P = 4, NEW = 8, V = m->cfg.vocab_size;
    int32_t seqbuf[12] = {128000, 9906, 11, 1917}, out[8];
    int n = 0;
    sft_sampling greedy = {.greedy = 1};
    CHECK(sft_generate(m, seqbuf, P, NEW, &greedy, NULL, 0, out, &n, &err) == 0);
    CHECK_INT(n, NEW);
    CHECK(sft_model_plan(m, 1, 12, &err) == 0);
    int32_t tgt[12], pos[12], seq[12] = {0};
    for (int i = 0; i < 12; i++)
        tgt[i] = -100, pos[i] = i;
    memcpy(seqbuf + P, out, sizeof(int32_t) * NEW);
    double loss;
    sft_batch b = {1, P + NEW, seqbuf, tgt, pos, seq, 1};
    CHECK(sft_model_forward(m, &b, &loss, &err) == 0);
    for (int i = 0; i < NEW; i++) {
        const float *z = m->logits + (size_t)(P - 1 + i) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best]) best = v;
        CHECK_INT(out[i], best);
    }
    sft_model_free(m);
}

TEST(sampling_is_reproducible_by_seed_and_top_k_1_is_greedy) {
    sft_err err;
    sft_model *m = sft_model_load(GPT2_DIR, &err);
    CHECK(m != NULL);
    if (!m) return;
    int32_t prompt[3] = {464, 3290, 318}, a[10], b[10], g[10];
    int na, nb, ng;
    sft_sampling s = {.temperature = 1.5, .top_k = 0, .top_p = 0.95, .seed = 11};
    CHECK(sft_generate(m, prompt, 3, 10, &s, NULL, 0, a, &na, &err) == 0);
    CHECK(sft_generate(m, prompt, 3, 10, &s, NULL, 0, b, &nb, &err) == 0);
    CHECK_INT(na, nb);
    CHECK(!memcmp(a, b, sizeof a));
    sft_sampling k1 = {.temperature = 0.7, .top_k = 1, .top_p = 1.0, .seed = 5}, gr = {.greedy = 1};
    CHECK(sft_generate(m, prompt, 3, 10, &k1, NULL, 0, a, &na, &err) == 0);
    CHECK(sft_generate(m, prompt, 3, 10, &gr, NULL, 0, g, &ng, &err) == 0);
    CHECK(!memcmp(a, g, sizeof a));
    /* generation stops at an eos id, which is kept as the last token */
    int32_t eos = g[2];
    CHECK(sft_generate(m, prompt, 3, 10, &gr, &eos, 1, a, &na, &err) == 0);
    CHECK(na <= 3 && a[na - 1] == eos);
    sft_model_free(m);
}

TEST(sampling_respects_temperature_top_k_and_top_p) {
    /* probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 */
    const float logits[5] = {logf(8), logf(4), logf(2), logf(1), logf(1)};
    sft_candidate work[5];
    uint64_t rng = 1;
    int counts[5] = {0};
    sft_sampling all = {.temperature = 1.0, .top_p = 1.0};
    for (int i = 0; i < 4000; i++)
        counts[sft_sample_token(logits, 5, &all, work, &rng)]++;
    /* 4000 draws: each share within 4 standard deviations of its probability */
    CHECK(abs(counts[0] - 2000) < 130 && abs(counts[1] - 1000) < 110 && abs(counts[3] - 250) < 65);
    sft_sampling k2 = {.temperature = 1.0, .top_k = 2, .top_p = 1.0};
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 2000; i++)
        counts[sft_sample_token(logits, 5, &k2, work, &rng)]++;
    CHECK(counts[2] == 0 && counts[3] == 0 && counts[4] == 0);
    CHECK(abs(counts[0] - 1333) < 90); /* renormalised: 2/3 */
    /* top_p 0.7: tokens 0 and 1 (mass 0.75) are the smallest set reaching it */
    sft_sampling p7 = {.temperature = 1.0, .top_p = 0.7};
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 2000; i++)
        counts[sft_sample_token(logits, 5, &p7, work, &rng)]++;
    CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] == 0 && counts[3] == 0 && counts[4] == 0);
    /* a tiny temperature is greedy */
    sft_sampling cold = {.temperature = 1e-3, .top_p = 1.0};
    for (int i = 0; i < 100; i++)
        CHECK_INT(sft_sample_token(logits, 5, &cold, work, &rng), 0);
}

/* ---------------------------------------------------------------- init */

TEST(init_draws_normal_weights_zero_biases_unit_norms) {
    sft_model_config c = tiny_config(SFT_ARCH_GPT2);
    c.initializer_range = 0.02;
    c.vocab_size = 1000;
    sft_err err;
    sft_model *m = sft_model_create(&c, &err);
    sft_model_init_weights(m, 1);
    const sft_tensor *wte = sft_param_set_find(&m->weights, "transformer.wte.weight");
    double s = 0, s2 = 0;
    for (size_t i = 0; i < wte->numel; i++)
        s += m->weights.data[wte->offset + i];
    for (size_t i = 0; i < wte->numel; i++)
        s2 += pow(m->weights.data[wte->offset + i], 2);
    double mean = s / wte->numel, sd = sqrt(s2 / wte->numel - mean * mean);
    CHECK(fabs(mean) < 0.001);       /* 16000 draws: the mean's standard error is 0.00016 */
    CHECK(fabs(sd - 0.02) < 0.0005); /* and the std's about 0.0001 */
    const sft_tensor *b = sft_param_set_find(&m->weights, "transformer.h.0.attn.c_attn.bias");
    const sft_tensor *ln = sft_param_set_find(&m->weights, "transformer.ln_f.weight");
    CHECK(m->weights.data[b->offset + 5] == 0.0f);
    CHECK(m->weights.data[ln->offset + 3] == 1.0f);
    /* the same seed gives the same weights */
    sft_model *m2 = sft_model_create(&c, &err);
    sft_model_init_weights(m2, 1);
    CHECK(!memcmp(m->weights.data, m2->weights.data, m->weights.numel * sizeof(float)));
    sft_model_free(m);
    sft_model_free(m2);
}
