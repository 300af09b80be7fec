# An interrupt (Ctrl-C) during sf_writer cancels it: a batchstore_cancelled condition, and the
# partition exactly as it was.

# Batch ids in `state`, read from the test server's SQLite catalog.
batches_of <- function(server, state) {
  query <- sprintf("import sqlite3; print('\\n'.join(r[0] for r in sqlite3.connect('%s').execute(\"SELECT batch_id FROM batches WHERE state = '%s'\")))",
                   file.path(server$dir, "catalog.db"), state)
  out <- suppressWarnings(system2("env", c(CLEAN_ENV, "python3", "-c", shQuote(query)), stdout = TRUE, stderr = FALSE))
  out[nzchar(out)]
}

test_that("an interrupted write raises batchstore_cancelled and leaves the partition as it was", {
  server <- start_metastore()
  p <- c(ds = 1L)
  sf_writer(data.frame(x = 1:3), "sales", "interrupted", partitions = p)
  before <- sf_history("sales", "interrupted", p)

  child <- tempfile(fileext = ".R")
  marker <- tempfile("writing")
  outcome <- tempfile("outcome")
  writeLines(c(
    "library(batchstore)",
    sprintf("sf_connect(%s)", deparse(server$endpoint)),
    # Numbers only: nothing slow happens in R between 'ready' and the native write, and
    # 256 MB of random doubles take seconds to encode and store.
    "df <- as.data.frame(matrix(runif(4e6 * 8), ncol = 8))",
    sprintf("writeLines('ready', %s)", deparse(marker)),
    "result <- tryCatch({",
    "  sf_writer(df, 'sales', 'interrupted', partitions = c(ds = 1L))",
    "  'committed'",
    "}, batchstore_cancelled = function(e) paste('cancelled:', conditionMessage(e), '| committed:', deparse(e$committed)),",
    "   interrupt = function(e) 'interrupted before the write started')",
    sprintf("writeLines(result, %s)", deparse(outcome))
  ), child)
  pid <- spawn(file.path(R.home("bin"), "Rscript"), child, tempfile("child"))
  wait_until(function() file.exists(marker), "the child did not get ready", seconds = 120)
  # Interrupt once the write has begun its batch (it is uploading then).
  wait_until(function() length(batches_of(server, "pending")) == 1L, "the write did not begin", seconds = 120)
  begun <- batches_of(server, "pending")
  tools::pskill(pid, tools::SIGINT)
  wait_until(function() file.exists(outcome) && length(readLines(outcome)) == 1L,
             "the child did not finish", seconds = 120)
  expect_match(readLines(outcome), "^cancelled: interrupted; nothing was committed")
  expect_match(readLines(outcome), "[|] committed: character[(]0[)]$")
  expect_identical(sf_history("sales", "interrupted", p), before)
  expect_identical(sf_reader("sales", "interrupted", p), data.frame(x = 1:3))
  # The interrupted write's batch was given up at once (aborted), not left to its lease.
  expect_match(run_tablectl(server, "batch", begun), paste0("batch ", begun, " .*: aborted"))
  expect_length(batches_of(server, "pending"), 0L)
})
