# sf_writer / sf_reader of a 2,000,000-row data.frame next to base R's saveRDS / readRDS of the
# same frame (compress = FALSE and the default gzip), in one run, on the local disk.
#
#   make bench-r            (release build of the package and the metastore)
#   Rscript bench/r/sf_bench.R [rows] [repeats]
#
# Reports the best of `repeats` runs of each, in seconds and MB/s of the frame's memory size.

suppressPackageStartupMessages(library(batchstore))

args <- commandArgs(trailingOnly = TRUE)
rows <- if (length(args) >= 1L) as.integer(args[1L]) else 2000000L
repeats <- if (length(args) >= 2L) as.integer(args[2L]) else 3L

source(file.path("r-bindings", "tests", "testthat", "helper-servers.R"))

make_frame <- function(n) {
  set.seed(42)
  data.frame(
    id = seq_len(n),
    amount = round(runif(n, 0, 1000), 2),
    quantity = sample.int(50L, n, replace = TRUE),
    returned = sample(c(TRUE, FALSE, NA), n, replace = TRUE, prob = c(0.05, 0.94, 0.01)),
    store = factor(sample(sprintf("store_%03d", 1:200), n, replace = TRUE)),
    sku = sprintf("SKU-%07d", sample.int(500000L, n, replace = TRUE)),
    day = as.Date("2016-10-31") - sample.int(365L, n, replace = TRUE),
    sold_at = as.POSIXct("2016-10-31", tz = "UTC") + sample.int(86400L * 365L, n, replace = TRUE)
  )
}

best_of <- function(f) {
  times <- vapply(seq_len(repeats), function(i) {
    gc(verbose = FALSE)
    unname(system.time(f())["elapsed"])
  }, numeric(1))
  min(times)
}

main <- function() {
  env <- environment()
  server <- start_metastore("local", env = env)
  df <- make_frame(rows)
  mb <- as.numeric(object.size(df)) / 1e6
  rds <- tempfile(fileext = ".rds")
  withr::defer(unlink(rds), envir = env)
  cat(sprintf("frame: %d rows, %d columns, %.1f MB in memory; %d cores; best of %d\n",
              rows, ncol(df), mb, parallel::detectCores(), repeats))

  results <- list()
  add <- function(what, seconds, bytes = NA_real_) {
    results[[length(results) + 1L]] <<- data.frame(
      operation = what, seconds = round(seconds, 3), MB_per_s = round(mb / seconds, 1),
      file_MB = round(bytes / 1e6, 1)
    )
  }

  add("saveRDS(compress = FALSE)", best_of(function() saveRDS(df, rds, compress = FALSE)), file.size(rds))
  add("readRDS (uncompressed)", best_of(function() readRDS(rds)))
  add("saveRDS (default gzip)", best_of(function() saveRDS(df, rds)), file.size(rds))
  add("readRDS (default gzip)", best_of(function() readRDS(rds)))

  version <- 0L
  add("sf_writer", best_of(function() {
    version <<- sf_writer(df, "bench", "sold_items", partitions = c(ds = 20161031L))$version
  }), sf_history("bench", "sold_items", c(ds = 20161031L))$bytes[1])
  back <- NULL
  add("sf_reader", best_of(function() back <<- sf_reader("bench", "sold_items", c(ds = 20161031L))))
  if (!identical(back, df)) stop("sf_reader did not return the frame sf_writer wrote")

  table <- do.call(rbind, results)
  print(table, row.names = FALSE)
  gzip_read <- table$seconds[table$operation == "readRDS (default gzip)"]
  sf_read <- table$seconds[table$operation == "sf_reader"]
  cat(sprintf("\nsf_reader vs readRDS (default gzip): %.2fx faster (aim: > 1)\n", gzip_read / sf_read))
  cat(sprintf("sf_writer vs saveRDS (default gzip): %.2fx faster\n",
              table$seconds[table$operation == "saveRDS (default gzip)"] /
                table$seconds[table$operation == "sf_writer"]))
}

main()
