/* The names of the TRM's kinds, losses, activations, learning-rate schedules and weight-decay sets as commands and files spell them. */
#include "deeprec/trm.h"
#include <string.h>

int trm_model_kind_from_name(const char *s) {
    return !strcmp(s, "sasrec") ? TRM_SASREC : !strcmp(s, "pref") ? TRM_PREF : -1;
}

int trm_loss_from_name(const char *s) {
    return !strcmp(s, "ce") ? TRM_LOSS_CE : !strcmp(s, "sampled") ? TRM_LOSS_SAMPLED : !strcmp(s, "bce") ? TRM_LOSS_BCE : -1;
}

int trm_act_from_name(const char *s) { return !strcmp(s, "gelu") ? TRM_ACT_GELU : !strcmp(s, "relu") ? TRM_ACT_RELU : -1; }

int trm_lr_schedule_from_name(const char *s) {
    return !strcmp(s, "const") ? TRM_LR_CONST : !strcmp(s, "cosine") ? TRM_LR_COSINE : -1;
}

int trm_wd_params_from_name(const char *s) {
    return !strcmp(s, "all") ? TRM_WD_ALL : !strcmp(s, "matrices") ? TRM_WD_MATRICES : !strcmp(s, "linear") ? TRM_WD_LINEAR : -1;
}

int trm_eval_split_from_name(const char *s) {
    return !strcmp(s, "valid") ? 0 : !strcmp(s, "test") ? 1 : !strcmp(s, "train") ? 2 : -1;
}
