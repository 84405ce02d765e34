/* test_bf16.c: the bf16 mixed-precision mode (`--dtype bf16`, model/ops.h
 * sft_kernels_cpu_bf16 and sft_kernels_select): the table differs from the
 * float32 one in the products only; each product equals the float32 product
 * of bf16-rounded operands in every layout and thread split; the fixture
 * models (GPT-2, Llama 2, Llama 3, a Llama 2 LoRA adapter) give losses,
 * logits and gradients within bf16 tolerance of float32; a short training
 * run in bf16 tracks float32; the fallback (SFT_BF16=fp32, or a CPU without
 * AVX512_BF16) gives the float32 run bit for bit; the dtype is recorded and
 * a resume cannot change it.
 *
 * The tolerances, derived once here and used below. bf16 keeps 8
 * significant bits, so rounding an operand to nearest has a relative error
 * of at most u = 2^-9 (1.95e-3), uniformly spread: RMS u / sqrt(3). A
 * product a*b of two rounded operands then has a relative error of RMS
 * sqrt(2/3) u = 1.6e-3, and a dot product of K terms with independent
 * errors has an absolute error of RMS 1.6e-3 * sqrt(sum (a_k b_k)^2), which
 * for operands without a common sign is 1.6e-3 of the result's own size: a
 * matrix product's output has a relative L2 error of about 1.6e-3 (float32
 * accumulation adds only ~1e-7 * sqrt(K)). Errors of products in sequence
 * add in quadrature when the layers neither amplify nor cancel them (norms
 * rescale every layer's input): after P products about 1.6e-3 * sqrt(P).
 * The logits of the two-layer fixture models sit about P = 13 products
 * deep (GPT-2 per layer: c_attn, Q K^T, P V, c_proj, c_fc, c_proj; then the
 * lm_head; the Llama models' q/k/v and gate/up are side by side, not in
 * sequence), so 5.8e-3 is expected and LOGITS_REL_L2 = 2e-2 allows 3.5x
 * (a LoRA adapter puts its A and B products beside each linear: one more
 * per linear, P = 19, 7e-3). A gradient runs the forward chain, the
 * backward chain back to its tensor (at most as deep again, the gradient
 * products rounding their own operands) and its weight-gradient product:
 * at most 27 products, 1.6e-3 * sqrt(27) = 8.3e-3 expected, GRAD_REL_L2 =
 * 3e-2 allows 3.6x; over the whole trainable
 * set the cosine of an error of relative size e orthogonal to the gradient
 * is 1 - e^2 / 2, so GRAD_COSINE = 0.999 corresponds to e = 4.5e-2. The
 * loss is the mean of lse(z) - z[target]; its change under logit errors dz
 * is the mean of (softmax(z) - onehot) . dz, at most 2 max|dz| per token,
 * and the errors of different tokens and vocabulary entries do not line up,
 * so |dloss| stays below 2 * LOGITS_REL_L2 * rms(z): bound checked with the
 * measured rms of the float32 logits, and relative to the loss below
 * LOSS_REL = 1e-2 (the "loss within bf16 tolerance", taken as 5
 * times u). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/gemm_bf16.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/ops.h"
#include "test.h"
#include "train/trainer.h"

#define LOGITS_REL_L2 2e-2
#define GRAD_REL_L2 3e-2
#define GRAD_COSINE 0.999
#define LOSS_REL 1e-2

#define FIXTURES "tests/fixtures/hf/models/"

/* ------------------------------------------------------------- helpers */

static double rel_l2(const float *got, const float *want, size_t n) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        diff += d * d;
        norm += (double)want[i] * want[i];
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static float round_bf16(float x) {
    return sft_bf16_to_f32(sft_f32_to_bf16(x));
}

