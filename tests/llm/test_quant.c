/* Weight types used in place: the llama.cpp-quantised fixtures of ../shared/fixtures/quant
 * (per-tensor sums of gguf-py's dequantisation, float64 last-token logits), and every block
 * kernel against a double loop over its dequantised rows, batches 1..20. */
#include "harness.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/nn.h"
#include "llm/llm_internal.h"
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *quant_dir(void) {
    static char buf[1024];
    const char *e = getenv("DEEPREC_QUANT_FIXTURES");
    snprintf(buf, sizeof buf, "%s", e && *e ? e : "../shared/fixtures/quant");
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

static const char *FIXTURES[] = {"F32",    "F16",       "BF16",   "Q8_0",      "Q4_0",   "Q4_1",
                                 "Q5_0",   "Q5_1",      "Q2_K",   "Q3_K-pure", "Q3_K_M", "Q4_K-pure",
                                 "Q4_K_M", "Q5_K-pure", "Q5_K_M", "Q6_K",      "IQ4_NL", "IQ4_XS"};
#define N_FIXTURES (int)(sizeof FIXTURES / sizeof *FIXTURES)

static json_t *load_ref(const char *dir, const char *name) {
    char p[1200];
    snprintf(p, sizeof p, "%s/tiny-%s.ref.json", dir, name);
    json_error_t err;
    json_t *j = json_load_file(p, 0, &err);
    CHECK_MSG(j, "%s: %s (line %d)", p, err.text, err.line);
    return j;
}

/* Every tensor: its type, and the sum, sum of squares and first 8 values of its dequantised
 * weights against gguf-py's. */
TEST(quant_fixture_tensors) {
    const char *dir = quant_dir();
    if (!dir) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    for (int fi = 0; fi < N_FIXTURES; fi++) {
        json_t *ref = load_ref(dir, FIXTURES[fi]);
        char p[1200];
        snprintf(p, sizeof p, "%s/tiny-%s.gguf", dir, FIXTURES[fi]);
        gguf_file f;
        CHECK_OK(gguf_open(&f, p));
        const char *name;
        json_t *tj;
        int n_tensors = 0;
        json_object_foreach(json_object_get(ref, "tensors"), name, tj) {
            const gguf_tensor_info *t = gguf_find_tensor(&f, name);
            CHECK_MSG(t, "%s: no tensor %s", p, name);
            CHECK_STR(ggml_type_name(t->type), json_string_value(json_object_get(tj, "type")));
            float *v = malloc(t->n_elements * sizeof(float));
            CHECK_OK(gguf_tensor_to_f32(t, v));
            double sum = 0, sumsq = 0;
            for (uint64_t i = 0; i < t->n_elements; i++) {
                sum += v[i];
                sumsq += (double)v[i] * v[i];
            }
            double rsum = json_real_value(json_object_get(tj, "sum")), rsq = json_real_value(json_object_get(tj, "sumsq"));
            /* the same fp32 values summed in another order: a few ulps of the total magnitude */
            double scale = sqrt(rsq * (double)t->n_elements) + 1e-30;
            CHECK_MSG(fabs(sum - rsum) <= 1e-9 * scale + 1e-12, "%s %s: sum %.12g vs %.12g", p, name, sum, rsum);
            CHECK_MSG(fabs(sumsq - rsq) <= 1e-9 * rsq + 1e-12, "%s %s: sumsq %.12g vs %.12g", p, name, sumsq, rsq);
            json_t *f8 = json_object_get(tj, "first8");
            for (size_t i = 0; i < json_array_size(f8); i++)
                CHECK_MSG(v[i] == (float)json_number_value(json_array_get(f8, i)), "%s %s: value %zu is %.9g, want %.9g", p,
                          name, i, v[i], json_number_value(json_array_get(f8, i)));
            free(v);
            n_tensors++;
        }
        CHECK_EQ_INT(n_tensors, f.n_tensors);
        gguf_close(&f);
        json_decref(ref);
    }
}

/* Worst |logit - reference| over the three sequences, exact or fast. */
static double fixture_logit_error(const llm_model *m, json_t *ref, int fast) {
    json_t *toks = json_object_get(ref, "tokens"), *want = json_object_get(ref, "last_logits");
    const int V = m->cfg.vocab;
    float *lg = malloc((size_t)V * sizeof(float));
    double worst = 0;
    for (size_t si = 0; si < json_array_size(toks); si++) {
        json_t *ts = json_array_get(toks, si), *ws = json_array_get(want, si);
        int n = (int)json_array_size(ts);
        int32_t *tok = malloc((size_t)n * sizeof *tok);
        for (int i = 0; i < n; i++) tok[i] = (int32_t)json_integer_value(json_array_get(ts, (size_t)i));
        llm_session *s;
        CHECK_OK(llm_session_new(&s, m, 1, n));
        llm_session_set_fast(s, fast);
        CHECK_OK(llm_prefill(s, 0, tok, n, lg, 0));
        CHECK_EQ_INT(json_array_size(ws), V);
        for (int v = 0; v < V; v++) {
            double e = fabs(lg[v] - json_real_value(json_array_get(ws, (size_t)v)));
            if (!(e <= worst)) worst = e;
        }
        llm_session_free(s);
        free(tok);
    }
    free(lg);
    return worst;
}

/* Every fixture loads with its matrices in place (same type, pointing into the file's map);
 * exact logits within 1e-4 of the float64 reference; the fast path's error printed and bounded. */
TEST(quant_fixture_logits) {
    const char *dir = quant_dir();
    if (!dir) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    for (int fi = 0; fi < N_FIXTURES; fi++) {
        json_t *ref = load_ref(dir, FIXTURES[fi]);
        char p[1200];
        snprintf(p, sizeof p, "%s/tiny-%s.gguf", dir, FIXTURES[fi]);
        llm_model *m;
        CHECK_OK(llm_model_load(&m, p));
        const gguf_tensor_info *t = gguf_find_tensor(m->file, "blk.1.ffn_down.weight");
        CHECK(t && m->layers[1].w_down.type == t->type && m->layers[1].w_down.data == t->data);
        t = gguf_find_tensor(m->file, "token_embd.weight");
        CHECK(t && m->tok_embd.type == t->type && m->tok_embd.data == t->data);
        double exact = fixture_logit_error(m, ref, 0), fast = fixture_logit_error(m, ref, 1);
        printf("  %-10s exact %.2e  fast %.2e (int8 kernel %s, bf16 dot %s)\n", FIXTURES[fi], exact, fast, llm_kernel_name(), llm_bf16dp_available() ? "avx512-bf16" : "none");
        CHECK_MSG(exact <= 1e-4, "%s: exact logits off by %g", FIXTURES[fi], exact);
        CHECK_MSG(fast <= 0.1, "%s: fast logits off by %g", FIXTURES[fi], fast); /* logits reach ~5 */
        llm_model_free(m);
        json_decref(ref);
    }
}

/* ---------------------------------------------------------------- kernels */
/* Random blocks are valid blocks of every type once their fp16 scale fields hold sane values. */
static void random_blocks(uint32_t type, uint8_t *p, size_t n_blocks, dr_rng *g) {
    const size_t bs = ggml_type_size(type);
    int off[2] = {-1, -1};
    switch (type) {
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: off[0] = 0, off[1] = 2; break;
    case GGML_TYPE_Q2_K: off[0] = 80, off[1] = 82; break;
    case GGML_TYPE_Q3_K: off[0] = 108; break;
    case GGML_TYPE_Q6_K: off[0] = 208; break;
    default: off[0] = 0; break; /* Q4_0, Q5_0, Q8_0, IQ4_NL, IQ4_XS */
    }
    for (size_t b = 0; b < n_blocks; b++) {
        uint8_t *blk = p + b * bs;
        for (size_t i = 0; i < bs; i++) blk[i] = (uint8_t)dr_rng_below(g, 256);
        for (int k = 0; k < 2; k++)
            if (off[k] >= 0) {
                uint16_t h = dr_f32_to_f16((0.002f + 0.01f * dr_rng_float(g)) * (k ? 1.0f : (dr_rng_below(g, 8) ? 1 : -1)));
                memcpy(blk + off[k], &h, 2);
            }
    }
}

/* A rows x cols matrix of random blocks of type (the caller frees w.data). */
static llm_mat random_mat(uint32_t type, int rows, int cols, dr_rng *g) {
    llm_mat w = {0};
    w.type = type, w.rows = rows, w.cols = cols;
    w.row_bytes = ggml_row_bytes(type, (uint64_t)cols);
    uint8_t *buf = malloc(w.row_bytes * rows);
    random_blocks(type, buf, w.row_bytes * rows / ggml_type_size(type), g);
    w.data = buf;
    return w;
}

static double check_kernel(const llm_mat *w, const float *x, int n, int fast) {
    const int rows = w->rows, cols = w->cols;
    float *y = malloc((size_t)n * rows * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
    float *xr = malloc((size_t)n * cols * sizeof(float));
    /* prefill batches on the fast path: weights and activations rounded to bf16 (AVX512_BF16) */
    const int bf = fast && n >= llm_sgemm_min_n() && llm_bf16dp_available();
    if (bf) {
        for (int i = 0; i < n * cols; i++) xr[i] = dr_bf16_to_f32(dr_f32_to_bf16(x[i]));
        llm_matmul_fast(w, x, n, y);
    } else if (fast) { /* the reference multiplies by the int8-rounded activations the kernel sees */
        llm_ablk *a = malloc((size_t)cols / 32 * sizeof *a);
        for (int j = 0; j < n; j++) {
            llm_quantize_act(x + (size_t)j * cols, cols, a);
            for (int k = 0; k < cols; k++) xr[(size_t)j * cols + k] = a[k / 32].d * (float)a[k / 32].q[k % 32];
        }
        free(a);
        llm_matmul_fast(w, x, n, y);
    } else {
        memcpy(xr, x, (size_t)n * cols * sizeof(float));
        llm_matmul(w, x, n, y);
    }
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        llm_mat_row(w, r, row);
        if (bf)
            for (int k = 0; k < cols; k++) row[k] = dr_bf16_to_f32(dr_f32_to_bf16(row[k]));
        for (int j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < cols; k++) {
                s += (double)row[k] * xr[(size_t)j * cols + k];
                mag += fabs((double)row[k] * xr[(size_t)j * cols + k]);
            }
            double e = fabs(s - y[(size_t)j * rows + r]) / (mag + 1e-30);
            if (!(e <= worst)) worst = e;
        }
    }
    free(y);
    free(row);
    free(xr);
    return worst;
}

