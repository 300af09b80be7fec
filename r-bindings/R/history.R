# A partition's history, and rolling it back.

sf_history <- function(namespace, resource, partitions = NULL, con = NULL) {
  call <- sys.call()
  bs_check(bs_native$history(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_one_partition(partitions, call)
  ), call)
}

sf_rollback <- function(namespace, resource, partitions = NULL, to_version = NULL, to_batch = NULL,
                        expected_batch = NULL, message = "", con = NULL) {
  call <- sys.call()
  if (is.null(to_version) == is.null(to_batch)) bs_invalid("give exactly one of to_version and to_batch", call)
  if (!is.null(to_batch)) to_batch <- bs_name(to_batch, "to_batch", call)
  if (!is.null(expected_batch)) expected_batch <- bs_name(expected_batch, "expected_batch", call)
  message <- bs_text(message, "message", call)
  invisible(bs_check(bs_native$rollback(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_one_partition(partitions, call), to_version, to_batch, expected_batch, message
  ), call))
}