static uint32_t lcg(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

static void fill_random(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)lcg(&seed) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* ------------------------------------------------------ the kernel table */

TEST(bf16_table_differs_from_fp32_only_in_the_products) {
    sft_kernels expected = sft_kernels_cpu;
    expected.matmul_forward = sft_matmul_forward_bf16;
    expected.matmul_forward_add = sft_matmul_forward_add_bf16;
    expected.matmul_backward = sft_matmul_backward_bf16;
    expected.attention_forward = sft_attention_forward_bf16;
    expected.attention_backward = sft_attention_backward_bf16;
    /* every other entry (norms, activations, cross-entropy) is the float32
     * kernel itself, as under autocast: an entry added to the table later
     * must be added to both */
    CHECK(!memcmp(&expected, &sft_kernels_cpu_bf16, sizeof expected));
    CHECK(sft_kernels_cpu_bf16.matmul_forward != sft_kernels_cpu.matmul_forward);
}

/* --------------------------------------- each product, rounded operands */

/* Reference C [M, N] = op(A) op(B) in double from bf16-rounded operands. */
static void reference_product(double *C, int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                              const float *B, int ldb, double *abs_sum) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, a_s = 0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                double p = (double)round_bf16(a) * round_bf16(b);
                s += p;
                a_s += fabs(p);
            }
            C[(size_t)i * N + j] = s;
            abs_sum[(size_t)i * N + j] = a_s;
        }
}

/* got == base + want within float32 accumulation: K terms, each addition
 * rounding by at most 2^-24 of the running sum of magnitudes. */
static int near_product(const float *got, const float *base, const double *want, const double *abs_sum, size_t n,
                        int K, const char *what) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double b = base ? base[i] : 0;
        double tol = (K + 2) * ldexp(1.0, -24) * (abs_sum[i] + fabs(b)) + 1e-30;
        if (fabs(got[i] - (b + want[i])) > tol) {
            if (!bad) fprintf(stderr, "  %s: element %zu is %.9g, expected %.9g\n", what, i, got[i], b + want[i]);
            bad = 1;
        }
    }
    return !bad;
}

/* Forward, forward_add and backward in both weight layouts, with the rows
 * split over the threads (N = 96 >= 2 threads x 32) and with the columns
 * split (N = 8), against the rounded-operand reference. */
TEST(bf16_products_equal_the_float32_product_of_rounded_operands_in_every_layout) {
    sft_set_threads(2);
    const int C = 40, OC = 24;
    const int sizes[2] = {96, 8};
    for (int si = 0; si < 2; si++) {
        int N = sizes[si];
        for (int w_in_out = 0; w_in_out < 2; w_in_out++) {
            float *inp = malloc(sizeof(float) * N * C), *w = malloc(sizeof(float) * OC * C);
            float *bias = malloc(sizeof(float) * OC), *out = malloc(sizeof(float) * N * OC);
            float *dout = malloc(sizeof(float) * N * OC), *dinp = malloc(sizeof(float) * N * C);
            float *dw = malloc(sizeof(float) * OC * C), *dinp0 = malloc(sizeof(float) * N * C);
            float *dw0 = malloc(sizeof(float) * OC * C), *out0 = malloc(sizeof(float) * N * OC);
            double *ref = malloc(sizeof(double) * N * C * 2), *abs_sum = malloc(sizeof(double) * N * C * 2);
            double *wref = malloc(sizeof(double) * OC * C), *wabs = malloc(sizeof(double) * OC * C);
            fill_random(inp, (size_t)N * C, 1);
            fill_random(w, (size_t)OC * C, 2);
            fill_random(bias, OC, 3);
            fill_random(dout, (size_t)N * OC, 4);
            fill_random(dinp0, (size_t)N * C, 5);
            fill_random(dw0, (size_t)OC * C, 6);
            fill_random(out0, (size_t)N * OC, 7);
            char what[96];

            /* forward: out = inp W^T + bias */
            sft_matmul_forward_bf16(out, inp, w, bias, N, C, OC, w_in_out);
            reference_product(ref, 0, !w_in_out, N, OC, C, inp, C, w, w_in_out ? OC : C, abs_sum);
            for (int n = 0; n < N; n++)
                for (int o = 0; o < OC; o++) ref[(size_t)n * OC + o] += bias[o];
            snprintf(what, sizeof what, "forward N=%d w_in_out=%d", N, w_in_out);
            CHECK(near_product(out, NULL, ref, abs_sum, (size_t)N * OC, C, what));

            /* the float32 product differs: the operands really were rounded */
            float *out32 = malloc(sizeof(float) * N * OC);
            sft_matmul_forward(out32, inp, w, bias, N, C, OC, w_in_out);
            double e = rel_l2(out, out32, (size_t)N * OC);
            CHECK(e > 1e-4 && e < 1e-2);
            free(out32);

            /* forward_add (LoRA B, [OC, C] only): out += inp W^T */
            if (!w_in_out) {
                memcpy(out, out0, sizeof(float) * N * OC);
                sft_matmul_forward_add_bf16(out, inp, w, N, C, OC);
                reference_product(ref, 0, 1, N, OC, C, inp, C, w, C, abs_sum);
                snprintf(what, sizeof what, "forward_add N=%d", N);
                CHECK(near_product(out, out0, ref, abs_sum, (size_t)N * OC, C, what));
            }

            /* backward: dinp += dout W, dW += dout^T inp (or its transpose) */
            memcpy(dinp, dinp0, sizeof(float) * N * C);
            memcpy(dw, dw0, sizeof(float) * OC * C);
            float dbias[24];
            memset(dbias, 0, sizeof dbias);
            sft_matmul_backward_bf16(dinp, dw, dbias, dout, inp, w, N, C, OC, w_in_out);
            reference_product(ref, 0, w_in_out, N, C, OC, dout, OC, w, w_in_out ? OC : C, abs_sum);
            snprintf(what, sizeof what, "backward dinp N=%d w_in_out=%d", N, w_in_out);
            CHECK(near_product(dinp, dinp0, ref, abs_sum, (size_t)N * C, OC, what));
            if (w_in_out) /* dW [C, OC] = inp^T dout */
                reference_product(wref, 1, 0, C, OC, N, inp, C, dout, OC, wabs);
            else /* dW [OC, C] = dout^T inp */
                reference_product(wref, 1, 0, OC, C, N, dout, OC, inp, C, wabs);
            snprintf(what, sizeof what, "backward dweight N=%d w_in_out=%d", N, w_in_out);
            CHECK(near_product(dw, dw0, wref, wabs, (size_t)OC * C, N, what));
            /* the bias gradient is a float32 column sum, no product */
            for (int o = 0; o < OC; o++) {
                double s = 0;
                for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o];
                CHECK_NEAR(dbias[o], s, 1e-5);
            }
            free(inp), free(w), free(bias), free(out), free(dout), free(dinp), free(dw), free(dinp0), free(dw0);
            free(out0), free(ref), free(abs_sum), free(wref), free(wabs);
        }
    }
}

