/* Inference speed of a model on this machine (llm bench): prefill, then decode steps at
 * batch 1 and batch B, on random tokens (speed does not depend on the text). */
#include "deeprec/llm.h"
#include <stdlib.h>

int llm_speed(const llm_model *m, int P, int B, int steps, int fast, llm_speed_result *r) {
    r->prefill_tps = r->decode1_tps = r->decodeB_tps = 0;
    if (P <= 0 || B <= 0 || steps <= 0) return dr_error(DR_ERR_ARG, "llm speed: sizes must be > 0");
    const int V = m->cfg.vocab, n_tok = P > B ? P : B;
    llm_session *s = NULL;
    int32_t *tok = dr_calloc((size_t)n_tok, sizeof(int32_t));
    float *lg = dr_calloc((size_t)B * V, sizeof(float));
    int *slots = dr_calloc((size_t)B, sizeof(int));
    int rc = !tok || !lg || !slots ? DR_ERR_NOMEM : llm_session_new(&s, m, B, P + steps + 2);
    if (!rc) {
        llm_session_set_fast(s, fast);
        dr_rng g;
        dr_rng_seed(&g, 1);
        for (int i = 0; i < n_tok; i++) tok[i] = (int32_t)dr_rng_below(&g, (uint64_t)V);
        double t0 = dr_now();
        rc = llm_prefill(s, 0, tok, P, lg, 0);
        r->prefill_tps = P / (dr_now() - t0);
    }
    for (int pass = 0; pass < 2 && !rc; pass++) {
        int nb = pass ? B : 1;
        for (int i = 0; i < nb; i++) {
            slots[i] = i;
            llm_slot_truncate(s, i, 0);
        }
        rc = llm_decode(s, slots, tok, nb, lg); /* warm-up */
        double t0 = dr_now();
        for (int st = 0; st < steps && !rc; st++) rc = llm_decode(s, slots, tok, nb, lg);
        double tps = (double)nb * steps / (dr_now() - t0);
        if (pass) r->decodeB_tps = tps;
        else r->decode1_tps = tps;
    }
    free(tok);
    free(lg);
    free(slots);
    llm_session_free(s);
    return rc;
}
