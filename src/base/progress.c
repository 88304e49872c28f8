/* Progress display: a redrawn bar on a terminal, sparse plain lines in logs. */
#include "deeprec/base.h"
#include "deeprec/dist.h"
#include <string.h>
#include <unistd.h>

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void dr_progress_start(dr_progress *p, FILE *out, const char *label, int64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    if (dr_dist_rank() > 0) out = NULL; /* data-parallel runs: rank 0 alone reports */
    p->out = out;
    p->tty = out ? isatty(fileno(out)) : 0;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->t_start = p->t_last = dr_now();
    p->plain_every_s = 10.0;
}

static void draw(dr_progress *p, int final) {
    double now = dr_now(), el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], els[32];
    fmt_time(els, sizeof els, el);
    fmt_time(eta, sizeof eta, rate > 0 && p->total > 0 ? (double)(p->total - p->done) / rate : -1);
    if (p->tty) {
        char bar[31];
        int w = 30, fill = p->total > 0 ? (int)((double)p->done * w / (double)p->total) : 0;
        if (fill > w) fill = w;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        if (p->total > 0)
            fprintf(p->out, "\r\033[K%s [%s] %lld/%lld %.1f %s/s %s<%s %s", p->label, bar, (long long)p->done,
                    (long long)p->total, rate, p->unit, els, eta, p->extra);
        else
            fprintf(p->out, "\r\033[K%s %lld %.1f %s/s %s %s", p->label, (long long)p->done, rate, p->unit, els,
                    p->extra);
        if (final) fputc('\n', p->out);
    } else {
        fprintf(p->out, "%s: %lld/%lld %s, %.1f %s/s, elapsed %s%s%s\n", p->label, (long long)p->done,
                (long long)p->total, p->unit, rate, p->unit, els, p->extra[0] ? ", " : "", p->extra);
    }
    fflush(p->out);
    p->t_last = now;
}

void dr_progress_update(dr_progress *p, int64_t done) {
    p->done = done;
    if (!p->out) return;
    double now = dr_now();
    double every = p->tty ? 0.1 : p->plain_every_s;
    if (now - p->t_last >= every) draw(p, 0);
}

void dr_progress_set_extra(dr_progress *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->extra, sizeof p->extra, fmt, ap);
    va_end(ap);
}

void dr_progress_finish(dr_progress *p) {
    if (!p->out) return;
    draw(p, 1);
}
