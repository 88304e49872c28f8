/* The named budgets of `deeprec pipeline`. demo = tools/demo.sh's defaults when this command
 * replaced it; full = a longer recipe whose values are placeholders to tune by measurement;
 * test = the smallest sizes that still exercise every stage (tests/pipeline). */
#include "deeprec/pipeline.h"
#include <string.h>

static const pipeline_budget budget_demo = {
    .name = "demo",
    .trm_max_epochs = 12, .trm_patience = 3, .trm_batch = 64, .trm_dim = 64, .trm_layers = 2, .trm_max_len = 50,
    .synth_seeds = {1, 3, 4, 5, 6, 7, 8}, .n_synth_seeds = 7, .synth_users = 0, .corpus_seed = 2,
    .rerank_share = 0.0, .rerank_warm = 0.5,
    .vocab = 4096,
    .llm_dim = 128, .llm_layers = 2, .llm_heads = 2, .llm_kv_heads = 1, .llm_ffn = 384, .ctx = 2048,
    .sft_lr1 = 3e-3, .sft_lr2 = 1e-3, .sft_batch = 4, .sft_max_len = 1536, .sft_epochs = 1,
    .max_hist = 10, .tool_k = 10, .max_tokens = 384,
    .rl1_steps = 8, .rl2_steps = 12, .rl_prompts = 8, .rl_samples = 4, .rl_micro = 2, .rl_updates = 1,
    .rl_select_k = 100, .rl_lr1 = 1e-4, .rl_lr2 = 5e-5, .rl_probe = 32,
    .rl_probe_temp1 = 0.0, .rl_probe_samples1 = 1, .rl_probe_temp2 = 1.0, .rl_probe_samples2 = 4,
    .eval_users = 0, .eval_batch = 16,
};

/* TODO(lead): tune by measurement; every value here is a placeholder of the right order. */
static const pipeline_budget budget_full = {
    .name = "full",
    .trm_max_epochs = 200, .trm_patience = 10, .trm_batch = 128, .trm_dim = 64, .trm_layers = 2, .trm_max_len = 50,
    .synth_seeds = {1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}, .n_synth_seeds = 12, .synth_users = 0, .corpus_seed = 2,
    .rerank_share = 0.0, .rerank_warm = 0.5,
    .vocab = 8192,
    .llm_dim = 256, .llm_layers = 4, .llm_heads = 4, .llm_kv_heads = 2, .llm_ffn = 768, .ctx = 4096,
    .sft_lr1 = 3e-3, .sft_lr2 = 1e-3, .sft_batch = 8, .sft_max_len = 2048, .sft_epochs = 2,
    .max_hist = 20, .tool_k = 20, .max_tokens = 512,
    .rl1_steps = 20, .rl2_steps = 80, .rl_prompts = 32, .rl_samples = 8, .rl_micro = 4, .rl_updates = 2,
    .rl_select_k = 100, .rl_lr1 = 1e-4, .rl_lr2 = 5e-5, .rl_probe = 64,
    .rl_probe_temp1 = 0.0, .rl_probe_samples1 = 1, .rl_probe_temp2 = 1.0, .rl_probe_samples2 = 4,
    .eval_users = 0, .eval_batch = 16,
};

static const pipeline_budget budget_test = {
    .name = "test",
    .trm_max_epochs = 2, .trm_patience = 2, .trm_batch = 16, .trm_dim = 16, .trm_layers = 1, .trm_max_len = 20,
    .synth_seeds = {1, 3}, .n_synth_seeds = 2, .synth_users = 0, .corpus_seed = 2,
    .rerank_share = 0.0, .rerank_warm = 0.5,
    .vocab = 600,
    .llm_dim = 32, .llm_layers = 1, .llm_heads = 2, .llm_kv_heads = 1, .llm_ffn = 64, .ctx = 1024,
    .sft_lr1 = 3e-3, .sft_lr2 = 1e-3, .sft_batch = 2, .sft_max_len = 512, .sft_epochs = 1, .sft_max_steps = 2,
    .max_hist = 4, .tool_k = 10, .max_tokens = 8,
    .rl1_steps = 2, .rl2_steps = 2, .rl_prompts = 2, .rl_samples = 2, .rl_micro = 2, .rl_updates = 1,
    .rl_select_k = 0, .rl_lr1 = 1e-4, .rl_lr2 = 5e-5, .rl_probe = 2,
    .rl_probe_temp1 = 0.0, .rl_probe_samples1 = 1, .rl_probe_temp2 = 1.0, .rl_probe_samples2 = 2,
    .eval_users = 6, .eval_batch = 8,
};

static const pipeline_budget *const budgets[] = {&budget_demo, &budget_full, &budget_test};

const pipeline_budget *pipeline_budget_get(const char *name) {
    for (size_t i = 0; name && i < sizeof budgets / sizeof *budgets; i++)
        if (!strcmp(budgets[i]->name, name)) return budgets[i];
    return NULL;
}

const char *pipeline_budget_names(void) { return "demo, full, test"; }