/* Attention with bf16 products (grouped KV heads, two packed records, a
 * sliding window): forward and backward within one product's rounding of
 * the float32 kernels (S and P V, then dP, dS K, dS^T Q, P^T dO: relative
 * L2 about 1.6e-3 * sqrt(3), LOGITS_REL_L2 allows that 7x), yet not equal to
 * them. The backward accumulates (+=), recomputing the probabilities from
 * the forward's float32 row statistics: a second call adds the same again. */
TEST(bf16_attention_within_rounding_of_fp32) {
    sft_set_threads(2);
    const int B = 2, T = 40, NH = 4, NKV = 2, HD = 16, QD = NH * HD, KD = NKV * HD, N = B * T;
    float *q = malloc(sizeof(float) * N * QD), *k = malloc(sizeof(float) * N * KD), *v = malloc(sizeof(float) * N * KD);
    float *dout = malloc(sizeof(float) * N * QD);
    float *out[2], *stats[2], *dq[2], *dk[2], *dv[2];
    int32_t seq[80];
    for (int i = 0; i < N; i++) seq[i] = i % T < 25 ? 0 : 1;
    fill_random(q, (size_t)N * QD, 11);
    fill_random(k, (size_t)N * KD, 12);
    fill_random(v, (size_t)N * KD, 13);
    fill_random(dout, (size_t)N * QD, 14);
    /* scores of a few units: softmax rows far from uniform */
    for (size_t j = 0; j < (size_t)N * QD; j++) q[j] *= 4.0f;
    for (int i = 0; i < 2; i++) {
        out[i] = malloc(sizeof(float) * N * QD), stats[i] = malloc(sizeof(float) * B * NH * T * 2);
        dq[i] = calloc((size_t)N * QD, sizeof(float));
        dk[i] = calloc((size_t)N * KD, sizeof(float)), dv[i] = calloc((size_t)N * KD, sizeof(float));
        const sft_kernels *kt = i ? &sft_kernels_cpu_bf16 : &sft_kernels_cpu;
        kt->attention_forward(out[i], stats[i], q, QD, k, KD, v, KD, seq, B, T, NH, NKV, HD, 12, 0.0f, 0);
        kt->attention_backward(dq[i], dk[i], dv[i], dout, stats[i], q, QD, k, KD, v, KD, seq, B, T, NH, NKV, HD, 12,
                               0.0f, 0);
    }
    double e_out = rel_l2(out[1], out[0], (size_t)N * QD), e_dq = rel_l2(dq[1], dq[0], (size_t)N * QD);
    double e_dk = rel_l2(dk[1], dk[0], (size_t)N * KD), e_dv = rel_l2(dv[1], dv[0], (size_t)N * KD);
    fprintf(stderr, "  attention rel-L2: out %.2e dq %.2e dk %.2e dv %.2e\n", e_out, e_dq, e_dk, e_dv);
    CHECK(e_out > 1e-5 && e_out < LOGITS_REL_L2);
    CHECK(e_dq > 1e-5 && e_dq < LOGITS_REL_L2);
    CHECK(e_dk > 1e-5 && e_dk < LOGITS_REL_L2);
    CHECK(e_dv > 1e-5 && e_dv < LOGITS_REL_L2);
    /* the backward accumulates: a second call adds the same gradient again */
    float *dv2 = malloc(sizeof(float) * N * KD);
    memcpy(dv2, dv[1], sizeof(float) * N * KD);
    sft_kernels_cpu_bf16.attention_backward(dq[1], dk[1], dv2, dout, stats[1], q, QD, k, KD, v, KD, seq, B, T, NH,
                                            NKV, HD, 12, 0.0f, 0);
    int bad = 0;
    for (size_t j = 0; j < (size_t)N * KD; j++) bad += fabsf(dv2[j] - 2 * dv[1][j]) > 1e-5f * (1 + fabsf(dv[1][j]));
    CHECK_INT(bad, 0);
    free(dv2);
    for (int i = 0; i < 2; i++) free(out[i]), free(stats[i]), free(dq[i]), free(dk[i]), free(dv[i]);
    free(q), free(k), free(v), free(dout);
}

