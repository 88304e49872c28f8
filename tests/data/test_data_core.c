/* Dataset core: builder (sort, k-core, renumbering), split rules, stats, file round trip, UTF-8. */
#include "harness.h"
#include "deeprec/data.h"
#include <stdlib.h>

static void add(dr_data_builder *b, const char *u, const char *i, int64_t ts) {
    CHECK_OK(dr_data_builder_add(b, u, strlen(u), i, strlen(i), ts, 5.0));
}

TEST(data_sort_is_stable_by_time) {
    dr_data_builder *b = dr_data_builder_new();
    add(b, "u1", "a", 30);
    add(b, "u1", "b", 10);
    add(b, "u2", "c", 5);
    add(b, "u1", "c", 10); /* tie with b: keeps file order (b before c) */
    add(b, "u1", "d", 20);
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, NULL, &d));
    dr_data_builder_free(b);
    CHECK_EQ_INT(d.n_users, 2);
    CHECK_EQ_INT(d.n_items, 4);
    CHECK_EQ_INT(d.n_inter, 5);
    /* items numbered by first appearance: a=1 b=2 c=3 d=4; user u1 first */
    CHECK_STR(d.user_ids[0], "u1");
    CHECK_STR(d.item_ids[1], "a");
    CHECK_STR(d.item_ids[0], "");
    const int32_t *s = dr_data_seq(&d, 0);
    CHECK_EQ_INT(dr_data_seq_len(&d, 0), 4);
    CHECK_EQ_INT(s[0], 2);
    CHECK_EQ_INT(s[1], 3);
    CHECK_EQ_INT(s[2], 4);
    CHECK_EQ_INT(s[3], 1);
    CHECK_EQ_INT(d.timestamps[d.offsets[0] + 3], 30);
    dr_data_free(&d);
}

