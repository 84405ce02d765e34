/* model.c: GPT-2 and the Llama family (Llama 2/3/3.1, Mistral, Qwen2) over
 * the ops of ops.h: loading a Hugging Face model dir, the forward and
 * backward passes, initialisation and saving.
 *
 * The architectures follow transformers' modeling_gpt2.py and
 * modeling_llama.py / modeling_qwen2.py / modeling_mistral.py (eager
 * attention, float32). The layout follows llm.c: one walk over the
 * architecture (walk_weights) names every tensor and its shape; the same walk
 * registers the tensors in one flat array and binds the struct pointers into
 * it, so the names, the loading order and the pointers cannot disagree. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"

/* ------------------------------------------------------------ param sets */

const sft_tensor *sft_param_set_find(const sft_param_set *set, const char *name) {
    for (int i = 0; i < set->count; i++)
        if (!strcmp(set->tensors[i].name, name)) return &set->tensors[i];
    return NULL;
}

int sft_param_set_add(sft_param_set *set, const char *name, int ndim, int64_t d0, int64_t d1, sft_err *err) {
    if (set->count == set->capacity) {
        int cap = set->capacity ? set->capacity * 2 : 64;
        sft_tensor *t = realloc(set->tensors, (size_t)cap * sizeof *t);
        if (!t) return sft_errf(err, "out of memory registering tensor '%s'", name);
        set->tensors = t;
        set->capacity = cap;
    }
    sft_tensor *t = &set->tensors[set->count++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    /* 16-float (64-byte) alignment for every tensor start */
    t->offset = (set->numel + 15) & ~(size_t)15;
    set->numel = t->offset + t->numel;
    return 0;
}

static float *alloc_floats(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float))) return NULL;
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

int sft_param_set_alloc(sft_param_set *set, int with_grad, sft_err *err) {
    set->data = alloc_floats(set->numel);
    set->grad = with_grad ? alloc_floats(set->numel) : NULL;
    if (!set->data || (with_grad && !set->grad))
        return sft_errf(err, "out of memory for %zu parameters", set->numel);
    return 0;
}

void sft_param_set_free(sft_param_set *set) {
    free(set->data);
    free(set->grad);
    free(set->tensors);
    memset(set, 0, sizeof *set);
}

/* ------------------------------------------------------ architecture walk */

typedef enum { WALK_REGISTER, WALK_BIND } walk_mode;

typedef struct {
    sft_model *m;
    walk_mode mode;
    int index;
    sft_err *err;
} walker;

static int visit(walker *w, const char *name, int ndim, int64_t d0, int64_t d1, float **data, float **grad) {
    sft_param_set *set = &w->m->weights;
    if (w->mode == WALK_REGISTER) return sft_param_set_add(set, name, ndim, d0, d1, w->err);
    const sft_tensor *t = &set->tensors[w->index++];
    *data = set->data + t->offset;
    *grad = set->grad ? set->grad + t->offset : NULL;
    return 0;
}

static int visit_linear(walker *w, sft_linear *lin, char *module_out, const char *module, int in, int out,
                        int w_in_out, int bias) {
    char name[200];
    lin->in = in;
    lin->out = out;
    lin->w_in_out = w_in_out;
    snprintf(module_out, 96, "%s", module);
    snprintf(name, sizeof name, "%s.weight", module);
    if (visit(w, name, 2, w_in_out ? in : out, w_in_out ? out : in, &lin->w, &lin->dw)) return -1;
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", module);
        if (visit(w, name, 1, out, 0, &lin->b, &lin->db)) return -1;
    }
    return 0;
}

static int walk_weights(sft_model *m, walk_mode mode, sft_err *err) {
    walker w = {m, mode, 0, err};
    const sft_model_config *cfg = &m->cfg;
    const int C = cfg->hidden_size, V = cfg->vocab_size, I = cfg->intermediate_size;
    char name[200], module[96];
#define VISIT(nd, a, b, p, g)                                                                                \
    if (visit(&w, name, nd, a, b, p, g)) return -1
    if (cfg->arch == SFT_ARCH_GPT2) {
        snprintf(name, sizeof name, "transformer.wte.weight");
        VISIT(2, V, C, &m->wte, &m->dwte);
        snprintf(name, sizeof name, "transformer.wpe.weight");
        VISIT(2, cfg->max_position_embeddings, C, &m->wpe, &m->dwpe);
        for (int l = 0; l < cfg->num_layers; l++) {
            sft_layer *L = &m->layers[l];
            snprintf(name, sizeof name, "transformer.h.%d.ln_1.weight", l);
            VISIT(1, C, 0, &L->norm1_w, &L->dnorm1_w);
            snprintf(name, sizeof name, "transformer.h.%d.ln_1.bias", l);
            VISIT(1, C, 0, &L->norm1_b, &L->dnorm1_b);
            snprintf(module, sizeof module, "transformer.h.%d.attn.c_attn", l);
            if (visit_linear(&w, &L->lin[SFT_LIN_C_ATTN], L->lin_module[SFT_LIN_C_ATTN], module, C, 3 * C, 1,
                             1))
                return -1;
            snprintf(module, sizeof module, "transformer.h.%d.attn.c_proj", l);
            if (visit_linear(&w, &L->lin[SFT_LIN_ATTN_C_PROJ], L->lin_module[SFT_LIN_ATTN_C_PROJ], module, C,
                             C, 1, 1))
                return -1;
            snprintf(name, sizeof name, "transformer.h.%d.ln_2.weight", l);
            VISIT(1, C, 0, &L->norm2_w, &L->dnorm2_w);
            snprintf(name, sizeof name, "transformer.h.%d.ln_2.bias", l);
            VISIT(1, C, 0, &L->norm2_b, &L->dnorm2_b);
            snprintf(module, sizeof module, "transformer.h.%d.mlp.c_fc", l);
            if (visit_linear(&w, &L->lin[SFT_LIN_C_FC], L->lin_module[SFT_LIN_C_FC], module, C, I, 1, 1))
                return -1;
            snprintf(module, sizeof module, "transformer.h.%d.mlp.c_proj", l);
            if (visit_linear(&w, &L->lin[SFT_LIN_MLP_C_PROJ], L->lin_module[SFT_LIN_MLP_C_PROJ], module, I, C,
                             1, 1))
                return -1;
        }
        snprintf(name, sizeof name, "transformer.ln_f.weight");
        VISIT(1, C, 0, &m->normf_w, &m->dnormf_w);
        snprintf(name, sizeof name, "transformer.ln_f.bias");
        VISIT(1, C, 0, &m->normf_b, &m->dnormf_b);
    } else {
        snprintf(name, sizeof name, "model.embed_tokens.weight");
        VISIT(2, V, C, &m->wte, &m->dwte);
        for (int l = 0; l < cfg->num_layers; l++) {
            sft_layer *L = &m->layers[l];
            static const struct {
                int which;
                const char *path;
            } lins[] = {{SFT_LIN_Q, "self_attn.q_proj"}, {SFT_LIN_K, "self_attn.k_proj"},
                        {SFT_LIN_V, "self_attn.v_proj"}, {SFT_LIN_O, "self_attn.o_proj"},
                        {SFT_LIN_GATE, "mlp.gate_proj"}, {SFT_LIN_UP, "mlp.up_proj"},
                        {SFT_LIN_DOWN, "mlp.down_proj"}};
            for (size_t i = 0; i < sizeof lins / sizeof lins[0]; i++) {
                int which = lins[i].which, in = C, out = C, bias = 0;
                switch (which) {
                case SFT_LIN_Q:
                    out = m->q_dim, bias = cfg->attention_bias;
                    break;
                case SFT_LIN_K:
                case SFT_LIN_V:
                    out = m->kv_dim, bias = cfg->attention_bias;
                    break;
                case SFT_LIN_O:
                    in = m->q_dim, bias = cfg->o_proj_bias;
                    break;
                case SFT_LIN_GATE:
                case SFT_LIN_UP:
                    out = I, bias = cfg->mlp_bias;
                    break;
                default:
                    in = I, bias = cfg->mlp_bias;
                    break;
                }
                snprintf(module, sizeof module, "model.layers.%d.%s", l, lins[i].path);
                if (visit_linear(&w, &L->lin[which], L->lin_module[which], module, in, out, 0, bias))
                    return -1;
            }
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            VISIT(1, C, 0, &L->norm1_w, &L->dnorm1_w);
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            VISIT(1, C, 0, &L->norm2_w, &L->dnorm2_w);
        }
        snprintf(name, sizeof name, "model.norm.weight");
        VISIT(1, C, 0, &m->normf_w, &m->dnormf_w);
    }
    if (!cfg->tie_word_embeddings) {
        snprintf(name, sizeof name, "lm_head.weight");
        VISIT(2, V, C, &m->lm_head, &m->dlm_head);
    } else {
        m->lm_head = m->wte;
        m->dlm_head = m->dwte;
    }
#undef VISIT
    return 0;
}

