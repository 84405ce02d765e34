/* lora.c: LoRA adapters on the linears of model.h, in PEFT's layout and file
 * format (peft/tuners/lora: LoraConfig, Linear.update_layer,
 * reset_lora_parameters, get_delta_weight; adapter_model.safetensors names
 * base_model.model.<module>.lora_A.weight). */
#include "model/lora.h"

#include <cblas.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/suggest.h"

static const char *const llama_targets[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                            "gate_proj", "up_proj", "down_proj"};
static const char *const gpt2_targets[] = {"c_attn", "c_proj", "c_fc"};

static const char *const *family_targets(const sft_model *m, size_t *count) {
    if (m->cfg.arch == SFT_ARCH_GPT2) {
        *count = sizeof gpt2_targets / sizeof gpt2_targets[0];
        return gpt2_targets;
    }
    *count = sizeof llama_targets / sizeof llama_targets[0];
    return llama_targets;
}

void sft_lora_default_targets(const sft_model *m, sft_lora_config *cfg) {
    size_t n;
    const char *const *names = family_targets(m, &n);
    cfg->target_count = (int)n;
    for (size_t i = 0; i < n; i++)
        snprintf(cfg->targets[i], sizeof cfg->targets[i], "%s", names[i]);
}

/* PEFT's rule (check_target_module_exists): a name matches a module whose
 * path equals it or ends with "." + name; a regex must match the whole path. */
static int name_matches(const char *module, const char *target) {
    size_t m = strlen(module), t = strlen(target);
    if (m == t) return !strcmp(module, target);
    return m > t && module[m - t - 1] == '.' && !strcmp(module + m - t, target);
}

static int module_targeted(const char *module, const sft_lora_config *cfg, const regex_t *re) {
    if (re) return regexec(re, module, 0, NULL, 0) == 0;
    for (int i = 0; i < cfg->target_count; i++)
        if (name_matches(module, cfg->targets[i])) return 1;
    return 0;
}

/* Compiles cfg->target_regex anchored at both ends, as Python's re.fullmatch
 * (POSIX extended syntax: the patterns PEFT configs use, such as
 * ".*\.(q_proj|v_proj)", read the same). */
static int compile_target_regex(const sft_lora_config *cfg, regex_t *re, sft_err *err) {
    char anchored[300];
    snprintf(anchored, sizeof anchored, "^(%s)$", cfg->target_regex);
    if (regcomp(re, anchored, REG_EXTENDED | REG_NOSUB))
        return sft_errf(err, "target_modules regex \"%s\" does not compile", cfg->target_regex);
    return 0;
}

static int any_module_matches(const sft_model *m, const char *target) {
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++)
            if (m->layers[l].lin_module[i][0] && name_matches(m->layers[l].lin_module[i], target)) return 1;
    return 0;
}

static int add_target(const sft_model *m, const char *name, size_t len, sft_lora_config *cfg, sft_err *err) {
    size_t n;
    const char *const *names = family_targets(m, &n);
    char word[96];
    if (len >= sizeof word) return sft_errf(err, "LoRA target module \"%.40s...\" is too long", name);
    snprintf(word, sizeof word, "%.*s", (int)len, name);
    if (any_module_matches(m, word)) {
        for (int j = 0; j < cfg->target_count; j++)
            if (!strcmp(cfg->targets[j], word)) return 0; /* listed twice: once is enough */
        if (cfg->target_count == SFT_LORA_MAX_TARGETS) return sft_errf(err, "too many LoRA target modules");
        snprintf(cfg->targets[cfg->target_count++], sizeof cfg->targets[0], "%s", word);
        return 0;
    }
    const char *near = sft_suggest(word, names, n);
    char all[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(all, i ? ", " : "", sizeof all - strlen(all) - 1);
        strncat(all, names[i], sizeof all - strlen(all) - 1);
    }
    if (near)
        return sft_errf(err,
                        "LoRA target module \"%s\" is not a linear of a %s model; did you mean \"%s\"? (%s)",
                        word, m->cfg.model_type, near, all);
    return sft_errf(err, "LoRA target module \"%s\" is not a linear of a %s model (%s)", word,
                    m->cfg.model_type, all);
}

int sft_lora_parse_targets(const sft_model *m, const char *list, sft_lora_config *cfg, sft_err *err) {
    cfg->target_count = 0;
    cfg->target_regex[0] = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && *s == ' ')
            s++, len--;
        while (len && s[len - 1] == ' ')
            len--;
        if (len && add_target(m, s, len, cfg, err)) return -1;
        if (!e) break;
        s = e + 1;
    }
    if (!cfg->target_count) return sft_errf(err, "no LoRA target modules in \"%s\"", list);
    return 0;
}

