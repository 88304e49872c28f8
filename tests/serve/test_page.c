/* The trace page in a real browser: headless Chromium loads / from a running server with
 * ?run=1 (the page asks for a recommendation on load, as a click on "Recommend" would), and
 * the DOM it dumps must hold the final list, the history and the trace (the tool call with
 * its items, the model's text). A screenshot is saved beside the DOM. Skips when chromium is
 * not installed (Debian package `chromium`). */
#include "client.h"
#include "harness.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *chromium(void) {
    static const char *const cands[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"};
    const char *e = getenv("DEEPREC_CHROMIUM");
    if (e && *e) return access(e, X_OK) == 0 ? e : NULL;
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++)
        if (access(cands[i], X_OK) == 0) return cands[i];
    return NULL;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

TEST(serve_page_in_chromium) {
    const char *chr = chromium();
    if (!chr) SKIP("chromium not installed (apt-get install chromium); the page is not tested in a browser");
    const char *dir = dr_test_tmpdir();
    sv_server s;
    sv_start(&s, dir, NULL);
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
                        "--no-first-run --virtual-time-budget=30000";
    char url[256], cmd[2048], dom[512], shot[512];
    const char *art = getenv("DEEPREC_ARTIFACTS");
    snprintf(shot, sizeof shot, "%s/serve_page.png", art && *art ? art : dir);
    /* trm: the final list is the tool's list; rerank: the tool call is made for the model, so even
     * the random test model leaves a trace with returned items and its own text (its list is
     * usually empty: it never writes the answer tag) */
    static const char *const modes[2] = {"trm", "rerank"};
    for (int m = 0; m < 2; m++) {
        snprintf(url, sizeof url, "http://127.0.0.1:%d/?user=u5&mode=%s&run=1", s.port, modes[m]);
        snprintf(dom, sizeof dom, "%s/page_%s.html", dir, modes[m]);
        snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s/chr%d --dump-dom '%s' > %s 2>>%s/chromium.log", chr,
                 flags, dir, m, url, dom, dir);
        int rc = system(cmd);
        CHECK_MSG(rc == 0, "chromium failed (%d); see %s/chromium.log", rc, dir);
        char *html = NULL;
        size_t n = 0;
        CHECK_OK(dr_read_file(dom, &html, &n));
        CHECK_MSG(strstr(html, "data-ready=\"1\"") != NULL, "the page did not show a result: %.300s", html);
        CHECK(strstr(html, ">done (rec-") != NULL);
        const char *fin = strstr(html, "id=\"final\""), *hist = strstr(html, "id=\"hist\""),
                   *tr = strstr(html, "id=\"trace\"");
        const char *script = strstr(html, "<script");
        CHECK(fin && hist && tr && script && fin < hist && hist < tr && tr < script);
        char *fin_part = strndup(fin, (size_t)(hist - fin));
        char *hist_part = strndup(hist, (size_t)(tr - hist));
        char *tr_part = strndup(tr, (size_t)(script - tr));
        tr = tr_part;
        CHECK(count(hist_part, "<li class=\"item\"") >= 4); /* u5's history */
        CHECK_EQ_INT(count(tr, "<div class=\"call\""), 1);
        CHECK(strstr(tr, "tool call 1:") != NULL);
        if (m == 0) {
            /* as many lines as the API gives (12 items, the history masked) */
            int st;
            json_t *j = sv_post_json(s.port, "/v1/recommend", "{\"user\": \"u5\", \"mode\": \"trm\"}", &st);
            CHECK_EQ_INT(st, 200);
            int n_items = (int)json_array_size(json_object_get(j, "items"));
            json_decref(j);
            CHECK(n_items >= 4);
            CHECK_EQ_INT(count(fin_part, "<li class=\"item\""), n_items);
            CHECK_EQ_INT(count(tr, "in final list"), n_items); /* the tool's items in the list are marked */
        } else {
            CHECK(count(tr, "<li class=\"item\"") >= 1);
            CHECK(strstr(tr, "class=\"think\"") != NULL);
        }
        free(fin_part);
        free(hist_part);
        free(tr_part);
        free(html);
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/?user=u5&mode=trm&run=1", s.port);
    snprintf(cmd, sizeof cmd, "timeout 120 %s %s --user-data-dir=%s/chr2 --window-size=1280,1400 --screenshot=%s '%s' "
             ">/dev/null 2>>%s/chromium.log", chr, flags, dir, shot, url, dir);
    int rc = system(cmd);
    CHECK_MSG(rc == 0 && dr_file_exists(shot), "chromium made no screenshot (%d)", rc);
    fprintf(stderr, "  screenshot: %s\n", shot);
    CHECK(sv_alive(&s));
    CHECK_EQ_INT(sv_stop(&s), 0);
}
