/* test_ops.c: every op of src/model/ops.h checked twice against a float64
 * reference written here from the formulas (not from ops.c):
 *  1. the float32 forward matches the float64 forward;
 *  2. the float32 backward matches central finite differences of the float64
 *     forward, for the loss L = sum(out * r) with a random r.
 * The backward is also checked to ACCUMULATE: gradients start non-zero.
 * Tolerances: float32 has ~1e-7 relative precision; sums of a few hundred
 * terms keep errors below 1e-5 of the largest value, so 1e-4 of the largest
 * gradient (plus a small floor) separates a right formula from a wrong one by
 * orders of magnitude. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/ops.h"
#include "test.h"

/* ----------------------------------------------------------------- helpers */

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

typedef struct {
    double *d;
    float *f;
    size_t n;
} arr;

static arr arr_rand(size_t n, double scale) {
    arr a = {calloc(n, sizeof(double)), calloc(n, sizeof(float)), n};
    for (size_t i = 0; i < n; i++) {
        a.f[i] = (float)(urand() * scale);
        a.d[i] = a.f[i];
    }
    return a;
}
static void arr_free(arr a) {
    free(a.d);
    free(a.f);
}
/* Gradient buffers start at a known non-zero value to check accumulation. */
static float *grad_buf(size_t n) {
    float *g = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] = 0.25f;
    return g;
}

static void check_close_arrays(const char *what, const float *got, const double *want, size_t n, double rel,
                               double floor_abs) {
    double maxabs = 0.0;
    for (size_t i = 0; i < n; i++)
        maxabs = fmax(maxabs, fabs(want[i]));
    double tol = rel * maxabs + floor_abs;
    size_t bad = 0, worst_i = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]);
        if (e > worst) worst = e, worst_i = i;
        if (!(e <= tol)) bad++;
    }
    if (bad) {
        fprintf(stderr, "  %s: %zu of %zu values off; worst at %zu: got %.9g want %.9g (tol %.3g)\n", what,
                bad, n, worst_i, got[worst_i], want[worst_i], tol);
        sft_test_failures++;
    }
}

/* The float64 loss of the op under test, evaluated on the current double inputs. */
typedef double (*loss_fn)(void *ctx);

/* Central differences on every element of x against the analytical gradient
 * (got minus the 0.25 start value). */
static void check_grad(const char *what, loss_fn loss, void *ctx, double *x, size_t n,
                       const float *grad_got) {
    double *num = malloc(n * sizeof(double));
    float *ana = malloc(n * sizeof(float));
    const double h = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double lp = loss(ctx);
        x[i] = keep - h;
        double lm = loss(ctx);
        x[i] = keep;
        num[i] = (lp - lm) / (2 * h);
        ana[i] = grad_got[i] - 0.25f;
    }
    check_close_arrays(what, ana, num, n, 1e-4, 1e-6);
    free(num);
    free(ana);
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* --------------------------------------------------------------- embedding */

enum { EN = 7, EC = 5, EV = 4, EP = 6 };
typedef struct {
    arr wte, wpe, r;
    int32_t tokens[EN], pos[EN];
    double out[EN * EC];
} emb_ctx;
static double emb_ref(void *p) {
    emb_ctx *c = p;
    for (int n = 0; n < EN; n++)
        for (int j = 0; j < EC; j++)
            c->out[n * EC + j] = c->wte.d[c->tokens[n] * EC + j] + c->wpe.d[c->pos[n] * EC + j];
    return dot_d(c->out, c->r.d, EN * EC);
}

TEST(embedding_forward_and_backward_match_float64_finite_differences) {
    emb_ctx c = {.wte = arr_rand(EV * EC, 1), .wpe = arr_rand(EP * EC, 1), .r = arr_rand(EN * EC, 1)};
    int32_t toks[EN] = {0, 3, 3, 1, 0, 2, 3}, pos[EN] = {0, 1, 2, 0, 1, 5, 5};
    memcpy(c.tokens, toks, sizeof toks);
    memcpy(c.pos, pos, sizeof pos);
    float out[EN * EC];
    sft_embedding_forward(out, c.tokens, c.pos, c.wte.f, c.wpe.f, EN, EC);
    emb_ref(&c);
    check_close_arrays("embedding out", out, c.out, EN * EC, 1e-6, 0);
    float *dwte = grad_buf(EV * EC), *dwpe = grad_buf(EP * EC);
    sft_embedding_backward(dwte, dwpe, c.r.f, c.tokens, c.pos, EN, EC);
    check_grad("dwte", emb_ref, &c, c.wte.d, EV * EC, dwte);
    check_grad("dwpe", emb_ref, &c, c.wpe.d, EP * EC, dwpe);
    free(dwte);
    free(dwpe);
    arr_free(c.wte), arr_free(c.wpe), arr_free(c.r);
}

