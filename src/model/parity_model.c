/* parity_model.c: `sft parity` for model_* and lora_* entries: replays what
 * tests/fixtures/hf/generate.py did with transformers and PEFT (one batch,
 * forward, backward, clip_grad_norm_(1.0), two AdamW steps, greedy decoding,
 * LoRA merge) and compares every recorded number.
 *
 * The fixtures use the HF causal-LM convention, logits[:, :-1] against
 * labels[:, 1:]; the batch here is built already shifted (targets[t] =
 * labels[t+1]), which is the form the trainer feeds the model.
 *
 * Tolerances are the fixtures README's: loss and logits 1e-4 relative;
 * gradient statistics 1e-3 relative; parameters after a step 1e-5 absolute.
 * Values that may sit near zero get a floor from their tensor's own scale
 * (the rms for a gradient element, the L2 norm for a gradient sum, the
 * largest listed logit of the position for a logit), so that a relative
 * check does not fail on float32 rounding of a quantity that is (near) zero
 * in exact arithmetic. */
#include "model/parity_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/file.h"
#include "io/json.h"
#include "model/generate.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/optim.h"

#define LOSS_REL 1e-4
#define LOGIT_REL 1e-4
#define GRAD_REL 1e-3
#define PARAM_ABS 1e-5

typedef struct {
    const char *key;
    sft_parity *p;
    double worst_loss, worst_logit, worst_grad,
        worst_param; /* largest error / tolerance seen, for --verbose */
} checker;

static double ratio(double err, double tol) {
    return tol > 0 ? err / tol : (err > 0 ? INFINITY : 0);
}

/* Relative check with a floor; records the error as a fraction of its tolerance. */
static int close_rel(checker *c, double *worst, double got, double want, double rel, double floor_scale,
                     const char *fmt_what, const char *name) {
    double tol = rel * fmax(fabs(want), floor_scale);
    double err = fabs(got - want);
    int ok = err <= tol;
    if (ratio(err, tol) > *worst) *worst = ratio(err, tol);
    sft_parity_line(c->p, ok, "%s: %s%s%s: got %.9g, expected %.9g (tolerance %.3g)", c->key, fmt_what,
                    name ? " " : "", name ? name : "", got, want, tol);
    return ok;
}

/* Absolute check (parameters after a step). */
static int close_abs(checker *c, double *worst, double got, double want, double tol, const char *what,
                     const char *name) {
    double err = fabs(got - want);
    int ok = err <= tol;
    if (ratio(err, tol) > *worst) *worst = ratio(err, tol);
    sft_parity_line(c->p, ok, "%s: %s %s: got %.9g, expected %.9g (tolerance %.3g)", c->key, what, name, got,
                    want, tol);
    return ok;
}

static int get_num(const json_t *obj, const char *key, double *out, const char *ctx, sft_err *err) {
    return sft_json_get_number(obj, key, out, ctx, err);
}

/* Reads a B x T integer matrix. */
static int32_t *read_matrix(const json_t *entry, const char *key, int *B, int *T, const char *ctx,
                            sft_err *err) {
    const json_t *rows = json_object_get(entry, key);
    if (!json_is_array(rows) || !json_array_size(rows))
        return sft_errf(err, "%s: '%s' must be a non-empty array of rows", ctx, key), NULL;
    *B = (int)json_array_size(rows);
    *T = (int)json_array_size(json_array_get(rows, 0));
    if (*T <= 0) return sft_errf(err, "%s: '%s' has an empty row", ctx, key), NULL;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)*B * *T);
    if (!out) return sft_errf(err, "out of memory"), NULL;
    for (int b = 0; b < *B; b++) {
        const json_t *row = json_array_get(rows, (size_t)b);
        if (!json_is_array(row) || (int)json_array_size(row) != *T) {
            free(out);
            return sft_errf(err, "%s: '%s' row %d must have %d entries", ctx, key, b, *T), NULL;
        }
        for (int t = 0; t < *T; t++) {
            int64_t v;
            if (sft_json_int(json_array_get(row, (size_t)t), &v)) {
                free(out);
                return sft_errf(err, "%s: '%s'[%d][%d] is not an integer", ctx, key, b, t), NULL;
            }
            out[(size_t)b * *T + t] = (int32_t)v;
        }
    }
    return out;
}