TEST(quant_kernels) {
    static const uint32_t types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                     GGML_TYPE_Q8_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                                     GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_XS};
    static const char *kernels[] = {"c", "avx2", "avx-vnni", "avx512-vnni"};
    dr_rng g;
    dr_rng_seed(&g, 5);
    const int rows = 37; /* not a multiple of any tile or thread share */
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const uint32_t type = types[ti];
        const int cols = ggml_block_size(type) == 256 ? 768 : 224; /* 3 super-blocks / 7 blocks */
        llm_mat w = random_mat(type, rows, cols, &g);
        float *x = malloc((size_t)70 * cols * sizeof(float));
        for (int i = 0; i < 70 * cols; i++) x[i] = dr_rng_normal(&g);
        for (int n = 1; n <= 70; n = n < 20 ? n + 1 : n + 25) { /* 1..20, 45, 70: decode and prefill paths */
            double e = check_kernel(&w, x, n, 0);
            CHECK_MSG(e < 1e-5, "%s exact n=%d: relative error %g", ggml_type_name(type), n, e);
        }
        for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++) {
            if (llm_kernel_force(kernels[ki])) continue;
            for (int n = 1; n <= (ki ? 20 : 70); n = n < 20 ? n + 1 : n + 25) { /* prefill sizes: kernel-independent */
                double e = check_kernel(&w, x, n, 1);
                CHECK_MSG(e < 1e-5, "%s fast (%s) n=%d: relative error %g", ggml_type_name(type), kernels[ki], n, e);
            }
        }
        free(x);
        free((void *)w.data);
    }
}

