/* libFuzzer target: tokenizer encode/decode/NFC on arbitrary bytes (with a small
 * vocabulary trained at start-up) and the tokenizer.json loader.
 * Input: first byte selects the mode, the rest is the payload:
 *   0..159 encode/decode round trip, 160..199 NFC idempotence, 200..227 tokenizer GGUF,
 *   228..255 tokenizer.json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "deeprec/gguf.h"
#include "deeprec/tokenizer.h"

static tokenizer *g_tok;

static const char k_train[] =
    "The quick brown fox jumps over the lazy dog. I'm sure they'll recommend 12 items!\n"
    "<think>user likes sci-fi</think><|begin_of_preference|>space opera; 1980s<|end_of_preference|>\n"
    "Café crème, naïve façade, Ångström. 中文测试，推荐系统。 한국어 문장입니다. مرحبا بالعالم\n"
    "Emoji 😀 👨‍👩‍👧 🇫🇷 numbers 3.14159 1,000,000 $19.99 ½ ①\n"
    "def f(x):\n    return x ** 2  # square\n\n\t\ttabs   and   spaces\r\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    static char buf[sizeof k_train * 20];
    size_t n = 0;
    for (int i = 0; i < 20; i++) { memcpy(buf + n, k_train, sizeof k_train - 1); n += sizeof k_train - 1; }
    tok_train_opts o = {.vocab_size = 600};
    if (tok_train(buf, n, &o, &g_tok)) abort();
    return 0;
}

static void check_round_trip(const tokenizer *t, const uint8_t *data, size_t size, int flags) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(t, (const char *)data, size, flags, &ids, &n)) return; /* e.g. missing byte tokens */
    char *dec = NULL, *nfc = NULL;
    size_t nd = 0, nn = 0;
    if (tok_decode(t, ids, n, 0, &dec, &nd)) abort();
    if (tok_nfc((const char *)data, size, &nfc, &nn)) abort();
    /* specials are matched on the raw text and NFC runs between them: compare against
     * the NFC of the whole input only when that cannot differ (no '<' in the input) */
    if (!memchr(data, '<', size) && (nd != nn || memcmp(dec, nfc, nd))) abort();
    free(dec); free(nfc); free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t mode = data[0];
    data++; size--;
    if (mode < 160) {
        check_round_trip(g_tok, data, size, mode & 1 ? TOK_ENC_NO_SPECIAL : 0);
    } else if (mode < 200) {
        char *o = NULL;
        size_t n = 0;
        if (tok_nfc((const char *)data, size, &o, &n)) abort();
        char *o2 = NULL;
        size_t n2 = 0;
        if (tok_nfc(o, n, &o2, &n2)) abort();
        if (n2 != n || memcmp(o, o2, n)) abort(); /* NFC is idempotent */
        free(o); free(o2);
    } else if (mode < 228) {
        gguf_file f;
        if (gguf_open_memory(&f, data, size, "fuzz.gguf") == 0) {
            tokenizer *t = NULL;
            if (tok_load_gguf(&t, &f) == 0) {
                static const char s[] = "Hello world <|im_end|> 123 \xff";
                int32_t *ids = NULL;
                size_t n = 0;
                if (tok_encode(t, s, sizeof s - 1, 0, &ids, &n) == 0) {
                    char *d = NULL;
                    size_t nd = 0;
                    if (tok_decode(t, ids, n, 0, &d, &nd)) abort();
                    free(d);
                    free(ids);
                }
                tok_free(t);
            }
            gguf_close(&f);
        }
    } else {
        tokenizer *t = NULL;
        if (tok_load_json_mem(&t, (const char *)data, size) == 0) {
            static const char s[] = "Hello world <|im_end|> 123 ünïcode \xff";
            check_round_trip(t, (const uint8_t *)s, sizeof s - 1, 0);
            int32_t ids[4] = {0, 1, 2, tok_vocab_size(t) - 1};
            char *d = NULL;
            size_t nd = 0;
            if (tok_decode(t, ids, 4, 0, &d, &nd) == 0) free(d);
            tok_free(t);
        }
    }
    return 0;
}