/* Parameters after AdamW steps: an element whose gradient sits at the
 * float32 noise floor of its tensor (an exact zero in real arithmetic, made of
 * cancelling terms) gets an update of up to lr from that noise alone, since
 * Adam divides the gradient by its own magnitude. So the absolute tolerance
 * of an element adds, for each step t, the update's sensitivity to a gradient
 * error at the float32 noise floor, dg = GRAD_NOISE x the tensor's gradient
 * rms (the gradient checks measure element errors up to 7e-5 of it):
 * lr * eps * dg / (|g| + eps)^2 (from u = lr g / (|g| + eps) of a first
 * step), capped at 2 lr. For any gradient well above eps this adds nothing
 * measurable; it only frees the elements whose step is decided by noise. */
#define GRAD_NOISE 1e-4
typedef struct {
    const float
        *grad[2]; /* our clipped gradients of steps 1 and 2, mirroring the set (NULL: step not taken) */
    double lr, eps;
} adam_noise;

static double noise_tolerance(const adam_noise *an, const double *dg, size_t offset, size_t i) {
    double tol = 0;
    for (int step = 0; an && step < 2; step++) {
        if (!an->grad[step]) continue;
        double g = fabs(an->grad[step][offset + i]);
        tol += fmin(2 * an->lr, an->lr * an->eps * dg[step] / ((g + an->eps) * (g + an->eps)));
    }
    return tol;
}

/* Compares {shape, sum, sumsq, idx, vals} of one tensor. as_param: the
 * values are parameters (absolute tolerance, widened by `an` when given),
 * else gradients (relative). */
static void check_stats(checker *c, const char *what, const char *name, const json_t *ref, const float *data,
                        const sft_tensor *t, int as_param, const adam_noise *an) {
    const json_t *shape = json_object_get(ref, "shape");
    int same = json_is_array(shape) && (int)json_array_size(shape) == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) {
        int64_t v;
        same = !sft_json_int(json_array_get(shape, (size_t)d), &v) && v == t->shape[d];
    }
    sft_parity_line(c->p, same, "%s: %s %s: shape", c->key, what, name);
    if (!same) return;
    double sum = 0, sumsq = 0;
    for (size_t i = 0; i < t->numel; i++)
        sum += data[i], sumsq += (double)data[i] * data[i];
    double want_sum = 0, want_sumsq = 0;
    json_t *js = json_object_get(ref, "sum"), *jq = json_object_get(ref, "sumsq");
    if (sft_json_number(js, &want_sum) || sft_json_number(jq, &want_sumsq)) {
        sft_parity_line(c->p, 0, "%s: %s %s: sum/sumsq missing in the reference", c->key, what, name);
        return;
    }
    double norm = sqrt(want_sumsq), rms = sqrt(want_sumsq / (double)t->numel);
    char label[64];
    snprintf(label, sizeof label, "%s sum", what);
    double dg[2] = {0, 0}, noise_sum = 0, noise_sq = 0;
    for (int step = 0; an && step < 2; step++) {
        if (!an->grad[step]) continue;
        double ss = 0;
        for (size_t i = 0; i < t->numel; i++)
            ss += (double)an->grad[step][t->offset + i] * an->grad[step][t->offset + i];
        dg[step] = GRAD_NOISE * sqrt(ss / (double)t->numel);
    }
    if (an)
        for (size_t i = 0; i < t->numel; i++) {
            double e = noise_tolerance(an, dg, t->offset, i);
            noise_sum += e;
            noise_sq += 2 * fabs(data[i]) * e;
        }
    if (as_param) {
        /* element errors of PARAM_ABS add up like a random walk over the tensor */
        double tol_sum = PARAM_ABS * sqrt((double)t->numel) + 1e-6 * fabs(want_sum) + noise_sum;
        double tol_sq = 2 * PARAM_ABS * norm + 1e-6 * want_sumsq + noise_sq;
        close_abs(c, &c->worst_param, sum, want_sum, tol_sum, label, name);
        snprintf(label, sizeof label, "%s sumsq", what);
        close_abs(c, &c->worst_param, sumsq, want_sumsq, tol_sq, label, name);
    } else {
        close_rel(c, &c->worst_grad, sum, want_sum, GRAD_REL, norm, label, name);
        snprintf(label, sizeof label, "%s sumsq", what);
        close_rel(c, &c->worst_grad, sumsq, want_sumsq, GRAD_REL, 0, label, name);
    }
    const json_t *idx = json_object_get(ref, "idx"), *vals = json_object_get(ref, "vals");
    size_t n = json_array_size(idx);
    int bad = 0;
    double worst_err = 0, worst_got = 0, worst_want = 0, worst_tol = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t at;
        double want;
        if (sft_json_int(json_array_get(idx, i), &at) || at < 0 || (size_t)at >= t->numel ||
            sft_json_number(json_array_get(vals, i), &want)) {
            bad++;
            continue;
        }
        double got = data[at];
        double tol = as_param ? PARAM_ABS + noise_tolerance(an, dg, t->offset, (size_t)at)
                              : GRAD_REL * fmax(fabs(want), rms);
        double e = fabs(got - want);
        double r = ratio(e, tol);
        if (r > (as_param ? c->worst_param : c->worst_grad))
            *(as_param ? &c->worst_param : &c->worst_grad) = r;
        if (e > tol) bad++;
        if (r >= ratio(worst_err, worst_tol))
            worst_err = e, worst_got = got, worst_want = want, worst_tol = tol;
    }
    sft_parity_line(c->p, !bad,
                    "%s: %s %s: %zu values (%d off; worst got %.9g, expected %.9g, tolerance %.3g)", c->key,
                    what, name, n, bad, worst_got, worst_want, worst_tol);
}