/* --------------------------------------------------------------- create */

static int check_config(const sft_model_config *cfg, sft_err *err) {
    if (cfg->vocab_size <= 0) return sft_errf(err, "config.json: vocab_size must be positive");
    if (cfg->hidden_size <= 0) return sft_errf(err, "config.json: hidden_size must be positive");
    if (cfg->num_layers <= 0) return sft_errf(err, "config.json: num_hidden_layers must be positive");
    if (cfg->num_heads <= 0) return sft_errf(err, "config.json: num_attention_heads must be positive");
    if (cfg->intermediate_size <= 0) return sft_errf(err, "config.json: intermediate_size must be positive");
    int nkv = cfg->num_kv_heads > 0 ? cfg->num_kv_heads : cfg->num_heads;
    if (cfg->num_heads % nkv)
        return sft_errf(err,
                        "config.json: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                        cfg->num_heads, nkv);
    if (cfg->arch == SFT_ARCH_GPT2) {
        if (cfg->hidden_size % cfg->num_heads)
            return sft_errf(err, "config.json: n_embd (%d) is not a multiple of n_head (%d)",
                            cfg->hidden_size, cfg->num_heads);
        if (cfg->max_position_embeddings <= 0)
            return sft_errf(err, "config.json: n_positions must be positive");
        if (cfg->hidden_act[0] && strcmp(cfg->hidden_act, "gelu_new") &&
            strcmp(cfg->hidden_act, "gelu_pytorch_tanh"))
            return sft_errf(err,
                            "config.json: activation_function \"%s\" is not supported (expected gelu_new)",
                            cfg->hidden_act);
    } else {
        int hd = cfg->head_dim > 0 ? cfg->head_dim : cfg->hidden_size / cfg->num_heads;
        if (hd <= 0 || hd % 2)
            return sft_errf(err, "config.json: head_dim %d must be even for rotary embeddings", hd);
        if (cfg->hidden_act[0] && strcmp(cfg->hidden_act, "silu"))
            return sft_errf(err, "config.json: hidden_act \"%s\" is not supported (expected silu)",
                            cfg->hidden_act);
        if (cfg->rope_theta <= 0) return sft_errf(err, "config.json: rope_theta must be positive");
    }
    return 0;
}

sft_model *sft_model_create(const sft_model_config *cfg, sft_err *err) {
    if (check_config(cfg, err)) return NULL;
    sft_model *m = calloc(1, sizeof *m);
    if (!m) return sft_errf(err, "out of memory"), NULL;
    m->cfg = *cfg;
    if (m->cfg.num_kv_heads <= 0) m->cfg.num_kv_heads = m->cfg.num_heads;
    m->kernels = &sft_kernels_cpu;
    m->head_dim =
        cfg->arch == SFT_ARCH_LLAMA && cfg->head_dim > 0 ? cfg->head_dim : cfg->hidden_size / cfg->num_heads;
    m->cfg.head_dim = m->head_dim;
    m->q_dim = m->cfg.num_heads * m->head_dim;
    m->kv_dim = m->cfg.num_kv_heads * m->head_dim;
    m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
    if (!m->layers) goto oom;
    if (walk_weights(m, WALK_REGISTER, err)) goto fail;
    m->weights.data = alloc_floats(m->weights.numel);
    if (!m->weights.data) goto oom;
    walk_weights(m, WALK_BIND, err);
    m->trainable = &m->weights;
    if (cfg->arch == SFT_ARCH_LLAMA) {
        m->inv_freq = alloc_floats((size_t)m->head_dim / 2);
        if (!m->inv_freq) goto oom;
        sft_rope_params rp = {.theta = cfg->rope_theta,
                              .head_dim = m->head_dim,
                              .llama3 = cfg->rope_type == SFT_ROPE_LLAMA3,
                              .factor = cfg->rope_factor,
                              .low_freq_factor = cfg->rope_low_freq_factor,
                              .high_freq_factor = cfg->rope_high_freq_factor,
                              .original_max_position = cfg->rope_original_max_position};
        sft_rope_inv_freq(m->inv_freq, &rp);
    }
    return m;
oom:
    sft_errf(err, "out of memory allocating a %s model (%zu weights)", cfg->model_type, m->weights.numel);
fail:
    sft_model_free(m);
    return NULL;
}

void sft_model_free(sft_model *m) {
    if (!m) return;
    sft_param_set_free(&m->weights);
    sft_param_set_free(&m->adapters);
    free(m->layers);
    free(m->inv_freq);
    free(m->arena);
    free(m->mask_arena);
    free(m->index_arena);
    free(m->logits);
    free(m);
}

int sft_model_train_full(sft_model *m, sft_err *err) {
    if (!m->weights.grad) {
        m->weights.grad = alloc_floats(m->weights.numel);
        if (!m->weights.grad)
            return sft_errf(err, "out of memory allocating %zu gradients", m->weights.numel);
    }
    walk_weights(m, WALK_BIND, err);
    m->trainable = &m->weights;
    m->training = 1;
    return 0;
}

void sft_model_freeze_weights(sft_model *m) {
    sft_err ignored;
    free(m->weights.grad);
    m->weights.grad = NULL;
    walk_weights(m, WALK_BIND, &ignored); /* binding cannot fail: the tensors exist */
}

void sft_model_zero_grad(sft_model *m) {
    if (m->trainable && m->trainable->grad)
        memset(m->trainable->grad, 0, m->trainable->numel * sizeof(float));
}

/* ----------------------------------------------------------------- load */

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < ndim && n < cap; i++)
        n += snprintf(out + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
}

