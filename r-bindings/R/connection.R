# Connections to a metastore. One default connection per session, made on first use, so most
# code never calls sf_connect(); every function also takes `con =` for a second metastore.

bs_state <- new.env(parent = emptyenv())

sf_connect <- function(endpoint = NULL, default = TRUE) {
  if (!is.null(endpoint) && !(is.character(endpoint) && length(endpoint) == 1L && !is.na(endpoint))) {
    bs_invalid("endpoint must be a single string such as \"http://127.0.0.1:50051\"")
  }
  pointer <- bs_check(bs_native$connect(endpoint))
  con <- structure(
    list(pointer = pointer, endpoint = bs_check(bs_native$endpoint(pointer))),
    class = "batchstore_connection"
  )
  if (isTRUE(default)) bs_state$default <- con
  invisible(con)
}

# The default connection, made from BATCHSTORE_ENDPOINT on first use.
bs_default_connection <- function() {
  if (is.null(bs_state$default)) sf_connect()
  bs_state$default
}

bs_pointer <- function(con) {
  if (is.null(con)) con <- bs_default_connection()
  if (!inherits(con, "batchstore_connection")) {
    bs_invalid("con must be a connection made by sf_connect()", sys.call(-2))
  }
  con$pointer
}

print.batchstore_connection <- function(x, ...) {
  cat("<batchstore connection to ", x$endpoint, ">\n", sep = "")
  invisible(x)
}
