/* Importers on small files in each real format (written here), on the shared
 * datasets (skipped when ../shared/data is absent) and on the dslabs package. */
#include "harness.h"
#include "deeprec/data.h"
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static const char *write_file(const char *dir, const char *name, const char *text) {
    const char *p = dr_test_path(dir, name);
    size_t n = strlen(name);
    if (n > 3 && !strcmp(name + n - 3, ".gz")) {
        gzFile g = gzopen(p, "wb");
        CHECK(g != NULL);
        CHECK(gzwrite(g, text, (unsigned)strlen(text)) == (int)strlen(text));
        gzclose(g);
    } else {
        FILE *f = fopen(p, "wb");
        CHECK(f != NULL);
        fputs(text, f);
        fclose(f);
    }
    return p;
}

static int import1(const char *fmt, const char *const *in, int n, dr_dataset *d, const dr_data_filter *f) {
    dr_data_import_opts o = {0};
    o.format = fmt;
    o.inputs = in;
    o.n_inputs = n;
    if (f) o.filter = *f;
    return dr_data_import(&o, d);
}

static int32_t item_of(const dr_dataset *d, const char *id) {
    int32_t i = dr_data_find_item(d, id);
    CHECK_MSG(i > 0, "item %s not found", id);
    return i;
}

TEST(data_movielens_100k_files) {
    const char *dir = dr_test_tmpdir();
    write_file(dir, "u.data", "1\t10\t4\t881250950\n1\t20\t3\t881250949\n2\t10\t5\t891717742\n");
    write_file(dir, "u.item",
               "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
               "20|Caf\xe9 Society (1995)|01-Jan-1995||http://y|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
               "99|Unrated Item (1990)|01-Jan-1990||http://z|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
    write_file(dir, "README", "ignored\n");
    const char *in[] = {dir};
    dr_dataset d;
    CHECK_OK(import1("movielens", in, 1, &d, NULL));
    CHECK_EQ_INT(d.n_users, 2);
    CHECK_EQ_INT(d.n_items, 2); /* 99 has no rating: ignored */
    CHECK_EQ_INT(d.n_inter, 3);
    int32_t t = item_of(&d, "10"), c = item_of(&d, "20");
    CHECK_STR(d.titles[t], "Toy Story (1995)");
    CHECK_STR(d.categories[t], "Animation|Children's|Comedy");
    CHECK_STR(d.titles[c], "Caf\xc3\xa9 Society (1995)"); /* Latin-1 -> UTF-8 */
    CHECK_STR(d.categories[c], "Drama");
    /* user 1 sorted by time: 20 then 10 */
    CHECK_EQ_INT(dr_data_seq(&d, 0)[0], c);
    dr_data_free(&d);
}

TEST(data_movielens_1m_files) {
    const char *dir = dr_test_tmpdir();
    const char *r = write_file(dir, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n");
    const char *m = write_file(dir, "movies.dat",
                               "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n");
    const char *in[] = {r, m};
    dr_dataset d;
    CHECK_OK(import1("movielens", in, 2, &d, NULL));
    CHECK_EQ_INT(d.n_users, 2);
    CHECK_EQ_INT(d.n_items, 2);
    CHECK_EQ_INT(d.n_inter, 3);
    int32_t j = item_of(&d, "661");
    CHECK_STR(d.titles[j], "James and the Giant Peach (1996)");
    CHECK_STR(d.categories[j], "Animation|Children's|Musical");
    dr_data_free(&d);
}

TEST(data_movielens_latest_csv) {
    const char *dir = dr_test_tmpdir();
    write_file(dir, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n2,3,2.5,964982224\n");
    write_file(dir, "movies.csv",
               "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
               "3,\"American President, The (1995)\",(no genres listed)\n"
               "4,\"Quote \"\"Movie\"\" (2000)\",Drama\n");
    write_file(dir, "tags.csv", "userId,movieId,tag,timestamp\n");
    const char *in[] = {dir};
    dr_dataset d;
    dr_data_filter f = {.has_min_rating = 1, .min_rating = 3.0};
    CHECK_OK(import1("movielens", in, 1, &d, &f));
    CHECK_EQ_INT(d.n_users, 1);
    CHECK_EQ_INT(d.n_inter, 2);
    int32_t a = item_of(&d, "3");
    CHECK_STR(d.titles[a], "American President, The (1995)");
    CHECK_STR(d.categories[a], "");
    CHECK_EQ_INT(dr_data_seq(&d, 0)[0], a); /* 964981247 first */
    dr_data_free(&d);
}

TEST(data_amazon2018_csv_reviews_meta_gz) {
    const char *dir = dr_test_tmpdir();
    const char *csv = write_file(dir, "Beauty.csv", "B001,A1,5.0,1400000000\nB002,A1,4.0,1300000000\nB001,A2,3.0,1500000000\n");
    const char *rev = write_file(dir, "Beauty_5.json.gz",
                                 "{\"overall\": 5.0, \"verified\": true, \"reviewTime\": \"09 1, 2015\", \"reviewerID\": \"A3\", "
                                 "\"asin\": \"B003\", \"style\": {\"Size:\": \" 7\"}, \"reviewerName\": \"x\", "
                                 "\"reviewText\": \"Great \\\"stuff\\\" \\u00e9\", \"unixReviewTime\": 1441065600}\n"
                                 "{\"reviewerID\": \"A3\", \"asin\": \"B001\", \"overall\": 1.0, \"unixReviewTime\": 1441065000}\n");
    /* metadata: one real JSON line, one Python-dict-like line (as in some dumps), one unknown item */
    const char *meta = write_file(dir, "meta_Beauty.json.gz",
                                  "{\"asin\": \"B001\", \"title\": \"Rose \\u00e9 Lotion\", \"category\": [\"Beauty\", \"Skin Care\", \"Body\"]}\n"
                                  "{'asin': 'B002', 'title': 'Men\\'s Gel', 'categories': [['Beauty', 'Hair Care'], ['Beauty']], 'price': 3.5, 'x': None}\n"
                                  "{\"asin\": \"B999\", \"title\": \"Nobody bought this\"}\n");
    const char *in[] = {csv, rev, meta};
    dr_dataset d;
    CHECK_OK(import1("amazon2018", in, 3, &d, NULL));
    CHECK_EQ_INT(d.n_users, 3);
    CHECK_EQ_INT(d.n_items, 3);
    CHECK_EQ_INT(d.n_inter, 5);
    int32_t b1 = item_of(&d, "B001"), b2 = item_of(&d, "B002"), b3 = item_of(&d, "B003");
    CHECK_STR(d.titles[b1], "Rose \xc3\xa9 Lotion");
    CHECK_STR(d.categories[b1], "Beauty|Skin Care|Body");
    CHECK_STR(d.titles[b2], "Men's Gel");
    CHECK_STR(d.categories[b2], "Beauty|Hair Care");
    CHECK_STR(d.titles[b3], "");
    CHECK_EQ_INT(dr_data_find_item(&d, "B999"), 0);
    /* A1: B002 (1.3e9) then B001 (1.4e9) */
    int32_t u = dr_data_find_user(&d, "A1");
    CHECK_EQ_INT(dr_data_seq(&d, u)[0], b2);
    /* A3: B001 (1441065000) then B003 */
    u = dr_data_find_user(&d, "A3");
    CHECK_EQ_INT(dr_data_seq(&d, u)[0], b1);
    dr_data_free(&d);
}

static const char *az23_reviews =
    "{\"rating\": 5.0, \"title\": \"Nice\", \"text\": \"ok\", \"images\": [], \"asin\": \"B0A\", \"parent_asin\": \"P1\", "
    "\"user_id\": \"U1\", \"timestamp\": 1588687728923, \"helpful_vote\": 0, \"verified_purchase\": true}\n"
    "{\"rating\": 4.0, \"title\": \"Meh\", \"text\": \"\", \"images\": [{\"small_image_url\": \"u\"}], \"asin\": \"B0B\", "
    "\"parent_asin\": \"P2\", \"user_id\": \"U1\", \"timestamp\": 1588615855070, \"helpful_vote\": 1, \"verified_purchase\": false}\n"
    "{\"rating\": 2.0, \"asin\": \"B0A\", \"parent_asin\": \"P1\", \"user_id\": \"U2\", \"timestamp\": 1600000000000}\n";
static const char *az23_meta =
    "{\"main_category\": \"All Beauty\", \"title\": \"Howard LC0008 Leather Conditioner\", \"average_rating\": 4.8, "
    "\"features\": [], \"description\": [], \"price\": null, \"images\": [], \"videos\": [], \"store\": \"Howard\", "
    "\"categories\": [], \"details\": {\"Brand\": \"Howard\"}, \"parent_asin\": \"P1\", \"bought_together\": null}\n"
    "{\"main_category\": \"All Beauty\", \"title\": \"Brush\", \"categories\": [\"Beauty\", \"Tools\"], \"parent_asin\": \"P2\"}\n";

TEST(data_amazon2023_plain_and_gz) {
    for (int gz = 0; gz < 2; gz++) {
        const char *dir = dr_test_tmpdir();
        const char *r = write_file(dir, gz ? "All_Beauty.jsonl.gz" : "All_Beauty.jsonl", az23_reviews);
        const char *m = write_file(dir, gz ? "meta_All_Beauty.jsonl.gz" : "meta_All_Beauty.jsonl", az23_meta);
        const char *in[] = {m, r}; /* order of the inputs does not matter */
        dr_dataset d;
        CHECK_OK(import1("amazon2023", in, 2, &d, NULL));
        CHECK_EQ_INT(d.n_users, 2);
        CHECK_EQ_INT(d.n_items, 2);
        CHECK_EQ_INT(d.n_inter, 3);
        int32_t p1 = item_of(&d, "P1"), p2 = item_of(&d, "P2");
        CHECK_STR(d.titles[p1], "Howard LC0008 Leather Conditioner");
        CHECK_STR(d.categories[p1], "All Beauty"); /* empty categories -> main_category */
        CHECK_STR(d.categories[p2], "Beauty|Tools");
        int32_t u = dr_data_find_user(&d, "U1");
        CHECK_EQ_INT(dr_data_seq(&d, u)[0], p2); /* earlier timestamp (ms) */
        CHECK_EQ_INT(d.timestamps[d.offsets[u]], 1588615855070LL);
        dr_data_free(&d);
    }
}

TEST(data_csv_generic) {
    const char *dir = dr_test_tmpdir();
    const char *p = write_file(dir, "x.csv",
                               "user,item,timestamp,title,categories\n"
                               "u1,i1,3,\"Heat, the movie\",Action|Crime\n"
                               "u1,i2,1,Up,\n"
                               "u2,i1,2,,\n");
    const char *in[] = {p};
    dr_dataset d;
    CHECK_OK(import1("csv", in, 1, &d, NULL));
    CHECK_EQ_INT(d.n_users, 2);
    CHECK_EQ_INT(d.n_items, 2);
    int32_t a = item_of(&d, "i1");
    CHECK_STR(d.titles[a], "Heat, the movie");
    CHECK_STR(d.categories[a], "Action|Crime");
    CHECK_STR(d.titles[item_of(&d, "i2")], "Up");
    CHECK_EQ_INT(dr_data_seq(&d, 0)[1], a);
    dr_data_free(&d);
}

TEST(data_sasrec_pairs_and_s3rec_lines) {
    const char *dir = dr_test_tmpdir();
    const char *p = write_file(dir, "pairs.txt", "1 5\n1 6\n2 5\n1 7\n");
    const char *s = write_file(dir, "seq.txt", "1 5 6 7\n2 5\n");
    const char *in1[] = {p}, *in2[] = {s};
    dr_dataset a, b;
    CHECK_OK(import1("sasrec", in1, 1, &a, NULL));
    CHECK_OK(import1("s3rec", in2, 1, &b, NULL));
    CHECK_EQ_INT(a.n_inter, 4);
    CHECK_EQ_INT(b.n_inter, 4);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(a.items[i], b.items[i]);
    CHECK_EQ_INT(dr_data_seq_len(&a, 0), 3);
    dr_data_free(&a);
    dr_data_free(&b);
}

/* Malformed input: message names file, line and field; no output file. */
static void expect_bad(const char *fmt, const char *name, const char *text, const char *want1, const char *want2) {
    const char *dir = dr_test_tmpdir();
    const char *p = write_file(dir, name, text);
    const char *in[] = {p};
    dr_dataset d;
    int rc = import1(fmt, in, 1, &d, NULL);
    CHECK_MSG(rc == DR_ERR_FORMAT, "%s: expected a format error, got %d (%s)", name, rc, dr_error_message());
    const char *m = dr_error_message();
    CHECK_MSG(strstr(m, name) != NULL, "message lacks the file: %s", m);
    CHECK_MSG(strstr(m, want1) != NULL, "message lacks '%s': %s", want1, m);
    CHECK_MSG(!want2 || strstr(m, want2) != NULL, "message lacks '%s': %s", want2, m);
}

TEST(data_malformed_inputs_are_named) {
    expect_bad("movielens", "u.data", "1\t10\t4\t881250950\n1\t20\tfour\t881250949\n", ":2: field 3 (rating)", "'four'");
    expect_bad("movielens", "ratings.dat", "1::1193::5::978300760\n1::661::3\n", ":2:", "expected 4");
    expect_bad("movielens", "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,96498x2703\n", ":2: field 4 (timestamp)", "96498x2703");
    expect_bad("recbole", "a.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\tnow\n", ":3: field 3 (timestamp)", "'now'");
    expect_bad("recbole", "b.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\n", ":2: field 3 (timestamp): missing", NULL);
    expect_bad("recbole", "c.inter", "user\titem\n", ":1: field 1 (header)", NULL);
    expect_bad("amazon2023", "r.jsonl", "{\"user_id\": \"U\", \"parent_asin\": \"P\", \"timestamp\": 1}\n{\"user_id\": \"U\", \"parent_asin\": \"P\", \"timestamp\": \"soon\"}\n", ":2: field 'timestamp'", NULL);
    expect_bad("amazon2023", "s.jsonl", "{\"user_id\": \"U\", \"parent_asin\": \"P\", \"timestamp\": 1\n", ":1: column", "expected");
    expect_bad("amazon2018", "r.csv", "B1,A1,5.0,1\nB1,A1,x,1\n", ":2: field 3 (rating)", NULL);
    expect_bad("amazon2018", "t.json", "{\"reviewerID\": \"A\", \"unixReviewTime\": 5}\n", ":1: field 'asin'", "missing");
    expect_bad("csv", "x.csv", "user,item,timestamp\nu,i,1\nu,i,abc\n", ":3: field 3 (timestamp)", "'abc'");
    expect_bad("csv", "y.csv", "user,item\nu,\"i\n", ":2: unterminated", NULL);
    expect_bad("sasrec", "p.txt", "1 2\n1 2 3\n", ":2: expected 2 fields", NULL);
}

TEST(data_cli_import_error_leaves_no_output) {
    const char *bin = getenv("DEEPREC_BIN");
    if (!bin || access(bin, X_OK) != 0) SKIP("DEEPREC_BIN not set (make test sets it)");
    const char *dir = dr_test_tmpdir();
    const char *bad = write_file(dir, "u.data", "1\t10\t4\t881250950\n1\t20\t4\tbad\n");
    const char *out = dr_test_path(dir, "out.gguf");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s data import --format movielens --input %s --out %s 2>%s/err.txt", bin, bad, out, dir);
    int st = system(cmd);
    CHECK(st != 0);
    CHECK(access(out, F_OK) != 0);
    char *err = NULL;
    size_t n;
    CHECK_OK(dr_read_file(dr_test_path(dir, "err.txt"), &err, &n));
    CHECK_MSG(strstr(err, "u.data:2: field 4 (timestamp)") != NULL, "stderr: %s", err);
    free(err);
    /* a good import through the CLI, then stats --json */
    const char *good = write_file(dir, "g.csv", "user,item,timestamp\na,x,1\na,y,2\na,z,3\nb,x,1\n");
    snprintf(cmd, sizeof cmd, "%s data import --format csv --input %s --out %s --json >/dev/null && %s data stats %s --json > %s/st.json",
             bin, good, out, bin, out, dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_OK(dr_read_file(dr_test_path(dir, "st.json"), &err, &n));
    CHECK_MSG(strstr(err, "\"users\":2") && strstr(err, "\"interactions\":4") && strstr(err, "\"test_users\":1"), "stats: %s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s data show %s --user a > %s/show.txt", bin, out, dir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_OK(dr_read_file(dr_test_path(dir, "show.txt"), &err, &n));
    CHECK_MSG(strstr(err, "[train] (no title)  (id x") && strstr(err, "[valid]") && strstr(err, "[test ]"), "show: %s", err);
    free(err);
    snprintf(cmd, sizeof cmd, "%s data show %s --user nobody 2>/dev/null", bin, out);
    CHECK(system(cmd) != 0);
}

/* ---- shared data ---- */
TEST(data_shared_ml100k_recbole) {
    const char *sd = dr_test_shared_data();
    if (!sd) SKIP("../shared/data not present");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ml-100k", sd);
    const char *in[] = {dir};
    dr_dataset d;
    CHECK_OK(import1("recbole", in, 1, &d, NULL));
    CHECK_EQ_INT(d.n_users, 943);
    CHECK_EQ_INT(d.n_items, 1682);
    CHECK_EQ_INT(d.n_inter, 100000);
    dr_data_stats s;
    dr_data_compute_stats(&d, &s);
    CHECK_EQ_INT(s.items_titled, 1682);
    CHECK_STR(d.titles[item_of(&d, "1")], "Toy Story");
    CHECK_STR(d.categories[item_of(&d, "1")], "Animation|Children's|Comedy");
    /* sorted by time within each user */
    for (int32_t u = 0; u < d.n_users; u++)
        for (int64_t i = d.offsets[u] + 1; i < d.offsets[u + 1]; i++) CHECK(d.timestamps[i] >= d.timestamps[i - 1]);
    /* 5-core keeps everything for users (min 20) */
    dr_data_free(&d);
    dr_data_filter f = {.min_user_count = 5, .min_item_count = 5};
    CHECK_OK(import1("recbole", in, 1, &d, &f));
    CHECK_EQ_INT(d.n_users, 943);
    CHECK(d.n_items < 1682);
    for (int32_t i = 1; i <= d.n_items; i++) {
        (void)i;
    }
    dr_data_free(&d);
}

TEST(data_shared_beauty_s3rec) {
    const char *sd = dr_test_shared_data();
    if (!sd) SKIP("../shared/data not present");
    char p[1024];
    snprintf(p, sizeof p, "%s/s3rec/Beauty.txt", sd);
    const char *in[] = {p};
    dr_dataset d;
    CHECK_OK(import1("s3rec", in, 1, &d, NULL));
    CHECK_EQ_INT(d.n_users, 22363);
    CHECK_EQ_INT(d.n_items, 12101);
    CHECK_EQ_INT(d.n_inter, 198502);
    /* ids follow the file: item "1" is internal 1 */
    CHECK_STR(d.item_ids[1], "1");
    CHECK_STR(d.item_ids[12101], "12101");
    dr_data_free(&d);
}

/* ---- dslabs ---- */
static const char *dslabs_input(void) {
    static char buf[1024];
    const char *cands[] = {"cache/dslabs_pkg", "cache/r-cran-dslabs", "/usr/lib/R/site-library/dslabs", NULL};
    for (int i = 0; cands[i]; i++) {
        snprintf(buf, sizeof buf, "%s/usr/lib/R/site-library/dslabs/data/Rdata.rdx", cands[i]);
        if (access(buf, R_OK) == 0) return cands[i];
        snprintf(buf, sizeof buf, "%s/data/Rdata.rdx", cands[i]);
        if (access(buf, R_OK) == 0) return cands[i];
    }
    return NULL;
}

static const char *dslabs_deb(void) {
    static char buf[1024];
    FILE *p = popen("ls cache/r-cran-dslabs_*_all.deb 2>/dev/null | head -1", "r");
    if (!p) return NULL;
    buf[0] = 0;
    if (!fgets(buf, sizeof buf, p)) buf[0] = 0;
    pclose(p);
    buf[strcspn(buf, "\n")] = 0;
    return buf[0] ? buf : NULL;
}

static void check_dslabs(const dr_dataset *d) {
    CHECK_EQ_INT(d->n_users, 671);
    CHECK_EQ_INT(d->n_items, 9066);
    CHECK_EQ_INT(d->n_inter, 100004);
    dr_data_stats s;
    dr_data_compute_stats(d, &s);
    /* the data frame itself has NA titles for 5 movies (108583 162376 108548 151307 143410)
     * and "(no genres listed)" for 17 */
    CHECK_EQ_INT(s.items_titled, 9061);
    CHECK_EQ_INT(s.items_with_categories, 9049);
    CHECK_STR(d->titles[dr_data_find_item(d, "108583")], "");
    int32_t toy = dr_data_find_item(d, "1");
    CHECK(toy > 0);
    CHECK_STR(d->titles[toy], "Toy Story (1995)");
    CHECK_STR(d->categories[toy], "Adventure|Animation|Children|Comedy|Fantasy");
    int32_t u1 = dr_data_find_user(d, "1");
    CHECK(u1 >= 0);
    CHECK_EQ_INT(dr_data_seq_len(d, u1), 20);
}

TEST(data_dslabs_movielens_folder) {
    const char *in0 = dslabs_input();
    if (!in0) SKIP("dslabs not available: run `make demo` (apt-get download r-cran-dslabs into cache/) first");
    const char *in[] = {in0};
    dr_dataset d;
    CHECK_OK(import1("dslabs", in, 1, &d, NULL));
    check_dslabs(&d);
    dr_data_free(&d);
}

TEST(data_dslabs_movielens_deb) {
    const char *deb = dslabs_deb();
    if (!deb) SKIP("no cache/r-cran-dslabs_*.deb: run `make demo` first");
    if (system("command -v dpkg-deb >/dev/null 2>&1") != 0) SKIP("dpkg-deb not installed");
    const char *in[] = {deb};
    dr_dataset d;
    CHECK_OK(import1("dslabs", in, 1, &d, NULL));
    check_dslabs(&d);
    dr_data_free(&d);
}
