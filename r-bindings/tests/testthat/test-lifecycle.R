# Retention, leases and garbage collection from R: a long sf_reader of an old version survives
# a GC sweep run beside it, leased versions stay, expired ones are refused with when and why.

values <- function(v) data.frame(x = rep(as.integer(v), 10L))

test_that("retention, a lease and GC keep exactly what they promise", {
  start_metastore()
  p <- c(ds = "1")
  for (v in 1:4) sf_writer(values(v), "lc", "t", partitions = p)
  effective <- sf_set_retention("lc", "t", keep_versions = 1)
  expect_identical(effective$keep_versions, 1)
  lease <- sf_lease("lc", "t", "job-1", partitions = list(p), version = 1, ttl = "1h")
  expect_identical(lease$name, "job-1")
  expect_true(lease$expires_at > Sys.time() + 50 * 60)
  expect_identical(sf_leases("lc")$name, "job-1")
  dry <- sf_collect_garbage("lc", "t", dry_run = TRUE)
  expect_identical(dry$batches_expired, 2)
  expect_identical(sf_reader("lc", "t", p, version = 2), values(2))
  done <- sf_collect_garbage("lc", "t")
  expect_identical(done$batches_deleted, 2)
  expect_identical(sf_reader("lc", "t", p, version = 1), values(1))
  err <- expect_error(sf_reader("lc", "t", p, version = 2), class = "batchstore_not_found")
  expect_match(conditionMessage(err), "expired by garbage collection")
  history <- sf_history("lc", "t", p)
  expect_identical(history$version[!is.na(history$expired_at)], c(3L, 2L))
  expect_true(sf_renew_lease("lc", "t", "job-1", ttl = as.difftime(2, units = "hours")) > Sys.time() + 110 * 60)
  expect_true(sf_release_lease("lc", "t", "job-1"))
  expect_false(sf_release_lease("lc", "t", "job-1"))
  expect_identical(sf_collect_garbage("lc", "t")$batches_expired, 1)
  expect_identical(sf_reader("lc", "t", p), values(4))
})

test_that("a long sf_reader of an old version survives GC run beside it", {
  server <- start_metastore()
  p <- c(ds = "1")
  for (v in 1:3) sf_writer(values(v), "lc", "t", partitions = p)
  sf_set_retention("lc", keep_versions = 1)
  out <- tempfile()
  # tablectl runs GC 0.8 s from now, while the read below is paused between resolve and fetch.
  system2("sh", c("-c", shQuote(sprintf(
    "sleep 0.8; exec env %s %s --endpoint %s --json gc --table lc > %s 2>&1", CLEAN_ENV,
    shQuote(bs_binary("tablectl", "BATCHSTORE_TABLECTL_BIN")), server$endpoint, shQuote(out)
  ))), wait = FALSE)
  withr::local_envvar(BATCHSTORE_DEBUG_READ_PAUSE_MS = "2500")
  frame <- sf_reader("lc", "t", p, version = 1)
  expect_identical(frame, values(1))
  wait_until(function() file.exists(out) && any(grepl("batches_expired", readLines(out, warn = FALSE))),
             "tablectl gc did not finish")
  ran <- paste(readLines(out), collapse = "\n")
  # Version 2 went; version 1 was under the read's own lease.
  expect_match(ran, '"batches_expired": 1')
})

test_that("durations and lease names are checked before anything changes", {
  start_metastore()
  sf_writer(values(1), "lc", "t", partitions = c(ds = "1"))
  expect_error(sf_set_retention("lc", "t", keep_for = "soon"), class = "batchstore_invalid_argument")
  expect_error(sf_set_retention("lc", "t", keep_versions = 0), class = "batchstore_invalid_argument")
  expect_error(sf_lease("lc", "t", "no spaces"), class = "batchstore_invalid_argument")
  expect_identical(sf_set_retention("lc", "t", keep_for = "7d")$keep_seconds, 7 * 86400)
  expect_identical(sf_set_retention("lc", "t", keep_for = 3600)$keep_seconds, 3600)
})

test_that("a table evolves additively; R reads every batch in the current schema", {
  skip_without_python()
  server <- start_metastore()
  sf_writer(data.frame(a = c(1L, 1L), b = c("one", "one")), "lc", "e", partitions = c(ds = "1"))
  err <- expect_error(
    sf_writer(data.frame(a = c(2L, 2L), b = c("two", "two"), c = c(2.5, 2.5)), "lc", "e", partitions = c(ds = "2")),
    class = "batchstore_schema_mismatch"
  )
  expect_match(conditionMessage(err), "additive schema policy would allow")
  run_tablectl(server, "table", "set-schema-policy", "lc.e", "additive")
  sf_writer(data.frame(a = c(2L, 2L), b = c("two", "two"), c = c(2.5, 2.5)), "lc", "e", partitions = c(ds = "2"))
  sf_writer(data.frame(a = c(3L, 3L), b = c("three", "three")), "lc", "e", partitions = c(ds = "3"))
  # The widened column comes from Python (R has no 64-bit integers of its own).
  run_python(server, c(
    "import batchstore as bs, pandas as pd",
    "bs.store_dataframe(pd.DataFrame({'a': pd.array([4, 4], dtype='int64'), 'b': ['four', 'four'], 'c': [4.5, 4.5]}), 'lc', 'e', partitions={'ds': '3'})"
  ))
  read <- function() {
    frame <- sf_reader("lc", "e")
    frame[order(frame$ds), c("ds", "a", "b", "c")]
  }
  frame <- read()
  expect_identical(frame$a, c(1L, 1L, 2L, 2L, 4L, 4L))
  expect_identical(frame$c, c(NA, NA, 2.5, 2.5, 4.5, 4.5))
  sf_rollback("lc", "e", c(ds = "3"), to_version = 1)
  frame <- read()
  expect_identical(frame$a[5:6], c(3L, 3L))
  expect_identical(frame$b[5:6], c("three", "three"))
  expect_identical(frame$c[5:6], c(NA_real_, NA_real_))
})