static void adapter_name(char *out, size_t cap, const char *module, char which) {
    snprintf(out, cap, "base_model.model.%s.lora_%c.weight", module, which);
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int attach_matching(sft_model *m, const sft_lora_config *cfg, double scale, uint64_t seed,
                           const regex_t *re, sft_err *err);

static int attach(sft_model *m, const sft_lora_config *cfg, double scale, uint64_t seed, sft_err *err) {
    if (m->lora_r) return sft_errf(err, "the model already has a LoRA adapter");
    if (cfg->r <= 0) return sft_errf(err, "LoRA rank r = %d must be positive", cfg->r);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return sft_errf(err, "lora_dropout %g must be in [0, 1)", cfg->dropout);
    if (m->arena) return sft_errf(err, "attach the LoRA adapter before planning the activations");
    regex_t regex, *re = NULL;
    if (cfg->target_regex[0]) {
        if (compile_target_regex(cfg, &regex, err)) return -1;
        re = &regex;
    }
    int rc = attach_matching(m, cfg, scale, seed, re, err);
    if (re) regfree(re);
    return rc;
}

static int attach_matching(sft_model *m, const sft_lora_config *cfg, double scale, uint64_t seed,
                           const regex_t *re, sft_err *err) {
    sft_param_set *set = &m->adapters;
    char name[200];
    int adapted = 0;
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            sft_layer *L = &m->layers[l];
            if (!L->lin_module[i][0] || !module_targeted(L->lin_module[i], cfg, re)) continue;
            sft_linear *lin = &L->lin[i];
            adapter_name(name, sizeof name, L->lin_module[i], 'A');
            if (sft_param_set_add(set, name, 2, cfg->r, lin->in, err)) return -1;
            adapter_name(name, sizeof name, L->lin_module[i], 'B');
            if (sft_param_set_add(set, name, 2, lin->out, cfg->r, err)) return -1;
            adapted++;
        }
    if (!adapted)
        return sft_errf(err, "no linear of this %s model matches the LoRA target modules", m->cfg.model_type);
    if (sft_param_set_alloc(set, 1, err)) return -1;
    int t = 0;
    uint64_t rng = seed ^ 0x243f6a8885a308d3ull;
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            sft_layer *L = &m->layers[l];
            if (!L->lin_module[i][0] || !module_targeted(L->lin_module[i], cfg, re)) continue;
            sft_linear *lin = &L->lin[i];
            const sft_tensor *a = &set->tensors[t++], *b = &set->tensors[t++];
            lin->r = cfg->r;
            lin->scale = (float)scale;
            lin->dropout = (float)cfg->dropout;
            lin->lora_a = set->data + a->offset, lin->dlora_a = set->grad + a->offset;
            lin->lora_b = set->data + b->offset, lin->dlora_b = set->grad + b->offset;
            /* PEFT's reset_lora_parameters: kaiming_uniform_(A, a=sqrt(5)), i.e.
             * U(-1/sqrt(in), 1/sqrt(in)); B = 0, so the adapter starts as a no-op. */
            double bound = 1.0 / sqrt((double)lin->in);
            for (size_t j = 0; j < a->numel; j++)
                lin->lora_a[j] =
                    (float)((((splitmix64(&rng) >> 11) + 0.5) / 9007199254740992.0 * 2 - 1) * bound);
        }
    m->lora_r = cfg->r;
    m->lora_alpha = (float)cfg->alpha;
    m->lora_dropout = (float)cfg->dropout;
    m->dropout_seed = seed;
    sft_model_freeze_weights(m);
    m->trainable = &m->adapters;
    return 0;
}

int sft_lora_attach(sft_model *m, const sft_lora_config *cfg, uint64_t seed, sft_err *err) {
    return attach(m, cfg, cfg->alpha / cfg->r, seed, err);
}

/* ---------------------------------------------------------------- load */

static int config_unsupported(const json_t *cfg, const char *key, const char *path, sft_err *err) {
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if ((json_is_object(v) && !json_object_size(v)) || (json_is_array(v) && !json_array_size(v))) return 0;
    return sft_errf(err, "%s: \"%s\" is set, which sft does not support (a plain LoRA adapter is expected)",
                    path, key);
}

