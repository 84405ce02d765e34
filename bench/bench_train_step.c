/* bench_train_step.c: one training step of a GPT-2-124M-shaped model
 * (12 layers, 768 channels, 12 heads, vocabulary 50257, 1024 positions) at
 * B=4, T=256: forward, backward, clip_grad_norm_(1.0) and AdamW, as the
 * trainer runs it. Full fine-tuning and LoRA (r=8 on c_attn, c_proj, c_fc)
 * each run in their own process, so that each peak RSS is its own.
 *
 *   bench_train_step [full|lora|both] [STEPS] [THREADS]
 *
 * Defaults: both, 3 timed steps after 1 warm-up step, threads from
 * OMP_NUM_THREADS (all cores when unset). Prints ms per step (median),
 * tokens per second and the peak RSS; bench/bench_train_step_torch.py runs
 * the same step in PyTorch for comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/lora.h"
#include "model/model.h"
#include "train/optim.h"

enum { B = 4, T = 256 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run(int lora, int steps, int threads) {
    sft_set_threads(threads);
    sft_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.model_type, sizeof cfg.model_type, "gpt2");
    cfg.arch = SFT_ARCH_GPT2;
    cfg.vocab_size = 50257, cfg.hidden_size = 768, cfg.num_layers = 12, cfg.num_heads = 12,
    cfg.num_kv_heads = 12;
    cfg.intermediate_size = 3072, cfg.max_position_embeddings = 1024, cfg.norm_eps = 1e-5;
    cfg.initializer_range = 0.02, cfg.tie_word_embeddings = 1;
    snprintf(cfg.hidden_act, sizeof cfg.hidden_act, "gelu_new");
    sft_err err;
    sft_model *m = sft_model_create(&cfg, &err);
    if (!m) return fprintf(stderr, "%s\n", err.msg), 1;
    sft_model_init_weights(m, 1);
    if (lora) {
        sft_lora_config lc = {.r = 8, .alpha = 16, .dropout = 0.0};
        sft_lora_default_targets(m, &lc);
        if (sft_lora_attach(m, &lc, 1, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    } else if (sft_model_train_full(m, &err)) {
        return fprintf(stderr, "%s\n", err.msg), 1;
    }
    if (sft_model_plan(m, B, T, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    m->training = 1;
    sft_adamw opt;
    if (sft_adamw_init(&opt, m->trainable, 0.9, 0.95, 1e-8, 0.1, &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    static int32_t tokens[B * T], targets[B * T], pos[B * T], seq[B * T];
    unsigned s = 12345;
    for (int i = 0; i < B * T; i++) {
        s = s * 1103515245u + 12345u;
        tokens[i] = (int32_t)((s >> 8) % 50257u);
        pos[i] = i % T;
        seq[i] = 0;
    }
    for (int i = 0; i < B * T; i++)
        targets[i] = (i % T) + 1 < T ? tokens[i + 1] : SFT_IGNORE_INDEX;
    sft_batch batch = {B, T, tokens, targets, pos, seq, (long)B * (T - 1)};
    double times[64], loss = 0, cpu_total = 0;
    if (steps > 63) steps = 63;
    for (int step = 0; step <= steps; step++) {
        double t0 = now_s(), c0 = cpu_s();
        sft_model_zero_grad(m);
        if (sft_model_forward(m, &batch, &loss, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        sft_model_backward(m, &batch);
        sft_clip_grad_norm(m->trainable, 1.0);
        sft_adamw_step(&opt, m->trainable, 1e-4);
        times[step] = now_s() - t0; /* step 0 is the warm-up */
        if (step) cpu_total += cpu_s() - c0;
    }
    qsort(times + 1, (size_t)steps, sizeof(double), cmp_double);
    double median = times[1 + steps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* CPU seconds per step too: on a shared machine the wall time depends on the neighbours */
    printf("sft %-4s B=%d T=%d threads=%d: %.0f ms/step, %.0f tokens/s, %.1f CPU s/step, peak RSS %.0f MiB "
           "(trainable %zu, loss %.4f)\n",
           lora ? "lora" : "full", B, T, sft_get_threads(), median * 1e3, B * T / median, cpu_total / steps,
           ru.ru_maxrss / 1024.0, m->trainable->numel, loss);
    sft_adamw_free(&opt);
    sft_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    sft_thread_pool_setup(argv); /* as the sft binary does */
    const char *mode = argc > 1 ? argv[1] : "both";
    int steps = argc > 2 ? atoi(argv[2]) : 3;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    if (strcmp(mode, "both")) return run(!strcmp(mode, "lora"), steps, threads);
    int rc = 0;
    for (int lora = 0; lora < 2; lora++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            int child_rc = run(lora, steps, threads);
            fflush(stdout); /* _exit does not flush stdio */
            _exit(child_rc);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        rc |= !WIFEXITED(status) || WEXITSTATUS(status);
    }
    return rc;
}
