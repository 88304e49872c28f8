/* The reward curve: a self-contained polyline SVG with axes, written from JSON lines. */
#include "deeprec/rl.h"
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* kind 0: the step's mean reward over its rollout batch; kind 1: the held-out probe ("probe"
 * after the step, "probe_start" at step 0). */
typedef struct pt { int kind, stage; int64_t step; double r; } pt;

static int cmp_pt(const void *a, const void *b) {
    const pt *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->stage != y->stage) return x->stage < y->stage ? -1 : 1;
    return x->step < y->step ? -1 : x->step > y->step;
}

static int push(pt **pts, int *n, int *cap, pt v) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        pt *p = dr_realloc(*pts, (size_t)c, sizeof *p);
        if (!p) return dr_error_code();
        *pts = p;
        *cap = c;
    }
    (*pts)[(*n)++] = v;
    return DR_OK;
}

static double probe_reward(json_t *j, const char *key, int *ok) {
    json_t *r = json_object_get(json_object_get(j, key), "reward");
    *ok = json_is_number(r);
    return *ok ? json_number_value(r) : 0.0;
}

static int read_points(const char *path, pt **pts, int *n, int *cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return DR_OK; /* a missing file has no points */
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = DR_OK;
    while ((len = getline(&line, &lcap, f)) > 0) {
        json_t *j = json_loadb(line, (size_t)len, 0, NULL);
        if (!j) continue;
        json_t *st = json_object_get(j, "stage"), *sp = json_object_get(j, "step"), *rw = json_object_get(j, "reward");
        if (json_is_integer(st) && json_is_integer(sp) && json_is_number(rw)) {
            int stage = (int)json_integer_value(st), ok;
            int64_t step = (int64_t)json_integer_value(sp);
            rc = push(pts, n, cap, (pt){0, stage, step, json_number_value(rw)});
            double v = probe_reward(j, "probe_start", &ok);
            if (!rc && ok) rc = push(pts, n, cap, (pt){1, stage, 0, v});
            v = probe_reward(j, "probe", &ok);
            if (!rc && ok) rc = push(pts, n, cap, (pt){1, stage, step, v});
        }
        if (rc) {
            json_decref(j);
            break;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return rc;
}

int rl_curve_svg(const char *const *paths, int n_paths, const char *svg) {
    pt *p = NULL;
    int n = 0, cap = 0, rc = DR_OK;
    for (int i = 0; i < n_paths && !rc; i++)
        if (paths[i]) rc = read_points(paths[i], &p, &n, &cap);
    if (rc) {
        free(p);
        return rc;
    }
    qsort(p, (size_t)n, sizeof *p, cmp_pt);
    /* x: stage 1 steps, then later stages offset by the previous stages' last step */
    double *x = dr_calloc((size_t)(n ? n : 1), sizeof *x);
    if (!x) {
        free(p);
        return dr_error_code();
    }
    /* stage s starts where the steps of the earlier stages end */
    double last_step[8] = {0}, off[8] = {0}, xmax = 1, ymin = 0, ymax = 0;
    for (int i = 0; i < n; i++)
        if (p[i].kind == 0 && (double)p[i].step > last_step[p[i].stage & 7]) last_step[p[i].stage & 7] = (double)p[i].step;
    for (int k = 1; k < 8; k++) off[k] = off[k - 1] + last_step[k - 1];
    int n_steps = 0;
    for (int i = 0; i < n; i++) {
        n_steps += p[i].kind == 0;
        x[i] = off[p[i].stage & 7] + (double)p[i].step;
        if (x[i] > xmax) xmax = x[i];
        if (i == 0 || p[i].r < ymin) ymin = p[i].r;
        if (i == 0 || p[i].r > ymax) ymax = p[i].r;
    }
    if (ymax - ymin < 1e-9) {
        ymin -= 0.5;
        ymax += 0.5;
    }
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
    const double W = 720, H = 400, L = 70, R = 20, T = 40, B = 50;
    const double pw = W - L - R, ph = H - T - B;
#define SX(v) (L + pw * (v) / xmax)
#define SY(v) (T + ph * (1.0 - ((v) - ymin) / (ymax - ymin)))
    dr_afile af;
    if ((rc = dr_afile_open(&af, svg))) {
        free(p);
        free(x);
        return rc;
    }
    FILE *f = af.fp;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"15\">deeprec rl: mean reward per step</text>\n", L);
    /* axes */
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T + ph, L + pw, T + ph);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L, T, L, T + ph);
    for (int k = 0; k <= 5; k++) {
        double yv = ymin + (ymax - ymin) * k / 5.0, yy = SY(yv);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, yy, L + pw, yy);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, yy + 4, yv);
    }
    /* x ticks at whole steps */
    double xstep = ceil(xmax / 8.0);
    if (xstep < 1) xstep = 1;
    for (double xv = 0; xv <= xmax + 1e-9; xv += xstep) {
        double xx = SX(xv);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", xx, T + ph, xx, T + ph + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", xx, T + ph + 18, xv);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", L + pw / 2, H - 8);
    fprintf(f, "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">mean reward</text>\n",
            T + ph / 2, T + ph / 2);
    static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    static const char *const probe_colors[] = {"#17becf", "#ff7f0e", "#bcbd22", "#e377c2"};
    int legend = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && p[j].stage == p[i].stage && p[j].kind == p[i].kind) j++;
        const char *col = p[i].kind ? probe_colors[(p[i].stage - 1) & 3] : colors[(p[i].stage - 1) & 3];
        if (i > 0 && p[i].kind == 0) /* stage boundary */
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
                    SX(x[i - 1]), T, SX(x[i - 1]), T + ph);
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                p[i].kind ? " stroke-dasharray=\"6 3\"" : "");
        for (int k = i; k < j; k++) fprintf(f, "%s%.1f,%.1f", k > i ? " " : "", SX(x[k]), SY(p[k].r));
        fprintf(f, "\"/>\n");
        for (int k = i; k < j; k++) fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", SX(x[k]), SY(p[k].r), col);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"%s\"/>", L + 12, T + 8 + 16.0 * legend, col);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">stage %d%s</text>\n", L + 30, T + 13 + 16.0 * legend, p[i].stage,
                p[i].kind ? ", held-out probe (dashed)" : ", rollout batch");
        legend++;
        i = j;
    }
    if (!n_steps) fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no steps yet</text>\n", L + pw / 2, T + ph / 2);
    fprintf(f, "</svg>\n");
#undef SX
#undef SY
    free(p);
    free(x);
    if (ferror(f)) {
        dr_afile_abort(&af);
        return dr_error_at(DR_ERR_IO, svg, 0, "write failed");
    }
    return dr_afile_commit(&af);
}