int sft_lora_load(sft_model *m, const char *dir, sft_err *err) {
    char path[4096];
    if (sft_path_join(path, sizeof path, dir, "adapter_config.json", err)) return -1;
    json_t *jc = sft_json_load_file(path, err);
    if (!jc) return -1;
    int rc = -1;
    sft_safetensors *st = NULL;
    sft_lora_config cfg = {0};
    const char *peft_type = NULL, *bias = "none";
    int64_t r;
    double alpha, dropout = 0.0;
    int rslora = 0;
    if (sft_json_get_string_opt(jc, "peft_type", &peft_type, path, err)) goto done;
    if (peft_type && strcmp(peft_type, "LORA")) {
        sft_errf(err, "%s: peft_type \"%s\" is not LORA", path, peft_type);
        goto done;
    }
    if (sft_json_get_int(jc, "r", &r, path, err) ||
        sft_json_get_number(jc, "lora_alpha", &alpha, path, err) ||
        sft_json_get_number_opt(jc, "lora_dropout", &dropout, path, err) ||
        sft_json_get_bool_opt(jc, "use_rslora", &rslora, path, err) ||
        sft_json_get_string_opt(jc, "bias", &bias, path, err))
        goto done;
    if (strcmp(bias, "none")) {
        sft_errf(err, "%s: bias \"%s\" is not supported (expected \"none\")", path, bias);
        goto done;
    }
    if (config_unsupported(jc, "use_dora", path, err) || config_unsupported(jc, "rank_pattern", path, err) ||
        config_unsupported(jc, "alpha_pattern", path, err) ||
        config_unsupported(jc, "layers_to_transform", path, err) ||
        config_unsupported(jc, "modules_to_save", path, err) ||
        config_unsupported(jc, "target_parameters", path, err))
        goto done;
    if (r <= 0 || r > 1 << 20) {
        sft_errf(err, "%s: r = %lld must be positive", path, (long long)r);
        goto done;
    }
    cfg.r = (int)r, cfg.alpha = alpha, cfg.dropout = dropout;
    const json_t *targets = json_object_get(jc, "target_modules");
    if (json_is_array(targets)) {
        size_t i;
        json_t *t;
        json_array_foreach(targets, i, t) {
            if (!json_is_string(t)) {
                sft_errf(err, "%s: target_modules[%zu] is not a string", path, i);
                goto done;
            }
            if (add_target(m, json_string_value(t), strlen(json_string_value(t)), &cfg, err)) {
                sft_err_prefix(err, "%s: target_modules", path);
                goto done;
            }
        }
    } else if (json_is_string(targets) && !strcmp(json_string_value(targets), "all-linear")) {
        sft_lora_default_targets(m, &cfg); /* every linear but the output head */
    } else if (json_is_string(targets) && strlen(json_string_value(targets)) < sizeof cfg.target_regex) {
        snprintf(cfg.target_regex, sizeof cfg.target_regex, "%s", json_string_value(targets));
    } else {
        sft_errf(err, "%s: target_modules must be a list of module names or a regular expression", path);
        goto done;
    }
    /* rsLoRA scales by alpha / sqrt(r) instead of alpha / r */
    if (attach(m, &cfg, rslora ? alpha / sqrt((double)r) : alpha / (double)r, 0, err)) {
        sft_err_prefix(err, "%s", path);
        goto done;
    }
    if (sft_path_join(path, sizeof path, dir, "adapter_model.safetensors", err)) goto done;
    st = sft_safetensors_open(path, err);
    if (!st) goto done;
    const sft_param_set *set = &m->adapters;
    for (int i = 0; i < set->count; i++) {
        const sft_tensor *t = &set->tensors[i];
        const sft_tensor_info *s = sft_safetensors_find(st, t->name);
        if (!s) {
            sft_errf(err,
                     "%s: missing tensor '%s' (shape [%lld, %lld]) for target modules of adapter_config.json",
                     path, t->name, (long long)t->shape[0], (long long)t->shape[1]);
            goto done;
        }
        if (s->ndim != 2 || s->shape[0] != t->shape[0] || s->shape[1] != t->shape[1]) {
            sft_errf(err, "%s: tensor '%s' has %d dims [%lld, %lld], expected [%lld, %lld] (r = %d)", path,
                     t->name, s->ndim, (long long)s->shape[0], (long long)(s->ndim > 1 ? s->shape[1] : 0),
                     (long long)t->shape[0], (long long)t->shape[1], cfg.r);
            goto done;
        }
        sft_tensor_to_f32(s, set->data + t->offset);
    }
    for (size_t i = 0; i < sft_safetensors_count(st); i++) {
        const char *name = sft_safetensors_at(st, i)->name;
        if (!sft_param_set_find(set, name)) {
            sft_errf(err, "%s: unexpected tensor '%s': adapter_config.json's targets do not produce it", path,
                     name);
            goto done;
        }
    }
    rc = 0;
done:
    if (st) sft_safetensors_close(st);
    json_decref(jc);
    return rc;
}

/* ---------------------------------------------------------------- save */