/* --------------------------------------------------------------- layernorm */

enum { LN = 5, LC = 37 };
typedef struct {
    arr x, w, b, r;
    double eps, out[LN * LC];
    int rms;
} norm_ctx;
static double norm_ref(void *p) {
    norm_ctx *c = p;
    for (int n = 0; n < LN; n++) {
        const double *x = c->x.d + n * LC;
        double mean = 0, var = 0;
        if (!c->rms) {
            for (int j = 0; j < LC; j++)
                mean += x[j];
            mean /= LC;
        }
        for (int j = 0; j < LC; j++)
            var += (x[j] - mean) * (x[j] - mean);
        var /= LC;
        double s = 1.0 / sqrt(var + c->eps);
        for (int j = 0; j < LC; j++)
            c->out[n * LC + j] = (x[j] - mean) * s * c->w.d[j] + (c->rms ? 0.0 : c->b.d[j]);
    }
    return dot_d(c->out, c->r.d, LN * LC);
}

TEST(layernorm_forward_and_backward_match_float64_finite_differences) {
    norm_ctx c = {.x = arr_rand(LN * LC, 2),
                  .w = arr_rand(LC, 1),
                  .b = arr_rand(LC, 1),
                  .r = arr_rand(LN * LC, 1),
                  .eps = 1e-5};
    for (int i = 0; i < LN * LC; i++)
        c.x.f[i] += 0.5f, c.x.d[i] = c.x.f[i]; /* non-zero mean */
    float out[LN * LC], mean[LN], rstd[LN];
    sft_layernorm_forward(out, mean, rstd, c.x.f, c.w.f, c.b.f, LN, LC, (float)c.eps);
    norm_ref(&c);
    check_close_arrays("layernorm out", out, c.out, LN * LC, 1e-5, 0);
    float *dx = grad_buf(LN * LC), *dw = grad_buf(LC), *db = grad_buf(LC);
    sft_layernorm_backward(dx, dw, db, c.r.f, c.x.f, c.w.f, mean, rstd, LN, LC);
    check_grad("layernorm dx", norm_ref, &c, c.x.d, LN * LC, dx);
    check_grad("layernorm dw", norm_ref, &c, c.w.d, LC, dw);
    check_grad("layernorm db", norm_ref, &c, c.b.d, LC, db);
    free(dx), free(dw), free(db);
    arr_free(c.x), arr_free(c.w), arr_free(c.b), arr_free(c.r);
}

TEST(rmsnorm_forward_and_backward_match_float64_finite_differences) {
    norm_ctx c = {.x = arr_rand(LN * LC, 2),
                  .w = arr_rand(LC, 1),
                  .b = arr_rand(LC, 1),
                  .r = arr_rand(LN * LC, 1),
                  .eps = 1e-6,
                  .rms = 1};
    float out[LN * LC], rstd[LN];
    sft_rmsnorm_forward(out, rstd, c.x.f, c.w.f, LN, LC, (float)c.eps);
    norm_ref(&c);
    check_close_arrays("rmsnorm out", out, c.out, LN * LC, 1e-5, 0);
    float *dx = grad_buf(LN * LC), *dw = grad_buf(LC);
    sft_rmsnorm_backward(dx, dw, c.r.f, c.x.f, c.w.f, rstd, LN, LC);
    check_grad("rmsnorm dx", norm_ref, &c, c.x.d, LN * LC, dx);
    check_grad("rmsnorm dw", norm_ref, &c, c.w.d, LC, dw);
    free(dx), free(dw);
    arr_free(c.x), arr_free(c.w), arr_free(c.b), arr_free(c.r);
}

