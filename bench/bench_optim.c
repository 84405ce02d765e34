/* bench_optim.c: the optimizer part of a GPT-2-124M full fine-tuning step,
 * against the memory bandwidth it needs.
 *
 *   bench_optim [--reps N] [--threads N]
 *
 * A parameter set laid out as GPT-2-124M's (148 tensors, 124,439,808
 * parameters, decayed matrices and undecayed biases/norms) with its
 * gradients and AdamW moments (2.5 GB in all), and three passes timed in
 * turn, round after round (A, B, C, A, B, C, ...), so that a change in the
 * machine's load hits all three alike:
 *   stream      the fused step's memory traffic with trivial arithmetic: read
 *               g; then read p, g, m, v and write p, m, v (32 bytes per
 *               parameter), one vectorised parallel loop each: the floor.
 *   two-pass    sft_clip_grad_norm(1.0) then sft_adamw_step: norm, scaling
 *               of the gradients, update (40 bytes per parameter).
 *   fused       sft_adamw_step_clipped(max_grad_norm 1.0): norm, then one
 *               pass that scales and updates (32 bytes per parameter).
 * The gradients are large enough that clipping fires every round (the
 * two-pass variant gets its unclipped gradients back before each round,
 * outside the timing). Reported per pass: median wall ms, median CPU ms
 * (process CPU time, all threads), GB/s of the traffic above. Short by
 * default (3 rounds: `make bench` runs every bench_* with one thread); the
 * training step uses 2 threads on the build machine: --threads 2. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "model/model.h"
#include "model/ops.h"
#include "train/optim.h"

#define MAX_REPS 64

/* GPT-2-124M's trainable tensors in the model's order: 12 layers of d = 768,
 * vocabulary 50257, 1024 positions. */
static int gpt2_124m_set(sft_param_set *set, sft_err *err) {
    const int d = 768, layers = 12;
    char name[64];
    int rc =
        sft_param_set_add(set, "wte", 2, 50257, d, err) || sft_param_set_add(set, "wpe", 2, 1024, d, err);
    for (int l = 0; l < layers && !rc; l++) {
        const struct {
            const char *name;
            int ndim;
            int64_t d0, d1;
        } t[] = {{"ln_1.weight", 1, d, 0},
                 {"ln_1.bias", 1, d, 0},
                 {"attn.c_attn.weight", 2, d, 3 * d},
                 {"attn.c_attn.bias", 1, 3 * d, 0},
                 {"attn.c_proj.weight", 2, d, d},
                 {"attn.c_proj.bias", 1, d, 0},
                 {"ln_2.weight", 1, d, 0},
                 {"ln_2.bias", 1, d, 0},
                 {"mlp.c_fc.weight", 2, d, 4 * d},
                 {"mlp.c_fc.bias", 1, 4 * d, 0},
                 {"mlp.c_proj.weight", 2, 4 * d, d},
                 {"mlp.c_proj.bias", 1, d, 0}};
        for (size_t i = 0; i < sizeof t / sizeof *t && !rc; i++) {
            snprintf(name, sizeof name, "h.%d.%s", l, t[i].name);
            rc = sft_param_set_add(set, name, t[i].ndim, t[i].d0, t[i].d1, err);
        }
    }
    if (!rc)
        rc = sft_param_set_add(set, "ln_f.weight", 1, d, 0, err) ||
             sft_param_set_add(set, "ln_f.bias", 1, d, 0, err);
    return rc ? -1 : sft_param_set_alloc(set, 1, err);
}

/* The floor: the fused step's traffic (a read of g, then read p, g, m, v and
 * write p, m, v) with an add or two per element. Returns a value that
 * depends on the read so that the compiler keeps it. */