/* The tiles of a matmul are shared out over any number of threads (each starts on its own run
 * and takes half of the largest run left when done; qmatmul.c, llm_q8plan_run): every row is
 * written, once, with the same bits as on one thread, for teams of 1 to 5 on this machine's
 * processors (3 and 5 leave runs of unequal length; more threads than processors make some
 * of them start late, so the others take their tiles). */
TEST(quant_tiles_shared_by_any_team) {
    static const uint32_t types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    dr_rng g;
    dr_rng_seed(&g, 11);
    const int rows = 1003, cols = 512, keep = omp_get_max_threads();
    float *x = malloc(sizeof(float) * 3 * cols), *y1 = malloc(sizeof(float) * 3 * rows), *y = malloc(sizeof(float) * 3 * rows);
    for (int i = 0; i < 3 * cols; i++) x[i] = dr_rng_normal(&g);
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        llm_mat w = random_mat(types[ti], rows, cols, &g);
        for (int n = 1; n <= 3; n += 2)
            for (int team = 1; team <= 5; team++) {
                omp_set_num_threads(team);
                float *out = team == 1 ? y1 : y;
                for (int i = 0; i < n * rows; i++) out[i] = NAN;
                llm_matmul_fast(&w, x, n, out);
                int unwritten = 0;
                for (int i = 0; i < n * rows; i++) unwritten += isnan(out[i]);
                CHECK_MSG(!unwritten, "%s n=%d, %d threads: %d outputs not written", ggml_type_name(types[ti]), n, team, unwritten);
                CHECK_MSG(team == 1 || !memcmp(y1, y, sizeof(float) * n * rows), "%s n=%d: %d threads differ from 1", ggml_type_name(types[ti]), n, team);
            }
        free((void *)w.data);
    }
    omp_set_num_threads(keep);
    free(x), free(y1), free(y);
}

