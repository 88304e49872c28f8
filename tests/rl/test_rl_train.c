/* The trainer on a tiny random qwen2 + tiny dataset + tiny TRM: data selection, a few RL steps
 * (both stages, full fine-tuning and LoRA), logs and curve, and exact resume. */
#include "harness.h"
#include "rl_fixture.h"
#include "deeprec/gguf.h"
#include "deeprec/llm_train.h"
#include "deeprec/rl.h"
#include "rl/internal.h"
#include <math.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

TEST(rl_select_users_top_k) {
    dr_dataset d;
    rlx_dataset(&d, 40);
    trm_model *m = rlx_trm(&d);
    int32_t *u;
    int n;
    CHECK_OK(rl_select_users(&d, m, 0, &u, &n));
    int all = 0;
    for (int32_t i = 0; i < d.n_users; i++) {
        const int32_t *tr;
        all += dr_data_train(&d, i, &tr) >= 2;
    }
    CHECK_EQ_INT(n, all);
    free(u);
    /* k = 1: exactly the users whose target is the TRM's first (history masked) */
    CHECK_OK(rl_select_users(&d, m, 1, &u, &n));
    trm_session *s;
    CHECK_OK(trm_session_new(&s, m));
    int want = 0;
    for (int32_t i = 0; i < d.n_users; i++) {
        const int32_t *tr;
        int64_t nt = dr_data_train(&d, i, &tr);
        if (nt < 2) continue;
        int32_t id;
        float sc;
        int got;
        CHECK_OK(trm_retrieve(s, tr, nt - 1, "", 1, 1, &id, &sc, &got));
        if (got == 1 && id == tr[nt - 1]) {
            CHECK(want < n && u[want] == i);
            want++;
        }
    }
    CHECK_EQ_INT(n, want);
    CHECK(n < all);
    free(u);
    trm_session_free(s);
    trm_model_free(m);
    dr_data_free(&d);
}

/* A reward with spread (a random model never writes a valid answer): a hash of the generated
 * tokens, so advantages are non-zero and updates really change the policy. */
static int hash_reward(void *ctx, const agent_episode *e, rl_reward *r) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < e->n_tokens; i++)
        if (e->mask[i]) h = (h ^ (uint64_t)e->tokens[i]) * 1099511628211ull;
    r->total += (double)(h % 1000) / 1000.0;
    return 0;
}

typedef struct log_ctx { rl_step_stats s[16]; int n; } log_ctx;
static void on_step(void *ctx, const rl_step_stats *s) {
    log_ctx *l = ctx;
    if (l->n < 16) l->s[l->n++] = *s;
}

typedef struct fx {
    dr_dataset d;
    trm_model *trm;
    llm_model *llm;
    tokenizer *tok;
} fx;
static void fx_init(fx *f) {
    rlx_dataset(&f->d, 40);
    f->trm = rlx_trm(&f->d);
    rlx_llm(&f->llm, &f->tok);
}
static void fx_free(fx *f) {
    llm_model_free(f->llm);
    tok_free(f->tok);
    trm_model_free(f->trm);
    dr_data_free(&f->d);
}
static void tiny_opts(rl_opts *o, int stage, const char *out) {
    rl_opts_default(o, stage);
    o->steps = 3;
    o->prompts = 2;
    o->samples = 2;
    o->lr = 1e-3f;
    o->updates = 2;
    o->micro = 2;
    o->rollout.max_hist = 4;
    o->rollout.max_turn_tokens = 10;
    o->max_ctx = 560;
    o->select_k = 0;
    o->seed = 7;
    o->out = out;
    o->reward_hook = hash_reward;
}

static uint8_t *slurp(const char *p, size_t *n) {
    char *s;
    CHECK_OK(dr_read_file(p, &s, n));
    return (uint8_t *)s;
}

static void check_same_file(const char *a, const char *b) {
    size_t na, nb;
    uint8_t *x = slurp(a, &na), *y = slurp(b, &nb);
    CHECK_MSG(na == nb && memcmp(x, y, na) == 0, "%s and %s differ (%zu vs %zu bytes)", a, b, na, nb);
    free(x);
    free(y);
}

