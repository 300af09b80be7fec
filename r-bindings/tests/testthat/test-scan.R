# sf_scan lists exactly the files a selection reads (with partition values, rows and the read
# schema); sf_reader(filter =) and sf_scan(filter =) resolve only the matching partitions, on
# the local disk and on S3 (moto).

for (storage in c("local", "s3")) {
  test_that(sprintf("sf_scan and filters select exactly the matching partitions (%s)", storage), {
    start_metastore(storage)
    for (d in 1:6) {
      sf_writer(data.frame(x = rep(d, d), y = letters[seq_len(d)]), "sc", "t",
                partitions = c(ds = d))
    }
    sf_writer(data.frame(x = 99L, y = "z"), "sc", "t", partitions = c(ds = 2L))

    m <- sf_scan("sc", "t", filter = c("ds >= 2", "ds < 5"))
    expect_setequal(m$ds, c("2", "3", "4"))
    expect_identical(nrow(m), 3L)
    expect_identical(m$rows[order(m$ds)], c(1, 3, 4))
    expect_true(all(m$size_bytes > 0))
    expect_true(all(startsWith(m$uri, if (storage == "s3") "s3://" else "file://")))
    if (storage == "local") expect_true(all(file.exists(m$path)))
    schema <- attr(m, "schema")
    expect_identical(schema$name, c("x", "y", "ds"))
    expect_identical(unname(attr(m, "storage")[["kind"]]), storage)

    # Pinned selections: version 1 of ds=2 is the first write.
    v1 <- sf_scan("sc", "t", version = 1, filter = "ds in (2, 6)")
    expect_identical(v1$rows[order(v1$ds)], c(2, 6))

    got <- sf_reader("sc", "t", filter = c("ds in (1, 6)"))
    expect_setequal(unique(got$ds), c(1, 6))
    expect_identical(nrow(got), 7L)
    none <- sf_reader("sc", "t", filter = "ds > 100", columns = "x")
    expect_identical(nrow(none), 0L)

    err <- expect_error(sf_reader("sc", "t", filter = "ds ~ 1"), class = "batchstore_invalid_argument")
    expect_match(conditionMessage(err), "partition filter")
    err <- expect_error(sf_scan("sc", "t", filter = "x = 1"), class = "batchstore_invalid_argument")
    expect_match(conditionMessage(err), "not a partition key")
    expect_error(sf_reader("sc", "t", filter = 1), class = "batchstore_invalid_argument")
  })
}
