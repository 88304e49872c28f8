/* deeprec llm init / generate / bench. */
#include "cli.h"
#include "deeprec/gguf.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- llm init */
static int cmd_init(int argc, char **argv) {
    const char *arch_s = "qwen2", *vocab_from = NULL, *type_s = "f32", *out = NULL;
    int dim = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0, context = 2048, vocab = 0;
    int64_t seed = 1;
    double std = 0.02, theta = 0, eps = 0;
    cli_opt opts[] = {
        {"--arch", CLI_STR, &arch_s, "qwen2 (default) or llama"},
        {"--dim", CLI_INT, &dim, "embedding size"},
        {"--layers", CLI_INT, &layers, "transformer blocks"},
        {"--heads", CLI_INT, &heads, "attention heads"},
        {"--kv-heads", CLI_INT, &kv_heads, "key/value heads (default: --heads)"},
        {"--head-dim", CLI_INT, &head_dim, "head dimension (default dim / heads)"},
        {"--ffn", CLI_INT, &ffn, "feed-forward size"},
        {"--vocab-from", CLI_STR, &vocab_from, "tokenizer: a GGUF with tokenizer.ggml.* or a tokenizer.json"},
        {"--vocab", CLI_INT, &vocab, "vocabulary size of a model without tokenizer (tests, benches)"},
        {"--context", CLI_INT, &context, "context length (default 2048)"},
        {"--type", CLI_STR, &type_s, "weight type: f32 (default), f16, bf16, q8_0"},
        {"--std", CLI_FLOAT, &std, "standard deviation of the random weights (default 0.02)"},
        {"--rope-theta", CLI_FLOAT, &theta, "RoPE base (default 1e6 qwen2, 1e4 llama)"},
        {"--rms-eps", CLI_FLOAT, &eps, "RMSNorm epsilon (default 1e-6 qwen2, 1e-5 llama)"},
        {"--seed", CLI_I64, &seed, "random seed (default 1)"},
        {"--out", CLI_STR, &out, "output GGUF"},
    };
    int pr;
    if (cli_parse_opts("deeprec llm init --arch qwen2 --dim D --layers L --heads H [--kv-heads K] --ffn F "
                       "(--vocab-from TOKENIZER | --vocab N) [--context C] [--type f32|bf16|q8_0] [--seed S] --out M.gguf",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!out) return cli_usage_error("llm init: --out is required");
    if (!dim || !layers || !heads || !ffn) return cli_usage_error("llm init: --dim, --layers, --heads and --ffn are required");
    if (!!vocab_from == !!vocab) return cli_usage_error("llm init: give exactly one of --vocab-from TOKENIZER or --vocab N");
    if (!head_dim && heads > 0 && dim % heads)
        return cli_usage_error("llm init: --dim %d is not a multiple of --heads %d (give --head-dim to choose the "
                               "head size)", dim, heads);
    int arch = llm_arch_from_name(arch_s);
    if (arch < 0) return cli_usage_error("llm init: unknown --arch '%s' (qwen2 or llama)", arch_s);
    uint32_t type;
    if (cli_weight_type("llm init", type_s, &type)) return 2;
    if (cli_claim_output(out, (const char *[]){vocab_from}, 1)) return 1;
    tokenizer *tok = NULL;
    if (vocab_from) {
        if (tok_load_path(&tok, vocab_from)) return cli_fail();
        vocab = tok_vocab_size(tok);
    }
    llm_config c;
    llm_config_default(&c, arch);
    c.dim = dim, c.n_layers = layers, c.n_heads = heads, c.n_kv_heads = kv_heads ? kv_heads : heads;
    c.head_dim = head_dim ? head_dim : (heads > 0 ? dim / heads : 0);
    c.ffn = ffn, c.vocab = vocab, c.context = context;
    if (theta > 0) c.rope_theta = (float)theta;
    if (eps > 0) c.rms_eps = (float)eps;
    llm_model *m = NULL;
    int rc = llm_model_init_random(&m, &c, type, (float)std, (uint64_t)seed);
    if (!rc) rc = llm_model_save(m, tok, out);
    llm_model_free(m);
    tok_free(tok);
    if (rc) return cli_fail();
    fprintf(stderr, "wrote %s: %s, dim %d, %d layers, %d/%d heads, ffn %d, vocab %d, %s weights\n", out, arch_s, dim, layers,
            c.n_heads, c.n_kv_heads, ffn, vocab, ggml_type_name(type));
    return 0;
}
CLI_COMMAND(llm_init, "llm init", "create a qwen2/llama model with random weights", cmd_init)

/* ---------------------------------------------------------------- llm generate */
typedef struct gen_ctx { int stream; } gen_ctx;

static int on_text(void *ctx, int i, const char *text, size_t len) {
    gen_ctx *g = ctx;
    if (g->stream && i == 0) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static const char *finish_name(int f) {
    switch (f) {
    case LLM_FINISH_EOS: return "eos";
    case LLM_FINISH_STOP: return "stop";
    case LLM_FINISH_LENGTH: return "length";
    case LLM_FINISH_CONTEXT: return "context";
    default: return "none";
    }
}

static void print_samples(const llm_gen_result *res, int samples, const llm_complete_stats *st, int json) {
    long total = 0;
    for (int i = 0; i < samples; i++) total += res[i].n_ids;
    if (json) {
        json_t *o = json_object(), *arr = json_array();
        for (int i = 0; i < samples; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "text", dr_json_text(res[i].text, res[i].len));
            json_object_set_new(e, "tokens", json_integer(res[i].n_ids));
            json_object_set_new(e, "finish", json_string(finish_name(res[i].finish)));
            json_array_append_new(arr, e);
        }
        json_object_set_new(o, "prompt_tokens", json_integer((json_int_t)st->prompt_tokens));
        json_object_set_new(o, "samples", arr);
        json_object_set_new(o, "prefill_s", json_real(st->prefill_s));
        json_object_set_new(o, "decode_s", json_real(st->decode_s));
        cli_print_json(o, JSON_COMPACT);
    } else if (samples > 1) {
        for (int i = 0; i < samples; i++) {
            printf("--- sample %d (%d tokens, %s) ---\n", i + 1, res[i].n_ids, finish_name(res[i].finish));
            fwrite(res[i].text, 1, res[i].len, stdout);
            printf("\n");
        }
    } else {
        printf("\n");
    }
    double dt = st->decode_s;
    fprintf(stderr, "[prompt %zu tokens in %.2f s; %ld new tokens in %.2f s, %.1f tokens/s]\n", st->prompt_tokens,
            st->prefill_s, total, dt, total / (dt > 0 ? dt : 1e-9));
}

static int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *system = NULL, *kv_name = NULL;
    int chat = 0, n_new = 128, top_k = 0, samples = 1, json = 0, ctx = 0, exact = 0, kv;
    double temp = 0.7, top_p = 0.95, min_p = 0;
    int64_t seed = 0;
    cli_strs stops = {0};
    cli_opt opts[] = {
        {"--model", CLI_STR, &model_path, "GGUF model (qwen2 / llama) with tokenizer metadata"},
        {"--prompt", CLI_STR, &prompt, "prompt text"},
        {"--prompt-file", CLI_STR, &prompt_file, "read the prompt from a file"},
        {"--chat", CLI_FLAG, &chat, "wrap the prompt as a user message (+ assistant turn) in the file's chat form: ChatML or Llama-3 (tokenizer.chat_template)"},
        {"--system", CLI_STR, &system, "system message for --chat"},
        {"-n", CLI_INT, &n_new, "new tokens at most (default 128)"},
        {"--temp", CLI_FLOAT, &temp, "temperature (default 0.7; 0 = greedy)"},
        {"--top-p", CLI_FLOAT, &top_p, "nucleus mass (default 0.95; 1 = off)"},
        {"--top-k", CLI_INT, &top_k, "keep the k most likely tokens (default 0 = off)"},
        {"--min-p", CLI_FLOAT, &min_p, "drop tokens below min-p x the top probability (default 0)"},
        {"--seed", CLI_I64, &seed, "random seed (default 0)"},
        {"--stop", CLI_STRS, &stops, "stop string (repeatable); the text is cut before it"},
        {"--samples", CLI_INT, &samples, "independent samples sharing the prompt's prefill (default 1)"},
        {"--ctx", CLI_INT, &ctx, "session context (default prompt + n, at most the model's)"},
        {"--json", CLI_FLAG, &json, "print one JSON object with the samples instead of streaming"},
        {"--exact", CLI_FLAG, &exact, "fp32 activations on quantised weights (default: int8, faster, ~1e-2 off)"},
        CLI_KV_TYPE_OPT(kv_name),
    };
    int pr;
    if (cli_parse_opts("deeprec llm generate --model M.gguf (--prompt TEXT | --prompt-file F) [--chat] [-n N] [--temp T] "
                       "[--top-p P] [--top-k K] [--seed S] [--stop STR]... [--samples G]",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!model_path) return cli_usage_error("llm generate: --model is required");
    if (!!prompt == !!prompt_file) return cli_usage_error("llm generate: give exactly one of --prompt or --prompt-file");
    if (n_new <= 0 || samples <= 0 || samples > 4096) return cli_usage_error("llm generate: -n and --samples must be > 0");
    if (cli_kv_type("llm generate", kv_name, &kv)) return 2;
    char *file_text = NULL, *chat_text = NULL;
    size_t flen;
    if (prompt_file) {
        if (dr_read_file(prompt_file, &file_text, &flen)) return cli_fail();
        prompt = file_text;
    }
    llm_model *m = NULL;
    llm_gen_result *res = dr_calloc((size_t)samples, sizeof *res);
    int rc = res ? llm_model_load(&m, model_path) : DR_ERR_NOMEM;
    if (rc) goto fail;
    llm_model_set_kv_type(m, (llm_kv_type)kv);
    if (chat && !(rc = llm_chat_prompt(m, system, prompt, &chat_text))) prompt = chat_text;
    llm_gen_params p = {.max_tokens = n_new, .seed = (uint64_t)seed, .stops = stops.v, .n_stops = stops.n,
                        .sampler = {.temperature = (float)temp, .top_p = (float)top_p, .top_k = top_k, .min_p = (float)min_p}};
    gen_ctx g = {.stream = !json && samples == 1};
    llm_complete_stats st;
    if (rc || (rc = llm_complete(m, prompt, samples, ctx, !exact, &p, on_text, &g, res, &st))) {
        dr_error_context("%s", model_path); /* the errors left are the model's or the prompt's */
        goto fail;
    }
    print_samples(res, samples, &st, json);
fail:
    if (res)
        for (int i = 0; i < samples; i++) llm_gen_result_free(&res[i]);
    free(res);
    free(chat_text);
    free(file_text);
    llm_model_free(m);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(llm_generate, "llm generate", "generate text with a GGUF model (streams to stdout)", cmd_generate)

/* ---------------------------------------------------------------- llm bench */
static int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *kv_name = NULL;
    int P = 128, B = 8, steps = 16, json = 0, exact = 0, kv;
    cli_opt opts[] = {
        {"--model", CLI_STR, &model_path, "GGUF model"},
        {"--prompt-tokens", CLI_INT, &P, "prefill length (default 128)"},
        {"--batch", CLI_INT, &B, "decode batch (default 8)"},
        {"--steps", CLI_INT, &steps, "decode steps measured (default 16)"},
        {"--json", CLI_FLAG, &json, "print one JSON object"},
        {"--exact", CLI_FLAG, &exact, "fp32 activations on quantised weights (default: int8, faster)"},
        CLI_KV_TYPE_OPT(kv_name),
    };
    int pr;
    if (cli_parse_opts("deeprec llm bench --model M.gguf [--prompt-tokens P] [--batch B] [--json]",
                       argc, argv, opts, CLI_NOPTS(opts), &pr))
        return pr;
    if (!model_path) return cli_usage_error("llm bench: --model is required");
    if (P <= 0 || B <= 0 || steps <= 0) return cli_usage_error("llm bench: sizes must be > 0");
    if (cli_kv_type("llm bench", kv_name, &kv)) return 2;
    llm_model *m = NULL;
    llm_speed_result sp;
    int rc = llm_model_load(&m, model_path);
    if (!rc) llm_model_set_kv_type(m, (llm_kv_type)kv);
    if (!rc && !(rc = llm_speed(m, P, B, steps, !exact, &sp))) {
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "model", dr_json_text(model_path, (size_t)-1));
            json_object_set_new(o, "threads", json_integer(dr_threads()));
            json_object_set_new(o, "prompt_tokens", json_integer(P));
            json_object_set_new(o, "batch", json_integer(B));
            json_object_set_new(o, "prefill_tokens_per_s", json_real(sp.prefill_tps));
            json_object_set_new(o, "decode1_tokens_per_s", json_real(sp.decode1_tps));
            json_object_set_new(o, "decodeB_tokens_per_s", json_real(sp.decodeB_tps));
            json_object_set_new(o, "weight_bytes", json_integer((json_int_t)llm_model_weight_bytes(m)));
            cli_print_json(o, JSON_COMPACT);
        } else {
            printf("prefill %d tokens: %.1f tokens/s\n", P, sp.prefill_tps);
            printf("decode batch 1: %.2f tokens/s (%.1f GB/s of weights)\n", sp.decode1_tps,
                   sp.decode1_tps * (double)llm_model_weight_bytes(m) / 1e9);
            printf("decode batch %d: %.2f tokens/s\n", B, sp.decodeB_tps);
        }
    }
    llm_model_free(m);
    return rc ? cli_fail() : 0;
}
CLI_COMMAND(llm_bench, "llm bench", "measure prefill and decode speed of a GGUF model", cmd_bench)
