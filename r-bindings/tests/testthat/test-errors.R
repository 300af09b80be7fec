# Errors are classed conditions with the service's message, and a failed write changes nothing.

frame <- function(k) data.frame(id = seq_len(k), label = rep(sprintf("v%d", k), k))

expect_batchstore_error <- function(expr, kind, pattern) {
  error <- expect_error(expr, class = paste0("batchstore_", kind))
  expect_s3_class(error, "batchstore_error")
  expect_identical(error$kind, kind)
  expect_match(conditionMessage(error), pattern)
  invisible(error)
}

test_that("a missing table is batchstore_not_found", {
  start_metastore()
  sf_create_table("sales", "something")
  missing <- expect_batchstore_error(sf_reader("sales", "nothing_here"), "not_found", "nothing_here")
  expect_identical(missing$what, "table")
  expect_identical(missing$name, "sales.nothing_here")
  missing <- expect_batchstore_error(sf_history("nowhere", "t", c(ds = 1L)), "not_found", "nowhere")
  expect_identical(missing$what, "namespace")
  expect_identical(missing$name, "nowhere")
  sf_writer(frame(1), "sales", "keyed", partitions = c(ds = "a"))
  missing <- expect_batchstore_error(sf_reader("sales", "keyed", c(ds = "b")), "not_found", "ds=b")
  expect_identical(missing$what, "partition")
  expect_identical(missing$name, "ds=b")
})

test_that("bare partition values on a missing table say how to create it", {
  start_metastore()
  expect_batchstore_error(
    sf_writer(frame(1), "sales", "new_table", partitions = c(20161031L)),
    "not_found", "sf_create_table"
  )
  expect_false("sales.new_table" %in% tryCatch(sf_tables("sales"), batchstore_not_found = function(e) character()))
})

test_that("a stale expected_batch is batchstore_conflict naming the winner, and changes nothing", {
  start_metastore()
  p <- c(ds = 1L)
  first <- sf_writer(frame(1), "sales", "cas", partitions = p)
  second <- sf_writer(frame(2), "sales", "cas", partitions = p, expected_batch = first$batch_id)
  conflict <- expect_batchstore_error(
    sf_writer(frame(3), "sales", "cas", partitions = p, expected_batch = first$batch_id),
    "conflict", second$batch_id
  )
  expect_identical(conflict$current_batch_id, second$batch_id)
  expect_identical(sf_reader("sales", "cas", p), frame(2))
  expect_identical(sf_history("sales", "cas", p)$version, 2:1)
  conflict <- expect_batchstore_error(
    sf_writer(frame(3), "sales", "cas", partitions = p, expected_batch = "-"),
    "conflict", "must be new|never been written|not at the expected"
  )
  expect_identical(conflict$current_batch_id, second$batch_id)
  fresh <- expect_batchstore_error(
    sf_writer(frame(3), "sales", "cas", partitions = c(ds = 2L), expected_batch = first$batch_id),
    "conflict", "no batch"
  )
  expect_null(fresh$current_batch_id)
})

test_that("a frame that does not match the schema is batchstore_schema_mismatch naming the column", {
  start_metastore()
  p <- c(ds = 1L)
  sf_writer(frame(2), "sales", "schema", partitions = p)
  wrong <- data.frame(id = c(1.5, 2.5), label = c("a", "b"))
  expect_batchstore_error(sf_writer(wrong, "sales", "schema", partitions = p), "schema_mismatch", "id")
  expect_identical(sf_reader("sales", "schema", p), frame(2))
  expect_identical(sf_history("sales", "schema", p)$version, 1L)
})

test_that("bad partition values are batchstore_invalid_argument", {
  start_metastore()
  expect_batchstore_error(sf_writer(frame(1), "s", "t", partitions = c(ds = 1.5)), "invalid_argument", "whole number")
  expect_batchstore_error(sf_writer(frame(1), "s", "t", partitions = c(ds = NA)), "invalid_argument", "NA")
  expect_batchstore_error(
    sf_writer(frame(1), "s", "t", partitions = list(ds = Sys.time())), "invalid_argument", "date and time"
  )
  expect_batchstore_error(sf_writer(frame(1), "s", "t", partitions = c(ds = "a", "b")), "invalid_argument", "name every")
  expect_batchstore_error(sf_writer(frame(1), "s", "t", partitions = c(ds = "")), "invalid_argument", ".")
})

test_that("columns batchstore cannot store are refused before anything is written", {
  start_metastore()
  p <- c(ds = 1L)
  listed <- data.frame(id = 1:2)
  listed$l <- list(1, "a")
  expect_batchstore_error(sf_writer(listed, "sales", "bad", partitions = p), "invalid_argument", "\"l\"")
  complex <- data.frame(z = complex(real = 1:2, imaginary = 0))
  expect_batchstore_error(sf_writer(complex, "sales", "bad", partitions = p), "invalid_argument", "\"z\"")
  lt <- data.frame(id = 1:2)
  lt$t <- as.POSIXlt(Sys.time() + 1:2)
  expect_batchstore_error(sf_writer(lt, "sales", "bad", partitions = p), "invalid_argument", "POSIXlt")
  bad_text <- data.frame(s = "caf\xe9")
  Encoding(bad_text$s) <- "bytes"
  expect_batchstore_error(sf_writer(bad_text, "sales", "bad", partitions = p), "invalid_argument", "UTF-8")
  expect_batchstore_error(sf_writer(list(a = 1), "sales", "bad", partitions = p), "invalid_argument", "data.frame")
  # Nothing was written, not even the namespace a first write would create.
  missing <- expect_batchstore_error(sf_reader("sales", "bad", p), "not_found", "namespace \"sales\"")
  expect_identical(missing$what, "namespace")
})

test_that("arguments are checked with clear messages", {
  start_metastore()
  expect_batchstore_error(sf_reader("sales", c("a", "b")), "invalid_argument", "resource")
  expect_batchstore_error(sf_reader("sales", "t", version = 1, tag = "x"), "invalid_argument", "at most one")
  expect_batchstore_error(sf_rollback("sales", "t", c(ds = 1L)), "invalid_argument", "exactly one")
  expect_batchstore_error(
    sf_writer(data.frame(x = 1), "sales", "t", c(ds = 1L), expected_batch = 42), "invalid_argument", "expected_batch"
  )
  expect_batchstore_error(sf_writer(data.frame(x = 1), "sales", "t", c(ds = 1L), message = NA), "invalid_argument", "message")
  expect_batchstore_error(sf_reader("sales", "t", con = "nope"), "invalid_argument", "sf_connect")
})

test_that("an unreachable metastore is batchstore_unavailable", {
  port <- free_port()
  expect_batchstore_error({
    sf_connect(sprintf("http://127.0.0.1:%d", port))
    sf_tables()
  }, "unavailable", "cannot reach the metastore")
})
