/* generate.c: KV-cache decoding for the models of model.h. The prompt runs
 * as one chunk, then one token per step; each layer appends its keys and
 * values to the cache, so a step costs one token's matrix-vector products
 * plus attention over the cache. Logit processing follows transformers'
 * TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper. */
#include "model/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int max_len, chunk;     /* cache rows; the largest chunk of tokens run at once */
    float *kcache, *vcache; /* [L, max_len, kv_dim] */
    float *x, *norm, *mean, *rstd, *q, *k, *v, *atty, *tmp, *mlp_a, *mlp_b, *mlp_act, *scores, *logits;
    float *cos_t, *sin_t;
    float *xa; /* [chunk, r]: the LoRA down-projection of an unmerged adapter */
    int32_t *pos;
} infer_state;

static void state_free(infer_state *s) {
    free(s->kcache), free(s->vcache), free(s->x), free(s->norm), free(s->mean), free(s->rstd);
    free(s->q), free(s->k), free(s->v), free(s->atty), free(s->tmp), free(s->mlp_a), free(s->mlp_b);
    free(s->mlp_act), free(s->scores), free(s->logits), free(s->cos_t), free(s->sin_t), free(s->pos);
    free(s->xa);
}

static int state_alloc(infer_state *s, const sft_model *m, int max_len, int chunk, sft_err *err) {
    const sft_model_config *cfg = &m->cfg;
    size_t C = cfg->hidden_size, I = cfg->intermediate_size, L = cfg->num_layers, n = chunk;
    memset(s, 0, sizeof *s);
    s->max_len = max_len, s->chunk = chunk;
    s->kcache = malloc(L * max_len * m->kv_dim * sizeof(float));
    s->vcache = malloc(L * max_len * m->kv_dim * sizeof(float));
    s->x = malloc(n * C * sizeof(float));
    s->norm = malloc(n * C * sizeof(float));
    s->mean = malloc(n * sizeof(float));
    s->rstd = malloc(n * sizeof(float));
    s->q = malloc(n * (m->q_dim + 2 * m->kv_dim) * sizeof(float)); /* GPT-2's c_attn writes q|k|v rows here */
    s->k = malloc(n * m->kv_dim * sizeof(float));
    s->v = malloc(n * m->kv_dim * sizeof(float));
    s->atty = malloc(n * m->q_dim * sizeof(float));
    s->tmp = malloc(n * C * sizeof(float));
    s->mlp_a = malloc(n * I * sizeof(float));
    s->mlp_b = malloc(n * I * sizeof(float));
    s->mlp_act = malloc(n * I * sizeof(float));
    s->scores = malloc((size_t)cfg->num_heads * n * max_len * sizeof(float));
    s->logits = malloc((size_t)cfg->vocab_size * sizeof(float));
    s->cos_t = malloc(n * m->head_dim * sizeof(float));
    s->sin_t = malloc(n * m->head_dim * sizeof(float));
    s->pos = malloc(n * sizeof(int32_t));
    s->xa = malloc(n * (size_t)(m->lora_r > 0 ? m->lora_r : 1) * sizeof(float));
    if (!s->kcache || !s->vcache || !s->x || !s->norm || !s->mean || !s->rstd || !s->q || !s->k || !s->v ||
        !s->atty || !s->tmp || !s->mlp_a || !s->mlp_b || !s->mlp_act || !s->scores || !s->logits ||
        !s->cos_t || !s->sin_t || !s->pos || !s->xa) {
        state_free(s);
        return sft_errf(err, "out of memory for a KV cache of %d tokens", max_len);
    }
    return 0;
}

/* Attention of n new tokens (positions p0..p0+n-1) over the cache rows 0..p0+n-1
 * (the last `window` of them for a sliding-window layer). */
static void cached_attention(const sft_model *m, infer_state *s, int layer, const float *q, int q_stride,
                             int p0, int n) {
    const int window = sft_model_layer_window(m, layer);
    const int NH = m->cfg.num_heads, HD = m->head_dim, group = NH / m->cfg.num_kv_heads, kv_dim = m->kv_dim;
    const float scale = 1.0f / sqrtf((float)HD);
    const float *kc = s->kcache + (size_t)layer * s->max_len * kv_dim;
    const float *vc = s->vcache + (size_t)layer * s->max_len * kv_dim;
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < NH; h++) {
            int kvh = h / group, last = p0 + i;
            int first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0; /* sliding window */
            const float *qi = q + (size_t)i * q_stride + (size_t)h * HD;
            float *sc = s->scores + ((size_t)i * NH + h) * s->max_len;
            float maxv = -INFINITY;
            for (int j = first; j <= last; j++) {
                const float *kj = kc + (size_t)j * kv_dim + (size_t)kvh * HD;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int d = 0; d < HD; d++)
                    dot += qi[d] * kj[d];
                sc[j] = dot * scale;
                if (sc[j] > maxv) maxv = sc[j];
            }
            double sum = 0.0;
            for (int j = first; j <= last; j++) {
                sc[j] = expf(sc[j] - maxv);
                sum += sc[j];
            }
            float inv = (float)(1.0 / sum);
            float *o = s->atty + (size_t)i * m->q_dim + (size_t)h * HD;
            for (int d = 0; d < HD; d++)
                o[d] = 0.0f;
            for (int j = first; j <= last; j++) {
                float p = sc[j] * inv;
                const float *vj = vc + (size_t)j * kv_dim + (size_t)kvh * HD;
                for (int d = 0; d < HD; d++)
                    o[d] += p * vj[d];
            }
        }
    }
}

