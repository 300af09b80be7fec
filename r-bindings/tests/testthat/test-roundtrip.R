# Every supported column type, with NA in each, comes back identical, on the local disk and S3.

every_type <- function() {
  ny <- as.POSIXct("2024-03-10 01:30:00", tz = "America/New_York") + c(0.5, NA, 3600.25, -86400)
  utc <- as.POSIXct("1969-12-31 23:59:59", tz = "UTC") + c(0, 1.5, NA, 1e9)
  data.frame(
    num = c(1.5, NA, NaN, -Inf),
    int = c(1L, NA, .Machine$integer.max, -.Machine$integer.max),
    lgl = c(TRUE, NA, FALSE, TRUE),
    chr = c("plain", NA, "", "na\u00efve \u2713 \U0001F600"),
    fct = factor(c("b", NA, "a", "b"), levels = c("b", "unused", "a")),
    ord = factor(c("low", "high", NA, "mid"), levels = c("low", "mid", "high"), ordered = TRUE),
    day = as.Date(c("2016-10-31", NA, "1900-02-28", "2100-12-31")),
    ny = ny,
    utc = utc,
    stringsAsFactors = FALSE
  )
}

for (storage in c("local", "s3")) {
  test_that(paste("every column type round-trips identically on", storage), {
    start_metastore(storage)
    df <- every_type()
    committed <- sf_writer(df, "sales", "types", partitions = c(ds = 20161031L))
    expect_equal(committed$version, 1L)
    expect_equal(committed$rows, 4)
    back <- sf_reader("sales", "types", c(ds = 20161031L))
    expect_identical(back, df)
    expect_identical(levels(back$fct), c("b", "unused", "a"))
    expect_identical(attr(back$ny, "tzone"), "America/New_York")
  })
}

test_that("a time without a time zone stays one; sub-microsecond times are equal to 1 us", {
  start_metastore()
  df <- data.frame(at = as.POSIXct(c("2024-01-02 03:04:05", NA)), now = Sys.time() + c(0, 1))
  attr(df$at, "tzone") <- NULL
  sf_writer(df, "sales", "times", partitions = c(ds = "x"))
  back <- sf_reader("sales", "times", c(ds = "x"))
  expect_null(attr(back$at, "tzone"))
  expect_identical(back$at, df$at)
  expect_lt(max(abs(as.numeric(back$now) - as.numeric(df$now))), 1e-6)
})

test_that("text in another encoding is stored as UTF-8", {
  start_metastore()
  latin1 <- data.frame(s = c("caf\xe9", "plain"))
  Encoding(latin1$s) <- "latin1"
  sf_writer(latin1, "sales", "latin1", partitions = c(ds = 1L))
  back <- sf_reader("sales", "latin1", c(ds = 1L))
  expect_identical(back$s, c("caf\u00e9", "plain"))
})

test_that("row names are not stored, and the writer says so", {
  start_metastore()
  expect_warning(sf_writer(mtcars, "cars", "mtcars", partitions = c(ds = 1L)), "row names")
  back <- sf_reader("cars", "mtcars", c(ds = 1L))
  expect_identical(back, `rownames<-`(mtcars, NULL))
})

test_that("an empty frame and a frame of one column keep their types", {
  start_metastore()
  empty <- every_type()[0, ]
  sf_writer(empty, "sales", "empty", partitions = c(ds = 1L))
  back <- sf_reader("sales", "empty", c(ds = 1L))
  expect_identical(back, empty)
  one <- data.frame(x = seq_len(1e5) / 7)
  sf_writer(one, "sales", "one", partitions = c(ds = 1L))
  expect_identical(sf_reader("sales", "one", c(ds = 1L)), one)
})

test_that("a frame larger than one file (1,048,576 rows) comes back whole and in order", {
  start_metastore()
  n <- 1200000L
  # Text that repeats (R strings made once and reused) and text that never does.
  df <- data.frame(i = seq_len(n), s = rep_len(c("a", "bb", NA, "ccc"), n), u = sprintf("u%d", seq_len(n)))
  shown <- capture.output(sf_writer(df, "sales", "big", partitions = c(ds = 1L), progress = 0), type = "message")
  expect_match(paste(shown, collapse = "\n"), "writing: 1200000 rows, [0-9.]+ MB stored data")
  back <- sf_reader("sales", "big", c(ds = 1L), progress = FALSE)
  expect_identical(back, df)
  expect_error(sf_reader("sales", "big", c(ds = 1L), progress = "yes"), class = "batchstore_invalid_argument")
})