/* ------------------------------------------------------------------ matmul */

enum { MN = 6, MC = 9, MOC = 70 }; /* OC > 64 crosses a column block of the bias reduction */
typedef struct {
    arr x, w, b, r;
    int w_in_out;
    double out[MN * MOC];
} mm_ctx;
static double mm_ref(void *p) {
    mm_ctx *c = p;
    for (int n = 0; n < MN; n++)
        for (int o = 0; o < MOC; o++) {
            double s = c->b.d[o];
            for (int i = 0; i < MC; i++)
                s += c->x.d[n * MC + i] * (c->w_in_out ? c->w.d[i * MOC + o] : c->w.d[o * MC + i]);
            c->out[n * MOC + o] = s;
        }
    return dot_d(c->out, c->r.d, MN * MOC);
}

static void matmul_case(int w_in_out) {
    mm_ctx c = {.x = arr_rand(MN * MC, 1),
                .w = arr_rand(MOC * MC, 1),
                .b = arr_rand(MOC, 1),
                .r = arr_rand(MN * MOC, 1),
                .w_in_out = w_in_out};
    float out[MN * MOC];
    sft_matmul_forward(out, c.x.f, c.w.f, c.b.f, MN, MC, MOC, w_in_out);
    mm_ref(&c);
    check_close_arrays(w_in_out ? "matmul[in,out] out" : "matmul out", out, c.out, MN * MOC, 1e-6, 0);
    float *dx = grad_buf(MN * MC), *dw = grad_buf(MOC * MC), *db = grad_buf(MOC);
    sft_matmul_backward(dx, dw, db, c.r.f, c.x.f, c.w.f, MN, MC, MOC, w_in_out);
    check_grad("matmul dx", mm_ref, &c, c.x.d, MN * MC, dx);
    check_grad("matmul dw", mm_ref, &c, c.w.d, MOC * MC, dw);
    check_grad("matmul db", mm_ref, &c, c.b.d, MOC, db);
    free(dx), free(dw), free(db);
    arr_free(c.x), arr_free(c.w), arr_free(c.b), arr_free(c.r);
}

TEST(matmul_with_torch_layout_matches_float64_finite_differences) {
    matmul_case(0);
}

TEST(matmul_forward_add_accumulates_the_product) {
    mm_ctx c = {.x = arr_rand(MN * MC, 1),
                .w = arr_rand(MOC * MC, 1),
                .b = arr_rand(MOC, 0),
                .r = arr_rand(MN * MOC, 1)};
    float out[MN * MOC];
    double want[MN * MOC];
    mm_ref(&c);
    for (int i = 0; i < MN * MOC; i++)
        out[i] = 2.0f, want[i] = c.out[i] + 2.0;
    sft_matmul_forward_add(out, c.x.f, c.w.f, MN, MC, MOC);
    check_close_arrays("matmul_forward_add out", out, want, MN * MOC, 1e-6, 0);
    arr_free(c.x), arr_free(c.w), arr_free(c.b), arr_free(c.r);
}
TEST(matmul_with_conv1d_layout_matches_float64_finite_differences) {
    matmul_case(1);
}

/* ------------------------------------------------------- gelu and swiglu */