/* out [n, lin->out] = inp W^T + b, plus an unmerged LoRA adapter's
 * scale * (inp A^T) B^T (no dropout: inference). */
static void infer_linear(const sft_model *m, infer_state *s, const sft_linear *lin, float *out,
                         const float *inp, int n) {
    const sft_kernels *k = m->kernels;
    k->matmul_forward(out, inp, lin->w, lin->b, n, lin->in, lin->out, lin->w_in_out);
    if (!lin->r) return;
    k->matmul_forward(s->xa, inp, lin->lora_a, NULL, n, lin->in, lin->r, 0);
    for (size_t i = 0; i < (size_t)n * lin->r; i++)
        s->xa[i] *= lin->scale;
    k->matmul_forward_add(out, s->xa, lin->lora_b, n, lin->r, lin->out);
}

static void add_rows(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Runs n tokens at positions p0.. through the model, filling the cache, and
 * leaves the logits of the last one in s->logits. */
static void infer_chunk(const sft_model *m, infer_state *s, const int32_t *tokens, int p0, int n) {
    const sft_kernels *k = m->kernels;
    const sft_model_config *cfg = &m->cfg;
    const int C = cfg->hidden_size, I = cfg->intermediate_size, NH = cfg->num_heads, NKV = cfg->num_kv_heads;
    const int HD = m->head_dim, kv_dim = m->kv_dim, gpt2 = cfg->arch == SFT_ARCH_GPT2;
    const float eps = (float)cfg->norm_eps;
    for (int i = 0; i < n; i++)
        s->pos[i] = p0 + i;
    k->embedding_forward(s->x, tokens, s->pos, m->wte, gpt2 ? m->wpe : NULL, n, C);
    if (!gpt2) sft_rope_tables(s->cos_t, s->sin_t, m->inv_freq, s->pos, n, HD);
    for (int l = 0; l < cfg->num_layers; l++) {
        const sft_layer *L = &m->layers[l];
        float *kc = s->kcache + ((size_t)l * s->max_len + p0) * kv_dim;
        float *vc = s->vcache + ((size_t)l * s->max_len + p0) * kv_dim;
        const float *q;
        int q_stride;
        if (gpt2) {
            const sft_linear *a = &L->lin[SFT_LIN_C_ATTN];
            k->layernorm_forward(s->norm, s->mean, s->rstd, s->x, L->norm1_w, L->norm1_b, n, C, eps);
            infer_linear(m, s, a, s->q, s->norm, n);
            for (int i = 0; i < n; i++) {
                memcpy(kc + (size_t)i * kv_dim, s->q + (size_t)i * 3 * C + C, (size_t)C * sizeof(float));
                memcpy(vc + (size_t)i * kv_dim, s->q + (size_t)i * 3 * C + 2 * C, (size_t)C * sizeof(float));
            }
            q = s->q, q_stride = 3 * C;
        } else {
            const sft_linear *lq = &L->lin[SFT_LIN_Q], *lk = &L->lin[SFT_LIN_K], *lv = &L->lin[SFT_LIN_V];
            k->rmsnorm_forward(s->norm, s->rstd, s->x, L->norm1_w, n, C, eps);
            infer_linear(m, s, lq, s->q, s->norm, n);
            infer_linear(m, s, lk, kc, s->norm, n);
            infer_linear(m, s, lv, vc, s->norm, n);
            k->rope_forward(s->q, s->cos_t, s->sin_t, n, NH, HD, m->q_dim);
            k->rope_forward(kc, s->cos_t, s->sin_t, n, NKV, HD, kv_dim);
            q = s->q, q_stride = m->q_dim;
        }
        cached_attention(m, s, l, q, q_stride, p0, n);
        const sft_linear *o = &L->lin[gpt2 ? SFT_LIN_ATTN_C_PROJ : SFT_LIN_O];
        infer_linear(m, s, o, s->tmp, s->atty, n);
        add_rows(s->x, s->tmp, (size_t)n * C);
        if (gpt2) {
            const sft_linear *fc = &L->lin[SFT_LIN_C_FC], *pr = &L->lin[SFT_LIN_MLP_C_PROJ];
            k->layernorm_forward(s->norm, s->mean, s->rstd, s->x, L->norm2_w, L->norm2_b, n, C, eps);
            infer_linear(m, s, fc, s->mlp_a, s->norm, n);
            k->gelu_forward(s->mlp_act, s->mlp_a, (size_t)n * I);
            infer_linear(m, s, pr, s->tmp, s->mlp_act, n);
        } else {
            const sft_linear *g = &L->lin[SFT_LIN_GATE], *u = &L->lin[SFT_LIN_UP], *d = &L->lin[SFT_LIN_DOWN];
            k->rmsnorm_forward(s->norm, s->rstd, s->x, L->norm2_w, n, C, eps);
            infer_linear(m, s, g, s->mlp_a, s->norm, n);
            infer_linear(m, s, u, s->mlp_b, s->norm, n);
            k->swiglu_forward(s->mlp_act, s->mlp_a, s->mlp_b, (size_t)n * I);
            infer_linear(m, s, d, s->tmp, s->mlp_act, n);
        }
        add_rows(s->x, s->tmp, (size_t)n * C);
    }
    const float *last = s->x + (size_t)(n - 1) * C;
    if (gpt2)
        k->layernorm_forward(s->norm, s->mean, s->rstd, last, m->normf_w, m->normf_b, 1, C, eps);
    else
        k->rmsnorm_forward(s->norm, s->rstd, last, m->normf_w, 1, C, eps);
    k->matmul_forward(s->logits, s->norm, m->lm_head, NULL, 1, C, cfg->vocab_size, 0);
}

static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cand_desc(const void *a, const void *b) {
    const sft_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[best]) best = i; /* first maximum, as torch.argmax */
    return best;
}

