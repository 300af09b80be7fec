# Versions, selectors, history, rollback, tags and partition naming.

frame <- function(k) data.frame(id = seq_len(k), label = rep(sprintf("v%d", k), k))

test_that("writes make versions; every selector reads the right one", {
  start_metastore()
  for (k in 1:3) sf_writer(frame(k), "sales", "sold_items", partitions = c(ds = 20161031L), message = sprintf("load %d", k))
  p <- c(ds = 20161031L)
  expect_identical(sf_reader("sales", "sold_items", p), frame(3))
  expect_identical(sf_reader("sales", "sold_items", p, version = 2), frame(2))
  history <- sf_history("sales", "sold_items", p)
  expect_identical(history$version, 3:1)
  expect_identical(history$message, c("load 3", "load 2", "load 1"))
  expect_identical(history$current, c(TRUE, FALSE, FALSE))
  expect_s3_class(history$committed_at, "POSIXct")
  expect_identical(sf_reader("sales", "sold_items", p, batch_id = history$batch_id[3]), frame(1))
  expect_identical(sf_reader("sales", "sold_items", p, columns = "label"), frame(3)["label"])
  sf_tag("sales", "sold_items", "golden", p, version = 2)
  expect_identical(sf_tags("sales", "sold_items")$name, "golden")
  expect_identical(sf_reader("sales", "sold_items", p, tag = "golden"), frame(2))
  expect_identical(sf_reader("sales", "sold_items", p, as_of = Sys.time()), frame(3))
  # A time that has not come yet could still change, so it is refused rather than answered.
  expect_error(
    sf_reader("sales", "sold_items", p, as_of = Sys.time() + 3600),
    class = "batchstore_invalid_argument"
  )
})

test_that("rollback appends a version that points at the older batch", {
  start_metastore()
  p <- c(ds = 20161031L)
  for (k in 1:3) sf_writer(frame(k), "sales", "sold_items", partitions = p)
  before <- sf_history("sales", "sold_items", p)
  rolled <- sf_rollback("sales", "sold_items", p, to_version = 2)
  expect_equal(rolled$version, 4L)
  expect_identical(rolled$batch_id, before$batch_id[before$version == 2])
  expect_identical(sf_reader("sales", "sold_items", p), frame(2))
  after <- sf_history("sales", "sold_items", p)
  expect_identical(after$version, 4:1)
  expect_identical(after$operation[1], "rollback")
  expect_identical(sf_reader("sales", "sold_items", p, version = 3), frame(3))
})

test_that("partition values name the same partition whatever their R type", {
  start_metastore()
  sf_writer(frame(2), "sales", "by_day", partitions = c(ds = 20161031))
  expect_identical(sf_reader("sales", "by_day", c(ds = 20161031L)), frame(2))
  expect_identical(sf_reader("sales", "by_day", c(ds = "20161031")), frame(2))
  expect_identical(sf_reader("sales", "by_day", list(ds = 20161031)), frame(2))
  expect_identical(sf_reader("sales", "by_day", 20161031L), frame(2))
  expect_identical(sf_partitions("sales", "by_day")$partition, "ds=20161031")

  sf_writer(frame(1), "sales", "by_date", partitions = list(day = as.Date("2016-10-31"), region = "eu"))
  expect_identical(sf_reader("sales", "by_date", c(day = "2016-10-31", region = "eu")), frame(1))
  expect_identical(sf_reader("sales", "by_date", list(list(as.Date("2016-10-31"), "eu"))), frame(1))
  expect_identical(sf_partitions("sales", "by_date")$partition, "day=2016-10-31/region=eu")
})

test_that("a hostile partition value is escaped: it stays inside the warehouse and reads back", {
  server <- start_metastore()
  sf_writer(frame(1), "sales", "hostile", partitions = c(ds = "../../outside"))
  expect_identical(sf_reader("sales", "hostile", c(ds = "../../outside")), frame(1))
  expect_identical(sf_partitions("sales", "hostile")$partition, "ds=../../outside")
  expect_false(file.exists(file.path(server$dir, "outside")))
  expect_false(file.exists(file.path(dirname(server$dir), "outside")))
})

test_that("reading many partitions adds the keys as typed columns", {
  start_metastore()
  sf_writer(frame(1), "sales", "many", partitions = c(ds = 20161031L))
  sf_writer(frame(2), "sales", "many", partitions = c(ds = 20161101L))
  all <- sf_reader("sales", "many")
  all <- all[order(all$ds, all$id), ]
  rownames(all) <- NULL
  expect_identical(all$ds, c(20161031L, 20161101L, 20161101L))
  expect_identical(all$label, c("v1", "v2", "v2"))
  two <- sf_reader("sales", "many", list(c(ds = 20161031L), c(ds = 20161101L)))
  expect_identical(nrow(two), 3L)
})

test_that("sf_create_table makes bare partition values usable", {
  start_metastore()
  sf_create_table("sales", "sold_items", keys = c(ds = "int64"))
  sf_writer(frame(2), namespace = "sales", resource = "sold_items", partitions = c(20161031L))
  expect_identical(sf_reader(namespace = "sales", resource = "sold_items", partitions = c(20161031L)), frame(2))
  expect_true("sales.sold_items" %in% sf_tables("sales"))
})

test_that("the default connection comes from BATCHSTORE_ENDPOINT", {
  server <- start_metastore()
  withr::local_envvar(BATCHSTORE_ENDPOINT = server$endpoint)
  con <- sf_connect()
  expect_identical(con$endpoint, server$endpoint)
  expect_output(print(con), server$endpoint, fixed = TRUE)
})

test_that("a second connection can be used beside the default one", {
  first <- start_metastore()
  sf_writer(data.frame(x = 1L), "a", "t", partitions = c(ds = 1L))
  second <- start_metastore()
  other <- sf_connect(first$endpoint, default = FALSE)
  expect_identical(sf_tables(), character())
  expect_identical(sf_tables(con = other), "a.t")
  expect_identical(sf_reader("a", "t", c(ds = 1L), con = other), data.frame(x = 1L))
})