/* GPT-2 checkpoints from the original release store names without the
 * "transformer." prefix (wte.weight, h.0.attn.c_attn.weight). */
static const sft_tensor_info *find_stored(const sft_safetensors *st, const sft_model *m, const char *name) {
    const sft_tensor_info *t = sft_safetensors_find(st, name);
    if (!t && m->cfg.arch == SFT_ARCH_GPT2 && !strncmp(name, "transformer.", 12))
        t = sft_safetensors_find(st, name + 12);
    return t;
}

/* Stored tensors that transformers itself skips: GPT-2's attention mask
 * buffers, the rotary inverse frequencies of old Llama checkpoints, and a
 * saved copy of a tied lm_head. */
static int ignorable_stored(const sft_model *m, const char *name) {
    size_t n = strlen(name);
    if (m->cfg.arch == SFT_ARCH_GPT2 && ((n > 10 && !strcmp(name + n - 10, ".attn.bias")) ||
                                         (n > 17 && !strcmp(name + n - 17, ".attn.masked_bias"))))
        return 1;
    if (n > 22 && !strcmp(name + n - 22, "rotary_emb.inv_freq")) return 1;
    if (m->cfg.tie_word_embeddings && !strcmp(name, "lm_head.weight")) return 1;
    return 0;
}

static int load_weights(sft_model *m, const sft_safetensors *st, const char *dir, sft_err *err) {
    char want[128], got[128];
    for (int i = 0; i < m->weights.count; i++) {
        const sft_tensor *t = &m->weights.tensors[i];
        const sft_tensor_info *s = find_stored(st, m, t->name);
        shape_str(want, sizeof want, t->ndim, t->shape);
        if (!s)
            return sft_errf(err,
                            "%s: missing tensor '%s' (a %s model with this config.json needs shape [%s])",
                            dir, t->name, m->cfg.model_type, want);
        int same = s->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = s->shape[d] == t->shape[d];
        if (!same) {
            shape_str(got, sizeof got, s->ndim, s->shape);
            return sft_errf(err, "%s: tensor '%s' has shape [%s], expected [%s] from config.json", dir,
                            t->name, got, want);
        }
        sft_tensor_to_f32(s, m->weights.data + t->offset);
    }
    size_t count = sft_safetensors_count(st);
    for (size_t i = 0; i < count; i++) {
        const char *name = sft_safetensors_at(st, i)->name;
        if (ignorable_stored(m, name)) continue;
        char full[200];
        snprintf(full, sizeof full, "%s%s",
                 m->cfg.arch == SFT_ARCH_GPT2 && strncmp(name, "transformer.", 12) &&
                         strcmp(name, "lm_head.weight")
                     ? "transformer."
                     : "",
                 name);
        if (!sft_param_set_find(&m->weights, full))
            return sft_errf(err, "%s: unexpected tensor '%s': config.json describes a %s model without it",
                            dir, name, m->cfg.model_type);
    }
    return 0;
}

sft_model *sft_model_load(const char *dir, sft_err *err) {
    sft_model_config cfg;
    if (sft_config_load(dir, &cfg, err)) return NULL;
    sft_model *m = sft_model_create(&cfg, err);
    if (!m) {
        sft_err_prefix(err, "%s", dir);
        return NULL;
    }
    sft_safetensors *st = sft_safetensors_open_dir(dir, err);
    if (!st) {
        sft_model_free(m);
        return NULL;
    }
    int rc = load_weights(m, st, dir, err);
    sft_safetensors_close(st);
    if (rc) {
        sft_model_free(m);
        return NULL;
    }
    return m;
}

int sft_model_check_vocab(const sft_model *m, size_t tokenizer_vocab, sft_err *err) {
    if (tokenizer_vocab > (size_t)m->cfg.vocab_size)
        return sft_errf(
            err,
            "the tokenizer has %zu tokens but config.json vocab_size is %d: ids past %d would have no "
            "embedding row (a tokenizer from another model?)",
            tokenizer_vocab, m->cfg.vocab_size, m->cfg.vocab_size - 1);
    return 0;
}

