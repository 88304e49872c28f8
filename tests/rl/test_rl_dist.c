/* rl_train data-parallel: one RL step (5 prompts x 2 sampled episodes: shares 3/2 and 2/2/1,
 * two PPO updates, a held-out probe) on 2 and 3 ranks against one process. The rollouts sample
 * the same tokens (the streams are numbered as one process numbers them), so the rewards,
 * advantages and statistics are equal and the policy is within 1e-5 of the largest weight.
 *
 * A random policy never earns a reward with spread (every advantage 0, no update), so the
 * ranks run the library with a test reward hook: this binary's dist_rl_worker test, started
 * under mpirun by dist_rl_one_step. */
#include "harness.h"
#include "mpi_util.h"
#include "rl_fixture.h"
#include "deeprec/rl.h"
#include <jansson.h>
#include <unistd.h>

/* A reward with spread: a hash of the generated tokens. */
static int hash_reward(void *ctx, const agent_episode *e, rl_reward *r) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < e->n_tokens; i++)
        if (e->mask[i]) h = (h ^ (uint64_t)e->tokens[i]) * 1099511628211ull;
    r->total += (double)(h % 1000) / 1000.0;
    return 0;
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* As one rank of the world: RL steps into DEEPREC_RL_WORKER/TAG.gguf (+ metrics, checkpoints);
 * TAG = DEEPREC_RL_TAG or p<ranks>; DEEPREC_RL_STEPS (1), DEEPREC_RL_STOP (stop after that many
 * steps of this run, 0 = no), DEEPREC_RL_RESUME (0). */
TEST(dist_rl_worker) {
    const char *dir = getenv("DEEPREC_RL_WORKER");
    if (!dir) SKIP("started by dist_rl_one_step and dist_rl_resume (under mpirun)");
    CHECK_OK(dr_dist_init(NULL, NULL));
    dr_dataset d;
    rlx_dataset(&d, 40);
    trm_model *tm = rlx_trm(&d);
    llm_model *m;
    tokenizer *tok;
    rlx_llm(&m, &tok);
    char out[600];
    if (getenv("DEEPREC_RL_TAG")) snprintf(out, sizeof out, "%s/%s.gguf", dir, getenv("DEEPREC_RL_TAG"));
    else snprintf(out, sizeof out, "%s/p%d.gguf", dir, dr_dist_size());
    rl_opts o;
    rl_opts_default(&o, RL_STAGE_1);
    o.steps = env_int("DEEPREC_RL_STEPS", 1), o.prompts = 5, o.samples = 2, o.lr = 1e-3f, o.updates = 2, o.micro = 2;
    o.rollout.max_hist = 4, o.rollout.max_turn_tokens = 10, o.max_ctx = 560, o.select_k = 0, o.seed = 7;
    o.probe_users = 3;
    o.stop_after = env_int("DEEPREC_RL_STOP", 0);
    o.resume = env_int("DEEPREC_RL_RESUME", 0);
    o.out = out;
    o.reward_hook = hash_reward;
    rl_env env = {&d, tm, m, tok};
    rl_result res;
    CHECK_OK(rl_train(&env, &o, &res));
    CHECK_EQ_INT(res.steps_done, o.stop_after > 0 ? res.start_step + o.stop_after : o.steps);
    llm_model_free(m);
    tok_free(tok);
    trm_model_free(tm);
    dr_data_free(&d);
    dr_dist_finalize();
}

/* Runs the worker alone (np 1) or under mpirun, with extra environment assignments. */
static void run_worker(const char *dir, int np, const char *env, const char *log) {
    char self[1024], cmd[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(n > 0);
    self[n] = 0;
    snprintf(cmd, sizeof cmd,
             "DEEPREC_RL_WORKER=%s %s OMP_WAIT_POLICY=passive DEEPREC_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 "
             "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none "
             "%s%.0d %s dist_rl_worker >%s/%s 2>&1",
             dir, env, np > 1 ? "timeout 600 mpirun --oversubscribe --bind-to none -np " : "", np > 1 ? np : 0, self,
             dir, log);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "%s/%s", dir, log);
        char *t = read_text(cmd);
        CHECK_MSG(0, "the %d-rank worker failed:\n%s", np, t ? t : "(no log)");
    }
}

static json_t *metrics_line(const char *dir, int np) {
    char p[600];
    snprintf(p, sizeof p, "%s/p%d.metrics.jsonl", dir, np);
    json_error_t e;
    json_t *j = json_load_file(p, JSON_DISABLE_EOF_CHECK, &e);
    CHECK_MSG(j, "%s: %s", p, e.text);
    return j;
}