/* The int8 rounding of the activations is the same with every kernel family (the vector
 * version does the scalar one's operations lane by lane): equal bytes, scales and half sums,
 * on widths of 1 to 152 blocks, magnitudes from 1e-30 to 1e30, ties at .5 and all-zero blocks. */
TEST(quant_act_rounding_matches_c) {
    static const char *kernels[] = {"avx2", "avx-vnni", "avx512-vnni"};
    const char *was = llm_kernel_name();
    dr_rng g;
    dr_rng_seed(&g, 21);
    const int ns[] = {32, 96, 896, 4864};
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
        const int n = ns[ni], nb = n / 32;
        float *x = malloc((size_t)n * sizeof(float));
        llm_ablk *ac = malloc((size_t)nb * sizeof *ac), *ak = malloc((size_t)nb * sizeof *ak);
        for (int rep = 0; rep < 20; rep++) {
            const float scale = powf(10.0f, (float)(rep % 7) * 10.0f - 30.0f);
            for (int i = 0; i < n; i++) x[i] = scale * dr_rng_normal(&g);
            if (rep % 5 == 1) /* exact ties: amax 127 gives id 1 and values k + 0.5 */
                for (int i = 0; i < n; i++) x[i] = i % 32 == 0 ? 127.0f : (float)(int)(dr_rng_below(&g, 200)) / 2.0f - 50.0f;
            if (rep % 5 == 2)
                for (int i = 0; i < 32; i++) x[i] = 0.0f;
            CHECK_EQ_INT(llm_kernel_force("c"), 0);
            llm_quantize_act(x, n, ac);
            for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++) {
                if (llm_kernel_force(kernels[ki])) continue;
                memset(ak, 0x5A, (size_t)nb * sizeof *ak);
                llm_quantize_act(x, n, ak);
                for (int b = 0; b < nb; b++)
                    CHECK_MSG(!memcmp(ac[b].q, ak[b].q, 32) && ac[b].d == ak[b].d && ac[b].s[0] == ak[b].s[0] &&
                                  ac[b].s[1] == ak[b].s[1],
                              "%s: n %d rep %d block %d differs from c", kernels[ki], n, rep, b);
            }
        }
        free(x);
        free(ac);
        free(ak);
    }
    llm_kernel_force(was);
}

/* w repacked as a load would (Q4_0: q4x, Q5_0: q5x; freed by the caller with free(w.packed)). */
static llm_mat packed_copy(const llm_mat *w) {
    llm_mat p = *w;
    size_t n = w->type == GGML_TYPE_Q4_0 ? llm_q4x_bytes(w) : (size_t)w->rows * w->row_bytes;
    uint8_t *buf = aligned_alloc(64, (n + 63) / 64 * 64);
    if (w->type == GGML_TYPE_Q4_0) llm_q4x_pack(w, buf);
    else llm_q5x_pack(w, buf);
    p.packed = buf;
    return p;
}

/* Q4_0 and Q5_0 have kernels of their own on a repacked layout (Q4_0: q4x, 4 rows interleaved,
 * with each kernel family; Q5_0: q5x, 8 blocks side by side, with AVX-512 VNNI), and Q4_0 on
 * the file's layout too (q4a activations; 512-bit pairs of blocks with AVX-512 VNNI): each
 * one available on this CPU against the portable C path on the file's layout with the same
 * int8 activations, at the given widths, row counts that are not multiples of the 4-row groups
 * and some that are, and batches 1..20 (8 per pass, then a ragged rest). The kernels sum in
 * other orders than the C path: within 1e-5 of the sum of |products|. The repacked matrix gives
 * its rows back in the file's form byte for byte, and read by the C kernel, by llm_mat_row and
 * by the exact path it gives the file's results bit for bit. Returns the kernel families tried. */