/* ------------------------------------------- the fixture models, fp32 vs bf16 */

typedef struct {
    double loss;
    float *logits; /* [N, V] */
    float *grad;   /* the trainable set's gradient */
    size_t logits_n, grad_n;
} pass_result;

static void pass_free(pass_result *r) {
    free(r->logits);
    free(r->grad);
    memset(r, 0, sizeof *r);
}

/* One forward and backward with a kernel table; logits copied before the
 * backward overwrites them. */
static int run_pass(sft_model *m, const sft_kernels *k, const sft_batch *b, pass_result *r) {
    sft_err err;
    memset(r, 0, sizeof *r);
    m->kernels = k;
    sft_model_zero_grad(m);
    if (sft_model_forward(m, b, &r->loss, &err)) {
        fprintf(stderr, "  forward: %s\n", err.msg);
        return -1;
    }
    r->logits_n = (size_t)b->B * b->T * m->cfg.vocab_size;
    r->logits = malloc(r->logits_n * sizeof(float));
    memcpy(r->logits, m->logits, r->logits_n * sizeof(float));
    sft_model_backward(m, b);
    r->grad_n = m->trainable->numel;
    r->grad = malloc(r->grad_n * sizeof(float));
    memcpy(r->grad, m->trainable->grad, r->grad_n * sizeof(float));
    return 0;
}

typedef struct {
    int32_t tokens[64], targets[64], pos[64], seq[64];
    sft_batch batch;
} batch_buf;

/* B x T random tokens; every fourth target ignored; two records packed in
 * the second row, so that the attention masks are exercised too. */
static void make_batch(batch_buf *bb, int B, int T, int V, uint32_t seed) {
    long supervised = 0;
    for (int i = 0; i < B * T; i++) {
        int row = i / T, t = i % T, second = row == 1 && t >= T / 2;
        bb->tokens[i] = (int32_t)(lcg(&seed) % (uint32_t)V);
        bb->targets[i] = i % 4 == 1 ? SFT_IGNORE_INDEX : (int32_t)(lcg(&seed) % (uint32_t)V);
        bb->pos[i] = second ? t - T / 2 : t;
        bb->seq[i] = second;
        supervised += bb->targets[i] != SFT_IGNORE_INDEX;
    }
    bb->batch = (sft_batch){B, T, bb->tokens, bb->targets, bb->pos, bb->seq, supervised};
}

/* Loads a fixture model (with a PEFT adapter when adapter is not NULL),
 * trains it fully or its adapter, and compares a float32 and a bf16 pass. */