/* The fixture's name of a trainable tensor -> ours: PEFT's grad names carry
 * the adapter name ".default", the file names do not. */
static void strip_default(char *out, size_t cap, const char *name) {
    const char *d = strstr(name, ".default.");
    if (d)
        snprintf(out, cap, "%.*s%s", (int)(d - name), name, d + 8);
    else
        snprintf(out, cap, "%s", name);
}

static void check_set_stats(checker *c, const char *what, const json_t *refs, const sft_param_set *set,
                            const float *base, int as_param, const adam_noise *an) {
    const char *name;
    json_t *ref;
    int matched = 0;
    json_object_foreach((json_t *)refs, name, ref) {
        char ours[200];
        strip_default(ours, sizeof ours, name);
        const sft_tensor *t = sft_param_set_find(set, ours);
        if (!t) {
            sft_parity_line(c->p, 0, "%s: %s %s: no such tensor in the model", c->key, what, name);
            continue;
        }
        matched++;
        check_stats(c, what, name, ref, base + t->offset, t, as_param, an);
    }
    if (as_param >= 0)
        sft_parity_line(c->p, matched == set->count, "%s: %s: %d tensors in the model, %d in the reference",
                        c->key, what, set->count, matched);
}

static void check_forward(checker *c, const json_t *entry, const sft_model *m, double loss, int B, int T) {
    double want;
    if (!sft_json_number(json_object_get(entry, "loss"), &want))
        close_rel(c, &c->worst_loss, loss, want, LOSS_REL, 0, "loss", NULL);
    const int V = m->cfg.vocab_size;
    const json_t *lse = json_object_get(entry, "logsumexp"), *am = json_object_get(entry, "argmax");
    int lse_bad = 0, am_bad = 0;
    double lse_worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *z = m->logits + ((size_t)b * T + t) * V;
            double w;
            if (!sft_json_number(json_array_get(json_array_get(lse, (size_t)b), (size_t)t), &w)) {
                double r = ratio(fabs(m->lse[(size_t)b * T + t] - w), LOGIT_REL * fabs(w));
                if (r > 1) lse_bad++;
                if (r > lse_worst) lse_worst = r;
            } else {
                lse_bad++;
            }
            int64_t a;
            if (sft_json_int(json_array_get(json_array_get(am, (size_t)b), (size_t)t), &a) || a < 0 ||
                a >= V) {
                am_bad++;
                continue;
            }
            int32_t best = 0;
            for (int i = 1; i < V; i++)
                if (z[i] > z[best]) best = i;
            /* a different argmax is a mismatch only when the reference's token is not
             * also a maximum of ours within the logit tolerance (a float32 near-tie) */
            if (best != a && z[best] - z[a] > LOGIT_REL * fmax(fabs(z[best]), 1e-3)) am_bad++;
        }
    if (lse_worst > c->worst_logit) c->worst_logit = lse_worst;
    sft_parity_line(c->p, !lse_bad, "%s: logsumexp at %d positions (%d off, worst %.3g of tolerance)", c->key,
                    B * T, lse_bad, lse_worst);
    sft_parity_line(c->p, !am_bad, "%s: argmax at %d positions (%d off)", c->key, B * T, am_bad);
    const json_t *la = json_object_get(entry, "logits_at");
    size_t i;
    json_t *at;
    json_array_foreach(la, i, at) {
        int64_t b = -1, t = -1;
        sft_json_int(json_object_get(at, "b"), &b);
        sft_json_int(json_object_get(at, "t"), &t);
        const json_t *vidx = json_object_get(at, "vocab_idx"), *vals = json_object_get(at, "vals");
        if (b < 0 || b >= B || t < 0 || t >= T) {
            sft_parity_line(c->p, 0, "%s: logits_at[%zu]: position outside the batch", c->key, i);
            continue;
        }
        double scale = 0;
        for (size_t j = 0; j < json_array_size(vals); j++) {
            double v = 0;
            sft_json_number(json_array_get(vals, j), &v);
            scale = fmax(scale, fabs(v));
        }
        int bad = 0;
        double worst = 0;
        for (size_t j = 0; j < json_array_size(vidx); j++) {
            int64_t v;
            double want_v;
            if (sft_json_int(json_array_get(vidx, j), &v) || v < 0 || v >= V ||
                sft_json_number(json_array_get(vals, j), &want_v)) {
                bad++;
                continue;
            }
            double got = m->logits[((size_t)b * T + t) * V + v];
            double r = ratio(fabs(got - want_v), LOGIT_REL * fmax(fabs(want_v), scale));
            if (r > 1) bad++;
            if (r > worst) worst = r;
        }
        if (worst > c->worst_logit) c->worst_logit = worst;
        sft_parity_line(c->p, !bad,
                        "%s: logits at (%lld, %lld): %zu values (%d off, worst %.3g of tolerance)", c->key,
                        (long long)b, (long long)t, json_array_size(vidx), bad, worst);
    }
}

