/* Output claims for the commands: dr_output_claim with the command's inputs; the locks
 * stay held until the process ends (the kernel releases them, also on kill -9). */
#include "cli.h"
#include "deeprec/dist.h"

int cli_claim_output(const char *out, const char *const *inputs, int n_inputs) {
    /* under mpirun rank 0 alone writes, so it alone claims (the others would find the lock held) */
    if (!out || dr_dist_rank() != 0) return 0;
    int fd;
    if (dr_output_claim(out, inputs, n_inputs, &fd)) return cli_fail();
    (void)fd; /* kept open on purpose: closing it would release the lock */
    return 0;
}