static void check_parity(const char *model_dir, const char *adapter) {
    sft_err err;
    sft_set_threads(2);
    sft_model *m = sft_model_load(model_dir, &err);
    if (!m) {
        fprintf(stderr, "  %s: %s\n", model_dir, err.msg);
        CHECK(0);
        return;
    }
    int rc = adapter ? sft_lora_load(m, adapter, &err) : sft_model_train_full(m, &err);
    const int B = 2, T = 24;
    if (!rc) rc = sft_model_plan(m, B, T, &err);
    if (rc) fprintf(stderr, "  %s: %s\n", model_dir, err.msg);
    CHECK(!rc);
    m->training = 0; /* no dropout: both passes see the same network */
    batch_buf bb;
    make_batch(&bb, B, T, m->cfg.vocab_size, 17);
    pass_result f32, b16;
    CHECK(!rc && !run_pass(m, &sft_kernels_cpu, &bb.batch, &f32));
    CHECK(!rc && !run_pass(m, &sft_kernels_cpu_bf16, &bb.batch, &b16));
    if (rc || !f32.logits || !b16.logits) goto done;

    double logits_rms = 0;
    for (size_t i = 0; i < f32.logits_n; i++) logits_rms += (double)f32.logits[i] * f32.logits[i];
    logits_rms = sqrt(logits_rms / (double)f32.logits_n);
    double e_logits = rel_l2(b16.logits, f32.logits, f32.logits_n);
    double e_grad = rel_l2(b16.grad, f32.grad, f32.grad_n), cos_grad = cosine(b16.grad, f32.grad, f32.grad_n);
    double dloss = fabs(b16.loss - f32.loss);
    fprintf(stderr, "  %s%s: loss %.6f vs %.6f (rel %.2e), logits rel-L2 %.2e, grad rel-L2 %.2e cosine %.7f\n",
            model_dir + strlen(FIXTURES), adapter ? " + LoRA" : "", b16.loss, f32.loss, dloss / f32.loss, e_logits,
            e_grad, cos_grad);
    /* bf16 rounding shows (the bf16 products really ran) ... */
    CHECK(e_logits > 1e-5);
    /* ... and stays within the tolerances derived at the top */
    CHECK(e_logits < LOGITS_REL_L2);
    CHECK(cosine(b16.logits, f32.logits, f32.logits_n) > 1 - LOGITS_REL_L2 * LOGITS_REL_L2);
    CHECK(dloss <= 2 * LOGITS_REL_L2 * logits_rms);
    CHECK(dloss / f32.loss < LOSS_REL);
    CHECK(e_grad < GRAD_REL_L2);
    CHECK(cos_grad > GRAD_COSINE);
    /* per tensor too, for every tensor whose float32 gradient is not itself
     * rounding noise (a tensor with a near-cancelling sum, e.g. a bias
     * whose gradient sums +- contributions of all tokens, is covered by
     * the whole-set check) */
    const sft_param_set *set = m->trainable;
    double total = 0;
    for (size_t i = 0; i < f32.grad_n; i++) total += (double)f32.grad[i] * f32.grad[i];
    for (int t = 0; t < set->count; t++) {
        const sft_tensor *ts = &set->tensors[t];
        double part = 0;
        for (size_t i = 0; i < ts->numel; i++) part += (double)f32.grad[ts->offset + i] * f32.grad[ts->offset + i];
        if (part < 1e-6 * total) continue;
        double e = rel_l2(b16.grad + ts->offset, f32.grad + ts->offset, ts->numel);
        if (!(e < GRAD_REL_L2)) fprintf(stderr, "  %s: gradient rel-L2 %.3e\n", ts->name, e);
        CHECK(e < GRAD_REL_L2);
    }
done:
    pass_free(&f32);
    pass_free(&b16);
    sft_model_free(m);
}

TEST(bf16_parity_gpt2_tiny) {
    check_parity(FIXTURES "gpt2-tiny", NULL);
}

TEST(bf16_parity_llama2_tiny) {
    check_parity(FIXTURES "llama2-tiny", NULL);
}

TEST(bf16_parity_llama3_tiny) {
    check_parity(FIXTURES "llama3-tiny", NULL);
}

TEST(bf16_parity_llama2_tiny_lora_adapter) {
    check_parity(FIXTURES "llama2-tiny", FIXTURES "llama2-tiny-lora");
}

/* The lm_head is a linear layer under autocast: its logits are the float32
 * product of the bf16-rounded final norm output and the rounded (tied) wte. */