static void check_greedy(checker *c, const json_t *entry, const sft_model *m, const char *model_dir) {
    const json_t *g = json_object_get(entry, "greedy");
    if (!g) return;
    const json_t *prompt = json_object_get(g, "prompt"), *want = json_object_get(g, "output");
    int np = (int)json_array_size(prompt), nw = (int)json_array_size(want);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(np + 1)),
            *out = malloc(sizeof(int32_t) * (size_t)(nw + 1));
    sft_err err;
    sft_generation_config gen;
    int n = 0, ok = ids && out;
    for (int i = 0; ok && i < np; i++) {
        int64_t v;
        ok = !sft_json_int(json_array_get(prompt, (size_t)i), &v);
        ids[i] = (int32_t)v;
    }
    if (ok && sft_generation_config_load(model_dir, &m->cfg, &gen, &err)) ok = 0;
    sft_sampling greedy = {.greedy = 1};
    if (ok && sft_generate(m, ids, np, nw, &greedy, gen.eos_token_ids, gen.eos_count, out, &n, &err)) ok = 0;
    int same = ok && n == nw;
    for (int i = 0; same && i < n; i++) {
        int64_t v;
        same = !sft_json_int(json_array_get(want, (size_t)i), &v) && v == out[i];
    }
    char got[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof got - 16; i++)
        len += snprintf(got + len, sizeof got - len, " %d", out[i]);
    sft_parity_line(c->p, same, "%s: greedy decoding of %d tokens:%s%s", c->key, nw, ok ? got : " ",
                    ok ? "" : err.msg);
    free(ids);
    free(out);
}

