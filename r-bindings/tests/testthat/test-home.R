# No server to start: with no endpoint configured (and nothing at the default address), R and
# two Python processes at once store and load through one local metastore in a fresh home,
# started on demand, which stops once nobody is connected.

test_that("R and Python processes share a local home started on demand", {
  skip_without_python()
  # The interpreter itself: a pyenv shim would look for its versions under the new HOME.
  python <- system2("env", c(CLEAN_ENV, "python3", "-c", shQuote("import sys; print(sys.executable)")),
                    stdout = TRUE)[1L]
  user <- tempfile("user")
  dir.create(user)
  old <- Sys.getenv(c("HOME", "BATCHSTORE_ENDPOINT", "BATCHSTORE_HOME", "XDG_DATA_HOME",
                      "BATCHSTORE_IDLE_SECONDS"), unset = NA)
  withr::defer(restore_env(old))
  Sys.unsetenv(c("BATCHSTORE_ENDPOINT", "BATCHSTORE_HOME", "XDG_DATA_HOME"))
  Sys.setenv(HOME = user, BATCHSTORE_IDLE_SECONDS = "2")
  home <- file.path(user, ".local", "share", "batchstore")

  script <- tempfile(fileext = ".py")
  writeLines(c(
    "import sys, pandas as pd, batchstore as bs",
    "name = sys.argv[1]",
    "assert bs.Client().endpoint.startswith('local:')",
    "for i in range(5):",
    "    bs.store_dataframe(pd.DataFrame({'x': [i] * 2}), 'home', name, partitions={'ds': i})",
    "    shared = pd.DataFrame({'x': pd.array([i], dtype='int32')})  # R's integers",
    "    bs.store_dataframe(shared, 'home', 'shared', partitions={'ds': 0})",
    "print('done', len(bs.load_dataframe('home', name)))"
  ), script)
  outs <- vapply(c("py1", "py2"), function(name) {
    out <- tempfile(name)
    system2("env", c(CLEAN_ENV, python, script, name), stdout = out, stderr = out, wait = FALSE)
    out
  }, character(1))

  con <- sf_connect(default = FALSE)
  expect_match(con$endpoint, "^local:")
  for (i in 1:5) {
    sf_writer(data.frame(x = rep(i, 3L)), "home", "from_r", partitions = c(ds = i), con = con)
    sf_writer(data.frame(x = i), "home", "shared", partitions = c(ds = 0L), con = con)
  }
  wait_until(function() all(vapply(outs, function(f) {
    any(grepl("^done", readLines(f, warn = FALSE)))
  }, logical(1))), "the Python processes to finish", 120)
  for (f in outs) expect_true("done 10" %in% readLines(f, warn = FALSE))
  expect_identical(nrow(sf_reader("home", "from_r", con = con)), 15L)
  expect_identical(nrow(sf_reader("home", "py1", con = con)), 10L)
  # 15 writes of the shared partition from three processes: 15 versions.
  expect_setequal(sf_history("home", "shared", c(ds = 0L), con = con)$version, 1:15)
  expect_true(file.exists(file.path(home, "catalog.db")))

  # Once R lets go of its connection, nobody is connected: the server stops.
  rm(con)
  gc()
  wait_until(function() !file.exists(file.path(home, "metastore.sock")), "the server to stop when idle", 30)
  expect_false(file.exists(file.path(home, "metastore.sock")))
})