enum { AN = 64 };
typedef struct {
    arr x, y, r;
    double out[AN];
} act_ctx;
static double gelu_ref(void *p) {
    act_ctx *c = p;
    for (int i = 0; i < AN; i++) {
        double x = c->x.d[i];
        c->out[i] = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
    return dot_d(c->out, c->r.d, AN);
}
static double swiglu_ref(void *p) {
    act_ctx *c = p;
    for (int i = 0; i < AN; i++) {
        double g = c->x.d[i];
        c->out[i] = g / (1.0 + exp(-g)) * c->y.d[i];
    }
    return dot_d(c->out, c->r.d, AN);
}

TEST(gelu_tanh_forward_and_backward_match_float64_finite_differences) {
    act_ctx c = {.x = arr_rand(AN, 4), .y = arr_rand(AN, 1), .r = arr_rand(AN, 1)};
    float out[AN];
    sft_gelu_forward(out, c.x.f, AN);
    gelu_ref(&c);
    check_close_arrays("gelu out", out, c.out, AN, 1e-6, 1e-7);
    float *dx = grad_buf(AN);
    sft_gelu_backward(dx, c.x.f, c.r.f, AN);
    check_grad("gelu dx", gelu_ref, &c, c.x.d, AN, dx);
    free(dx);
    arr_free(c.x), arr_free(c.y), arr_free(c.r);
}

TEST(swiglu_forward_and_backward_match_float64_finite_differences) {
    act_ctx c = {.x = arr_rand(AN, 5), .y = arr_rand(AN, 2), .r = arr_rand(AN, 1)};
    float out[AN];
    sft_swiglu_forward(out, c.x.f, c.y.f, AN);
    swiglu_ref(&c);
    check_close_arrays("swiglu out", out, c.out, AN, 1e-6, 1e-7);
    float *dg = grad_buf(AN), *du = grad_buf(AN);
    sft_swiglu_backward(dg, du, c.r.f, c.x.f, c.y.f, AN);
    check_grad("swiglu dgate", swiglu_ref, &c, c.x.d, AN, dg);
    check_grad("swiglu dup", swiglu_ref, &c, c.y.d, AN, du);
    free(dg), free(du);
    arr_free(c.x), arr_free(c.y), arr_free(c.r);
}

/* -------------------------------------------------------------------- rope */

enum { RN = 5, RH = 3, RHD = 8, RSTRIDE = 30 }; /* stride > RH*RHD: rows inside a wider qkv buffer */
typedef struct {
    arr x, r;
    double inv[RHD / 2];
    int32_t pos[RN];
    double out[RN * RSTRIDE];
} rope_ctx;
static double rope_ref(void *p) {
    rope_ctx *c = p;
    memcpy(c->out, c->x.d, sizeof c->out);
    for (int n = 0; n < RN; n++)
        for (int h = 0; h < RH; h++) {
            const double *x = c->x.d + n * RSTRIDE + h * RHD;
            double *o = c->out + n * RSTRIDE + h * RHD;
            for (int i = 0; i < RHD; i++) {
                /* x * cos + rotate_half(x) * sin, rotate_half = cat(-x2, x1) */
                int k = i % (RHD / 2);
                double ang = c->inv[k] * c->pos[n];
                double rot = i < RHD / 2 ? -x[i + RHD / 2] : x[i - RHD / 2];
                o[i] = x[i] * cos(ang) + rot * sin(ang);
            }
        }
    double s = 0;
    for (int n = 0; n < RN; n++)
        for (int j = 0; j < RH * RHD; j++)
            s += c->out[n * RSTRIDE + j] * c->r.d[n * RSTRIDE + j];
    return s;
}

TEST(rope_forward_and_backward_match_float64_finite_differences) {
    rope_ctx c = {.x = arr_rand(RN * RSTRIDE, 1), .r = arr_rand(RN * RSTRIDE, 1)};
    int32_t pos[RN] = {0, 1, 2, 0, 7};
    memcpy(c.pos, pos, sizeof pos);
    sft_rope_params rp = {.theta = 10000.0, .head_dim = RHD};
    float inv[RHD / 2];
    sft_rope_inv_freq(inv, &rp);
    for (int i = 0; i < RHD / 2; i++) {
        CHECK_NEAR(inv[i], pow(10000.0, -2.0 * i / RHD), 1e-7);
        c.inv[i] = inv[i];
    }
    float cs[RN * RHD / 2], sn[RN * RHD / 2];
    sft_rope_tables(cs, sn, inv, c.pos, RN, RHD);
    float *x = malloc(sizeof(float) * RN * RSTRIDE);
    memcpy(x, c.x.f, sizeof(float) * RN * RSTRIDE);
    sft_rope_forward(x, cs, sn, RN, RH, RHD, RSTRIDE);
    rope_ref(&c);
    check_close_arrays("rope out", x, c.out, RN * RSTRIDE, 1e-6, 0);
    /* The backward works in place on a gradient: start from r, then add the 0.25 marker. */
    float *dx = malloc(sizeof(float) * RN * RSTRIDE);
    memcpy(dx, c.r.f, sizeof(float) * RN * RSTRIDE);
    sft_rope_backward(dx, cs, sn, RN, RH, RHD, RSTRIDE);
    /* The entries outside the heads are not rotated: their gradient is r itself. */
    for (int n = 0; n < RN; n++)
        for (int j = RH * RHD; j < RSTRIDE; j++)
            c.r.d[n * RSTRIDE + j] = 0, dx[n * RSTRIDE + j] = 0;
    for (int i = 0; i < RN * RSTRIDE; i++)
        dx[i] += 0.25f;
    check_grad("rope dx", rope_ref, &c, c.x.d, RN * RSTRIDE, dx);
    free(x), free(dx);
    arr_free(c.x), arr_free(c.r);
}

TEST(rope_llama3_scaling_matches_the_transformers_formula) {
    /* Llama 3.1: factor 8, low 1, high 4, original context 8192, theta 500000. */
    sft_rope_params rp = {.theta = 500000.0,
                          .head_dim = 64,
                          .llama3 = 1,
                          .factor = 8,
                          .low_freq_factor = 1,
                          .high_freq_factor = 4,
                          .original_max_position = 8192};
    float inv[32];
    sft_rope_inv_freq(inv, &rp);
    int scaled = 0, kept = 0, blended = 0;
    for (int i = 0; i < 32; i++) {
        double f = pow(500000.0, -2.0 * i / 64), wl = 2 * M_PI / f, want;
        if (wl < 8192.0 / 4) {
            want = f, kept++;
        } else if (wl > 8192.0 / 1) {
            want = f / 8, scaled++;
        } else {
            double s = (8192.0 / wl - 1) / (4 - 1);
            want = (1 - s) * f / 8 + s * f, blended++;
        }
        CHECK(fabs(inv[i] - want) <= 1e-6 * want);
    }
    /* all three bands are exercised by these frequencies */
    CHECK(scaled > 0 && kept > 0 && blended > 0);
}

/* --------------------------------------------------------------- attention */

enum {
    AB = 2,
    AT = 6,
    ANH = 4,
    ANKV = 2,
    AHD = 4,
    AQS = 20,
    AKS = 17,
    AVS = 18
}; /* strides wider than the heads: rows of a fused qkv buffer */
typedef struct {
    arr q, k, v, r;
    int32_t seq[AB * AT];
    int nkv, window;
    float dropout;
    uint64_t seed;
    double out[AB * AT * ANH * AHD];
} att_ctx;
static double att_ref(void *p) {
    att_ctx *c = p;
    int group = ANH / c->nkv;
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < ANH; h++)
            for (int i = 0; i < AT; i++) {
                int ti = b * AT + i, kvh = h / group;
                double s[AT], mx = -INFINITY, sum = 0;
                for (int j = 0; j < AT; j++) {
                    int tj = b * AT + j;
                    if (j > i || c->seq[tj] != c->seq[ti] || (c->window && i - j >= c->window)) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    double d = 0;
                    for (int e = 0; e < AHD; e++)
                        d += c->q.d[ti * AQS + h * AHD + e] * c->k.d[tj * AKS + kvh * AHD + e];
                    s[j] = d / sqrt((double)AHD);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < AT; j++)
                    sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
                for (int e = 0; e < AHD; e++) {
                    double o = 0;
                    for (int j = 0; j < AT; j++) {
                        if (s[j] == -INFINITY) continue;
                        double keep = 1.0; /* attention dropout: the mask is ops.h's definition */
                        if (c->dropout > 0)
                            keep = sft_dropout_keep(c->seed, ((size_t)(b * ANH + h) * AT + i) * AT + j,
                                                    c->dropout)
                                       ? 1.0 / (1.0 - c->dropout)
                                       : 0.0;
                        o += exp(s[j] - mx) / sum * keep * c->v.d[(b * AT + j) * AVS + kvh * AHD + e];
                    }
                    c->out[(ti * ANH + h) * AHD + e] = o;
                }
            }
    return dot_d(c->out, c->r.d, AB * AT * ANH * AHD);
}