TEST(data_split_rules) {
    dr_data_builder *b = dr_data_builder_new();
    const char *items[] = {"i1", "i2", "i3", "i4", "i5"};
    for (int k = 0; k < 5; k++) add(b, "long", items[k], k);
    add(b, "two", "i1", 0);
    add(b, "two", "i2", 1);
    add(b, "three", "i3", 0);
    add(b, "three", "i4", 1);
    add(b, "three", "i5", 2);
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, NULL, &d));
    dr_data_builder_free(b);
    const int32_t *p;
    int64_t n;
    /* long: 1 2 3 4 5 -> train 1 2 3, valid 4 (prefix 1 2 3), test 5 (prefix 1 2 3 4) */
    CHECK_EQ_INT(dr_data_train(&d, 0, &p), 3);
    CHECK_EQ_INT(p[2], 3);
    CHECK_EQ_INT(dr_data_valid(&d, 0, &p, &n), 4);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(dr_data_test(&d, 0, &p, &n), 5);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(p[3], 4);
    /* two: everything in train, no targets */
    CHECK(!dr_data_has_split(&d, 1));
    CHECK_EQ_INT(dr_data_train(&d, 1, &p), 2);
    CHECK_EQ_INT(dr_data_valid(&d, 1, &p, &n), 0);
    CHECK_EQ_INT(dr_data_test(&d, 1, &p, &n), 0);
    /* three: train 1 item */
    CHECK_EQ_INT(dr_data_train(&d, 2, &p), 1);
    CHECK_EQ_INT(dr_data_test(&d, 2, &p, &n), 5);
    /* tail */
    dr_data_test(&d, 0, &p, &n);
    int64_t m = dr_data_prefix_tail(&p, n, 2);
    CHECK_EQ_INT(m, 2);
    CHECK_EQ_INT(p[0], 3);
    CHECK_EQ_INT(p[1], 4);
    /* training example: history train[:-1], target train[-1] */
    CHECK_EQ_INT(dr_data_train_example(&d, 0, &p, &n), 3);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(p[1], 2);
    CHECK_EQ_INT(dr_data_train_example(&d, 1, &p, &n), 2); /* two: train is the whole sequence */
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(dr_data_train_example(&d, 2, &p, &n), 0); /* three: one train item, no example */
    CHECK_EQ_INT(n, 1);
    /* split histories by name; "all" and short users show the whole sequence */
    CHECK_EQ_INT(dr_data_split_from_name("test"), DR_SPLIT_TEST);
    CHECK_EQ_INT(dr_data_split_from_name("valid"), DR_SPLIT_VALID);
    CHECK_EQ_INT(dr_data_split_from_name("all"), DR_SPLIT_ALL);
    CHECK_EQ_INT(dr_data_split_from_name("train"), -1);
    CHECK_EQ_INT(dr_data_split_history(&d, 0, DR_SPLIT_TEST, &p, &n), 5);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(dr_data_split_history(&d, 0, DR_SPLIT_VALID, &p, &n), 4);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(dr_data_split_history(&d, 0, DR_SPLIT_ALL, &p, &n), 0);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(dr_data_split_history(&d, 1, DR_SPLIT_TEST, &p, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(p[1], 2);
    dr_data_stats s;
    dr_data_compute_stats(&d, &s);
    CHECK_EQ_INT(s.users_split, 2);
    CHECK_EQ_INT(s.train_inter, 3 + 2 + 1);
    CHECK_NEAR(s.seq_median, 3, 0);
    CHECK_EQ_INT(s.seq_max, 5);
    dr_data_free(&d);
}

/* drop_last: every user loses its last n items, the catalog stays, the copy owns its memory
 * (the original is freed first) */
TEST(data_drop_last_keeps_prefixes_and_catalog) {
    dr_data_builder *b = dr_data_builder_new();
    const char *items[] = {"i1", "i2", "i3", "i4", "i5"};
    for (int k = 0; k < 5; k++) add(b, "long", items[k], k);
    add(b, "two", "i1", 0);
    add(b, "two", "i2", 1);
    CHECK_OK(dr_data_builder_item_text(b, "i3", 2, "Three (1999)", -1, "Drama|Comedy", -1));
    dr_dataset d, h;
    CHECK_OK(dr_data_builder_finish(b, NULL, &d));
    dr_data_builder_free(b);
    CHECK_ERR(dr_data_drop_last(&d, -1, &h), DR_ERR_ARG);
    CHECK_OK(dr_data_drop_last(&d, 3, &h));
    dr_data_free(&d);
    CHECK_EQ_INT(h.n_users, 2);
    CHECK_EQ_INT(h.n_items, 5);
    CHECK_EQ_INT(h.n_inter, 2);
    CHECK_EQ_INT(dr_data_seq_len(&h, 0), 2); /* long: 1 2 3 4 5 -> 1 2 */
    CHECK_EQ_INT(dr_data_seq(&h, 0)[1], 2);
    CHECK_EQ_INT(h.timestamps[1], 1);
    CHECK_EQ_INT(dr_data_seq_len(&h, 1), 0); /* two: 2 items <= 3 -> none */
    CHECK_STR(h.user_ids[1], "two");
    CHECK_STR(h.titles[3], "Three (1999)");
    CHECK_STR(h.categories[3], "Drama|Comedy");
    dr_data_free(&h);
}

TEST(data_kcore_repeats_until_stable) {
    /* u1: a b c ; u2: a b ; u3: c d. With min 2/2: d has 1 -> dropped; then u3 has 1 -> dropped;
     * then c has 1 (u1) -> dropped; u1 keeps a b; result: u1 a b, u2 a b. */
    dr_data_builder *b = dr_data_builder_new();
    add(b, "u1", "a", 1);
    add(b, "u1", "b", 2);
    add(b, "u1", "c", 3);
    add(b, "u2", "a", 1);
    add(b, "u2", "b", 2);
    add(b, "u3", "c", 1);
    add(b, "u3", "d", 2);
    dr_data_filter f = {.min_user_count = 2, .min_item_count = 2};
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    CHECK_EQ_INT(d.n_users, 2);
    CHECK_EQ_INT(d.n_items, 2);
    CHECK_EQ_INT(d.n_inter, 4);
    CHECK_EQ_INT(dr_data_find_item(&d, "c"), 0);
    CHECK_EQ_INT(dr_data_find_user(&d, "u3"), -1);
    CHECK_EQ_INT(d.min_user_count, 2);
    dr_data_free(&d);
}

TEST(data_user_lookup_by_id_number_or_index) {
    dr_data_builder *b = dr_data_builder_new();
    add(b, "alice", "a", 1);
    add(b, "bob", "a", 1);
    add(b, "#0", "b", 1); /* a real id spelled "#0" wins over the number */
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, NULL, &d));
    dr_data_builder_free(b);
    int32_t u = -2;
    CHECK_OK(dr_data_user_lookup(&d, "bob", -1, "d.gguf", &u));
    CHECK_EQ_INT(u, 1);
    CHECK_OK(dr_data_user_lookup(&d, "#1", -1, "d.gguf", &u));
    CHECK_EQ_INT(u, 1);
    CHECK_OK(dr_data_user_lookup(&d, "#0", -1, "d.gguf", &u));
    CHECK_EQ_INT(u, 2);
    CHECK_OK(dr_data_user_lookup(&d, NULL, 0, "d.gguf", &u));
    CHECK_EQ_INT(u, 0);
    CHECK_ERR(dr_data_user_lookup(&d, "carol", -1, "d.gguf", &u), DR_ERR_ARG);
    CHECK_EQ_INT(u, -1);
    CHECK(strstr(dr_error_message(), "carol") && strstr(dr_error_message(), "d.gguf"));
    CHECK_ERR(dr_data_user_lookup(&d, "#3", -1, "d.gguf", &u), DR_ERR_ARG);
    CHECK_ERR(dr_data_user_lookup(&d, NULL, 3, "d.gguf", &u), DR_ERR_ARG);
    CHECK_ERR(dr_data_user_lookup(&d, NULL, -1, "d.gguf", &u), DR_ERR_ARG);
    dr_error_clear();
    dr_data_free(&d);
}