static int repacked_kernels_match_c(uint32_t type, const int *widths, int nw) {
    static const char *kernels[] = {"avx2", "avx-vnni", "avx512-vnni"};
    static const int row_counts[] = {1, 3, 4, 5, 8, 37};
    const char *was = llm_kernel_name(), *tn = ggml_type_name(type);
    dr_rng g;
    dr_rng_seed(&g, 13);
    int tried = 0;
    for (int wi = 0; wi < nw; wi++)
        for (size_t ri = 0; ri < sizeof row_counts / sizeof *row_counts; ri++) {
            const int cols = widths[wi], rows = row_counts[ri], nmax = 20;
            llm_mat w = random_mat(type, rows, cols, &g), wp = packed_copy(&w);
            float *x = malloc((size_t)nmax * cols * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
            float *rowp = malloc((size_t)cols * sizeof(float));
            float *yc = malloc((size_t)nmax * rows * sizeof(float)), *yk = malloc((size_t)nmax * rows * sizeof(float));
            double *mag = malloc((size_t)nmax * rows * sizeof(double));
            uint8_t *fr = malloc(w.row_bytes);
            for (int i = 0; i < nmax * cols; i++) x[i] = 3.0f * dr_rng_normal(&g);
            for (int r = 0; r < rows; r++) {
                llm_packed_row(&wp, r, 0, cols / 32, fr);
                CHECK_MSG(!memcmp(fr, (const uint8_t *)w.data + (size_t)r * w.row_bytes, w.row_bytes),
                          "%s cols %d rows %d: row %d given back differs from the file's", tn, cols, rows, r);
                llm_mat_row(&w, r, row);
                llm_mat_row(&wp, r, rowp);
                CHECK_MSG(!memcmp(row, rowp, (size_t)cols * sizeof(float)), "%s cols %d rows %d: repacked row %d differs", tn, cols, rows, r);
                for (int j = 0; j < nmax; j++) {
                    double m = 0;
                    for (int k = 0; k < cols; k++) m += fabs((double)row[k] * x[(size_t)j * cols + k]);
                    mag[(size_t)j * rows + r] = m;
                }
            }
            for (int n = 1; n <= nmax; n++) {
                CHECK_EQ_INT(llm_kernel_force("c"), 0);
                CHECK_EQ_INT(llm_matmul_q8act(&w, x, n, yc), 0);
                CHECK_EQ_INT(llm_matmul_q8act(&wp, x, n, yk), 0);
                CHECK_MSG(!memcmp(yc, yk, (size_t)n * rows * sizeof(float)), "%s c, repacked: cols %d rows %d n %d differ", tn, cols, rows, n);
                if (n == 1 || n == 7 || n == nmax) { /* the exact path reads the repacked rows as the file's */
                    float *ye = malloc((size_t)n * rows * sizeof(float));
                    llm_matmul(&w, x, n, ye);
                    llm_matmul(&wp, x, n, yk);
                    CHECK_MSG(!memcmp(ye, yk, (size_t)n * rows * sizeof(float)), "%s exact, repacked: cols %d rows %d n %d differ", tn, cols, rows, n);
                    free(ye);
                }
                for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++) {
                    if (llm_kernel_force(kernels[ki])) continue;
                    tried |= 1 << ki;
                    for (int layout = 0; layout < 2; layout++) {
                        for (int i = 0; i < n * rows; i++) yk[i] = NAN;
                        CHECK_EQ_INT(llm_matmul_q8act(layout ? &wp : &w, x, n, yk), 0);
                        for (int i = 0; i < n * rows; i++) {
                            double e = fabs((double)yk[i] - yc[i]);
                            CHECK_MSG(e <= 1e-5 * mag[i], "%s %s%s cols %d rows %d n %d: row %d act %d: %.9g vs c %.9g", tn,
                                      kernels[ki], layout ? " repacked" : "", cols, rows, n, i % rows, i / rows, yk[i], yc[i]);
                        }
                    }
                }
            }
            free(fr);
            free(mag);
            free(yk);
            free(yc);
            free(rowp);
            free(row);
            free(x);
            free((void *)wp.packed);
            free((void *)w.data);
        }
    llm_kernel_force(was);
    return tried;
}

/* Q4_0 at widths of 1, 2, 3, 5, 7 and 29 blocks (odd, and not whole runs of the 4 blocks whose
 * scales the 512-bit q4x kernel converts at once). */
TEST(quant_q4_0_kernels_match_c) {
    static const int widths[] = {32, 64, 96, 160, 224, 928};
    const int tried = repacked_kernels_match_c(GGML_TYPE_Q4_0, widths, 6);
    printf("  Q4_0 kernels (file layout and repacked) compared with c: %s%s%s\n", tried & 1 ? "avx2 " : "",
           tried & 2 ? "avx-vnni " : "", tried & 4 ? "avx512-vnni" : "");
}