/* One full replay of generate.py's run_model. lora_dir NULL: full fine-tuning. */
static int run_entry(const json_t *entry, const char *key, const char *dir, const char *model_rel,
                     const char *lora_rel, sft_parity *p, sft_err *err) {
    char model_dir[4096], lora_dir[4096];
    if (sft_path_join(model_dir, sizeof model_dir, dir, model_rel, err)) return -1;
    if (lora_rel && sft_path_join(lora_dir, sizeof lora_dir, dir, lora_rel, err)) return -1;
    int B, T;
    int32_t *tokens = read_matrix(entry, "input_ids", &B, &T, key, err);
    if (!tokens) return -1;
    int LB, LT;
    int32_t *labels = read_matrix(entry, "labels", &LB, &LT, key, err);
    if (!labels) {
        free(tokens);
        return -1;
    }
    int rc = -1;
    sft_model *m = NULL;
    sft_adamw opt = {0};
    float *clipped1 = NULL, *clipped2 = NULL;
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)B * T),
            *pos = malloc(sizeof(int32_t) * (size_t)B * T);
    int32_t *seq = calloc((size_t)B * T, sizeof(int32_t));
    checker c = {.key = key, .p = p};
    if (!targets || !pos || !seq) {
        sft_errf(err, "out of memory");
        goto done;
    }
    if (LB != B || LT != T) {
        sft_errf(err, "%s: labels are %d x %d but input_ids %d x %d", key, LB, LT, B, T);
        goto done;
    }
    /* HF shift: position t predicts labels[t + 1]; the last position predicts nothing */
    long supervised = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            targets[i] = t + 1 < T ? labels[i + 1] : SFT_IGNORE_INDEX;
            supervised += targets[i] != SFT_IGNORE_INDEX;
            pos[i] = t;
        }
    sft_batch batch = {B, T, tokens, targets, pos, seq, supervised};

    m = sft_model_load(model_dir, err);
    if (!m) goto done;
    check_greedy(&c, entry, m, model_dir); /* generate.py decodes with the base weights, before PEFT */
    if (lora_rel ? sft_lora_load(m, lora_dir, err) : sft_model_train_full(m, err)) goto done;
    if (sft_model_plan(m, B, T, err)) goto done;
    m->training = 1;

    double loss, want;
    sft_model_zero_grad(m);
    if (sft_model_forward(m, &batch, &loss, err)) goto done;
    check_forward(&c, entry, m, loss, B, T);
    sft_model_backward(m, &batch);
    const sft_param_set *set = m->trainable;
    check_set_stats(&c, "grad", json_object_get(entry, "grad"), set, set->grad, 0, NULL);

    double max_norm = 1.0;
    get_num(entry, "clip_max_norm", &max_norm, key, err);
    double norm = sft_grad_norm(set);
    if (!sft_json_number(json_object_get(entry, "grad_norm_total_preclip"), &want))
        close_rel(&c, &c.worst_grad, norm, want, GRAD_REL, 0, "grad_norm_total_preclip", NULL);
    double returned = sft_clip_grad_norm(m->trainable, max_norm);
    if (!sft_json_number(json_object_get(entry, "clip_returned_norm"), &want))
        close_rel(&c, &c.worst_grad, returned, want, GRAD_REL, 0, "clip_returned_norm", NULL);

    const json_t *o = json_object_get(entry, "optimizer");
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.0;
    if (!o) {
        sft_errf(err, "%s: no 'optimizer' settings", key);
        goto done;
    }
    if (get_num(o, "lr", &lr, key, err) || get_num(o, "eps", &eps, key, err) ||
        get_num(o, "weight_decay", &wd, key, err))
        goto done;
    const json_t *betas = json_object_get(o, "betas");
    if (sft_json_number(json_array_get(betas, 0), &beta1) ||
        sft_json_number(json_array_get(betas, 1), &beta2)) {
        sft_errf(err, "%s: optimizer.betas must be two numbers", key);
        goto done;
    }
    if (sft_adamw_init(&opt, set, beta1, beta2, eps, wd, err)) goto done;
    clipped1 = malloc(set->numel * sizeof(float));
    clipped2 = malloc(set->numel * sizeof(float));
    if (!clipped1 || !clipped2) {
        sft_errf(err, "out of memory");
        goto done;
    }
    memcpy(clipped1, set->grad, set->numel * sizeof(float));
    adam_noise noise = {{clipped1, NULL}, lr, eps};
    sft_adamw_step(&opt, m->trainable, lr);
    check_set_stats(&c, "after_step1", json_object_get(entry, "after_step1"), set, set->data, 1, &noise);
    if (sft_model_forward(m, &batch, &loss, err)) goto done;
    if (!sft_json_number(json_object_get(entry, "loss_after_step1"), &want))
        close_rel(&c, &c.worst_loss, loss, want, LOSS_REL, 0, "loss_after_step1", NULL);

    sft_model_zero_grad(m);
    if (sft_model_forward(m, &batch, &loss, err)) goto done;
    sft_model_backward(m, &batch);
    returned = sft_clip_grad_norm(m->trainable, max_norm);
    if (!sft_json_number(json_object_get(entry, "grad_norm_step2_preclip"), &want))
        close_rel(&c, &c.worst_grad, returned, want, GRAD_REL, 0, "grad_norm_step2_preclip", NULL);
    memcpy(clipped2, set->grad, set->numel * sizeof(float));
    noise.grad[1] = clipped2;
    sft_adamw_step(&opt, m->trainable, lr);
    if (sft_model_forward(m, &batch, &loss, err)) goto done;
    if (!sft_json_number(json_object_get(entry, "loss_after_step2"), &want))
        close_rel(&c, &c.worst_loss, loss, want, LOSS_REL, 0, "loss_after_step2", NULL);
    check_set_stats(&c, "after_step2", json_object_get(entry, "after_step2"), set, set->data, 1, &noise);

    const json_t *merged = json_object_get(entry, "merged_after_step2");
    if (lora_rel && merged) {
        sft_lora_merge(m);
        check_set_stats(&c, "merged_after_step2", merged, &m->weights, m->weights.data, -1, NULL);
    }
    if (p->verbose)
        fprintf(p->out,
                "%s: worst error as a fraction of its tolerance: loss %.3g, logits %.3g, gradients %.3g, "
                "parameters %.3g\n",
                key, c.worst_loss, c.worst_logit, c.worst_grad, c.worst_param);
    rc = 0;
done:
    sft_adamw_free(&opt);
    free(clipped1);
    free(clipped2);
    sft_model_free(m);
    free(tokens), free(labels), free(targets), free(pos), free(seq);
    return rc;
}

int sft_parity_check_model(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                           sft_err *err) {
    const char *model_rel;
    if (sft_json_get_string(entry, "dir", &model_rel, key, err)) return -1;
    return run_entry(entry, key, dir, model_rel, NULL, p, err);
}

int sft_parity_check_lora(const json_t *entry, const char *key, const char *dir, sft_parity *p,
                          sft_err *err) {
    const char *adapter_rel, *base_rel;
    if (sft_json_get_string(entry, "dir", &adapter_rel, key, err)) return -1;
    if (sft_json_get_string(entry, "base", &base_rel, key, err)) return -1;
    return run_entry(entry, key, dir, base_rel, adapter_rel, p, err);
}