TEST(dist_rl_one_step) {
#if defined(__SANITIZE_ADDRESS__)
    SKIP("the mpirun workers run in the optimised build (OpenMPI's allocations are not LeakSanitizer-clean)");
#endif
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    const int nps[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) { /* 1: without mpirun, one process, the reference */
        char log[64];
        snprintf(log, sizeof log, "worker%d.log", nps[k]);
        run_worker(dir, nps[k], "", log);
    }
    char p1[600], pk[600];
    snprintf(p1, sizeof p1, "%s/p1.gguf", dir);
    /* the rewards have spread and both updates stepped with a gradient */
    json_t *j0 = metrics_line(dir, 1);
    CHECK(json_integer_value(json_object_get(j0, "updates")) == 2);
    CHECK(json_real_value(json_object_get(j0, "grad_norm")) > 0);
    CHECK(json_real_value(json_object_get(j0, "reward_std")) > 0);
    for (int k = 1; k < 3; k++) {
        json_t *j = metrics_line(dir, nps[k]);
        const char *same[] = {"reward", "reward_std", "gen_tokens", "seq_tokens", "episodes", "updates", "grad_norm"};
        for (int i = 0; i < 7; i++) {
            json_t *a = json_object_get(j0, same[i]), *b = json_object_get(j, same[i]);
            int eq = a && b && (json_equal(a, b) || (json_is_real(a) && json_is_real(b) &&
                                                    fabs(json_real_value(a) - json_real_value(b)) <=
                                                        1e-5 * fabs(json_real_value(a))));
            CHECK_MSG(eq, "-np %d: %s differs", nps[k], same[i]);
        }
        CHECK(json_equal(json_object_get(json_object_get(j0, "probe"), "reward"),
                         json_object_get(json_object_get(j, "probe"), "reward")));
        CHECK_NEAR(json_real_value(json_object_get(j0, "loss")), json_real_value(json_object_get(j, "loss")), 1e-6);
        json_decref(j);
        snprintf(pk, sizeof pk, "%s/p%d.gguf", dir, nps[k]);
        double r = gguf_rel_diff(p1, pk, "attn_k.bias");
        printf("  rl: %d ranks: the policy differs by %.2e of the largest weight\n", nps[k], r);
        CHECK_MSG(r <= 1e-5, "%d ranks: policy differs by %g relative", nps[k], r);
    }
    json_decref(j0);
}

static int same_bytes(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    CHECK_OK(dr_read_file(a, &x, &nx));
    CHECK_OK(dr_read_file(b, &y, &ny));
    int eq = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return eq;
}

/* Two steps on 2 ranks, against one step, stopped, and resumed on 2 ranks: the same policy and
 * optimizer state byte for byte; rank 0 alone wrote one metrics line per step. */
TEST(dist_rl_resume) {
#if defined(__SANITIZE_ADDRESS__)
    SKIP("the mpirun workers run in the optimised build (OpenMPI's allocations are not LeakSanitizer-clean)");
#endif
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    run_worker(dir, 2, "DEEPREC_RL_TAG=full DEEPREC_RL_STEPS=2", "full.log");
    run_worker(dir, 2, "DEEPREC_RL_TAG=part DEEPREC_RL_STEPS=2 DEEPREC_RL_STOP=1", "part.log");
    run_worker(dir, 2, "DEEPREC_RL_TAG=part DEEPREC_RL_STEPS=2 DEEPREC_RL_RESUME=1", "resume.log");
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/full.gguf", dir);
    snprintf(b, sizeof b, "%s/part.gguf", dir);
    CHECK_MSG(same_bytes(a, b), "the resumed policy differs from the uninterrupted one");
    /* the committed checkpoint of step 2 sits in slot b of both runs */
    snprintf(a, sizeof a, "%s/full.ckpt-b.state.gguf", dir);
    snprintf(b, sizeof b, "%s/part.ckpt-b.state.gguf", dir);
    CHECK_MSG(same_bytes(a, b), "the resumed optimizer state differs");
    snprintf(b, sizeof b, "%s/part.metrics.jsonl", dir);
    char *t = read_text(b);
    CHECK(t);
    int lines = 0;
    for (char *p = t; *p; p++) lines += *p == '\n';
    free(t);
    CHECK_EQ_INT(lines, 2);
}
