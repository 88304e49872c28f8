#include "rl_fixture.h"
#include "harness.h"
#include "common/tiny_llm.h"
#include "deeprec/gguf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rlx_dataset(dr_dataset *d, int n_users) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK(b != NULL);
    dr_rng r;
    dr_rng_seed(&r, 11);
    for (int u = 0; u < n_users; u++) {
        char us[16];
        snprintf(us, sizeof us, "u%d", u);
        int len = 6 + (int)dr_rng_below(&r, 7);
        int base = (int)dr_rng_below(&r, 12);
        for (int i = 0; i < len; i++) {
            /* users drift through neighbouring items: learnable structure */
            int it = (base + i + (int)dr_rng_below(&r, 2)) % 12;
            char is[16];
            snprintf(is, sizeof is, "m%d", it);
            CHECK_OK(dr_data_builder_add(b, us, strlen(us), is, strlen(is), i, 0));
        }
    }
    for (int it = 0; it < 12; it++) {
        char is[16];
        snprintf(is, sizeof is, "m%d", it);
        CHECK_OK(dr_data_builder_item_text(b, is, strlen(is), tx_movie_titles[it], -1, tx_movie_cats[it], -1));
    }
    dr_data_filter f = {0};
    CHECK_OK(dr_data_builder_finish(b, &f, d));
    dr_data_builder_free(b);
}

trm_model *rlx_trm(const dr_dataset *d) {
    trm_config c;
    trm_config_default(&c);
    c.model = TRM_PREF;
    c.n_items = d->n_items;
    c.dim = 16;
    c.layers = 1;
    c.heads = 2;
    c.max_len = 20;
    c.text_buckets = 1024;
    trm_model *m;
    CHECK_OK(trm_model_new(&m, &c, d, 3));
    return m;
}

void rlx_llm(llm_model **m, tokenizer **tok) {
    static char corpus[32768];
    tx_movie_corpus(corpus, sizeof corpus);
    tx_tiny_llm(corpus, 1000, 2048, 0.2f, m, tok);
    /* through a file, as every model the trainer gets and writes: loading adds the end-of-
     * generation tokens the vocabulary names, which a resumed run's checkpoint then agrees on */
    char path[600];
    snprintf(path, sizeof path, "%s/rlx_llm.gguf", dr_test_tmpdir());
    CHECK_OK(llm_model_save(*m, *tok, path));
    llm_model_free(*m);
    CHECK_OK(llm_model_load(m, path));
}

void rlx_episode(agent_episode *e, const agent_catalog *c, const char *completion, int outcome, int32_t target,
                 const char *const *prefs, int n_prefs, const int32_t *items, int n_items) {
    memset(e, 0, sizeof *e);
    size_t n = strlen(completion);
    e->text = malloc(n + 3);
    memcpy(e->text, "P\n", 2);
    memcpy(e->text + 2, completion, n + 1);
    e->text_len = n + 2;
    e->prompt_len = 2;
    e->outcome = outcome;
    e->target = target;
    e->hit_rank = e->hit_rank_substr = -1;
    if (n_prefs) {
        e->calls = calloc((size_t)n_prefs, sizeof *e->calls);
        for (int i = 0; i < n_prefs; i++) {
            e->calls[i].preference = strdup(prefs[i]);
            if (items && n_items) {
                e->calls[i].items = malloc((size_t)n_items * sizeof(int32_t));
                e->calls[i].scores = calloc((size_t)n_items, sizeof(float));
                memcpy(e->calls[i].items, items, (size_t)n_items * sizeof(int32_t));
                e->calls[i].n_items = n_items;
            }
        }
        e->n_calls = e->call_cap = n_prefs;
    }
    CHECK_OK(agent_episode_finalize(e, c));
}