int32_t sft_sample_token(const float *logits, int V, const sft_sampling *sp, sft_candidate *work,
                         uint64_t *rng) {
    for (int i = 0; i < V; i++)
        work[i] = (sft_candidate){logits[i] / (float)sp->temperature, i};
    qsort(work, (size_t)V, sizeof *work, cand_desc);
    int keep = V;
    if (sp->top_k > 0 && sp->top_k < V) {
        float kth = work[sp->top_k - 1].logit; /* ties with the k-th survive, as `scores < topk[-1]` */
        keep = sp->top_k;
        while (keep < V && work[keep].logit >= kth)
            keep++;
    }
    double maxv = work[0].logit, sum = 0.0;
    for (int i = 0; i < keep; i++)
        sum += exp(work[i].logit - maxv);
    if (sp->top_p < 1.0) {
        /* keep the smallest head whose mass reaches top_p: a token is dropped when the
         * cumulative mass of the tokens less likely than it and itself is <= 1 - top_p */
        double tail = 0.0;
        int cut = keep;
        for (int i = keep - 1; i > 0; i--) {
            tail += exp(work[i].logit - maxv) / sum;
            if (tail <= 1.0 - sp->top_p)
                cut = i;
            else
                break;
        }
        keep = cut;
        sum = 0.0;
        for (int i = 0; i < keep; i++)
            sum += exp(work[i].logit - maxv);
    }
    double u = ((next_u64(rng) >> 11) + 0.5) / 9007199254740992.0 * sum, acc = 0.0;
    for (int i = 0; i < keep; i++) {
        acc += exp(work[i].logit - maxv);
        if (u < acc) return work[i].id;
    }
    return work[keep - 1].id;
}

int sft_generate(const sft_model *m, const int32_t *prompt, int prompt_len, int max_new,
                 const sft_sampling *sp, const int32_t *eos_ids, int eos_count, int32_t *out, int *out_len,
                 sft_err *err) {
    *out_len = 0;
    const int V = m->cfg.vocab_size;
    if (prompt_len <= 0) return sft_errf(err, "generation needs a prompt of at least one token");
    if (!sp->greedy && !(sp->temperature > 0))
        return sft_errf(err, "temperature %g must be positive", sp->temperature);
    if (!sp->greedy && !(sp->top_p > 0 && sp->top_p <= 1))
        return sft_errf(err, "top_p %g must be in (0, 1]", sp->top_p);
    for (int i = 0; i < prompt_len; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return sft_errf(err, "prompt token %d: id %d outside the vocabulary [0, %d)", i, prompt[i], V);
    int limit = prompt_len + max_new;
    if (m->cfg.arch == SFT_ARCH_GPT2 && limit > m->cfg.max_position_embeddings) {
        if (prompt_len >= m->cfg.max_position_embeddings)
            return sft_errf(err, "prompt of %d tokens does not fit n_positions %d", prompt_len,
                            m->cfg.max_position_embeddings);
        limit = m->cfg.max_position_embeddings; /* GPT-2 has no positions past its table */
    }
    infer_state s;
    if (state_alloc(&s, m, limit, prompt_len, err)) return -1;
    sft_candidate *work = sp->greedy ? NULL : malloc((size_t)V * sizeof *work);
    if (!sp->greedy && !work) {
        state_free(&s);
        return sft_errf(err, "out of memory");
    }
    uint64_t rng = sp->seed;
    infer_chunk(m, &s, prompt, 0, prompt_len);
    int n = 0;
    for (int p = prompt_len; p < limit; p++) {
        int32_t next = sp->greedy ? argmax(s.logits, V) : sft_sample_token(s.logits, V, sp, work, &rng);
        out[n++] = next;
        int stop = 0;
        for (int e = 0; e < eos_count; e++)
            stop |= next == eos_ids[e];
        if (stop || p + 1 >= limit) break;
        infer_chunk(m, &s, &next, p, 1);
    }
    *out_len = n;
    free(work);
    state_free(&s);
    return 0;
}
