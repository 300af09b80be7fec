# Partition values: how R values name a partition.
#
# Values become text exactly as the Python package makes them, so R, Python and tablectl name
# the same partition identically: integers and whole numbers as decimal digits ("20161031"),
# Dates as "YYYY-MM-DD", logicals as "true"/"false", strings unchanged, factors by their label.
# Non-whole numbers, date-times, NA and empty values are refused.

bs_partition_value <- function(value, call) {
  if (is.list(value) || length(value) != 1L) {
    bs_invalid("each partition value must be a single value", call)
  }
  if (is.factor(value)) value <- as.character(value)
  if (is.na(value)) bs_invalid("a partition value cannot be NA", call)
  if (inherits(value, "POSIXt")) {
    bs_invalid(sprintf(
      "partition value %s is a date and time; use a Date (as.Date()) or a string",
      format(value)
    ), call)
  }
  if (inherits(value, "Date")) return(format(value, "%Y-%m-%d"))
  if (is.logical(value)) return(if (value) "true" else "false")
  if (is.integer(value)) return(as.character(value))
  if (is.numeric(value)) {
    if (!is.finite(value) || value != trunc(value)) {
      bs_invalid(sprintf(
        "partition value %s is not a whole number; use an integer, a Date or a string",
        format(value, digits = 15)
      ), call)
    }
    if (value == 0) return("0")
    return(formatC(value, format = "f", digits = 0))
  }
  if (is.character(value)) return(enc2utf8(value))
  bs_invalid(sprintf(
    "a partition value of class %s is not supported; use a string, a number or a Date",
    class(value)[1L]
  ), call)
}

bs_key_names <- function(partition, call) {
  keys <- names(partition)
  if (is.null(keys) || all(keys == "")) return(NULL)
  if (any(keys == "" | is.na(keys))) {
    bs_invalid("name every partition value, or none (then they follow the table's key order)", call)
  }
  enc2utf8(keys)
}

# One partition: NULL (an unpartitioned table), a vector of values (named by key, or in key
# order), or a list of single values. Returns a (named) character vector.
bs_one_partition <- function(partition, call = sys.call(-1)) {
  if (is.null(partition)) return(NULL)
  if (is.data.frame(partition) || !(is.atomic(partition) || is.list(partition))) {
    bs_invalid("a partition is a vector such as c(ds = \"20161031\") or a list of values", call)
  }
  if (length(partition) == 0L) return(NULL)
  values <- vapply(
    seq_along(partition),
    function(i) bs_partition_value(if (is.list(partition)) partition[[i]] else unname(partition[i]), call),
    character(1)
  )
  names(values) <- bs_key_names(partition, call)
  values
}

# Several partitions: NULL (every partition), one partition, or an unnamed list of partitions.
bs_many_partitions <- function(partitions, call = sys.call(-1)) {
  if (is.null(partitions)) return(list())
  if (is.list(partitions) && !is.data.frame(partitions) && is.null(names(partitions))) {
    return(lapply(partitions, bs_one_partition, call = call))
  }
  list(bs_one_partition(partitions, call))
}

# The partition key type a value suggests when sf_writer creates a table from it.
bs_key_type <- function(value) {
  if (is.list(value)) value <- value[[1L]]
  if (inherits(value, "Date")) return("date")
  if (is.logical(value) || is.factor(value)) return("string")
  if (is.numeric(value) && !inherits(value, "POSIXt")) return("int64")
  "string"
}