static void attention_case(int nkv, const int32_t *seq, int window, float dropout) {
    att_ctx c = {.q = arr_rand(AB * AT * AQS, 1.5),
                 .k = arr_rand(AB * AT * AKS, 1.5),
                 .v = arr_rand(AB * AT * AVS, 1),
                 .r = arr_rand(AB * AT * ANH * AHD, 1),
                 .nkv = nkv,
                 .window = window,
                 .dropout = dropout,
                 .seed = 77};
    memcpy(c.seq, seq, sizeof c.seq);
    float out[AB * AT * ANH * AHD], att[AB * ANH * AT * AT];
    sft_attention_forward(out, att, c.q.f, AQS, c.k.f, AKS, c.v.f, AVS, c.seq, AB, AT, ANH, nkv, AHD, window,
                          dropout, c.seed);
    att_ref(&c);
    check_close_arrays("attention out", out, c.out, AB * AT * ANH * AHD, 1e-6, 0);
    float *dq = grad_buf(AB * AT * AQS), *dk = grad_buf(AB * AT * AKS), *dv = grad_buf(AB * AT * AVS);
    sft_attention_backward(dq, dk, dv, c.r.f, att, c.q.f, AQS, c.k.f, AKS, c.v.f, AVS, c.seq, AB, AT, ANH,
                           nkv, AHD, window, dropout, c.seed);
    check_grad("attention dq", att_ref, &c, c.q.d, AB * AT * AQS, dq);
    check_grad("attention dk", att_ref, &c, c.k.d, AB * AT * AKS, dk);
    check_grad("attention dv", att_ref, &c, c.v.d, AB * AT * AVS, dv);
    free(dq), free(dk), free(dv);
    arr_free(c.q), arr_free(c.k), arr_free(c.v), arr_free(c.r);
}