static float stream_pass(float *p, const float *g, float *m, float *v, size_t n) {
    float total = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i++)
        total += g[i];
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        p[i] += g[i] * 1e-9f;
        m[i] += g[i];
        v[i] += m[i];
    }
    return total;
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv);
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc && atoi(argv[i + 1]) > 0 &&
            atoi(argv[i + 1]) <= MAX_REPS)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc && atoi(argv[i + 1]) > 0)
            omp_set_num_threads(atoi(argv[++i]));
        else {
            fprintf(stderr, "usage: bench_optim [--reps 1..%d] [--threads N]\n", MAX_REPS);
            return 2;
        }
    }
    sft_param_set set = {0};
    sft_adamw opt;
    sft_err err;
    if (gpt2_124m_set(&set, &err) || sft_adamw_init(&opt, &set, 0.9, 0.95, 1e-8, 0.1, &err)) {
        fprintf(stderr, "bench_optim: %s\n", err.msg);
        return 1;
    }
    size_t n = set.numel, bytes = n * sizeof(float);
    float *grad_unclipped = malloc(bytes);
    if (!grad_unclipped) {
        fprintf(stderr, "bench_optim: out of memory for %zu gradients\n", n);
        return 1;
    }
    uint64_t state = 1;
    for (size_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((double)(state >> 40) / (double)(1ull << 23) - 1.0); /* [-1, 1) */
        set.data[i] = 0.02f * u;
        grad_unclipped[i] = 1e-3f * u; /* norm ~6.4: clipping at 1.0 fires */
    }
    memcpy(set.grad, grad_unclipped, bytes);
    printf("optimizer step over %zu parameters (%d tensors, %d decay spans), %d threads, %d rounds\n", n,
           set.count, opt.span_count, omp_get_max_threads(), reps);

    enum { STREAM, TWO_PASS, FUSED, PASSES };
    const char *names[PASSES] = {"stream (floor)", "two-pass clip + adamw", "fused clip + adamw"};
    const double traffic[PASSES] = {32.0 * (double)n, 40.0 * (double)n, 32.0 * (double)n};
    double wall[PASSES][MAX_REPS], cpu[PASSES][MAX_REPS], sink = 0.0;
    /* one untimed round first: the pages of the moments are touched, the threads started */
    for (int r = -1; r < reps; r++) {
        for (int pass = 0; pass < PASSES; pass++) {
            if (pass == TWO_PASS) memcpy(set.grad, grad_unclipped, bytes);
            double w0 = bench_clock_s(CLOCK_MONOTONIC), c0 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
            if (pass == STREAM)
                sink += stream_pass(set.data, set.grad, opt.m, opt.v, n);
            else if (pass == TWO_PASS) {
                sink += sft_clip_grad_norm(&set, 1.0);
                sft_adamw_step(&opt, &set, 1e-4);
            } else
                sink += sft_adamw_step_clipped(&opt, &set, 1e-4, 1.0, 1).grad_norm;
            double w1 = bench_clock_s(CLOCK_MONOTONIC), c1 = bench_clock_s(CLOCK_PROCESS_CPUTIME_ID);
            if (pass == STREAM) memset(opt.m, 0, bytes), memset(opt.v, 0, bytes); /* back to moments */
            if (r >= 0) wall[pass][r] = w1 - w0, cpu[pass][r] = c1 - c0;
        }
    }
    printf("%-24s %10s %10s %8s\n", "pass", "wall ms", "CPU ms", "GB/s");
    double floor_s = 0.0;
    for (int pass = 0; pass < PASSES; pass++) {
        double w = bench_median(wall[pass], reps), c = bench_median(cpu[pass], reps);
        if (pass == STREAM) floor_s = w;
        printf("%-24s %10.1f %10.1f %8.1f\n", names[pass], w * 1e3, c * 1e3, traffic[pass] / w * 1e-9);
    }
    printf("fused at %.0f%% of the stream floor's speed (checksum %g)\n",
           100.0 * floor_s / bench_median(wall[FUSED], reps), sink);
    free(grad_unclipped);
    sft_adamw_free(&opt);
    sft_param_set_free(&set);
    return 0;
}
