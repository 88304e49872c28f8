/* The files the agent's commands open (recommend, agent synth, eval, rl, serve): one
 * loader, so each opens them in one order with one cleanup, and a TRM is always
 * checked against the dataset it is used with. */
#include "cli.h"
#include "deeprec/data.h"
#include "deeprec/llm.h"
#include "deeprec/tokenizer.h"
#include "deeprec/trm.h"
#include <string.h>

int cli_inputs_load(cli_inputs *in, const char *data, const char *trm, const char *llm, const char *tok) {
    memset(in, 0, sizeof *in);
    int rc;
    if ((rc = dr_data_load(&in->data, data))) return rc;
    if (trm && ((rc = trm_load(&in->trm, trm)) || (rc = trm_check_dataset(in->trm, &in->data, trm, data)))) return rc;
    if (llm && (rc = llm_model_load(&in->llm, llm))) return rc;
    if (tok && (rc = tok_load_path(&in->tok, tok))) return rc;
    return DR_OK;
}

void cli_inputs_free(cli_inputs *in) {
    tok_free(in->tok);
    llm_model_free(in->llm);
    trm_model_free(in->trm);
    dr_data_free(&in->data);
    memset(in, 0, sizeof *in);
}