TEST(attention_with_grouped_kv_heads_matches_float64_finite_differences) {
    int32_t seq[AB * AT] = {0};
    attention_case(ANKV, seq, 0, 0.0f);
}

TEST(attention_with_a_single_kv_head_matches_float64_finite_differences) {
    int32_t seq[AB * AT] = {0};
    attention_case(1, seq, 0, 0.0f);
}

TEST(attention_dropout_matches_float64_finite_differences) {
    int32_t seq[AB * AT] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    attention_case(ANKV, seq, 0, 0.3f);
}

TEST(dropout_keeps_a_share_1_minus_p_scaled_and_the_backward_reuses_the_mask) {
    enum { DN = 20000 };
    float *x = malloc(sizeof(float) * DN), *g = malloc(sizeof(float) * DN);
    for (int i = 0; i < DN; i++)
        x[i] = 1.0f, g[i] = 2.0f;
    sft_dropout_forward(x, DN, 0.25f, 5);
    sft_dropout_backward(g, DN, 0.25f, 5);
    int kept = 0, same = 1;
    for (int i = 0; i < DN; i++) {
        kept += x[i] != 0.0f;
        if (x[i] != 0.0f && fabsf(x[i] - 1.0f / 0.75f) > 1e-6f) same = 0;
        if ((x[i] != 0.0f) != (g[i] != 0.0f) || fabsf(g[i] - 2.0f * x[i]) > 1e-6f) same = 0;
    }
    CHECK(same);
    CHECK(abs(kept - 15000) < 245); /* binomial(20000, 0.75): 4 standard deviations */
    /* another seed, another mask */
    for (int i = 0; i < DN; i++)
        g[i] = 1.0f;
    sft_dropout_forward(g, DN, 0.25f, 6);
    int differ = 0;
    for (int i = 0; i < DN; i++)
        differ += (g[i] != 0.0f) != (x[i] != 0.0f);
    CHECK(differ > 1000);
    free(x), free(g);
}

TEST(sliding_window_attention_matches_float64_finite_differences) {
    int32_t seq[AB * AT] = {0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 4, 4};
    attention_case(ANKV, seq, 3, 0.0f); /* key j visible to query i only when i - j < 3 */
    attention_case(ANKV, seq, 1, 0.0f); /* a window of one: each token sees itself */
}

TEST(attention_over_packed_records_matches_float64_finite_differences) {
    /* row 0 packs three records, row 1 two; the reference masks across records */
    int32_t seq[AB * AT] = {0, 0, 1, 1, 1, 2, 5, 5, 5, 5, 6, 6};
    attention_case(ANKV, seq, 0, 0.0f);
    attention_case(ANH, seq, 0, 0.0f);
}