/* Q5_0 at widths of 4, 8, 12, 28 and 36 blocks: the q5x kernel's steps of 8 blocks alone,
 * ending in a step of 4, and a step of 4 alone (Qwen2.5-0.5B's 896 is 28). With kernels other
 * than AVX-512's the repacked rows are given back in file form first. */
TEST(quant_q5_0_repacked_kernels_match_c) {
    static const int widths[] = {128, 256, 384, 896, 1152};
    const int tried = repacked_kernels_match_c(GGML_TYPE_Q5_0, widths, 5);
    printf("  Q5_0 kernels (file layout and repacked) compared with c: %s%s%s\n", tried & 1 ? "avx2 " : "",
           tried & 2 ? "avx-vnni " : "", tried & 4 ? "avx512-vnni" : "");
}

/* A Q4_0 or Q5_0 file is repacked at load when the kernels use it: every matrix of the type
 * (Q5_0: of a width a multiple of 128), the file's data pointer kept (saving writes from
 * it); the fast logits then match those of the same model read in the file's layout (other
 * kernels, other summation order). */
static void repacked_at_load(uint32_t type, const char *fixture) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", quant_dir(), fixture);
    llm_model *m;
    CHECK_OK(llm_model_load(&m, p));
    int packed = 0;
    llm_mat *ms[64];
    int nm = 0;
    ms[nm++] = &m->tok_embd;
    for (int l = 0; l < m->cfg.n_layers && nm + 7 <= 63; l++) {
        llm_layer *L = &m->layers[l];
        llm_mat *lm[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) ms[nm++] = lm[i];
    }
    for (int i = 0; i < nm; i++) {
        if (ms[i]->type != type || (type != GGML_TYPE_Q4_0 && ms[i]->cols % 128)) continue;
        CHECK_MSG(ms[i]->packed != NULL, "%s: matrix %d (%d x %d) not repacked", fixture, i, ms[i]->rows, ms[i]->cols);
        packed++;
    }
    CHECK(packed >= 4 * m->cfg.n_layers);
    const gguf_tensor_info *t = gguf_find_tensor(m->file, "blk.1.attn_q.weight");
    CHECK(t && m->layers[1].wq.data == t->data && m->layers[1].wq.packed);
    const int32_t tok[] = {1, 17, 300, 5, 42, 999, 3, 64, 128, 7};
    const int n = (int)(sizeof tok / sizeof *tok), V = m->cfg.vocab;
    float *lp = malloc((size_t)n * V * sizeof(float)), *lf = malloc((size_t)n * V * sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        if (pass) { /* the same model in the file's layout */
            for (int i = 0; i < nm; i++) ms[i]->packed = NULL;
            m->output.packed = NULL;
        }
        llm_session *s;
        CHECK_OK(llm_session_new(&s, m, 1, n));
        llm_session_set_fast(s, 1);
        for (int i = 0; i < n; i++) CHECK_OK(llm_decode(s, (int[]){0}, tok + i, 1, (pass ? lf : lp) + (size_t)i * V));
        llm_session_free(s);
    }
    double worst = 0, top = 0;
    for (int i = 0; i < n * V; i++) {
        worst = fmax(worst, fabs((double)lp[i] - lf[i]));
        top = fmax(top, fabs((double)lf[i]));
    }
    printf("  %s repacked (%d matrices) vs file layout, fast decode: max |logit diff| %.2e (logits up to %.1f)\n",
           ggml_type_name(type), packed, worst, top);
    CHECK_MSG(worst <= 1e-4 * (top + 1), "repacked logits off by %g", worst);
    free(lp);
    free(lf);
    llm_model_free(m);
}

TEST(quant_q4_0_repacked_at_load) {
    if (!quant_dir()) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    if (!llm_q4x_wanted()) SKIP("the %s kernel reads Q4_0 as stored (no repacking)", llm_kernel_name());
    repacked_at_load(GGML_TYPE_Q4_0, "tiny-Q4_0.gguf");
}

TEST(quant_q5_0_repacked_at_load) {
    if (!quant_dir()) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    if (!llm_q5x_wanted()) SKIP("the %s kernel reads Q5_0 as stored (no repacking)", llm_kernel_name());
    repacked_at_load(GGML_TYPE_Q5_0, "tiny-Q5_0.gguf");
}

/* The merged parallel regions give what the separate steps give, bit for bit: the feed-forward
 * block (llm_ffn_q8act) against gate/up, SwiGLU and ffn_down one after another for one layer at
 * batches 1..4, then the logits of 8 decode steps of every fixture, one slot and three at once,
 * with the merged regions (that block, and one token's attention with o) on and off. */
