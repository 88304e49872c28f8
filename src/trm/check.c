/* Does a TRM belong to a dataset? One check for every command that takes both (a model
 * of another dataset used to give blank titles and zero metrics with exit code 0). */
#include "deeprec/data.h"
#include "deeprec/trm.h"

int trm_check_dataset(const trm_model *m, const dr_dataset *d, const char *model_path, const char *data_path) {
    const trm_config *c = trm_model_config(m);
    if (c->n_items == d->n_items) return DR_OK;
    dr_error(DR_ERR_ARG, "%s has %d items but %s has %d: the TRM was trained on another dataset",
             model_path ? model_path : "the TRM", c->n_items, data_path ? data_path : "the dataset", d->n_items);
    return dr_error_hint("train one for this dataset: deeprec trm train --data %s --model pref --out TRM.gguf",
                         data_path ? data_path : "DATA.gguf");
}