/* ----------------------------------------------------------- cross-entropy */

enum { CN = 5, CV = 33 };
typedef struct {
    arr z;
    int32_t t[CN];
    double scale;
} ce_ctx;
static double ce_ref(void *p) {
    ce_ctx *c = p;
    double total = 0;
    for (int n = 0; n < CN; n++) {
        if (c->t[n] == SFT_IGNORE_INDEX) continue;
        const double *z = c->z.d + n * CV;
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < CV; i++)
            mx = fmax(mx, z[i]);
        for (int i = 0; i < CV; i++)
            s += exp(z[i] - mx);
        total += mx + log(s) - z[c->t[n]];
    }
    return total * c->scale;
}

TEST(cross_entropy_with_ignore_index_matches_float64_finite_differences) {
    ce_ctx c = {
        .z = arr_rand(CN * CV, 8), .t = {3, SFT_IGNORE_INDEX, 0, 32, SFT_IGNORE_INDEX}, .scale = 1.0 / 3};
    for (int i = 0; i < CV; i++)
        c.z.f[CV + i] = 1e4f, c.z.d[CV + i] = 1e4; /* an ignored row may hold anything */
    c.z.f[7] = 80.0f, c.z.d[7] = 80.0;             /* a large logit: stability without overflow */
    float lse[CN];
    double sum = sft_cross_entropy_forward(lse, c.z.f, c.t, CN, CV);
    CHECK_NEAR(sum * c.scale, ce_ref(&c), 1e-5);
    float *g = malloc(sizeof(float) * CN * CV);
    memcpy(g, c.z.f, sizeof(float) * CN * CV);
    sft_cross_entropy_backward(g, lse, c.t, CN, CV, (float)c.scale);
    for (int i = 0; i < CN * CV; i++)
        g[i] += 0.25f;
    check_grad("cross-entropy dlogits", ce_ref, &c, c.z.d, CN * CV, g);
    free(g);
    arr_free(c.z);
}

/* The products split the larger of the output's rows and columns across the
 * threads (columns in 16-column granules); every split must give the float64
 * product. */
static void split_case(int N, int C, int OC, int w_in_out, int threads) {
    arr x = arr_rand((size_t)N * C, 1), w = arr_rand((size_t)OC * C, 1), b = arr_rand(OC, 1),
        d = arr_rand((size_t)N * OC, 1);
    float *out = malloc(sizeof(float) * N * OC), *dx = calloc((size_t)N * C, sizeof(float));
    float *dw = calloc((size_t)OC * C, sizeof(float));
    double *want = malloc(sizeof(double) * N * OC), *want_dx = calloc((size_t)N * C, sizeof(double));
    double *want_dw = calloc((size_t)OC * C, sizeof(double));
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b.d[o];
            for (int i = 0; i < C; i++) {
                size_t wi = w_in_out ? (size_t)i * OC + o : (size_t)o * C + i;
                s += x.d[n * C + i] * w.d[wi];
                want_dx[n * C + i] += d.d[n * OC + o] * w.d[wi];
                want_dw[wi] += d.d[n * OC + o] * x.d[n * C + i];
            }
            want[n * OC + o] = s;
        }
    int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    sft_matmul_forward(out, x.f, w.f, b.f, N, C, OC, w_in_out);
    sft_matmul_backward(dx, dw, NULL, d.f, x.f, w.f, N, C, OC, w_in_out);
    omp_set_num_threads(keep);
    char what[64];
    snprintf(what, sizeof what, "split %dx%dx%d layout %d threads %d", N, C, OC, w_in_out, threads);
    check_close_arrays(what, out, want, (size_t)N * OC, 1e-6, 0);
    check_close_arrays(what, dx, want_dx, (size_t)N * C, 1e-6, 0);
    check_close_arrays(what, dw, want_dw, (size_t)OC * C, 1e-6, 0);
    free(out), free(dx), free(dw), free(want), free(want_dx), free(want_dw);
    arr_free(x), arr_free(w), arr_free(b), arr_free(d);
}

