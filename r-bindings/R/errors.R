# Errors: the one place native error values become R conditions.
#
# Every condition has class c("batchstore_<kind>", "batchstore_error", "error", "condition"),
# where kind is one of not_found, already_exists, conflict, schema_mismatch, invalid_argument,
# failed_precondition, permission_denied, unauthenticated, unavailable, storage, data,
# cancelled, outcome_unknown, internal. The message is the service's sentence. A conflict also
# has `current_batch_id` (the partition's batch now; NULL when never written) and a not_found
# `what` ("table", "partition", ...; NULL for a data file) and `name` (what is missing:
# "ns.table", "ds=1", a version's number, a batch id, a storage path, ...). A cancelled write has
# `committed`: the batch ids its commit made when it had already been sent and succeeded,
# character(0) when nothing was committed.

bs_condition <- function(kind, message, call = NULL, current_batch_id = NULL, what = NULL, name = NULL,
                         committed = NULL) {
  structure(
    class = c(paste0("batchstore_", kind), "batchstore_error", "error", "condition"),
    list(message = message, call = call, kind = kind, current_batch_id = current_batch_id, what = what,
         name = name, committed = committed)
  )
}

# Raises `x` if it is a native error, else returns it.
bs_check <- function(x, call = sys.call(-1)) {
  if (inherits(x, "batchstore_native_error")) {
    stop(bs_condition(x$kind, x$message, call, x$current_batch_id, x$what, x$name, x$committed))
  }
  x
}

# Raises an invalid_argument condition about the caller's arguments.
bs_invalid <- function(message, call = sys.call(-1)) {
  stop(bs_condition("invalid_argument", message, call))
}

bs_is_error <- function(x, kind) {
  inherits(x, "batchstore_native_error") && identical(x$kind, kind)
}