TEST(bf16_lm_head_rounds_its_operands) {
    sft_err err;
    sft_set_threads(2);
    sft_model *m = sft_model_load(FIXTURES "gpt2-tiny", &err);
    CHECK(m != NULL);
    if (!m) return;
    CHECK(!sft_model_plan(m, 1, 8, &err));
    m->kernels = &sft_kernels_cpu_bf16;
    batch_buf bb;
    make_batch(&bb, 1, 8, m->cfg.vocab_size, 5);
    double loss;
    CHECK(!sft_model_forward(m, &bb.batch, &loss, &err));
    const int C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int bad = 0, differs = 0;
    for (int n = 0; n < 8; n++)
        for (int v = 0; v < V; v += 97) {
            double s = 0, a = 0, s32 = 0;
            for (int c = 0; c < C; c++) {
                float x = m->normf[(size_t)n * C + c], w = m->lm_head[(size_t)v * C + c];
                double p = (double)round_bf16(x) * round_bf16(w);
                s += p, a += fabs(p), s32 += (double)x * w;
            }
            float got = m->logits[(size_t)n * V + v];
            bad += fabs(got - s) > (C + 2) * ldexp(1.0, -24) * a + 1e-30;
            differs += fabs(got - s32) > (C + 2) * ldexp(1.0, -24) * a;
        }
    CHECK_INT(bad, 0);
    CHECK(differs > 0);
    sft_model_free(m);
}

/* ------------------------------------------------------ choosing a table */

static void set_policy(const char *value) {
    if (value)
        setenv("SFT_BF16", value, 1);
    else
        unsetenv("SFT_BF16");
}

TEST(select_follows_the_cpu_and_sft_bf16) {
    sft_kernel_choice c;
    sft_err err;
    set_policy(NULL);
    CHECK(!sft_kernels_select(SFT_MATMUL_FP32, &c, &err));
    CHECK(c.kernels == &sft_kernels_cpu && c.products == SFT_MATMUL_FP32 && c.note == NULL);
    /* automatic: bf16 products exactly when the CPU has the kernel */
    CHECK(!sft_kernels_select(SFT_MATMUL_BF16, &c, &err));
    CHECK_INT(c.requested, SFT_MATMUL_BF16);
    if (sft_bf16_supported()) {
        CHECK(c.kernels == &sft_kernels_cpu_bf16 && c.products == SFT_MATMUL_BF16 && c.note == NULL);
        CHECK_STR(c.product_kernel, "avx512-bf16");
    } else {
        CHECK(c.kernels == &sft_kernels_cpu && c.products == SFT_MATMUL_FP32);
        CHECK(c.note && strstr(c.note, "AVX512_BF16") && strstr(c.note, "fp32"));
    }
    set_policy("fp32");
    CHECK(!sft_kernels_select(SFT_MATMUL_BF16, &c, &err));
    CHECK(c.kernels == &sft_kernels_cpu && c.products == SFT_MATMUL_FP32 && c.note && strstr(c.note, "SFT_BF16"));
    CHECK_STR(c.product_kernel, "openblas-sgemm");
    set_policy("force");
    CHECK(!sft_kernels_select(SFT_MATMUL_BF16, &c, &err));
    CHECK(c.kernels == &sft_kernels_cpu_bf16 && c.products == SFT_MATMUL_BF16);
    CHECK_STR(c.product_kernel, sft_bf16_supported() ? "avx512-bf16" : "portable-bf16");
    set_policy("bf16please");
    CHECK(sft_kernels_select(SFT_MATMUL_BF16, &c, &err) == -1);
    CHECK_ERR_HAS(err.msg, "SFT_BF16='bf16please'");
    CHECK_ERR_HAS(err.msg, "auto, fp32 or force");
    /* a float32 run never looks at it */
    CHECK(!sft_kernels_select(SFT_MATMUL_FP32, &c, &err));
    set_policy(NULL);
}

/* ------------------------------------------------------ training runs */

static const char tiny_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 365, "
    "\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
    "\"num_key_value_heads\": 2, \"head_dim\": 8, \"hidden_act\": \"silu\", \"max_position_embeddings\": 256, "
    "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": true, \"bos_token_id\": null, "
    "\"eos_token_id\": 364, \"pad_token_id\": 362, \"torch_dtype\": \"float32\"}\n";

