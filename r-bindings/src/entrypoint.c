// Registers the Rust entry points with R, and gives Rust a safe way to ask R about interrupts.
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>
#include <R_ext/Utils.h>

void R_init_batchstore_extendr(void *dll);

void R_init_batchstore(void *dll) {
    R_init_batchstore_extendr(dll);
}

static void check_interrupt(void *unused) {
    (void) unused;
    R_CheckUserInterrupt();
}

// 1 when the user interrupted (the interrupt is consumed), else 0. R_ToplevelExec catches the
// long jump R_CheckUserInterrupt makes on an interrupt, so no jump crosses Rust frames.
int batchstore_interrupt_pending(void) {
    return R_ToplevelExec(check_interrupt, NULL) == FALSE;
}
