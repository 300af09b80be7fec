# Reads across partitions written differently: columns are matched by name, never by position,
# and factors whose partitions have different level counts (dictionary index widths) read back
# every value, with no NA made up.

rows_of <- function(df, ds) df[df$ds == ds, setdiff(names(df), "ds"), drop = FALSE]

test_that("columns in another order in another partition are matched by name", {
  start_metastore()
  sf_writer(data.frame(a = 1:2, b = c("x", "y")), "sales", "order", partitions = c(ds = "1"))
  sf_writer(data.frame(b = c("z", "w"), a = 3:4), "sales", "order", partitions = c(ds = "2"))
  whole <- sf_reader("sales", "order")
  expect_identical(sort(names(whole)), c("a", "b", "ds"))
  expect_identical(nrow(whole), 4L)
  expect_identical(rows_of(whole, "1")$a, 1:2)
  expect_identical(rows_of(whole, "1")$b, c("x", "y"))
  expect_identical(rows_of(whole, "2")$a, 3:4)
  expect_identical(rows_of(whole, "2")$b, c("z", "w"))
  # A projection is matched by name too, in both partitions.
  only_a <- sf_reader("sales", "order", columns = "a")
  expect_false("b" %in% names(only_a))
  expect_identical(rows_of(only_a, "1")$a, 1:2)
  expect_identical(rows_of(only_a, "2")$a, 3:4)
})

test_that("a factor with 3 levels in one partition and 300 in another reads every value", {
  start_metastore()
  few <- c("a", "b", "c")
  many <- sprintf("v%03d", 1:300)
  sf_writer(data.frame(f = factor(few)), "sales", "cats", partitions = c(ds = "1"))
  sf_writer(data.frame(f = factor(many)), "sales", "cats", partitions = c(ds = "2"))
  for (order in list(NULL, list(c(ds = "2"), c(ds = "1")))) {
    whole <- sf_reader("sales", "cats", partitions = order)
    expect_s3_class(whole$f, "factor")
    expect_identical(nrow(whole), 303L)
    expect_false(anyNA(whole$f))
    expect_setequal(levels(whole$f), c(few, many))
    expect_identical(as.character(rows_of(whole, "1")$f), few)
    expect_identical(as.character(rows_of(whole, "2")$f), many)
  }
})