/* JSON lines without the timing fields */
static char *metrics_sans_time(const char *p) {
    size_t n;
    char *s = (char *)slurp(p, &n);
    char *out = calloc(n + 1, 1);
    char *save, *line = strtok_r(s, "\n", &save);
    while (line) {
        json_t *j = json_loads(line, 0, NULL);
        CHECK(j != NULL);
        json_object_del(j, "rollout_s");
        json_object_del(j, "update_s");
        json_object_del(j, "step_s");
        json_object_del(j, "rollout_cpu_s");
        json_object_del(j, "update_cpu_s");
        json_object_del(json_object_get(j, "probe"), "seconds");
        json_object_del(json_object_get(j, "probe_start"), "seconds");
        json_object_del(json_object_get(j, "valid"), "seconds");
        json_object_del(json_object_get(j, "valid_start"), "seconds");
        char *d = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        strcat(out, d);
        strcat(out, "\n");
        free(d);
        json_decref(j);
        line = strtok_r(NULL, "\n", &save);
    }
    free(s);
    return out;
}

/* DIR/A.metrics.jsonl and DIR/B.metrics.jsonl hold the same lines but for the timings. */
static void check_same_metrics(const char *dir, const char *a, const char *b) {
    char ma[600], mb[600];
    snprintf(ma, sizeof ma, "%s/%s.metrics.jsonl", dir, a);
    snprintf(mb, sizeof mb, "%s/%s.metrics.jsonl", dir, b);
    char *xa = metrics_sans_time(ma), *xb = metrics_sans_time(mb);
    CHECK_STR(xa, xb);
    free(xa);
    free(xb);
}

TEST(rl_train_resume_reproduces_uninterrupted_run) {
    fx f;
    fx_init(&f);
    rl_env env = {&f.d, f.trm, f.llm, f.tok};
    const char *dir = dr_test_tmpdir();
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    /* uninterrupted */
    rl_opts o;
    tiny_opts(&o, 1, a);
    log_ctx la = {0};
    o.on_step = on_step;
    o.on_step_ctx = &la;
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.steps_done, 3);
    CHECK_EQ_INT(la.n, 3);
    for (int i = 0; i < 3; i++) {
        const rl_step_stats *s = &la.s[i];
        CHECK_EQ_INT(s->step, i + 1);
        CHECK_EQ_INT(s->batch.n_episodes, 4);
        CHECK(s->batch.n_tokens > 0 && s->batch.mean_gen > 0);
        CHECK_EQ_INT(s->n_updates, 2);
        CHECK(s->grad_norm > 0 && isfinite(s->loss) && s->entropy > 0);
        CHECK(s->clip_frac >= 0 && s->clip_frac <= 1);
        CHECK(s->logp_diff < 1e-3); /* the trainer and the inference engine agree */
        CHECK_NEAR(s->batch.format, -1.0, 0); /* a random model never answers validly */
        int tot = 0;
        for (int k = 0; k < AGENT_N_OUTCOMES; k++) tot += s->batch.outcomes[k];
        CHECK_EQ_INT(tot, 4);
    }
    CHECK(la.s[0].ratio != 1.0); /* the second mini-batch sees the moved policy */
    /* the policy loads and differs from the start */
    llm_model *pa;
    CHECK_OK(llm_model_load(&pa, a));
    CHECK(memcmp(pa->tok_embd.data, f.llm->tok_embd.data, (size_t)f.llm->cfg.vocab * f.llm->cfg.dim * 4) != 0);
    llm_model_free(pa);
    char p[600];
    snprintf(p, sizeof p, "%s/a.rewards.svg", dir);
    size_t n;
    char *svg = (char *)slurp(p, &n);
    CHECK(strstr(svg, "<polyline") && strstr(svg, "stage 1"));
    free(svg);

    /* interrupted after 2 steps (nothing after the checkpoint of step 2), then resumed */
    tiny_opts(&o, 1, b);
    o.stop_after = 2;
    o.save_every = 2; /* the checkpoint cadence does not change the results */
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.steps_done, 2);
    snprintf(p, sizeof p, "%s/b.gguf", dir);
    CHECK(!dr_file_exists(p)); /* the final policy is written at the end only */
    tiny_opts(&o, 1, b);
    o.resume = 1;
    o.save_every = 2;
    log_ctx lb = {0};
    o.on_step = on_step;
    o.on_step_ctx = &lb;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.start_step, 2);
    CHECK_EQ_INT(res.steps_done, 3);
    CHECK_EQ_INT(lb.n, 1);
    CHECK(lb.s[0].batch.reward == la.s[2].batch.reward);
    CHECK(lb.s[0].loss == la.s[2].loss);
    CHECK(lb.s[0].grad_norm == la.s[2].grad_norm);
    check_same_file(a, b);
    check_same_metrics(dir, "a", "b");
    /* resuming a finished run is a no-op that rewrites the policy */
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.start_step, 3);
    check_same_file(a, b);
    /* a mismatching resume is refused: another seed, another input model */
    o.seed = 8;
    CHECK_ERR(rl_train(&env, &o, &res), DR_ERR_ARG);
    o.seed = 7;
    llm_model *other;
    CHECK_OK(llm_model_init_random(&other, &f.llm->cfg, GGML_TYPE_F32, 0.2f, 99));
    rl_env env2 = {&f.d, f.trm, other, f.tok};
    CHECK_ERR(rl_train(&env2, &o, &res), DR_ERR_ARG);
    llm_model_free(other);
    fx_free(&f);
}

