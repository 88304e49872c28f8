/* deeprec gguf info FILE [--json]: version, metadata (long arrays abbreviated), tensor table, totals. */
#include "cli.h"
#include "deeprec/gguf.h"
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ARR_HEAD 8   /* array elements shown */
#define STR_SHOW 80  /* characters of a string shown in text mode */

/* ---- scalar values ---- */
static int64_t rd_int(const uint8_t *p, uint32_t type, uint64_t *u, int *uns) {
    *uns = 0;
    switch (type) {
    case GGUF_TYPE_UINT8: *uns = 1; *u = p[0]; return 0;
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *uns = 1; *u = v; return 0; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); return v; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *uns = 1; *u = v; return 0; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); return v; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *uns = 1; *u = v; return 0; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

static double rd_float(const uint8_t *p, uint32_t type) {
    if (type == GGUF_TYPE_FLOAT32) { float v; memcpy(&v, p, 4); return v; }
    double v;
    memcpy(&v, p, 8);
    return v;
}

static int is_int_type(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* ---- text output ---- */
static void print_str(FILE *out, gguf_str s, size_t max) {
    fputc('"', out);
    size_t n = s.len < max ? (size_t)s.len : max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 32 || c == 127) fprintf(out, "\\x%02x", c);
        else if (c < 0x80) fputc(c, out);
        else {
            uint32_t cp;
            size_t k = (size_t)dr_utf8_decode(s.ptr + i, n - i, &cp); /* c >= 0x80: 0 or 2..4 */
            if (k == 0) fprintf(out, "\\x%02x", c);
            else { fwrite(s.ptr + i, 1, k, out); i += k - 1; }
        }
    }
    fputc('"', out);
    if (s.len > max) fprintf(out, "...(%" PRIu64 " bytes)", s.len);
}

static void print_scalar(FILE *out, const uint8_t *p, uint32_t type) {
    if (is_int_type(type)) {
        uint64_t u = 0;
        int uns;
        int64_t s = rd_int(p, type, &u, &uns);
        if (uns) fprintf(out, "%" PRIu64, u);
        else fprintf(out, "%" PRId64, s);
    } else if (type == GGUF_TYPE_FLOAT32 || type == GGUF_TYPE_FLOAT64) {
        fprintf(out, "%.9g", rd_float(p, type));
    } else if (type == GGUF_TYPE_BOOL) {
        fputs(p[0] ? "true" : "false", out);
    }
}

static void print_kv(FILE *out, const gguf_kv *kv) {
    fputs("  ", out);
    print_str(out, kv->key, 200);
    if (kv->type == GGUF_TYPE_STRING) {
        fputs(" = ", out);
        print_str(out, kv->str, STR_SHOW);
        fputs("  (string)\n", out);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        fprintf(out, " = array[%s, %" PRIu64 "] [", gguf_type_name(kv->arr_type), kv->arr_len);
        uint64_t show = kv->arr_len < ARR_HEAD ? kv->arr_len : ARR_HEAD;
        size_t es = gguf_type_size(kv->arr_type);
        for (uint64_t i = 0; i < show; i++) {
            if (i) fputs(", ", out);
            if (kv->arr_type == GGUF_TYPE_STRING) print_str(out, kv->arr_strs[i], 24);
            else print_scalar(out, kv->data + i * es, kv->arr_type);
        }
        if (kv->arr_len > show) fprintf(out, ", ... %" PRIu64 " more", kv->arr_len - show);
        fputs("]\n", out);
    } else {
        fputs(" = ", out);
        print_scalar(out, kv->data, kv->type);
        fprintf(out, "  (%s)\n", gguf_type_name(kv->type));
    }
}

static void shape_text(char *buf, size_t cap, const gguf_tensor_info *t) {
    size_t j = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && j < cap; d++)
        j += (size_t)snprintf(buf + j, cap - j, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (j < cap) snprintf(buf + j, cap - j, "]");
}

static void print_text(const gguf_file *f) {
    printf("file: %s\n", f->path);
    printf("GGUF version %u, %zu bytes, alignment %" PRIu64 ", data section at byte %" PRIu64 "\n", f->version,
           f->map.size, f->alignment, f->data_offset);
    printf("\nmetadata (%" PRIu64 " keys):\n", f->n_kv);
    for (uint64_t i = 0; i < f->n_kv; i++) print_kv(stdout, &f->kv[i]);
    printf("\ntensors (%" PRIu64 "):\n", f->n_tensors);
    size_t wname = 4;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name.len > wname) wname = f->tensors[i].name.len > 60 ? 60 : (size_t)f->tensors[i].name.len;
    printf("  %-*s  %-5s  %-28s  %14s  %12s\n", (int)wname, "name", "type", "shape", "bytes", "offset");
    uint64_t total_bytes = 0, total_el = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        char shape[128];
        shape_text(shape, sizeof shape, t);
        char name[64];
        size_t n = t->name.len < 60 ? (size_t)t->name.len : 60;
        for (size_t k = 0; k < n; k++) {
            unsigned char c = (unsigned char)t->name.ptr[k];
            name[k] = (c >= 32 && c != 127) ? (char)c : '?';
        }
        name[n] = 0;
        printf("  %-*s  %-5s  %-28s  %14" PRIu64 "  %12" PRIu64 "\n", (int)wname, name, ggml_type_name(t->type), shape,
               t->n_bytes, t->offset);
        total_bytes += t->n_bytes;
        total_el += t->n_elements;
    }
    printf("\ntotal: %" PRIu64 " tensors, %" PRIu64 " elements, %" PRIu64 " bytes of tensor data (%.2f MiB); file %zu bytes\n",
           f->n_tensors, total_el, total_bytes, (double)total_bytes / (1024.0 * 1024.0), f->map.size);
}

