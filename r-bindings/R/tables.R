# Tables: creating them, listing them and their partitions, and tags.

bs_name <- function(value, what, call) {
  if (!is.character(value) || length(value) != 1L || is.na(value) || !nzchar(value)) {
    bs_invalid(sprintf("%s must be a single non-empty string", what), call)
  }
  enc2utf8(value)
}

# A single string, possibly empty.
bs_text <- function(value, what, call) {
  if (!is.character(value) || length(value) != 1L || is.na(value)) {
    bs_invalid(sprintf("%s must be a single string", what), call)
  }
  enc2utf8(value)
}

sf_create_table <- function(namespace, resource, keys = character(), if_not_exists = FALSE, con = NULL) {
  call <- sys.call()
  namespace <- bs_name(namespace, "namespace", call)
  resource <- bs_name(resource, "resource", call)
  if (!is.character(keys) || anyNA(keys)) {
    bs_invalid("keys must be key names, or a named vector of key types such as c(ds = \"int64\")", call)
  }
  if (is.null(names(keys))) {
    key_names <- keys
    key_types <- rep("string", length(keys))
  } else {
    key_names <- names(keys)
    key_types <- unname(keys)
  }
  pointer <- bs_pointer(con)
  bs_check(bs_native$create_namespace(pointer, namespace, TRUE), call)
  invisible(bs_check(
    bs_native$create_table(pointer, namespace, resource, enc2utf8(key_names), key_types, isTRUE(if_not_exists)),
    call
  ))
}

sf_tables <- function(namespace = NULL, con = NULL) {
  call <- sys.call()
  if (!is.null(namespace)) namespace <- bs_name(namespace, "namespace", call)
  bs_check(bs_native$list_tables(bs_pointer(con), namespace), call)
}

sf_partitions <- function(namespace, resource, con = NULL) {
  call <- sys.call()
  bs_check(bs_native$partitions(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call)
  ), call)
}

sf_tag <- function(namespace, resource, name, partitions = NULL, version = 0, batch_id = NULL, con = NULL) {
  call <- sys.call()
  invisible(bs_check(bs_native$create_tag(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_name(name, "name", call), bs_one_partition(partitions, call), version, batch_id
  ), call))
}

sf_tags <- function(namespace, resource, con = NULL) {
  call <- sys.call()
  bs_check(bs_native$list_tags(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call)
  ), call)
}
