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
                      message = "", progress = interactive(), con = NULL) {
  call <- sys.call()
  namespace <- bs_name(namespace, "namespace", call)
  resource <- bs_name(resource, "resource", call)
  frame <- bs_prepare_frame(data, call)
  partition <- bs_one_partition(partitions, call)
  if (!is.null(expected_batch)) expected_batch <- bs_name(expected_batch, "expected_batch", call)
  message <- bs_text(message, "message", call)
  pointer <- bs_pointer(con)
  write <- function() {
    bs_native$write(pointer, namespace, resource, frame, nrow(data), partition, expected_batch, message,
                    bs_progress_delay(progress, call))
  }
  result <- write()
  if (bs_is_error(result, "not_found") && bs_table_missing(pointer, namespace, resource)) {
    if (is.null(names(partition)) && length(partition) > 0L) {
      stop(bs_condition("not_found", paste0(
        result$message, " With bare partition values batchstore cannot tell the key names: create ",
        "the table first with sf_create_table(\"", namespace, "\", \"", resource, "\", keys = c(ds = \"int64\")), ",
        "or name the values, as in partitions = c(ds = 20161031L), to create it on the first write."
      ), call))
    }
    key_types <- vapply(seq_along(partitions), function(i) {
      bs_key_type(if (is.list(partitions)) partitions[[i]] else partitions[i])
    }, character(1))
    bs_check(bs_native$create_namespace(pointer, namespace, TRUE), call)
    bs_check(bs_native$create_table(pointer, namespace, resource, names(partition), key_types, TRUE), call)
    result <- write()
  }
  invisible(bs_check(result, call))
}

bs_table_missing <- function(pointer, namespace, resource) {
  bs_is_error(bs_native$get_table(pointer, namespace, resource), "not_found")
}

sf_reader <- function(namespace, resource, partitions = NULL, version = NULL, batch_id = NULL,
                      tag = NULL, as_of = NULL, columns = NULL, progress = interactive(), con = NULL) {
  call <- sys.call()
  namespace <- bs_name(namespace, "namespace", call)
  resource <- bs_name(resource, "resource", call)
  chosen <- Filter(Negate(is.null), list(version = version, batch = batch_id, tag = tag, as_of = as_of))
  if (length(chosen) > 1L) bs_invalid("give at most one of version, batch_id, tag and as_of", call)
  selector <- if (length(chosen)) names(chosen) else "current"
  value <- if (length(chosen)) chosen[[1L]] else NULL
  if (length(value) != 1L && !is.null(value)) bs_invalid(sprintf("%s must be a single value", selector), call)
  if (selector == "as_of") value <- bs_seconds(value, call)
  if (!is.null(columns)) {
    if (!is.character(columns) || anyNA(columns)) bs_invalid("columns must be a character vector of column names", call)
    columns <- enc2utf8(columns)
  }
  bs_check(bs_native$read(
    bs_pointer(con), namespace, resource, bs_many_partitions(partitions, call), selector, value, columns,
    bs_progress_delay(progress, call)
  ), call)
}

# A time as seconds since the epoch: POSIXct, a Date (its midnight UTC) or text
# ("2024-05-01 12:00:00", read as UTC).
bs_seconds <- function(when, call) {
  seconds <- if (inherits(when, "POSIXt")) {
    as.numeric(as.POSIXct(when))
  } else if (inherits(when, "Date")) {
    as.numeric(when) * 86400
  } else if (is.character(when)) {
    as.numeric(as.POSIXct(when, tz = "UTC", optional = TRUE))
  } else {
    NA_real_
  }
  if (is.na(seconds)) bs_invalid("as_of must be a POSIXct time, a Date or text such as \"2024-05-01 12:00:00\"", call)
  seconds
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
