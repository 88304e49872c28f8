/* Thread-local error slot: library calls leave code + message here; dr_par_error carries one
 * out of an OpenMP worker to the thread that started the region. */
#include "deeprec/base.h"
#include <string.h>

#define ERR_CAP DR_ERROR_CAP
static _Thread_local int err_code;
static _Thread_local char err_msg[ERR_CAP];

static void set_v(int code, const char *prefix, const char *fmt, va_list ap) {
    err_code = code;
    size_t n = 0;
    if (prefix) {
        n = strlen(prefix);
        if (n >= ERR_CAP) n = ERR_CAP - 1;
        memcpy(err_msg, prefix, n);
    }
    vsnprintf(err_msg + n, ERR_CAP - n, fmt, ap);
}

int dr_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_v(code, NULL, fmt, ap);
    va_end(ap);
    return code;
}

int dr_error_at(int code, const char *file, long line, const char *fmt, ...) {
    char prefix[512];
    if (line > 0) snprintf(prefix, sizeof prefix, "%s:%ld: ", file ? file : "?", line);
    else snprintf(prefix, sizeof prefix, "%s: ", file ? file : "?");
    va_list ap;
    va_start(ap, fmt);
    set_v(code, prefix, fmt, ap);
    va_end(ap);
    return code;
}

int dr_error_hint(const char *fmt, ...) {
    size_t n = strlen(err_msg);
    if (n + 10 < ERR_CAP) {
        memcpy(err_msg + n, "\n  hint: ", 9);
        n += 9;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err_msg + n, ERR_CAP - n, fmt, ap);
        va_end(ap);
    }
    return err_code;
}

int dr_error_context(const char *fmt, ...) {
    char old[ERR_CAP];
    memcpy(old, err_msg, ERR_CAP);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_msg, ERR_CAP, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    /* the message is capped at ERR_CAP on purpose; an encoding error keeps the context alone */
    if ((size_t)n < ERR_CAP && snprintf(err_msg + n, ERR_CAP - (size_t)n, ": %s", old) < 0) err_msg[n] = '\0';
    if (err_code == DR_OK) err_code = DR_ERR_INTERNAL;
    return err_code;
}

int dr_error_code(void) { return err_code; }
const char *dr_error_message(void) { return err_msg[0] ? err_msg : "no error"; }
void dr_error_clear(void) { err_code = DR_OK; err_msg[0] = 0; }

void dr_par_error_init(dr_par_error *e) {
    e->code = DR_OK;
    e->index = INT64_MAX;
    e->msg[0] = 0;
}

int dr_par_error_keep(dr_par_error *e, int64_t index, int code) {
    if (code == DR_OK) return code;
#pragma omp critical(dr_par_error)
    if (e->code == DR_OK || index < e->index) {
        memcpy(e->msg, err_msg, ERR_CAP);
        e->index = index;
        __atomic_store_n(&e->code, code, __ATOMIC_RELEASE);
    }
    return code;
}

int dr_par_error_failed(const dr_par_error *e) { return __atomic_load_n(&e->code, __ATOMIC_ACQUIRE) != DR_OK; }

int dr_par_error_raise(const dr_par_error *e) {
    if (e->code == DR_OK) return DR_OK;
    err_code = e->code;
    memcpy(err_msg, e->msg, ERR_CAP);
    return err_code;
}

const char *dr_error_name(int code) {
    switch (code) {
    case DR_OK: return "ok";
    case DR_ERR_IO: return "io error";
    case DR_ERR_FORMAT: return "format error";
    case DR_ERR_ARG: return "invalid argument";
    case DR_ERR_NOMEM: return "out of memory";
    case DR_ERR_RANGE: return "out of range";
    case DR_ERR_UNSUPPORTED: return "unsupported";
    case DR_ERR_INTERNAL: return "internal error";
    default: return "unknown error";
    }
}
