/* On the shared MovieLens-100K (skipped without ../shared/data): the catalog on real titles,
 * and synthetic trajectories through the real preference-aware TRM (random weights: the
 * plumbing, not the quality), each valid and replayable. */
#include "harness.h"
#include "fixture.h"
#include "deeprec/trm.h"
#include <stdlib.h>
#include <string.h>

static int load_ml100k(dr_dataset *d) {
    const char *dir = dr_test_shared_data();
    if (!dir) return 0;
    const char *in = dr_test_path(dir, "ml-100k");
    dr_data_import_opts o = {0};
    o.format = "recbole";
    o.inputs = &in;
    o.n_inputs = 1;
    CHECK_OK(dr_data_import(&o, d));
    return 1;
}

/* A tool wrapper that checks the TRM never returns a history item. */
typedef struct spy { agent_tool inner; int calls, bad; } spy;
static int spy_retrieve(void *ctx, const int32_t *hist, int64_t n_hist, const char *pref, int k, int32_t *items,
                        float *scores, int *n_out) {
    spy *s = ctx;
    int rc = s->inner.retrieve(s->inner.ctx, hist, n_hist, pref, k, items, scores, n_out);
    s->calls++;
    for (int i = 0; !rc && i < *n_out; i++)
        for (int64_t h = 0; h < n_hist; h++) s->bad += items[i] == hist[h];
    return rc;
}

TEST(agent_shared_ml100k_catalog_and_synth) {
    dr_dataset d;
    memset(&d, 0, sizeof d);
    if (!load_ml100k(&d)) SKIP("no ../shared/data (MovieLens-100K)");
    agent_catalog *c;
    CHECK_OK(agent_catalog_build(&d, &c));
    CHECK(agent_catalog_has_categories(c));
    /* every title resolves to an item with the same normalised title */
    int dup = 0;
    for (int32_t i = 1; i <= d.n_items; i++) {
        int32_t j = agent_catalog_find(c, agent_catalog_title(c, i), -1);
        CHECK(j > 0);
        if (j != i) {
            dup++;
            char *a = agent_title_normalize(agent_catalog_title(c, i), -1), *b = agent_title_normalize(agent_catalog_title(c, j), -1);
            CHECK_STR(a, b);
            free(a);
            free(b);
        }
    }
    trm_config cfg;
    trm_config_default(&cfg);
    cfg.model = TRM_PREF;
    cfg.n_items = d.n_items;
    cfg.dim = 32;
    cfg.layers = 1;
    cfg.text_buckets = 1 << 12;
    trm_model *tm;
    CHECK_OK(trm_model_new(&tm, &cfg, &d, 3));
    agent_tool tool;
    spy sp = {{0}, 0, 0};
    CHECK_OK(agent_tool_trm_new(&sp.inner, tm, 1));
    tool = (agent_tool){&sp, spy_retrieve};
    int n_ok = 0;
    for (int32_t u = 0; u < 40; u++) {
        const int32_t *tr;
        int64_t n = dr_data_train(&d, u, &tr);
        if (n < 2) continue;
        agent_synth_opts o = {.chat = u % 2, .max_hist = 0, .tool_k = 0, .seed = (uint64_t)u};
        agent_synth_traj t;
        CHECK_OK(agent_synth_one(c, &tool, tr, n - 1, &o, &t));
        CHECK_EQ_INT(agent_format_check(t.completion, strlen(t.completion)), AGENT_FMT_OK);
        agent_answer a;
        CHECK_OK(agent_answer_parse(t.completion, strlen(t.completion), &a));
        CHECK_EQ_INT(a.n_lines, 10);
        for (int k = 0; k < 10; k++) CHECK(agent_catalog_find(c, a.lines[k], -1) > 0);
        agent_answer_free(&a);
        agent_synth_traj_free(&t);
        n_ok++;
    }
    CHECK(n_ok >= 30);
    CHECK(sp.calls >= n_ok);
    /* the open preference is the empty one: the TRM's own list, scores and all */
    {
        const int32_t *tr;
        int64_t n = dr_data_train(&d, 3, &tr);
        int32_t a[20], b[20];
        float sa[20], sb[20];
        int na = 0, nb = 0;
        trm_session *ts;
        CHECK_OK(trm_session_new(&ts, tm));
        CHECK_OK(sp.inner.retrieve(sp.inner.ctx, tr, n, " Anything ", 20, a, sa, &na));
        CHECK_OK(trm_retrieve(ts, tr, n, "", 20, 1, b, sb, &nb));
        CHECK_EQ_INT(na, nb);
        for (int k = 0; k < na; k++) CHECK(a[k] == b[k] && sa[k] == sb[k]);
        CHECK_OK(sp.inner.retrieve(sp.inner.ctx, tr, n, "comedy", 20, a, sa, &na));
        int same = 1;
        for (int k = 0; k < na; k++) same &= sa[k] == sb[k];
        CHECK(!same); /* a real preference moves the scores */
        trm_session_free(ts);
    }
    CHECK_EQ_INT(sp.bad, 0); /* history items are masked */
    dr_log(DR_LOG_INFO, "ml-100k: %d duplicate titles", dup);
    agent_tool_trm_free(&sp.inner);
    trm_model_free(tm);
    agent_catalog_free(c);
    dr_data_free(&d);
}