/* ----------------------------------------------------------------- init */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) {
    return ((splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
}

static void fill_normal(float *x, size_t n, double std, uint64_t *state) {
    for (size_t i = 0; i < n; i += 2) { /* Box-Muller: two normals per pair of uniforms */
        double u1 = uniform01(state), u2 = uniform01(state);
        double r = sqrt(-2.0 * log(u1));
        x[i] = (float)(std * r * cos(2 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(std * r * sin(2 * M_PI * u2));
    }
}

void sft_model_init_weights(sft_model *m, uint64_t seed) {
    uint64_t state = seed ^ 0x5f3759df2c6b4a1dull;
    double std = m->cfg.initializer_range > 0 ? m->cfg.initializer_range : 0.02;
    for (int i = 0; i < m->weights.count; i++) {
        const sft_tensor *t = &m->weights.tensors[i];
        float *x = m->weights.data + t->offset;
        size_t n = strlen(t->name);
        if (t->ndim == 2) {
            /* GPT-2 scales the residual projections by 1/sqrt(2 * n_layer)
             * (GPT2PreTrainedModel._init_weights, after the GPT-2 paper). */
            int residual =
                m->cfg.arch == SFT_ARCH_GPT2 && n > 14 && !strcmp(t->name + n - 14, "c_proj.weight");
            fill_normal(x, t->numel, residual ? std / sqrt(2.0 * m->cfg.num_layers) : std, &state);
        } else if (n > 5 && !strcmp(t->name + n - 5, ".bias")) {
            memset(x, 0, t->numel * sizeof(float));
        } else {
            for (size_t j = 0; j < t->numel; j++)
                x[j] = 1.0f; /* norm weights */
        }
    }
}

/* ----------------------------------------------------------------- save */

int sft_model_save_weights(const sft_model *m, const char *path, sft_dtype dtype, sft_err *err) {
    sft_tensor_out *out = calloc((size_t)m->weights.count, sizeof *out);
    if (!out) return sft_errf(err, "out of memory");
    for (int i = 0; i < m->weights.count; i++) {
        const sft_tensor *t = &m->weights.tensors[i];
        out[i].name = t->name;
        out[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            out[i].shape[d] = t->shape[d];
        out[i].data = m->weights.data + t->offset;
    }
    int rc = sft_safetensors_write(path, out, (size_t)m->weights.count, dtype, err);
    free(out);
    return rc;
}

/* ----------------------------------------------------------------- plan */

/* Two passes over the same layout: count (base NULL), then assign. */
typedef struct {
    float *base;
    size_t used;
} bump;

static float *take(bump *b, size_t n) {
    size_t off = (b->used + 15) & ~(size_t)15;
    b->used = off + n;
    return b->base ? b->base + off : NULL;
}

static void layout_activations(sft_model *m, bump *b) {
    const sft_model_config *cfg = &m->cfg;
    size_t N = (size_t)m->max_B * m->max_T, C = cfg->hidden_size, I = cfg->intermediate_size,
           V = cfg->vocab_size;
    size_t NH = cfg->num_heads, T = m->max_T, HD = m->head_dim;
    size_t qkv_cols = (size_t)m->q_dim + 2 * (size_t)m->kv_dim;
    int gpt2 = cfg->arch == SFT_ARCH_GPT2;
    size_t max_in = 0;
    m->x0 = take(b, N * C);
    for (int l = 0; l < cfg->num_layers; l++) {
        sft_layer *L = &m->layers[l];
        L->norm1 = take(b, N * C);
        L->norm1_mean = take(b, N);
        L->norm1_rstd = take(b, N);
        L->qkv = take(b, N * qkv_cols);
        if (gpt2) { /* c_attn writes rows of [q | k | v] */
            L->q = L->qkv, L->k = L->qkv ? L->qkv + C : NULL, L->v = L->qkv ? L->qkv + 2 * C : NULL;
            L->q_stride = L->k_stride = L->v_stride = (int)(3 * C);
        } else {
            L->q = L->qkv;
            L->k = L->qkv ? L->qkv + N * m->q_dim : NULL;
            L->v = L->qkv ? L->qkv + N * (m->q_dim + m->kv_dim) : NULL;
            L->q_stride = m->q_dim, L->k_stride = L->v_stride = m->kv_dim;
        }
        L->att = take(b, (size_t)m->max_B * NH * T * 2);
        L->atty = take(b, N * m->q_dim);
        L->res1 = take(b, N * C);
        L->norm2 = take(b, N * C);
        L->norm2_mean = take(b, N);
        L->norm2_rstd = take(b, N);
        L->mlp_a = take(b, N * I);
        L->mlp_b = gpt2 ? NULL : take(b, N * I);
        L->mlp_act = take(b, N * I);
        L->res2 = take(b, N * C);
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            sft_linear *lin = &L->lin[i];
            if (!lin->r) continue;
            lin->xa = take(b, N * lin->r);
            if ((size_t)lin->in > max_in) max_in = lin->in;
        }
    }
    m->normf = take(b, N * C);
    m->normf_mean = take(b, N);
    m->normf_rstd = take(b, N);
    /* the loss head's chunk (sft_model_forward_backward); the full logits of
     * sft_model_forward are allocated by its first call (ensure_full_logits) */
    size_t R = (size_t)m->chunk_rows;
    m->chunk_logits = take(b, R * V);
    m->chunk_x = take(b, R * C);
    m->chunk_dx = take(b, R * C);
    m->chunk_lse = take(b, R);
    m->lse = take(b, N);
    m->rope_cos = take(b, N * HD / 2);
    m->rope_sin = take(b, N * HD / 2);
    m->dres = take(b, N * C);
    m->dnorm = take(b, N * C);
    m->dqkv = take(b, N * qkv_cols);
    m->datty = take(b, N * m->q_dim);
    m->dmlp_a = take(b, N * I);
    m->dmlp_b = take(b, N * I);
    m->dact = take(b, N * I);
    m->dres_dropped = take(b, N * C);
    if (m->lora_r) {
        m->lora_dxa = take(b, N * m->lora_r);
        if (m->lora_dropout > 0) {
            m->lora_xdrop = take(b, N * max_in);
            m->lora_dxdrop = take(b, N * max_in);
        }
    }
}

/* The loss head's chunk. The lm_head products lose speed below a few hundred
 * rows: each chunk reads the whole lm_head (and its gradient) again, and the
 * weight gradient's inner dimension is the chunk's row count. Measured on
 * GPT-2-124M's head (768 x 50257, 1024 rows in chunks: forward, fused
 * cross-entropy, both gradients; 2 threads, CPU time) against one chunk:
 * 128 rows +20% (bf16 +31%), 256 +4% (+11%), 512 -2% (+1%); and on whole
 * steps 256-row chunks cost 3-7%, 512-row chunks nothing measurable
 * (bench/SPEED.md). So a chunk has at least LOSS_CHUNK_MIN_ROWS rows, and
 * more while its logits fit in LOSS_CHUNK_BYTES (small vocabularies): 512
 * rows are 103 MB of logits for GPT-2's 50257 tokens, 311 MB for Qwen2's
 * 151936, whose full logits at 4 x 2048 would be 5 GB. */
#define LOSS_CHUNK_MIN_ROWS 512
#define LOSS_CHUNK_BYTES ((size_t)64 << 20)

int sft_model_loss_chunk_rows(const sft_model *m, int max_B, int max_T) {
    size_t N = (size_t)max_B * (size_t)max_T;
    size_t rows = m->loss_chunk_rows > 0 ? (size_t)m->loss_chunk_rows
                                         : LOSS_CHUNK_BYTES / ((size_t)m->cfg.vocab_size * sizeof(float));
    if (m->loss_chunk_rows <= 0 && rows < LOSS_CHUNK_MIN_ROWS) rows = LOSS_CHUNK_MIN_ROWS;
    return (int)(rows < N ? rows : N);
}

int sft_model_plan(sft_model *m, int max_B, int max_T, sft_err *err) {
    if (max_B <= 0 || max_T <= 0) return sft_errf(err, "batch shape %d x %d must be positive", max_B, max_T);
    free(m->arena);
    free(m->mask_arena);
    free(m->index_arena);
    free(m->logits);
    m->arena = NULL;
    m->mask_arena = NULL;
    m->index_arena = NULL;
    m->logits = NULL;
    m->logits_ready = 0;
    m->max_B = max_B;
    m->max_T = max_T;
    m->chunk_rows = sft_model_loss_chunk_rows(m, max_B, max_T);
    m->index_arena = malloc(((size_t)m->chunk_rows + (size_t)max_B * max_T) * sizeof(int32_t));
    if (!m->index_arena) return sft_errf(err, "out of memory planning batch %d x %d", max_B, max_T);
    m->chunk_targets = m->index_arena;
    m->loss_rows = m->index_arena + m->chunk_rows;
    bump b = {NULL, 0};
    layout_activations(m, &b);
    m->arena = alloc_floats(b.used);
    if (!m->arena)
        return sft_errf(err, "out of memory planning activations for batch %d x %d (%.1f MiB)", max_B, max_T,
                        b.used * 4.0 / 1048576.0);
    m->arena_floats = b.used;
    b = (bump){m->arena, 0};
    layout_activations(m, &b);
    /* dropout masks, one byte per input element of each adapted linear */
    if (m->lora_r && m->lora_dropout > 0) {
        size_t N = (size_t)max_B * max_T, total = 0;
        for (int l = 0; l < m->cfg.num_layers; l++)
            for (int i = 0; i < SFT_LIN_COUNT; i++)
                if (m->layers[l].lin[i].r) total += N * m->layers[l].lin[i].in;
        m->mask_arena = malloc(total ? total : 1);
        if (!m->mask_arena) return sft_errf(err, "out of memory for LoRA dropout masks");
        size_t off = 0;
        for (int l = 0; l < m->cfg.num_layers; l++)
            for (int i = 0; i < SFT_LIN_COUNT; i++) {
                sft_linear *lin = &m->layers[l].lin[i];
                if (!lin->r) continue;
                lin->keep = m->mask_arena + off;
                off += N * lin->in;
            }
    }
    return 0;
}

/* -------------------------------------------------------------- forward */

int sft_model_layer_window(const sft_model *m, int layer) {
    return m->cfg.sliding_window > 0 && layer >= m->cfg.sliding_window_first_layer ? m->cfg.sliding_window
                                                                                   : 0;
}

static void zero(float *x, size_t n) {
    memset(x, 0, n * sizeof(float));
}

static void add_inplace(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static void scale_inplace(float *x, size_t n, float s) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* Counter-based dropout stream: the mask of an element depends only on
 * (seed, step, layer, linear, index), not on threads or call order. */
static int dropout_keep(uint64_t seed, uint64_t step, int layer, int which, size_t idx, float p) {
    uint64_t s = seed ^ (step * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)layer << 48) ^ ((uint64_t)which << 40);
    s ^= idx * 0xd1b54a32d192ed03ull;
    return uniform01(&s) >= p;
}

/* The model's own dropout sites (besides LoRA's): each (step, layer, site) has
 * its own mask stream, regenerated in the backward (ops.h: sft_dropout_*). */
enum { DROP_EMBEDDING = 1, DROP_ATTENTION, DROP_RESID_ATTN, DROP_RESID_MLP };

static uint64_t dropout_site_seed(const sft_model *m, int layer, int site) {
    uint64_t s = m->dropout_seed ^ 0x6a09e667f3bcc909ull;
    s ^= m->dropout_step * 0x9e3779b97f4a7c15ull;
    s ^= ((uint64_t)(layer + 1) << 32) ^ ((uint64_t)site << 56);
    return splitmix64(&s);
}

/* The probability at a site, 0 outside training. */
static float dropout_p(const sft_model *m, int site) {
    if (!m->training) return 0.0f;
    switch (site) {
    case DROP_EMBEDDING:
        return m->cfg.arch == SFT_ARCH_GPT2 ? (float)m->cfg.embedding_dropout : 0.0f;
    case DROP_ATTENTION:
        return (float)m->cfg.attention_dropout;
    default:
        return m->cfg.arch == SFT_ARCH_GPT2 ? (float)m->cfg.residual_dropout : 0.0f;
    }
}

static void linear_forward(sft_model *m, int layer, int which, float *out, const float *inp, int N) {
    const sft_kernels *k = m->kernels;
    sft_linear *l = &m->layers[layer].lin[which];
    k->matmul_forward(out, inp, l->w, l->b, N, l->in, l->out, l->w_in_out);
    if (!l->r) return;
    const float *x = inp;
    if (l->dropout > 0 && m->training) {
        float *xd = m->lora_xdrop;
        float inv_keep = 1.0f / (1.0f - l->dropout);
        size_t n = (size_t)N * l->in;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            l->keep[i] = (uint8_t)dropout_keep(m->dropout_seed, m->dropout_step, layer, which, i, l->dropout);
            xd[i] = l->keep[i] ? inp[i] * inv_keep : 0.0f;
        }
        x = xd;
    }
    k->matmul_forward(l->xa, x, l->lora_a, NULL, N, l->in, l->r, 0);
    scale_inplace(l->xa, (size_t)N * l->r, l->scale);
    k->matmul_forward_add(out, l->xa, l->lora_b, N, l->r, l->out);
}

static int check_batch(const sft_model *m, const sft_batch *b, sft_err *err) {
    if (!m->arena) return sft_errf(err, "the model has no activation plan (call sft_model_plan first)");
    if (b->B <= 0 || b->T <= 0) return sft_errf(err, "batch shape %d x %d must be positive", b->B, b->T);
    if (b->T > m->max_T || (long)b->B * b->T > (long)m->max_B * m->max_T)
        return sft_errf(err, "batch %d x %d exceeds the planned %d x %d", b->B, b->T, m->max_B, m->max_T);
    int V = m->cfg.vocab_size;
    long supervised = 0;
    for (int r = 0; r < b->B; r++) {
        for (int t = 0; t < b->T; t++) {
            size_t i = (size_t)r * b->T + t;
            if (b->tokens[i] < 0 || b->tokens[i] >= V)
                return sft_errf(err, "batch row %d position %d: token id %d outside the vocabulary [0, %d)",
                                r, t, b->tokens[i], V);
            if (b->targets[i] != SFT_IGNORE_INDEX) {
                if (b->targets[i] < 0 || b->targets[i] >= V)
                    return sft_errf(err,
                                    "batch row %d position %d: target id %d outside the vocabulary [0, %d)",
                                    r, t, b->targets[i], V);
                supervised++;
            }
            if (b->pos[i] < 0) return sft_errf(err, "batch row %d position %d: negative position id", r, t);
            if (m->cfg.arch == SFT_ARCH_GPT2 && b->pos[i] >= m->cfg.max_position_embeddings)
                return sft_errf(err,
                                "batch row %d position %d: position id %d past n_positions %d of config.json",
                                r, t, b->pos[i], m->cfg.max_position_embeddings);
        }
    }
    if (supervised > b->step_supervised_tokens)
        return sft_errf(err, "batch has %ld supervised tokens but the step counts only %ld", supervised,
                        b->step_supervised_tokens);
    return 0;
}

/* The forward up to the final norm (m->normf), for a checked batch. */
static void forward_trunk(sft_model *m, const sft_batch *batch) {
    const sft_kernels *k = m->kernels;
    const sft_model_config *cfg = &m->cfg;
    const int B = batch->B, T = batch->T, N = B * T, C = cfg->hidden_size, I = cfg->intermediate_size;
    const int NH = cfg->num_heads, NKV = cfg->num_kv_heads, HD = m->head_dim;
    const float eps = (float)cfg->norm_eps;
    const int gpt2 = cfg->arch == SFT_ARCH_GPT2;
    m->cur_B = B, m->cur_T = T;
    m->logits_ready = 0;
    if (m->training) m->dropout_step++;

    k->embedding_forward(m->x0, batch->tokens, batch->pos, m->wte, gpt2 ? m->wpe : NULL, N, C);
    float p_embd = dropout_p(m, DROP_EMBEDDING), p_att = dropout_p(m, DROP_ATTENTION);
    float p_resid = dropout_p(m, DROP_RESID_ATTN);
    if (p_embd > 0) k->dropout_forward(m->x0, (size_t)N * C, p_embd, dropout_site_seed(m, 0, DROP_EMBEDDING));
    if (!gpt2) sft_rope_tables(m->rope_cos, m->rope_sin, m->inv_freq, batch->pos, N, HD);
    const float *x = m->x0;
    for (int l = 0; l < cfg->num_layers; l++) {
        sft_layer *L = &m->layers[l];
        if (gpt2) {
            k->layernorm_forward(L->norm1, L->norm1_mean, L->norm1_rstd, x, L->norm1_w, L->norm1_b, N, C,
                                 eps);
            linear_forward(m, l, SFT_LIN_C_ATTN, L->qkv, L->norm1, N);
        } else {
            k->rmsnorm_forward(L->norm1, L->norm1_rstd, x, L->norm1_w, N, C, eps);
            linear_forward(m, l, SFT_LIN_Q, L->q, L->norm1, N);
            linear_forward(m, l, SFT_LIN_K, L->k, L->norm1, N);
            linear_forward(m, l, SFT_LIN_V, L->v, L->norm1, N);
            k->rope_forward(L->q, m->rope_cos, m->rope_sin, N, NH, HD, L->q_stride);
            k->rope_forward(L->k, m->rope_cos, m->rope_sin, N, NKV, HD, L->k_stride);
        }
        k->attention_forward(L->atty, L->att, L->q, L->q_stride, L->k, L->k_stride, L->v, L->v_stride,
                             batch->seq, B, T, NH, NKV, HD, sft_model_layer_window(m, l), p_att,
                             dropout_site_seed(m, l, DROP_ATTENTION));
        linear_forward(m, l, gpt2 ? SFT_LIN_ATTN_C_PROJ : SFT_LIN_O, L->res1, L->atty, N);
        if (p_resid > 0)
            k->dropout_forward(L->res1, (size_t)N * C, p_resid, dropout_site_seed(m, l, DROP_RESID_ATTN));
        add_inplace(L->res1, x, (size_t)N * C);
        if (gpt2) {
            k->layernorm_forward(L->norm2, L->norm2_mean, L->norm2_rstd, L->res1, L->norm2_w, L->norm2_b, N,
                                 C, eps);
            linear_forward(m, l, SFT_LIN_C_FC, L->mlp_a, L->norm2, N);
            k->gelu_forward(L->mlp_act, L->mlp_a, (size_t)N * I);
            linear_forward(m, l, SFT_LIN_MLP_C_PROJ, L->res2, L->mlp_act, N);
        } else {
            k->rmsnorm_forward(L->norm2, L->norm2_rstd, L->res1, L->norm2_w, N, C, eps);
            linear_forward(m, l, SFT_LIN_GATE, L->mlp_a, L->norm2, N);
            linear_forward(m, l, SFT_LIN_UP, L->mlp_b, L->norm2, N);
            k->swiglu_forward(L->mlp_act, L->mlp_a, L->mlp_b, (size_t)N * I);
            linear_forward(m, l, SFT_LIN_DOWN, L->res2, L->mlp_act, N);
        }
        if (p_resid > 0)
            k->dropout_forward(L->res2, (size_t)N * C, p_resid, dropout_site_seed(m, l, DROP_RESID_MLP));
        add_inplace(L->res2, L->res1, (size_t)N * C);
        x = L->res2;
    }
    if (gpt2)
        k->layernorm_forward(m->normf, m->normf_mean, m->normf_rstd, x, m->normf_w, m->normf_b, N, C, eps);
    else
        k->rmsnorm_forward(m->normf, m->normf_rstd, x, m->normf_w, N, C, eps);
}

/* The full logits of the plan, allocated once (not zeroed: the forward
 * writes every row it uses). */
static int ensure_full_logits(sft_model *m, sft_err *err) {
    if (m->logits) return 0;
    size_t n = (size_t)m->max_B * m->max_T * (size_t)m->cfg.vocab_size;
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(float)))
        return sft_errf(
            err,
            "out of memory for the full logits of batch %d x %d (%.1f MiB; training and evaluation "
            "do not need them)",
            m->max_B, m->max_T, n * 4.0 / 1048576.0);
    m->logits = p;
    return 0;
}

static double mean_over_step(double sum, const sft_batch *batch) {
    return batch->step_supervised_tokens > 0 ? sum / (double)batch->step_supervised_tokens : 0.0;
}

int sft_model_forward(sft_model *m, const sft_batch *batch, double *loss, sft_err *err) {
    if (check_batch(m, batch, err) || ensure_full_logits(m, err)) return -1;
    const int N = batch->B * batch->T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    forward_trunk(m, batch);
    m->kernels->matmul_forward(m->logits, m->normf, m->lm_head, NULL, N, C, V, 0);
    *loss = mean_over_step(m->kernels->cross_entropy_forward(m->lse, m->logits, batch->targets, N, V), batch);
    m->logits_ready = 1;
    return 0;
}

/* ------------------------------------------------------------ loss head */

/* The rows of a batch with a target, in order: the only rows whose logits
 * the loss reads. Returns their count. */
static int supervised_rows(const sft_batch *batch, int32_t *rows) {
    int count = 0;
    for (int i = 0; i < batch->B * batch->T; i++)
        if (batch->targets[i] != SFT_IGNORE_INDEX) rows[count++] = i;
    return count;
}

/* The lm_head and the cross-entropy over the supervised rows, at most
 * chunk_rows at a time: returns the sum of -log p(target) and sets
 * *supervised. With `backward`, m->dnorm [N, C] gets d(loss)/d(normf) for
 * loss = sum / step_supervised_tokens (zero on ignored rows) and dlm_head
 * accumulates; without, token_nll (when not NULL) gets each row's -log p.
 * The chunks are of equal size (a last chunk of a few rows would run the
 * products slowly); a chunk of consecutive rows is read and written in
 * place, other chunks are gathered into chunk_x and scattered from chunk_dx. */
static double loss_head(sft_model *m, const sft_batch *batch, int backward, double *token_nll,
                        int *supervised) {
    const sft_kernels *k = m->kernels;
    const int N = batch->B * batch->T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    const float scale =
        batch->step_supervised_tokens > 0 ? 1.0f / (float)batch->step_supervised_tokens : 0.0f;
    const int S = supervised_rows(batch, m->loss_rows);
    *supervised = S;
    if (backward) zero(m->dnorm, (size_t)N * C);
    for (int i = 0; i < N; i++)
        m->lse[i] = NAN;
    if (token_nll)
        for (int i = 0; i < N; i++)
            token_nll[i] = NAN;
    const size_t row_bytes = (size_t)C * sizeof(float);
    const int chunks = (S + m->chunk_rows - 1) / m->chunk_rows;
    double total = 0.0;
    for (int c = 0; c < chunks; c++) {
        const int lo = (int)((long)S * c / chunks), n = (int)((long)S * (c + 1) / chunks) - lo;
        const int32_t *rows = m->loss_rows + lo;
        const int in_place = rows[n - 1] - rows[0] == n - 1;
        const float *x = m->normf + (size_t)rows[0] * C;
        float *dx = m->dnorm + (size_t)rows[0] * C;
        if (!in_place) {
            for (int i = 0; i < n; i++)
                memcpy(m->chunk_x + (size_t)i * C, m->normf + (size_t)rows[i] * C, row_bytes);
            x = m->chunk_x;
            dx = m->chunk_dx;
            if (backward) zero(dx, (size_t)n * C);
        }
        for (int i = 0; i < n; i++)
            m->chunk_targets[i] = batch->targets[rows[i]];
        k->matmul_forward(m->chunk_logits, x, m->lm_head, NULL, n, C, V, 0);
        if (backward) {
            total += k->cross_entropy_forward_backward(m->chunk_lse, m->chunk_logits, m->chunk_targets, n, V,
                                                       scale);
            k->matmul_backward(dx, m->dlm_head, NULL, m->chunk_logits, x, m->lm_head, n, C, V, 0);
            if (!in_place)
                for (int i = 0; i < n; i++)
                    memcpy(m->dnorm + (size_t)rows[i] * C, dx + (size_t)i * C, row_bytes);
        } else {
            k->cross_entropy_forward(m->chunk_lse, m->chunk_logits, m->chunk_targets, n, V);
            /* summed here, one accumulator in row order as sft_cross_entropy_forward
             * sums a whole batch: the same loss as sft_model_forward's for the same logits */
            for (int i = 0; i < n; i++) {
                double nll = (double)m->chunk_lse[i] - m->chunk_logits[(size_t)i * V + m->chunk_targets[i]];
                total += nll;
                if (token_nll) token_nll[rows[i]] = nll;
            }
        }
        for (int i = 0; i < n; i++)
            m->lse[rows[i]] = m->chunk_lse[i];
    }
    return total;
}

int sft_model_forward_loss(sft_model *m, const sft_batch *batch, double *loss, double *token_nll,
                           sft_err *err) {
    if (check_batch(m, batch, err)) return -1;
    forward_trunk(m, batch);
    int supervised;
    *loss = mean_over_step(loss_head(m, batch, 0, token_nll, &supervised), batch);
    return 0;
}

/* ------------------------------------------------------------- backward */

/* dinp [N, in] += d(out)/d(inp)^T dout; weight, bias and adapter gradients
 * accumulate where they are trained. */
static void linear_backward(sft_model *m, int layer, int which, float *dinp, const float *dout,
                            const float *inp, int N) {
    const sft_kernels *k = m->kernels;
    sft_linear *l = &m->layers[layer].lin[which];
    if (l->r) {
        /* y += xa B^T with xa = scale * dropout(x) A^T */
        float *dxa = m->lora_dxa;
        zero(dxa, (size_t)N * l->r);
        k->matmul_backward(dxa, l->dlora_b, NULL, dout, l->xa, l->lora_b, N, l->r, l->out, 0);
        scale_inplace(dxa, (size_t)N * l->r, l->scale);
        if (l->dropout > 0 && m->training) {
            float *xd = m->lora_xdrop, *dxd = m->lora_dxdrop;
            float inv_keep = 1.0f / (1.0f - l->dropout);
            size_t n = (size_t)N * l->in;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++)
                xd[i] = l->keep[i] ? inp[i] * inv_keep : 0.0f;
            zero(dxd, n);
            k->matmul_backward(dxd, l->dlora_a, NULL, dxa, xd, l->lora_a, N, l->in, l->r, 0);
            if (dinp) {
#pragma omp parallel for schedule(static)
                for (size_t i = 0; i < n; i++)
                    dinp[i] += l->keep[i] ? dxd[i] * inv_keep : 0.0f;
            }
        } else {
            k->matmul_backward(dinp, l->dlora_a, NULL, dxa, inp, l->lora_a, N, l->in, l->r, 0);
        }
    }
    k->matmul_backward(dinp, l->dw, l->db, dout, inp, l->w, N, l->in, l->out, l->w_in_out);
}