TEST(rl_train_stage2_lora_grpo_kl) {
    fx f;
    fx_init(&f);
    rl_env env = {&f.d, f.trm, f.llm, f.tok};
    const char *dir = dr_test_tmpdir();
    char out[512], prev[512];
    snprintf(out, sizeof out, "%s/p2.gguf", dir);
    snprintf(prev, sizeof prev, "%s/p1.metrics.jsonl", dir);
    /* a stage-1 log for the combined curve */
    CHECK_OK(dr_write_file_atomic(prev, "{\"stage\":1,\"step\":1,\"reward\":-1.0}\n{\"stage\":1,\"step\":2,\"reward\":-0.5}\n",
                                  strlen("{\"stage\":1,\"step\":1,\"reward\":-1.0}\n{\"stage\":1,\"step\":2,\"reward\":-0.5}\n")));
    rl_opts o;
    tiny_opts(&o, 2, out);
    o.steps = 2;
    o.lora_rank = 4;
    o.adv = RL_ADV_GRPO;
    o.ppo.kl_beta = 0.1f;
    o.updates = 1;
    o.epochs = 2;
    o.prev_metrics = prev;
    log_ctx l = {0};
    o.on_step = on_step;
    o.on_step_ctx = &l;
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.s[0].n_updates, 2);  /* 2 epochs x 1 mini-batch */
    CHECK(l.s[0].kl > 0 && l.s[0].kl < l.s[1].kl); /* 0 at the first update, then it grows */
    llm_model *pm;
    CHECK_OK(llm_model_load(&pm, out));
    CHECK_EQ_INT(pm->cfg.vocab, f.llm->cfg.vocab);
    llm_model_free(pm);
    char p[600];
    snprintf(p, sizeof p, "%s/p2.rewards.svg", dir);
    size_t n;
    char *svg = (char *)slurp(p, &n);
    CHECK(strstr(svg, "stage 1") && strstr(svg, "stage 2"));
    free(svg);
    /* resume of a LoRA run: from the base model + the state */
    tiny_opts(&o, 2, out);
    o.steps = 3;
    o.lora_rank = 4;
    o.adv = RL_ADV_GRPO;
    o.ppo.kl_beta = 0.1f;
    o.updates = 1;
    o.epochs = 2;
    o.resume = 1;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.start_step, 2);
    CHECK_EQ_INT(res.steps_done, 3);
    fx_free(&f);
}

/* The held-out probe: its users never train, they are the same at every probe, and the probe
 * log resumes exactly like the rest of the step record. The hook sees episodes in call order:
 * probe_start (P), then per step the rollout batch (prompts x samples) and the probe (P). */
