/* The learning-rate schedule of TRM training: an optional linear warmup, then constant or a
 * cosine decay to zero over the run's whole budget of epochs.
 *
 * Why over the budget and not until early stopping: where training stops is not known in
 * advance; a cosine over --epochs lets a short budget (say 60 epochs on Beauty, where the
 * constant rate stops near 50) end on a small rate, and early stopping still keeps the best
 * epoch. The constant schedule without warmup returns o->lr itself, so runs at the defaults
 * are bit for bit those of before the schedule existed. */
#include "deeprec/trm.h"
#include <math.h>

float trm_lr_at(const trm_train_opts *o, int64_t step, int64_t total) {
    if (o->lr_schedule == TRM_LR_CONST && o->warmup <= 0) return o->lr;
    double f = 1.0;
    if (o->warmup > 0 && step < o->warmup) f = (double)(step > 0 ? step : 1) / o->warmup;
    else if (o->lr_schedule == TRM_LR_COSINE && total > o->warmup) {
        double p = (double)(step - o->warmup) / (double)(total - o->warmup);
        p = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
        f = 0.5 * (1.0 + cos(M_PI * p));
    }
    return (float)(o->lr * f);
}
