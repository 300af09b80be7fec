# Partitions named from R: only their shape is settled here. What each value means (its
# canonical text, the key type it suggests) is decided once, in the Rust client, the same for
# R, Python and tablectl; factors are passed as their labels and POSIXlt times as POSIXct.

bs_host_value <- function(value) {
  if (is.factor(value)) return(stats::setNames(as.character(value), names(value)))
  if (inherits(value, "POSIXlt")) return(as.POSIXct(value))
  value
}

# One partition: NULL (an unpartitioned table), a vector of values (named by key, or in key
# order), or a list of single values.
bs_one_partition <- function(partition, call = sys.call(-1)) {
  if (is.null(partition) || length(partition) == 0L) return(NULL)
  if (is.data.frame(partition) || !(is.atomic(partition) || is.list(partition))) {
    bs_invalid("a partition is a vector such as c(ds = \"20161031\") or a list of values", call)
  }
  if (is.list(partition)) {
    keys <- names(partition)
    partition <- lapply(partition, bs_host_value)
    names(partition) <- keys
    return(partition)
  }
  bs_host_value(partition)
}

# Several partitions: NULL (every partition), one partition, or an unnamed list of partitions.
bs_many_partitions <- function(partitions, call = sys.call(-1)) {
  if (is.null(partitions)) return(list())
  if (is.list(partitions) && !is.data.frame(partitions) && is.null(names(partitions))) {
    return(lapply(partitions, bs_one_partition, call = call))
  }
  list(bs_one_partition(partitions, call))
}