TEST(quant_fused_regions_match_unfused) {
    const char *dir = quant_dir();
    if (!dir) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    if (strcmp(llm_kernel_name(), "avx512-vnni")) SKIP("the fused block needs the avx512-vnni kernels (here %s)", llm_kernel_name());
    int fused_types = 0, one_region = 0;
    for (int f = 0; f < N_FIXTURES; f++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/tiny-%s.gguf", dir, FIXTURES[f]);
        llm_model *m;
        CHECK_OK(llm_model_load(&m, p));
        const llm_layer *L = &m->layers[1];
        const int D = m->cfg.dim, F = m->cfg.ffn, V = m->cfg.vocab;
        dr_rng g;
        dr_rng_seed(&g, 5);
        float *x = malloc(sizeof(float) * 4 * D), *ga = malloc(sizeof(float) * 4 * F), *ua = malloc(sizeof(float) * 4 * F);
        float *gb = malloc(sizeof(float) * 4 * F), *ub = malloc(sizeof(float) * 4 * F);
        float *ya = malloc(sizeof(float) * 4 * D), *yb = malloc(sizeof(float) * 4 * D);
        for (int i = 0; i < 4 * D; i++) x[i] = dr_rng_normal(&g);
        int used = 0;
        for (int n = 1; n <= 4; n++) {
            if (llm_ffn_q8act(&L->w_gate, &L->w_up, &L->w_down, x, n, ga, ua, ya)) continue;
            used = 1;
            const llm_mat *gu[2] = {&L->w_gate, &L->w_up};
            float *const out[2] = {gb, ub};
            llm_matmul_fast_group(gu, 2, x, n, out);
            nn_swiglu_forward(gb, gb, ub, (size_t)n * F);
            llm_matmul_fast(&L->w_down, gb, n, yb);
            CHECK_MSG(!memcmp(ya, yb, sizeof(float) * n * D), "%s: fused block differs at batch %d", FIXTURES[f], n);
        }
        fused_types += used;
        const int32_t tok[] = {1, 17, 300, 5, 42, 999, 3, 64};
        const int nt = (int)(sizeof tok / sizeof *tok);
        float *lg[2];
        for (int pass = 0; pass < 2; pass++) {
            llm_fused_regions_set(pass == 0);
            lg[pass] = malloc(sizeof(float) * (size_t)nt * 4 * V);
            llm_session *s;
            CHECK_OK(llm_session_new(&s, m, 3, 2 * nt + 2));
            llm_session_set_fast(s, 1);
            if (pass == 0) one_region += llm_session_one_region(s);
            for (int i = 0; i < nt; i++) {
                CHECK_OK(llm_decode(s, (int[]){0}, tok + i, 1, lg[pass] + (size_t)i * 4 * V));
                const int32_t three[3] = {tok[i], tok[(i + 3) % nt], tok[(i + 5) % nt]};
                CHECK_OK(llm_decode(s, (int[]){1, 2, 0}, three, 3, lg[pass] + ((size_t)i * 4 + 1) * V));
            }
            llm_session_free(s);
        }
        llm_fused_regions_set(1);
        CHECK_MSG(!memcmp(lg[0], lg[1], sizeof(float) * (size_t)nt * 4 * V), "%s: decode logits differ with the fused block", FIXTURES[f]);
        free(lg[0]), free(lg[1]);
        free(x), free(ga), free(ua), free(gb), free(ub), free(ya), free(yb);
        llm_model_free(m);
    }
    printf("  fused feed-forward block used by %d of %d fixtures, one region per token by %d\n", fused_types, N_FIXTURES, one_region);
    CHECK(fused_types >= 8);
    CHECK(one_region >= 8);
}

/* Dequantising through the common unpacked form equals the dedicated Q4_K / Q6_K dequantisers. */
TEST(quant_unpack_matches_kquants) {
    dr_rng g;
    dr_rng_seed(&g, 9);
    uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 2; ti++) {
        uint8_t buf[4 * 210];
        random_blocks(types[ti], buf, 4, &g);
        float a[1024], b[1024];
        CHECK_EQ_INT(dr_dequantize(types[ti], buf, a, 1024), 0);
        if (types[ti] == GGML_TYPE_Q4_K) dr_dequantize_q4_k(buf, b, 1024);
        else dr_dequantize_q6_k(buf, b, 1024);
        for (int i = 0; i < 1024; i++) CHECK_MSG(a[i] == b[i], "%s value %d: %g vs %g", ggml_type_name(types[ti]), i, a[i], b[i]);
    }
    uint8_t q81[36] = {0};
    float dummy[32];
    CHECK_EQ_INT(dr_dequantize(GGML_TYPE_Q8_1, q81, dummy, 32), -1);
}

