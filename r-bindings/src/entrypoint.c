// Registers the Rust entry points with R, and gives Rust a safe way to ask R about interrupts.
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>
#include <R_ext/Utils.h>
#include <pthread.h>
#include <signal.h>

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

// With block = 1, blocks SIGPIPE in the calling thread and keeps its previous mask; with
// block = 0, restores that mask. Threads started in between inherit the blocked SIGPIPE, so a
// write to a closed connection on them fails with EPIPE instead of raising R's SIGPIPE error
// on a thread R does not run on. Returns pthread_sigmask's result.
int batchstore_block_sigpipe(int block) {
    static sigset_t saved;
    if (block) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        return pthread_sigmask(SIG_BLOCK, &pipe, &saved);
    }
    return pthread_sigmask(SIG_SETMASK, &saved, NULL);
}