TEST(data_min_rating_and_duplicates_kept) {
    dr_data_builder *b = dr_data_builder_new();
    CHECK_OK(dr_data_builder_add(b, "u", 1, "a", 1, 1, 4.0));
    CHECK_OK(dr_data_builder_add(b, "u", 1, "b", 1, 2, 2.5));
    CHECK_OK(dr_data_builder_add(b, "u", 1, "a", 1, 3, 5.0)); /* duplicate pair: kept */
    dr_data_filter f = {.has_min_rating = 1, .min_rating = 3.0};
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    CHECK_EQ_INT(d.n_inter, 2);
    CHECK_EQ_INT(d.n_items, 1);
    CHECK_EQ_INT(d.items[0], 1);
    CHECK_EQ_INT(d.items[1], 1);
    dr_data_free(&d);
}

TEST(data_item_text_unknown_ids_ignored_and_utf8) {
    dr_data_builder *b = dr_data_builder_new();
    add(b, "u", "x", 1);
    CHECK_OK(dr_data_builder_item_text(b, "x", 1, "Caf\xe9 au lait", -1, "A|B", -1)); /* invalid UTF-8 byte */
    CHECK_OK(dr_data_builder_item_text(b, "nope", 4, "Ghost", -1, NULL, 0));
    dr_dataset d;
    CHECK_OK(dr_data_builder_finish(b, NULL, &d));
    dr_data_builder_free(b);
    CHECK_EQ_INT(d.n_items, 1);
    CHECK_STR(d.titles[1], "Caf\xef\xbf\xbd au lait");
    CHECK_STR(d.categories[1], "A|B");
    dr_data_free(&d);
    char *s = dr_latin1_to_utf8("Caf\xe9", 4);
    CHECK_STR(s, "Caf\xc3\xa9");
    free(s);
    s = dr_utf8_sanitize("ok \xe2\x82\xac \xed\xa0\x80 \xf0\x9f\x98\x80", 15);
    CHECK_STR(s, "ok \xe2\x82\xac \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xf0\x9f\x98\x80");
    free(s);
}

TEST(data_save_load_roundtrip) {
    dr_data_builder *b = dr_data_builder_new();
    add(b, "alice", "m1", 3);
    add(b, "alice", "m2", 1);
    add(b, "bob", "m2", 7);
    add(b, "alice", "m3", 2);
    CHECK_OK(dr_data_builder_item_text(b, "m2", 2, "Heat (1995)", -1, "Action|Crime", -1));
    dr_data_filter f = {.max_len = 50, .has_min_rating = 1, .min_rating = 1};
    dr_dataset d, e;
    CHECK_OK(dr_data_builder_finish(b, &f, &d));
    dr_data_builder_free(b);
    d.format = dr_strdup("csv");
    d.source = dr_strdup("x.csv");
    const char *path = dr_test_path(dr_test_tmpdir(), "d.gguf");
    CHECK_OK(dr_data_save(&d, path));
    CHECK_OK(dr_data_load(&e, path));
    CHECK_EQ_INT(e.n_users, d.n_users);
    CHECK_EQ_INT(e.n_items, d.n_items);
    CHECK_EQ_INT(e.n_inter, d.n_inter);
    for (int i = 0; i <= d.n_users; i++) CHECK_EQ_INT(e.offsets[i], d.offsets[i]);
    for (int64_t i = 0; i < d.n_inter; i++) {
        CHECK_EQ_INT(e.items[i], d.items[i]);
        CHECK_EQ_INT(e.timestamps[i], d.timestamps[i]);
    }
    for (int i = 0; i <= d.n_items; i++) {
        CHECK_STR(e.item_ids[i], d.item_ids[i]);
        CHECK_STR(e.titles[i], d.titles[i]);
        CHECK_STR(e.categories[i], d.categories[i]);
    }
    CHECK_STR(e.user_ids[1], "bob");
    CHECK_STR(e.format, "csv");
    CHECK_STR(e.source, "x.csv");
    CHECK_EQ_INT(e.max_len, 50);
    CHECK(e.has_min_rating);
    CHECK_NEAR(e.min_rating, 1, 0);
    /* alice: m2(1) m3(2) m1(3) */
    CHECK_STR(e.titles[e.items[0]], "Heat (1995)");
    dr_data_free(&d);
    dr_data_free(&e);
}

TEST(data_load_rejects_other_files) {
    const char *path = dr_test_path(dr_test_tmpdir(), "bad.gguf");
    FILE *f = fopen(path, "wb");
    fputs("not a gguf", f);
    fclose(f);
    dr_dataset d;
    CHECK(dr_data_load(&d, path) != 0);
    CHECK(strstr(dr_error_message(), "bad.gguf") != NULL);
}