/* The tiny model (demo tokenizer) and 40 chat records, made once. */
static const char *fixture_dir(void) {
    static char dir[512];
    if (dir[0]) return dir;
    snprintf(dir, sizeof dir, "%s", sft_test_tmp_path("runs"));
    sft_err err;
    char path[600], model[600];
    if (sft_mkdir_p(dir, &err)) abort();
    snprintf(path, sizeof path, "%s/cache", dir);
    setenv("SFT_CACHE_DIR", path, 1);
    snprintf(path, sizeof path, "%s/tiny.json", dir);
    sft_test_write_text(path, tiny_config);
    snprintf(model, sizeof model, "%s/model", dir);
    if (sft_model_init_dir(path, "assets/demo-model", model, 7, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        abort();
    }
    snprintf(path, sizeof path, "%s/data.jsonl", dir);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"add %d %d\"}, {\"role\": \"assistant\", "
                   "\"content\": \"%d\"}]}\n",
                i, 3 * i % 17, i + 3 * i % 17);
    fclose(f);
    return dir;
}

static void set(sft_run_config *cfg, const char *key, const char *value) {
    sft_err err;
    const sft_run_key *k = sft_run_key_find(key);
    if (!k || sft_run_config_set_text(cfg, k, value, key, SFT_RUN_FROM_FLAG, &err)) {
        fprintf(stderr, "set %s: %s\n", key, k ? err.msg : "no such key");
        abort();
    }
}

static void run_config(sft_run_config *cfg, const char *name, const char *dtype, const char *steps) {
    const char *dir = fixture_dir();
    char path[700];
    sft_run_config_init(cfg);
    snprintf(path, sizeof path, "%s/model", dir);
    set(cfg, "model", path);
    snprintf(path, sizeof path, "%s/data.jsonl", dir);
    set(cfg, "data", path);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    set(cfg, "out", path);
    set(cfg, "dtype", dtype);
    set(cfg, "lr", "0.003");
    set(cfg, "warmup_steps", "1");
    set(cfg, "max_steps", steps);
    set(cfg, "batch_size", "4");
    set(cfg, "threads", "2");
    set(cfg, "eval_every", "0");
    set(cfg, "save_every", "0");
    set(cfg, "samples_per_eval", "0");
}

static int train(sft_run_config *cfg, sft_err *err) {
    sft_train_result res;
    if (sft_run_config_finish(cfg, err)) return -1;
    return sft_train_run(cfg, NULL, &res, err);
}

/* The "loss" of every train line of RUN/metrics.jsonl. */
static int read_losses(const char *run, double *loss, int cap) {
    char path[800], *text;
    size_t len;
    sft_err err;
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    if (sft_read_file(path, &text, &len, &err)) return -1;
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = sft_json_loadb_lenient(line, strlen(line), path, &err);
        if (!j) break;
        const char *type = json_string_value(json_object_get(j, "type"));
        if (type && !strcmp(type, "train") && n < cap) sft_json_number(json_object_get(j, "loss"), &loss[n++]);
        json_decref(j);
    }
    free(text);
    return n;
}

/* 20 steps of the tiny model at lr 3e-3, bf16 (forced, so that bf16
 * numerics are tested on any CPU) against fp32. Both losses must fall (the
 * mean of the last 4 steps at least 10% below that of the first 4: batch
 * noise is a few percent). How far bf16 may drift: one step's loss differs by
 * ~LOSS_REL at most (parity above); the runs then diverge because every
 * AdamW update is computed from a gradient with a relative error of
 * ~GRAD_REL_L2, which moves the trajectory by lr * 3e-2 per weight and step
 * at most. Over 20 steps (a total movement of about 20 lr per weight) that
 * is at most 3% of the distance travelled, so the loss drop of bf16 must be
 * within 10% of fp32's and every step's loss within 5% (both with margin
 * for the noise of a 4-record batch). */