int sft_lora_save(const sft_model *m, const char *dir, const char *base_model, sft_err *err) {
    if (!m->lora_r) return sft_errf(err, "the model has no LoRA adapter to save");
    if (sft_mkdir_p(dir, err)) return -1;
    char path[4096];
    const sft_param_set *set = &m->adapters;
    sft_tensor_out *out = calloc((size_t)set->count, sizeof *out);
    if (!out) return sft_errf(err, "out of memory");
    for (int i = 0; i < set->count; i++) {
        const sft_tensor *t = &set->tensors[i];
        out[i] = (sft_tensor_out){
            .name = t->name, .ndim = 2, .shape = {t->shape[0], t->shape[1]}, .data = set->data + t->offset};
    }
    int rc = sft_path_join(path, sizeof path, dir, "adapter_model.safetensors", err);
    if (!rc) rc = sft_safetensors_write(path, out, (size_t)set->count, SFT_DTYPE_F32, err);
    free(out);
    if (rc) return -1;

    /* adapter_config.json: the LoraConfig fields PEFT reads back */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return sft_errf(err, "out of memory");
    fprintf(
        f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": ");
    sft_json_write_string(f, base_model ? base_model : "", base_model ? strlen(base_model) : 0);
    fprintf(f, ",\n  \"r\": %d,\n  \"lora_alpha\": %.17g,\n  \"lora_dropout\": %.17g,\n", m->lora_r,
            (double)m->lora_alpha, (double)m->lora_dropout);
    fprintf(f, "  \"target_modules\": [");
    /* For each adapted linear, the shortest dotted suffix of its path that
     * matches adapted linears only: PEFT then adapts exactly the same set
     * ("c_proj" when both GPT-2 c_proj carry adapters, "mlp.c_proj" when only
     * the MLP's does). */
    int cap = m->cfg.num_layers * SFT_LIN_COUNT, nwritten = 0;
    char(*written)[96] = malloc((size_t)cap * sizeof *written);
    if (!written) {
        fclose(f);
        free(text);
        return sft_errf(err, "out of memory");
    }
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            const char *path = m->layers[l].lin_module[i];
            if (!m->layers[l].lin[i].r) continue;
            const char *suffix = path + strlen(path);
            for (;;) { /* grow the suffix one component at a time */
                while (suffix > path && suffix[-1] != '.')
                    suffix--;
                int only_adapted = 1;
                for (int l2 = 0; l2 < m->cfg.num_layers && only_adapted; l2++)
                    for (int i2 = 0; i2 < SFT_LIN_COUNT; i2++)
                        if (m->layers[l2].lin_module[i2][0] && !m->layers[l2].lin[i2].r &&
                            name_matches(m->layers[l2].lin_module[i2], suffix))
                            only_adapted = 0;
                if (only_adapted || suffix == path) break;
                suffix--;
            }
            int dup = 0;
            for (int j = 0; j < nwritten; j++)
                dup |= !strcmp(written[j], suffix);
            if (dup || nwritten == cap) continue;
            snprintf(written[nwritten], sizeof written[0], "%s", suffix);
            fprintf(f, "%s", nwritten ? ", " : "");
            sft_json_write_string(f, suffix, strlen(suffix));
            nwritten++;
        }
    free(written);
    fprintf(f, "],\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": %s,\n",
            m->cfg.arch == SFT_ARCH_GPT2 ? "true" : "false");
    fprintf(f, "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n  \"modules_to_save\": null,\n"
               "  \"use_rslora\": false,\n  \"use_dora\": false,\n  \"rank_pattern\": {},\n  "
               "\"alpha_pattern\": {}\n}\n");
    fclose(f);
    rc = sft_path_join(path, sizeof path, dir, "adapter_config.json", err);
    if (!rc) rc = sft_write_file_atomic(path, text, len, err);
    free(text);
    return rc;
}

/* --------------------------------------------------------------- merge */

void sft_lora_merge(sft_model *m) {
    if (!m->lora_r) return;
    for (int l = 0; l < m->cfg.num_layers; l++)
        for (int i = 0; i < SFT_LIN_COUNT; i++) {
            sft_linear *lin = &m->layers[l].lin[i];
            if (!lin->r) continue;
            if (lin->w_in_out) /* Conv1D W [in, out] += scale * (B A)^T = scale * A^T B^T */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, lin->in, lin->out, lin->r, lin->scale,
                            lin->lora_a, lin->in, lin->lora_b, lin->r, 1.0f, lin->w, lin->out);
            else /* W [out, in] += scale * B A */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, lin->out, lin->in, lin->r, lin->scale,
                            lin->lora_b, lin->r, lin->lora_a, lin->in, 1.0f, lin->w, lin->in);
            lin->r = 0;
            lin->lora_a = lin->dlora_a = lin->lora_b = lin->dlora_b = lin->xa = NULL;
            lin->keep = NULL;
        }
    sft_param_set_free(&m->adapters);
    m->lora_r = 0;
    m->trainable = &m->weights;
}
