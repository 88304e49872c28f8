/* llm sft under mpirun: 2 and 3 ranks against one process with the same global step
 * (batch 2 x accum 2 = 4 examples a step over 7 examples: shares 2/2, 2/1/1 and a last step
 * of 3), full fine-tuning and LoRA; and a resume under MPI equals the uninterrupted run. */
#include "harness.h"
#include "mpi_util.h"

static void setup(const char *dir, const char *arch) {
    char cmd[4096], line[1024];
    size_t cap = 1 << 14, n = 0;
    char *data = malloc(cap);
    CHECK(data);
    const char *things[] = {"film", "book", "song", "game", "show", "poem", "play"};
    const char *picks[] = {"Alien", "Rebecca", "So What", "Tetris", "Friends", "Ozymandias", "Hamlet"};
    for (int i = 0; i < 7; i++) {
        snprintf(line, sizeof line,
                 "{\"prompt\": \"user: recommend a %s\\nassistant: \", \"completion\": \"<think>likes %s</think>\\n"
                 "1. %s\\n2. %s\"}\n",
                 things[i], things[(i + 3) % 7], picks[i], picks[(i * 3 + 1) % 7]);
        n += (size_t)snprintf(data + n, cap - n, "%s", line);
    }
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "data.jsonl"), data, n));
    char *corpus = malloc(3 * n + 1);
    CHECK(corpus);
    for (int r = 0; r < 3; r++) memcpy(corpus + r * n, data, n);
    CHECK_OK(dr_write_file_atomic(dr_test_path(dir, "corpus.txt"), corpus, 3 * n));
    free(corpus);
    free(data);
    snprintf(cmd, sizeof cmd, "llm train-tokenizer --corpus %s --vocab-size 300 --out %s 2>/dev/null",
             dr_test_path(dir, "corpus.txt"), dr_test_path(dir, "tok.gguf"));
    CHECK_EQ_INT(mpi_run(0, cmd), 0);
    snprintf(cmd, sizeof cmd,
             "llm init --arch %s --dim 32 --layers 2 --heads 2 --kv-heads 1 --ffn 64 --vocab-from %s --context 128 --std 0.05 "
             "--out %s 2>/dev/null",
             arch, dr_test_path(dir, "tok.gguf"), dr_test_path(dir, "m0.gguf"));
    CHECK_EQ_INT(mpi_run(0, cmd), 0);
}

/* skip: tensors left out of the comparison (mpi_util.h, gguf_rel_diff: qwen2's key bias) */
static void sft_equiv(const char *arch, const char *extra, const char *skip) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    setup(dir, arch);
    char args[4096], out[3][600];
    const int nps[3] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/sft%d.gguf", dir, nps[k]);
        snprintf(args, sizeof args,
                 "llm sft --model %s --data %s --out %s --epochs 2 --batch 2 --accum 2 --lr 3e-3 --quiet %s",
                 dr_test_path(dir, "m0.gguf"), dr_test_path(dir, "data.jsonl"), out[k], extra);
        CHECK_EQ_INT(mpi_run(nps[k], args), 0);
    }
    for (int k = 1; k < 3; k++) {
        double r = gguf_rel_diff(out[0], out[k], skip);
        printf("  sft %s %s: -np %d weights differ by %.2e of the largest weight\n", arch, extra, nps[k], r);
        CHECK_MSG(r <= 1e-5, "-np %d: weights differ by %g relative", nps[k], r);
    }
}

TEST(dist_sft_full_llama) { sft_equiv("llama", "", NULL); }
TEST(dist_sft_full_qwen2) { sft_equiv("qwen2", "", "attn_k.bias"); }
TEST(dist_sft_lora) { sft_equiv("qwen2", "--lora 4 --lr 1e-2", NULL); }

TEST(dist_sft_resume) {
    mpi_bin();
    const char *dir = dr_test_tmpdir();
    setup(dir, "qwen2");
    char args[4096], full[600], part[600], st[600], res[600], met[600];
    snprintf(full, sizeof full, "%s/full.gguf", dir);
    snprintf(part, sizeof part, "%s/part.gguf", dir);
    snprintf(st, sizeof st, "%s/state.gguf", dir);
    snprintf(res, sizeof res, "%s/resumed.gguf", dir);
    snprintf(met, sizeof met, "%s/metrics.jsonl", dir);
    const char *common = "--epochs 2 --batch 2 --accum 2 --lr 3e-3 --sched linear --warmup 1 --quiet";
    snprintf(args, sizeof args, "llm sft --model %s --data %s --out %s %s", dr_test_path(dir, "m0.gguf"),
             dr_test_path(dir, "data.jsonl"), full, common);
    CHECK_EQ_INT(mpi_run(3, args), 0);
    snprintf(args, sizeof args, "llm sft --model %s --data %s --out %s --max-steps 2 --save-state %s --metrics %s %s",
             dr_test_path(dir, "m0.gguf"), dr_test_path(dir, "data.jsonl"), part, st, met, common);
    CHECK_EQ_INT(mpi_run(3, args), 0);
    snprintf(args, sizeof args, "llm sft --model %s --data %s --out %s --resume %s --metrics %s %s", part,
             dr_test_path(dir, "data.jsonl"), res, st, met, common);
    CHECK_EQ_INT(mpi_run(3, args), 0);
    double r = gguf_rel_diff(full, res, NULL);
    CHECK_MSG(r == 0, "resumed under MPI: weights differ by %g relative", r);
    /* rank 0 alone wrote the metrics: one line per step (4 steps) */
    char *t = read_text(met);
    CHECK(t);
    int lines = 0;
    for (char *p = t; *p; p++) lines += *p == '\n';
    free(t);
    CHECK_EQ_INT(lines, 4);
}