typedef struct seen_ctx {
    int n_calls;
    int32_t users[256];
} seen_ctx;
static int seen_hook(void *ctx, const agent_episode *e, rl_reward *r) {
    seen_ctx *s = ctx;
    if (s->n_calls < 256) s->users[s->n_calls] = e->user;
    s->n_calls++;
    return hash_reward(NULL, e, r);
}

TEST(rl_train_probe_held_out) {
    fx f;
    fx_init(&f);
    rl_env env = {&f.d, f.trm, f.llm, f.tok};
    const char *dir = dr_test_tmpdir();
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/pa.gguf", dir);
    snprintf(b, sizeof b, "%s/pb.gguf", dir);
    rl_opts o;
    tiny_opts(&o, 1, a);
    o.probe_users = 3;
    seen_ctx sc = {0};
    o.reward_hook = seen_hook;
    o.reward_hook_ctx = &sc;
    log_ctx la = {0};
    o.on_step = on_step;
    o.on_step_ctx = &la;
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.n_probe, 3);
    CHECK_EQ_INT(sc.n_calls, 3 + 3 * (4 + 3));
    /* probe sets: identical each time; disjoint from every training user */
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 3; i++) CHECK_EQ_INT(sc.users[3 + s * 7 + 4 + i], sc.users[i]);
    for (int s = 0; s < 3; s++)
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < 3; i++) CHECK(sc.users[3 + s * 7 + k] != sc.users[i]);
    CHECK(la.s[0].probed_start && la.s[0].probed);
    CHECK(!la.s[1].probed_start && la.s[1].probed && la.s[2].probed);
    CHECK_EQ_INT(la.s[0].probe.n_users, 3);
    CHECK(res.probed_start && res.probed_last);
    CHECK(res.probe_start == la.s[0].probe_start.reward && res.probe_last == la.s[2].probe.reward);
    /* the step log carries both objects; the curve draws the probe */
    char p[600];
    snprintf(p, sizeof p, "%s/pa.metrics.jsonl", dir);
    size_t n;
    char *ml = (char *)slurp(p, &n);
    CHECK(strstr(ml, "\"probe_start\":{") && strstr(ml, "\"probe\":{"));
    free(ml);
    snprintf(p, sizeof p, "%s/pa.rewards.svg", dir);
    char *svg = (char *)slurp(p, &n);
    CHECK(strstr(svg, "held-out probe") && strstr(svg, "stroke-dasharray=\"6 3\""));
    free(svg);
    /* interrupted and resumed: same policy, same log (probe included) */
    tiny_opts(&o, 1, b);
    o.probe_users = 3;
    o.stop_after = 1;
    CHECK_OK(rl_train(&env, &o, &res));
    tiny_opts(&o, 1, b);
    o.probe_users = 3;
    o.resume = 1;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.start_step, 1);
    CHECK(!res.probed_start && res.probed_last);
    check_same_file(a, b);
    check_same_metrics(dir, "pa", "pb");
    /* a resume with another probe size is refused (it would train on other users) */
    o.probe_users = 2;
    CHECK_ERR(rl_train(&env, &o, &res), DR_ERR_ARG);
    /* and so is one with the other title-constraint setting (other sampled distributions) */
    o.probe_users = 3;
    o.rollout.constrain_titles = o.rollout.constrain_prefs = !o.rollout.constrain_titles;
    CHECK_ERR(rl_train(&env, &o, &res), DR_ERR_ARG);
    CHECK(strstr(dr_error_message(), "--constrain") != NULL);
    fx_free(&f);
}