/* The backward from m->dnorm, d(loss)/d(final norm's output), down to the
 * embeddings. */
static void backward_trunk(sft_model *m, const sft_batch *batch) {
    const sft_kernels *k = m->kernels;
    const sft_model_config *cfg = &m->cfg;
    const int B = batch->B, T = batch->T, N = B * T, C = cfg->hidden_size, I = cfg->intermediate_size;
    const int NH = cfg->num_heads, NKV = cfg->num_kv_heads, HD = m->head_dim;
    const int gpt2 = cfg->arch == SFT_ARCH_GPT2;
    const size_t NC = (size_t)N * C;
    const float *x_last = m->layers[cfg->num_layers - 1].res2;
    zero(m->dres, NC);
    if (gpt2)
        k->layernorm_backward(m->dres, m->dnormf_w, m->dnormf_b, m->dnorm, x_last, m->normf_w, m->normf_mean,
                              m->normf_rstd, N, C);
    else
        k->rmsnorm_backward(m->dres, m->dnormf_w, m->dnorm, x_last, m->normf_w, m->normf_rstd, N, C);

    /* GPT-2 keeps q, k, v as rows of 3C; the Llama family as three blocks,
     * each laid out for the planned maximum N. */
    size_t Nmax = (size_t)m->max_B * m->max_T;
    float *dq = m->dqkv, *dk, *dv;
    if (gpt2) {
        dk = m->dqkv + C, dv = m->dqkv + 2 * C;
    } else {
        dk = m->dqkv + Nmax * m->q_dim, dv = m->dqkv + Nmax * (m->q_dim + m->kv_dim);
    }
    const float p_att = dropout_p(m, DROP_ATTENTION), p_resid = dropout_p(m, DROP_RESID_ATTN);
    for (int l = cfg->num_layers - 1; l >= 0; l--) {
        sft_layer *L = &m->layers[l];
        const float *x_in = l ? m->layers[l - 1].res2 : m->x0;
        /* MLP branch: res2 = res1 + dropout(mlp(norm2(res1))); dres holds d(res2). */
        const float *dmlp_out = m->dres;
        if (p_resid > 0) {
            memcpy(m->dres_dropped, m->dres, NC * sizeof(float));
            k->dropout_backward(m->dres_dropped, NC, p_resid, dropout_site_seed(m, l, DROP_RESID_MLP));
            dmlp_out = m->dres_dropped;
        }
        zero(m->dact, (size_t)N * I);
        zero(m->dnorm, NC);
        if (gpt2) {
            linear_backward(m, l, SFT_LIN_MLP_C_PROJ, m->dact, dmlp_out, L->mlp_act, N);
            zero(m->dmlp_a, (size_t)N * I);
            k->gelu_backward(m->dmlp_a, L->mlp_a, m->dact, (size_t)N * I);
            linear_backward(m, l, SFT_LIN_C_FC, m->dnorm, m->dmlp_a, L->norm2, N);
            k->layernorm_backward(m->dres, L->dnorm2_w, L->dnorm2_b, m->dnorm, L->res1, L->norm2_w,
                                  L->norm2_mean, L->norm2_rstd, N, C);
        } else {
            linear_backward(m, l, SFT_LIN_DOWN, m->dact, dmlp_out, L->mlp_act, N);
            zero(m->dmlp_a, (size_t)N * I);
            zero(m->dmlp_b, (size_t)N * I);
            k->swiglu_backward(m->dmlp_a, m->dmlp_b, m->dact, L->mlp_a, L->mlp_b, (size_t)N * I);
            linear_backward(m, l, SFT_LIN_GATE, m->dnorm, m->dmlp_a, L->norm2, N);
            linear_backward(m, l, SFT_LIN_UP, m->dnorm, m->dmlp_b, L->norm2, N);
            k->rmsnorm_backward(m->dres, L->dnorm2_w, m->dnorm, L->res1, L->norm2_w, L->norm2_rstd, N, C);
        }
        /* attention branch: res1 = x_in + dropout(o(attn(norm1(x_in)))); dres holds d(res1). */
        const float *dattn_out = m->dres;
        if (p_resid > 0) {
            memcpy(m->dres_dropped, m->dres, NC * sizeof(float));
            k->dropout_backward(m->dres_dropped, NC, p_resid, dropout_site_seed(m, l, DROP_RESID_ATTN));
            dattn_out = m->dres_dropped;
        }
        zero(m->datty, (size_t)N * m->q_dim);
        linear_backward(m, l, gpt2 ? SFT_LIN_ATTN_C_PROJ : SFT_LIN_O, m->datty, dattn_out, L->atty, N);
        zero(m->dqkv, Nmax * ((size_t)m->q_dim + 2 * (size_t)m->kv_dim));
        k->attention_backward(dq, dk, dv, m->datty, L->att, L->q, L->q_stride, L->k, L->k_stride, L->v,
                              L->v_stride, batch->seq, B, T, NH, NKV, HD, sft_model_layer_window(m, l), p_att,
                              dropout_site_seed(m, l, DROP_ATTENTION));
        zero(m->dnorm, NC);
        if (gpt2) {
            linear_backward(m, l, SFT_LIN_C_ATTN, m->dnorm, m->dqkv, L->norm1, N);
            k->layernorm_backward(m->dres, L->dnorm1_w, L->dnorm1_b, m->dnorm, x_in, L->norm1_w,
                                  L->norm1_mean, L->norm1_rstd, N, C);
        } else {
            k->rope_backward(dq, m->rope_cos, m->rope_sin, N, NH, HD, L->q_stride);
            k->rope_backward(dk, m->rope_cos, m->rope_sin, N, NKV, HD, L->k_stride);
            linear_backward(m, l, SFT_LIN_Q, m->dnorm, dq, L->norm1, N);
            linear_backward(m, l, SFT_LIN_K, m->dnorm, dk, L->norm1, N);
            linear_backward(m, l, SFT_LIN_V, m->dnorm, dv, L->norm1, N);
            k->rmsnorm_backward(m->dres, L->dnorm1_w, m->dnorm, x_in, L->norm1_w, L->norm1_rstd, N, C);
        }
    }
    if (m->dwte || m->dwpe) {
        float p_embd = dropout_p(m, DROP_EMBEDDING);
        if (p_embd > 0) k->dropout_backward(m->dres, NC, p_embd, dropout_site_seed(m, 0, DROP_EMBEDDING));
        k->embedding_backward(m->dwte, gpt2 ? m->dwpe : NULL, m->dres, batch->tokens, batch->pos, N, C);
    }
}

int sft_model_backward(sft_model *m, const sft_batch *batch) {
    if (!m->logits_ready || batch->B != m->cur_B || batch->T != m->cur_T) return -1;
    const sft_kernels *k = m->kernels;
    const int N = batch->B * batch->T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float scale = batch->step_supervised_tokens > 0 ? 1.0f / (float)batch->step_supervised_tokens : 0.0f;
    k->cross_entropy_backward(m->logits, m->lse, batch->targets, N, V, scale);
    m->logits_ready = 0; /* they hold their gradient now */
    zero(m->dnorm, (size_t)N * C);
    k->matmul_backward(m->dnorm, m->dlm_head, NULL, m->logits, m->normf, m->lm_head, N, C, V, 0);
    backward_trunk(m, batch);
    return 0;
}

int sft_model_forward_backward(sft_model *m, const sft_batch *batch, double *loss, sft_err *err) {
    if (check_batch(m, batch, err)) return -1;
    forward_trunk(m, batch);
    int supervised;
    *loss = mean_over_step(loss_head(m, batch, 1, NULL, &supervised), batch);
    /* no supervised row: every gradient of this micro-batch is zero */
    if (supervised) backward_trunk(m, batch);
    return 0;
}