/* ---- JSON output ---- */
/* A JSON string from file bytes; invalid UTF-8 bytes become U+FFFD. */
static json_t *jstr(gguf_str s) {
    json_t *j = json_stringn(s.ptr ? s.ptr : "", (size_t)s.len);
    if (j) return j;
    char *buf = malloc((size_t)s.len * 3 + 1);
    if (!buf) return json_null();
    size_t o = 0, i = 0;
    const unsigned char *p = (const unsigned char *)s.ptr;
    while (i < s.len) {
        unsigned char c = p[i];
        uint32_t cp;
        size_t n = c ? (size_t)dr_utf8_decode((const char *)p + i, (size_t)s.len - i, &cp) : 0;
        if (n) { memcpy(buf + o, p + i, n); o += n; i += n; }
        else if (c == 0) { buf[o++] = ' '; i++; }
        else { memcpy(buf + o, "\xef\xbf\xbd", 3); o += 3; i++; }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j ? j : json_null();
}

static json_t *jscalar(const uint8_t *p, uint32_t type) {
    if (is_int_type(type)) {
        uint64_t u = 0;
        int uns;
        int64_t s = rd_int(p, type, &u, &uns);
        if (uns && u > (uint64_t)INT64_MAX) {
            char b[32];
            snprintf(b, sizeof b, "%" PRIu64, u);
            return json_string(b);
        }
        return json_integer(uns ? (json_int_t)u : (json_int_t)s);
    }
    if (type == GGUF_TYPE_FLOAT32 || type == GGUF_TYPE_FLOAT64) {
        double v = rd_float(p, type);
        return (v == v && v - v == 0) ? json_real(v) : json_null(); /* JSON has no inf/nan */
    }
    if (type == GGUF_TYPE_BOOL) return json_boolean(p[0]);
    return json_null();
}

static json_t *json_info(const gguf_file *f) {
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(f->path));
    json_object_set_new(o, "version", json_integer(f->version));
    json_object_set_new(o, "file_bytes", json_integer((json_int_t)f->map.size));
    json_object_set_new(o, "alignment", json_integer((json_int_t)f->alignment));
    json_object_set_new(o, "data_offset", json_integer((json_int_t)f->data_offset));
    json_object_set_new(o, "n_kv", json_integer((json_int_t)f->n_kv));
    json_object_set_new(o, "n_tensors", json_integer((json_int_t)f->n_tensors));
    json_t *meta = json_array();
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        json_t *e = json_object();
        json_object_set_new(e, "key", jstr(kv->key));
        json_object_set_new(e, "type", json_string(gguf_type_name(kv->type)));
        if (kv->type == GGUF_TYPE_STRING) {
            json_object_set_new(e, "value", jstr(kv->str));
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            json_object_set_new(e, "elem_type", json_string(gguf_type_name(kv->arr_type)));
            json_object_set_new(e, "length", json_integer((json_int_t)kv->arr_len));
            json_t *head = json_array();
            uint64_t show = kv->arr_len < ARR_HEAD ? kv->arr_len : ARR_HEAD;
            size_t es = gguf_type_size(kv->arr_type);
            for (uint64_t k = 0; k < show; k++)
                json_array_append_new(head, kv->arr_type == GGUF_TYPE_STRING ? jstr(kv->arr_strs[k])
                                                                             : jscalar(kv->data + k * es, kv->arr_type));
            json_object_set_new(e, "head", head);
        } else {
            json_object_set_new(e, "value", jscalar(kv->data, kv->type));
        }
        json_array_append_new(meta, e);
    }
    json_object_set_new(o, "metadata", meta);
    json_t *ts = json_array();
    uint64_t total_bytes = 0, total_el = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        json_t *e = json_object();
        json_object_set_new(e, "name", jstr(t->name));
        json_object_set_new(e, "type", json_string(ggml_type_name(t->type)));
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "elements", json_integer((json_int_t)t->n_elements));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->n_bytes));
        json_object_set_new(e, "offset", json_integer((json_int_t)t->offset));
        json_array_append_new(ts, e);
        total_bytes += t->n_bytes;
        total_el += t->n_elements;
    }
    json_object_set_new(o, "tensors", ts);
    json_object_set_new(o, "total_tensor_bytes", json_integer((json_int_t)total_bytes));
    json_object_set_new(o, "total_elements", json_integer((json_int_t)total_el));
    return o;
}

static int cmd_gguf_info(int argc, char **argv) {
    int as_json = 0;
    cli_opt opts[] = {{"--json", CLI_FLAG, &as_json, "print one JSON object"}};
    const char *pos[1];
    int npos = 0, r;
    if (cli_parse_words("deeprec gguf info FILE [--json]", argc, argv, opts, 1, pos, 1, &npos, &r)) return r;
    if (npos != 1) return cli_usage_error("gguf info: expected one FILE (usage: deeprec gguf info FILE [--json])");
    gguf_file f;
    if (gguf_open(&f, pos[0])) return cli_fail();
    if (as_json) {
        if (cli_print_json(json_info(&f), JSON_INDENT(2) | JSON_PRESERVE_ORDER)) {
            gguf_close(&f);
            return cli_fail();
        }
    } else {
        print_text(&f);
    }
    gguf_close(&f);
    return 0;
}

CLI_COMMAND(gguf_info, "gguf info", "show a GGUF file's metadata and tensor table", cmd_gguf_info)