/* A sampled probe with several episodes per user: P x S episodes per probe, all of probe users. */
TEST(rl_train_probe_sampled_episodes) {
    fx f;
    fx_init(&f);
    rl_env env = {&f.d, f.trm, f.llm, f.tok};
    char a[512];
    snprintf(a, sizeof a, "%s/ps.gguf", dr_test_tmpdir());
    rl_opts o;
    tiny_opts(&o, 2, a);
    o.steps = 1;
    o.probe_users = 3;
    o.probe_temperature = 1.0f;
    o.probe_samples = 2;
    seen_ctx sc = {0};
    o.reward_hook = seen_hook;
    o.reward_hook_ctx = &sc;
    log_ctx l = {0};
    o.on_step = on_step;
    o.on_step_ctx = &l;
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(sc.n_calls, 6 + 4 + 6);
    CHECK_EQ_INT(l.s[0].probe.n_users, 3);
    CHECK_EQ_INT(l.s[0].probe.n_episodes, 6);
    CHECK_EQ_INT(l.s[0].probe_start.n_episodes, 6);
    /* the probe users, two samples each, in request order, the same before and after */
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(sc.users[i], sc.users[(i / 2) * 2]);
        CHECK_EQ_INT(sc.users[10 + i], sc.users[i]);
    }
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 6; i++) CHECK(sc.users[6 + k] != sc.users[i]);
    fx_free(&f);
}

/* keep_best: the hook sees, in call order, the validation of the input (V episodes), then per
 * step the batch (prompts x samples) and, when due, a validation (V). It marks the validation
 * episodes of one chosen step as hits (rank 1), so that step must be kept; training rewards
 * stay the hash's. It also records every episode's user and target. */
typedef struct kb_ctx {
    int n_calls, hit_from, hit_to; /* calls [hit_from, hit_to) get hit_rank 0 */
    int32_t users[256], targets[256];
} kb_ctx;
static int kb_hook(void *ctx, const agent_episode *e, rl_reward *r) {
    kb_ctx *k = ctx;
    if (k->n_calls < 256) k->users[k->n_calls] = e->user, k->targets[k->n_calls] = e->target;
    if (k->n_calls >= k->hit_from && k->n_calls < k->hit_to) r->hit_rank = 0;
    k->n_calls++;
    return hash_reward(NULL, e, r);
}

static void kb_opts(rl_opts *o, const char *out, kb_ctx *k, log_ctx *l) {
    tiny_opts(o, 1, out);
    o->keep_best_users = 5;
    o->keep_best_every = 2; /* validations: the input, after step 2, after step 3 (the last) */
    o->reward_hook = kb_hook;
    o->reward_hook_ctx = k;
    o->on_step = on_step;
    o->on_step_ctx = l;
}

