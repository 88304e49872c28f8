/* Private helpers shared by the llm sources. */
#ifndef DEEPREC_LLM_INTERNAL_H
#define DEEPREC_LLM_INTERNAL_H

#include "deeprec/llm.h"

/* Register a heap buffer as owned by the model (freed by llm_model_free). */
int llm_model_own(llm_model *m, void *p);
/* Free an owned buffer early (no-op when p is not owned). */
void llm_model_disown_free(llm_model *m, const void *p);
/* Bytes of a rows x cols matrix of type (0 if invalid). */
size_t llm_mat_bytes(uint32_t type, int rows, int cols);
int llm_mat_type_ok(uint32_t type); /* F32/F16/BF16/Q8_0 */

#endif