TEST(bf16_training_run_tracks_fp32) {
    sft_run_config a, b;
    sft_err err;
    set_policy("force");
    run_config(&a, "fp32", "fp32", "20");
    run_config(&b, "bf16", "bf16", "20");
    CHECK(!train(&a, &err));
    CHECK(!train(&b, &err));
    set_policy(NULL);
    double la[32], lb[32];
    int na = read_losses(a.out, la, 32), nb = read_losses(b.out, lb, 32);
    CHECK_INT(na, 20);
    CHECK_INT(nb, 20);
    if (na == 20 && nb == 20) {
        /* the mean of the first and last 4 steps: less noise than one batch */
        double a0 = 0, a1 = 0, b0 = 0, b1 = 0;
        for (int i = 0; i < 4; i++) a0 += la[i] / 4, b0 += lb[i] / 4, a1 += la[16 + i] / 4, b1 += lb[16 + i] / 4;
        fprintf(stderr, "  fp32 %.4f -> %.4f, bf16 %.4f -> %.4f\n", a0, a1, b0, b1);
        CHECK(a1 < 0.9 * a0 && b1 < 0.9 * b0);
        CHECK(fabs((b0 - b1) - (a0 - a1)) < 0.1 * (a0 - a1));
        int worst = 0;
        for (int i = 0; i < 20; i++)
            if (fabs(lb[i] - la[i]) > fabs(lb[worst] - la[worst])) worst = i;
        CHECK(fabs(lb[worst] - la[worst]) < 0.05 * la[worst]);
        CHECK(lb[0] != la[0]); /* the bf16 products ran */
    }
    /* the run records its dtype and what ran it */
    char path[800], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/manifest.json", b.out);
    CHECK(!sft_read_file(path, &text, &len, &err));
    json_t *man = text ? sft_json_loadb_lenient(text, len, path, &err) : NULL;
    json_t *dtype = man ? json_object_get(man, "dtype") : NULL;
    CHECK(dtype != NULL);
    if (dtype) {
        CHECK_STR(json_string_value(json_object_get(dtype, "requested")), "bf16");
        CHECK_STR(json_string_value(json_object_get(dtype, "products")), "bf16");
    }
    json_decref(man);
    free(text);
    snprintf(path, sizeof path, "%s/run.yaml", b.out);
    CHECK(!sft_read_file(path, &text, &len, &err));
    CHECK(text && strstr(text, "\ndtype: bf16\n"));
    free(text);
    sft_run_config_free(&a), sft_run_config_free(&b);
}

/* bf16 falling back to fp32 products (SFT_BF16=fp32, as on a CPU without
 * AVX512_BF16) is the fp32 run bit for bit; only the record differs. */
TEST(bf16_fallback_is_the_fp32_run_exactly) {
    sft_run_config a, b;
    sft_err err;
    run_config(&a, "fallback-fp32", "fp32", "4");
    run_config(&b, "fallback-bf16", "bf16", "4");
    set_policy("fp32");
    CHECK(!train(&a, &err));
    CHECK(!train(&b, &err));
    set_policy(NULL);
    double la[8], lb[8];
    CHECK_INT(read_losses(a.out, la, 8), 4);
    CHECK_INT(read_losses(b.out, lb, 8), 4);
    CHECK(!memcmp(la, lb, sizeof(double) * 4));
    char pa[800], pb[800], *ta = NULL, *tb = NULL;
    size_t na = 0, nb = 0;
    snprintf(pa, sizeof pa, "%s/final/model.safetensors", a.out);
    snprintf(pb, sizeof pb, "%s/final/model.safetensors", b.out);
    CHECK(!sft_read_file(pa, &ta, &na, &err) && !sft_read_file(pb, &tb, &nb, &err));
    CHECK(na == nb && ta && tb && !memcmp(ta, tb, na));
    free(ta), free(tb);
    snprintf(pb, sizeof pb, "%s/manifest.json", b.out);
    CHECK(!sft_read_file(pb, &tb, &nb, &err));
    CHECK(tb && strstr(tb, "\"requested\": \"bf16\"") && strstr(tb, "\"products\": \"fp32\""));
    free(tb);
    sft_run_config_free(&a), sft_run_config_free(&b);
}

/* The dtype is part of a run's state: a resume with another one is refused,
 * naming both; the same dtype resumes. */
TEST(resume_with_another_dtype_is_refused) {
    sft_run_config a, b;
    sft_err err;
    set_policy("fp32"); /* the dtype check does not depend on what runs the products */
    run_config(&a, "resume", "bf16", "2");
    CHECK(!train(&a, &err));
    run_config(&b, "resume", "fp32", "4");
    set(&b, "resume", "true");
    CHECK(train(&b, &err) == -1);
    CHECK_ERR_HAS(err.msg, "dtype bf16");
    CHECK_ERR_HAS(err.msg, "dtype fp32");
    sft_run_config_free(&b);
    run_config(&b, "resume", "bf16", "4");
    set(&b, "resume", "true");
    CHECK(!train(&b, &err));
    set_policy(NULL);
    double l[8];
    CHECK_INT(read_losses(b.out, l, 8), 4);
    sft_run_config_free(&a), sft_run_config_free(&b);
}