TEST(matmul_split_across_threads_by_rows_or_columns_matches_float64) {
    for (int threads = 1; threads <= 3; threads++)
        for (int layout = 0; layout < 2; layout++) {
            split_case(100, 20, 7, layout, threads);  /* many rows: split rows */
            split_case(3, 20, 100, layout, threads);  /* few rows: split columns */
            split_case(1, 5, 2, layout, threads);     /* fewer columns than threads */
            split_case(40, 20, 100, layout, threads); /* more columns than rows: 7 granules of 16 */
            split_case(20, 100, 7, layout, threads);  /* dinp [20, 100] by columns, dW by its larger side */
            split_case(8, 20, 20, layout, threads);   /* 20 columns: granules of 16 and 4 */
        }
}

/* The bf16 products run one single-threaded kernel per slice, and an
 * element's k order depends on K alone (gemm_bf16.c): the same bits for any
 * thread count, whichever side the split takes (rows, columns, both within
 * one backward). The float32 products are exact to the float64 product
 * above; sgemm's bits depend on the slice shape, so only bf16 is compared
 * bit for bit. */
static void bf16_bits_case(int N, int C, int OC, int w_in_out) {
    arr x = arr_rand((size_t)N * C, 1), w = arr_rand((size_t)OC * C, 1), b = arr_rand(OC, 1),
        d = arr_rand((size_t)N * OC, 1), acc = arr_rand((size_t)N * OC, 1), g = arr_rand((size_t)OC * C, 1),
        gx = arr_rand((size_t)N * C, 1);
    float *out[2], *add[2], *dx[2], *dw[2];
    int keep = omp_get_max_threads();
    for (int threads = 1; threads <= 4; threads++) {
        int r = threads > 1; /* [0]: one thread, [1]: this thread count */
        out[r] = malloc(sizeof(float) * N * OC), add[r] = malloc(sizeof(float) * N * OC);
        dx[r] = malloc(sizeof(float) * N * C), dw[r] = malloc(sizeof(float) * OC * C);
        memcpy(add[r], acc.f, sizeof(float) * N * OC);
        memcpy(dx[r], gx.f, sizeof(float) * N * C); /* the backward accumulates */
        memcpy(dw[r], g.f, sizeof(float) * OC * C);
        omp_set_num_threads(threads);
        sft_matmul_forward_bf16(out[r], x.f, w.f, b.f, N, C, OC, w_in_out);
        if (!w_in_out) sft_matmul_forward_add_bf16(add[r], x.f, w.f, N, C, OC);
        sft_matmul_backward_bf16(dx[r], dw[r], NULL, d.f, x.f, w.f, N, C, OC, w_in_out);
        omp_set_num_threads(keep);
        if (r) {
            char what[80];
            snprintf(what, sizeof what, "bf16 %dx%dx%d layout %d threads %d", N, C, OC, w_in_out, threads);
            int same = !memcmp(out[0], out[1], sizeof(float) * N * OC) &&
                       !memcmp(add[0], add[1], sizeof(float) * N * OC) &&
                       !memcmp(dx[0], dx[1], sizeof(float) * N * C) &&
                       !memcmp(dw[0], dw[1], sizeof(float) * OC * C);
            if (!same) fprintf(stderr, "  %s: not the one-thread bits\n", what);
            CHECK(same);
            free(out[1]), free(add[1]), free(dx[1]), free(dw[1]);
        }
    }
    /* and the products are not trivially equal: the bias and accumulation were applied */
    CHECK(memcmp(dw[0], g.f, sizeof(float) * OC * C) != 0);
    if (!w_in_out) CHECK(memcmp(add[0], acc.f, sizeof(float) * N * OC) != 0);
    free(out[0]), free(add[0]), free(dx[0]), free(dw[0]);
    arr_free(x), arr_free(w), arr_free(b), arr_free(d), arr_free(acc), arr_free(g), arr_free(gx);
}

TEST(bf16_matmul_is_the_same_bits_for_any_thread_count_and_split) {
    for (int layout = 0; layout < 2; layout++) {
        bf16_bits_case(100, 40, 24, layout); /* rows */
        bf16_bits_case(24, 40, 100, layout); /* columns (forward), rows or columns (gradients) */
        bf16_bits_case(40, 70, 100, layout);
        bf16_bits_case(33, 1030, 37, layout); /* K over the kernel's 768: two k blocks */
    }
}