/* `deeprec llm logits --exact --json` on a quantised fixture gives the reference's logits;
 * a bad token list is refused with the item named. */
TEST(quant_cli_logits) {
    const char *dir = quant_dir();
    if (!dir) SKIP("no ../shared/fixtures/quant (set DEEPREC_QUANT_FIXTURES)");
    const char *b = getenv("DEEPREC_BIN");
    if (!b || !dr_file_exists(b)) SKIP("DEEPREC_BIN not set (make test sets it)");
    json_t *ref = load_ref(dir, "Q5_K_M");
    json_t *toks = json_array_get(json_object_get(ref, "tokens"), 1);
    char list[512] = "";
    for (size_t i = 0; i < json_array_size(toks); i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? " " : "",
                 (long long)json_integer_value(json_array_get(toks, i)));
    const char *tmp = dr_test_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm logits --model %s/tiny-Q5_K_M.gguf --tokens '%s' --exact --json > %s",
             b, dir, list, dr_test_path(tmp, "out.json"));
    CHECK_EQ_INT(system(cmd), 0);
    json_error_t err;
    json_t *out = json_load_file(dr_test_path(tmp, "out.json"), 0, &err);
    CHECK_MSG(out, "%s", err.text);
    json_t *got = json_object_get(out, "logits"), *want = json_array_get(json_object_get(ref, "last_logits"), 1);
    CHECK_EQ_INT(json_array_size(got), json_array_size(want));
    for (size_t v = 0; v < json_array_size(want); v++)
        CHECK_NEAR(json_number_value(json_array_get(got, v)), json_number_value(json_array_get(want, v)), 1e-4);
    json_decref(out);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s llm logits --model %s/tiny-Q5_K_M.gguf --tokens '1 x' 2> %s", b,
             dir, dr_test_path(tmp, "err.txt"));
    CHECK(system(cmd) != 0);
    char *msg = NULL;
    size_t n = 0;
    CHECK_OK(dr_read_file(dr_test_path(tmp, "err.txt"), &msg, &n));
    CHECK_MSG(strstr(msg, "item 2"), "%s", msg);
    free(msg);
    json_decref(ref);
}

/* BF16 weights on the fast path (AVX512_BF16 when the CPU has it): against a double loop over the
 * weights and the bf16-rounded activations; column tails, 37 rows, batches 1..20 and two
 * prefill sizes (the 32-row panels from 64: 70 leaves a partial 12-token tile, width 1030 a
 * partial second k block and an odd count of pairs; the odd width 203 keeps the 4 x 6 tiles).
 * Without the instructions the fast path is the exact one. */
TEST(quant_bf16_fast_kernel) {
    dr_rng g;
    dr_rng_seed(&g, 13);
    const int rows = 37, ns[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 64, 70};
    const int rounded = llm_bf16dp_available();
    for (int pass = 0; pass < 3; pass++) {
        const int cols = pass == 2 ? 1030 : pass ? 203 : 224;
        uint16_t *wb = malloc((size_t)rows * cols * 2);
        for (int i = 0; i < rows * cols; i++) wb[i] = dr_f32_to_bf16(dr_rng_normal(&g));
        llm_mat w = {wb, GGML_TYPE_BF16, rows, cols, (size_t)cols * 2, NULL};
        float *x = malloc((size_t)70 * cols * sizeof(float)), *y = malloc((size_t)70 * rows * sizeof(float));
        for (int i = 0; i < 70 * cols; i++) x[i] = dr_rng_normal(&g);
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
            const int n = ns[ni];
            llm_matmul_fast(&w, x, n, y);
            double worst = 0;
            for (int j = 0; j < n; j++)
                for (int r = 0; r < rows; r++) {
                    double s = 0, mag = 0;
                    for (int k = 0; k < cols; k++) {
                        float xv = x[(size_t)j * cols + k];
                        if (rounded) xv = dr_bf16_to_f32(dr_f32_to_bf16(xv));
                        double p = (double)dr_bf16_to_f32(wb[(size_t)r * cols + k]) * xv;
                        s += p;
                        mag += fabs(p);
                    }
                    double e = fabs(s - y[(size_t)j * rows + r]) / (mag + 1e-30);
                    if (!(e <= worst)) worst = e;
                }
            CHECK_MSG(worst < 1e-5, "BF16 fast cols=%d n=%d: relative error %g", cols, n, worst);
        }
        free(wb);
        free(x);
        free(y);
    }
}
