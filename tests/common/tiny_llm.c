#include "common/tiny_llm.h"
#include "harness.h"
#include "deeprec/agent.h"
#include "deeprec/gguf.h"
#include <string.h>

const char *const tx_movie_titles[TX_N_MOVIES] = {"Heat", "Casino", "Se7en", "The Usual Suspects", "GoldenEye", "Babe",
                                                  "Jumanji", "Four Rooms", "Toy Story", "Apollo 13", "Fargo", "Alien"};
const char *const tx_movie_cats[TX_N_MOVIES] = {"Action|Crime|Thriller", "Crime|Drama", "Mystery|Thriller",
                                                "Crime|Mystery|Thriller", "Action|Adventure", "Children|Drama",
                                                "Adventure|Children", "Comedy", "Animation|Children|Comedy",
                                                "Adventure|Drama", "Crime|Drama|Thriller", "Horror|Sci-Fi"};

void tx_tiny_config(llm_config *c, int vocab, int context) {
    llm_config_default(c, LLM_ARCH_QWEN2);
    c->dim = 32, c->n_layers = 2, c->ffn = 64;
    c->n_heads = 4, c->n_kv_heads = 2, c->head_dim = 8;
    c->vocab = vocab, c->context = context;
}

void tx_movie_corpus(char *buf, size_t cap) {
    buf[0] = 0;
    for (int r = 0; r < 3; r++) {
        strncat(buf, agent_prompt_instructions(), cap - strlen(buf) - 1);
        for (int i = 0; i < TX_N_MOVIES; i++) {
            strncat(buf, tx_movie_titles[i], cap - strlen(buf) - 1);
            strncat(buf, "\n  - categories: ", cap - strlen(buf) - 1);
            strncat(buf, tx_movie_cats[i], cap - strlen(buf) - 1);
            strncat(buf, "\n", cap - strlen(buf) - 1);
        }
    }
}

void tx_tiny_llm(const char *corpus, int vocab_size, int context, float std, llm_model **m, tokenizer **tok) {
    tok_train_opts to = {0};
    to.vocab_size = vocab_size;
    CHECK_OK(tok_train(corpus, strlen(corpus), &to, tok));
    llm_config c;
    tx_tiny_config(&c, tok_vocab_size(*tok), context);
    CHECK_OK(llm_model_init_random(m, &c, GGML_TYPE_F32, std, 5));
}