TEST(rl_train_keep_best_on_validation_items) {
    fx f;
    fx_init(&f);
    rl_env env = {&f.d, f.trm, f.llm, f.tok};
    const char *dir = dr_test_tmpdir();
    char a[512], b[512], c[512], p[600];
    snprintf(a, sizeof a, "%s/kb_a.gguf", dir);
    snprintf(b, sizeof b, "%s/kb_b.gguf", dir);
    snprintf(c, sizeof c, "%s/kb_c.gguf", dir);
    const int V = 5, B = 4; /* validation users, episodes per step */
    /* the validation after step 2 is the best: calls V + B + B .. + V */
    kb_ctx k = {.hit_from = V + 2 * B, .hit_to = V + 2 * B + V};
    log_ctx la = {0};
    rl_opts o;
    kb_opts(&o, a, &k, &la);
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(k.n_calls, V + 3 * B + 2 * V);
    CHECK_EQ_INT(res.n_valid, V);
    CHECK_EQ_INT(res.best_step, 2);
    CHECK_NEAR(res.best_ndcg10, 1.0, 0);
    /* validation episodes: the same V users each time, each with its validation item */
    const int vstart[3] = {0, V + 2 * B, V + 3 * B + V};
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < V; i++) {
            int e = vstart[v] + i;
            CHECK_EQ_INT(k.users[e], k.users[i]);
            const int32_t *h;
            int64_t nh;
            CHECK_EQ_INT(k.targets[e], dr_data_valid(&f.d, k.users[e], &h, &nh));
        }
    CHECK(la.s[0].validated_start && !la.s[0].validated);
    CHECK(la.s[1].validated && la.s[2].validated && !la.s[1].validated_start);
    CHECK_NEAR(la.s[0].valid_start.ndcg10, 0.0, 0);
    CHECK_NEAR(la.s[1].valid.ndcg10, 1.0, 0);
    CHECK_NEAR(la.s[2].valid.ndcg10, 0.0, 0);
    CHECK_EQ_INT(la.s[1].valid.n_users, V);
    snprintf(p, sizeof p, "%s/kb_a.metrics.jsonl", dir);
    size_t n;
    char *ml = (char *)slurp(p, &n);
    CHECK(strstr(ml, "\"valid_start\":{") && strstr(ml, "\"valid\":{"));
    free(ml);

    /* `out` is the policy after step 2: the same bytes as a plain 2-step run (validations
     * do not disturb training) */
    kb_ctx k2 = {.hit_from = -1, .hit_to = -1};
    log_ctx lb = {0};
    tiny_opts(&o, 1, b);
    o.steps = 2;
    o.reward_hook = kb_hook;
    o.reward_hook_ctx = &k2;
    o.on_step = on_step;
    o.on_step_ctx = &lb;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK(lb.s[1].batch.reward == la.s[1].batch.reward && lb.s[1].loss == la.s[1].loss);
    check_same_file(a, b);

    /* killed after step 1 and resumed: the same output and log */
    kb_ctx k3 = k;
    k3.n_calls = 0;
    log_ctx lc = {0};
    kb_opts(&o, c, &k3, &lc);
    o.stop_after = 1;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK(!dr_file_exists(c));
    kb_opts(&o, c, &k3, &lc);
    o.resume = 1;
    k3.n_calls = V + B; /* the resumed run starts after step 1: no validation of the input */
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.start_step, 1);
    CHECK_EQ_INT(res.best_step, 2);
    check_same_file(a, c);
    check_same_metrics(dir, "kb_a", "kb_c");
    /* no validation beats the input: the input policy is the output */
    kb_ctx k4 = {.hit_from = -1, .hit_to = -1};
    log_ctx ld = {0};
    kb_opts(&o, c, &k4, &ld);
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.best_step, 0);
    llm_model *pc;
    CHECK_OK(llm_model_load(&pc, c));
    CHECK(memcmp(pc->tok_embd.data, f.llm->tok_embd.data, (size_t)f.llm->cfg.vocab * f.llm->cfg.dim * 4) == 0);
    llm_model_free(pc);
    /* a higher mean that is not confidently higher keeps the input: after step 2 one of the 5
     * users becomes a hit (+0.2 on average, paired standard error 0.2) */
    kb_ctx k5 = {.hit_from = V + 2 * B, .hit_to = V + 2 * B + 1};
    log_ctx le = {0};
    kb_opts(&o, c, &k5, &le);
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_NEAR(le.s[1].valid.ndcg10, 0.2, 1e-12);
    CHECK_EQ_INT(res.best_step, 0);
    /* a resume with other keep-best settings is refused */
    kb_opts(&o, a, &k4, &ld);
    o.resume = 1;
    o.keep_best_every = 1;
    CHECK_ERR(rl_train(&env, &o, &res), DR_ERR_ARG);
    fx_free(&f);
}

/* The paired test of keep_best against a direct computation: mean - 1.96 x sd / sqrt(n). */
TEST(rl_keep_best_paired_lower_bound) {
    const double cand[4] = {1.0, 0.5, 0.0, 0.25}, best[4] = {0.0, 0.5, 0.0, 0.0};
    /* differences 1, 0, 0, 0.25: mean 0.3125, sample variance 0.22396, se 0.23662 */
    double m = 0.3125, var = ((1 - m) * (1 - m) + 2 * m * m + (0.25 - m) * (0.25 - m)) / 3;
    CHECK_NEAR(rl_best_paired_lower(cand, best, 4), m - 1.96 * sqrt(var / 4), 1e-15);
    CHECK(rl_best_paired_lower(cand, best, 4) < 0);
    const double up[3] = {0.5, 0.6, 0.7}, zero[3] = {0, 0, 0};
    CHECK(rl_best_paired_lower(up, zero, 3) > 0);
    CHECK(isinf(rl_best_paired_lower(up, zero, 1)));
}
