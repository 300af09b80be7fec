# Writing and reading data.frames. The conversion itself is columnar, in Rust; here the frame
# is only checked and its strings made UTF-8 (a no-op for strings that already are).

bs_prepare_frame <- function(data, call) {
  if (!is.data.frame(data)) {
    bs_invalid(sprintf("data must be a data.frame, not %s", class(data)[1L]), call)
  }
  columns <- names(data)
  if (is.null(columns) || anyNA(columns) || any(!nzchar(columns))) {
    bs_invalid("every column of data needs a name", call)
  }
  if (anyDuplicated(columns)) {
    bs_invalid(sprintf("column name %s appears twice", dQuote(columns[anyDuplicated(columns)], FALSE)), call)
  }
  if (.row_names_info(data) > 0L) {
    warning("the row names of data are not stored; keep them as a column with ",
            "data$row_name <- rownames(data) before writing", call. = FALSE)
  }
  frame <- unclass(data)
  attributes(frame) <- NULL
  names(frame) <- enc2utf8(columns)
  for (i in seq_along(frame)) {
    column <- frame[[i]]
    if (is.character(column)) {
      frame[[i]] <- bs_utf8(column, columns[i], call)
    } else if (is.factor(column)) {
      levels(column) <- bs_utf8(levels(column), columns[i], call)
      frame[[i]] <- column
    }
  }
  frame
}

bs_utf8 <- function(text, column, call) {
  text <- tryCatch(enc2utf8(text), error = function(e) {
    bs_invalid(sprintf("column %s has text R cannot make UTF-8 (%s)", dQuote(column, FALSE), conditionMessage(e)), call)
  })
  bad <- !is.na(text) & !validUTF8(text)
  if (any(bad)) {
    bs_invalid(sprintf(
      "column %s has text that is not valid UTF-8 (row %d); fix it with iconv() first",
      dQuote(column, FALSE), which(bad)[1L]
    ), call)
  }
  text
}

sf_writer <- function(data, namespace, resource, partitions = NULL, expected_batch = NULL,
                      message = "", inputs = NULL, progress = interactive(), con = NULL) {
  call <- sys.call()
  namespace <- bs_name(namespace, "namespace", call)
  resource <- bs_name(resource, "resource", call)
  frame <- bs_prepare_frame(data, call)
  partition <- bs_one_partition(partitions, call)
  if (!is.null(expected_batch)) expected_batch <- bs_name(expected_batch, "expected_batch", call)
  message <- bs_text(message, "message", call)
  if (!is.null(inputs) && (!is.character(inputs) || anyNA(inputs))) {
    bs_invalid("inputs must be a character vector of batch ids", call)
  }
  result <- bs_native$write(bs_pointer(con), namespace, resource, frame, nrow(data), partition,
                            expected_batch, message, inputs, bs_progress_delay(progress, call))
  invisible(bs_check(result, call))
}

sf_reader <- function(namespace, resource, partitions = NULL, version = NULL, batch_id = NULL,
                      tag = NULL, as_of = NULL, columns = NULL, filter = NULL, progress = interactive(),
                      con = NULL) {
  call <- sys.call()
  sel <- bs_selection(namespace, resource, version, batch_id, tag, as_of, columns, filter, call)
  bs_check(bs_native$read(
    bs_pointer(con), sel$namespace, sel$resource, bs_many_partitions(partitions, call), version, batch_id, tag,
    sel$as_of, sel$columns, sel$filter, bs_progress_delay(progress, call)
  ), call)
}

sf_scan <- function(namespace, resource, partitions = NULL, version = NULL, batch_id = NULL,
                    tag = NULL, as_of = NULL, columns = NULL, filter = NULL, con = NULL) {
  call <- sys.call()
  sel <- bs_selection(namespace, resource, version, batch_id, tag, as_of, columns, filter, call)
  bs_check(bs_native$manifest(
    bs_pointer(con), sel$namespace, sel$resource, bs_many_partitions(partitions, call), version, batch_id, tag,
    sel$as_of, sel$columns, sel$filter
  ), call)
}

# The checked arguments that choose what sf_reader and sf_scan read.
bs_selection <- function(namespace, resource, version, batch_id, tag, as_of, columns, filter, call) {
  namespace <- bs_name(namespace, "namespace", call)
  resource <- bs_name(resource, "resource", call)
  for (given in list(list("version", version), list("batch_id", batch_id), list("tag", tag), list("as_of", as_of))) {
    if (!is.null(given[[2L]]) && length(given[[2L]]) != 1L) {
      bs_invalid(sprintf("%s must be a single value", given[[1L]]), call)
    }
  }
  if (inherits(as_of, "POSIXlt")) as_of <- as.POSIXct(as_of)
  if (!is.null(columns)) {
    if (!is.character(columns) || anyNA(columns)) bs_invalid("columns must be a character vector of column names", call)
    columns <- enc2utf8(columns)
  }
  if (!is.null(filter)) {
    if (!is.character(filter) || anyNA(filter)) {
      bs_invalid('filter must be a character vector of conditions on partition keys, such as "ds >= 20240101"', call)
    }
    filter <- enc2utf8(filter)
  }
  list(namespace = namespace, resource = resource, as_of = as_of, columns = columns, filter = filter)
}

# TRUE: show progress after a second; FALSE: never; a number: after that many seconds.
bs_progress_delay <- function(progress, call) {
  if (isTRUE(progress)) return(1)
  if (isFALSE(progress) || is.null(progress)) return(-1)
  if (is.numeric(progress) && length(progress) == 1L && !is.na(progress) && progress >= 0) {
    return(as.numeric(progress))
  }
  bs_invalid("progress must be TRUE, FALSE or a number of seconds", call)
}
