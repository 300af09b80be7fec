# Real servers for the tests: a `metastore serve` process (SQLite catalog) with its warehouse
# on the local disk or on moto's S3-compatible server, both on 127.0.0.1 and stopped when the
# test that started them ends.

bs_target_dir <- function() {
  dir <- Sys.getenv("CARGO_TARGET_DIR")
  if (!nzchar(dir)) dir <- file.path(Sys.getenv("HOME"), ".cache", "batchstore-target")
  dir
}

bs_binary <- function(name, override) {
  path <- Sys.getenv(override)
  if (!nzchar(path)) path <- file.path(bs_target_dir(), "debug", name)
  if (!file.exists(path)) {
    stop(path, " not found: run `cargo build --workspace` (make test does) or set ", override)
  }
  path
}

free_port <- function() {
  out <- system2("env", c(CLEAN_ENV, "python3", "-c", shQuote(paste(
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
  ))), stdout = TRUE)
  as.integer(out[1L])
}

# R runs children with its own LD_LIBRARY_PATH, which can make a Python built with a shared
# libpython load the system's libpython (and lose its site-packages); children get it unset.
CLEAN_ENV <- "-u LD_LIBRARY_PATH"

# Starts `command` in the background; returns its pid. Output goes to `log`.
spawn <- function(command, args, log, env = character()) {
  pid_file <- tempfile("pid")
  script <- sprintf(
    "echo $$ > %s; exec env %s %s %s > %s 2>&1",
    shQuote(pid_file), CLEAN_ENV, paste(env, collapse = " "),
    paste(shQuote(c(command, args)), collapse = " "), shQuote(log)
  )
  system2("sh", c("-c", shQuote(script)), wait = FALSE)
  wait_until(function() file.exists(pid_file) && length(readLines(pid_file, warn = FALSE)) == 1L,
             "the process did not start")
  as.integer(readLines(pid_file, warn = FALSE))
}

wait_until <- function(ready, what, seconds = 30) {
  deadline <- Sys.time() + seconds
  while (!isTRUE(ready())) {
    if (Sys.time() > deadline) stop(what)
    Sys.sleep(0.05)
  }
}

stop_process <- function(pid) {
  tools::pskill(pid, tools::SIGKILL)
}

# moto's S3 server with bucket "lake"; returns the AWS_* settings to reach it.
start_moto <- function(env = parent.frame()) {
  exe <- Sys.which("moto_server")
  if (!nzchar(exe)) stop("moto_server is not installed: pip install \"moto[server]\" (make test does)")
  port <- free_port()
  endpoint <- sprintf("http://127.0.0.1:%d", port)
  pid <- spawn(exe, c("-H", "127.0.0.1", "-p", port), tempfile("moto"))
  withr::defer(stop_process(pid), envir = env)
  wait_until(function() {
    code <- suppressWarnings(system2("curl", c("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                                               paste0(endpoint, "/lake")), stdout = TRUE, stderr = FALSE))
    length(code) == 1L && code == "200"
  }, "moto_server did not start")
  c(AWS_ENDPOINT_URL = endpoint, AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing",
    AWS_REGION = "us-east-1")
}

# A metastore on a free port with a fresh SQLite catalog; storage "local" or "s3". Connects
# the session's default connection to it (unless `connect = FALSE`) and returns
# list(endpoint, env, warehouse). `args` are further `metastore serve` flags.
start_metastore <- function(storage = "local", env = parent.frame(), args = character(), connect = TRUE) {
  dir <- tempfile("batchstore")
  dir.create(dir)
  withr::defer(unlink(dir, recursive = TRUE), envir = env)
  settings <- character()
  warehouse <- file.path(dir, "warehouse")
  if (storage == "s3") {
    settings <- start_moto(env)
    warehouse <- "s3://lake/warehouse"
    old <- Sys.getenv(names(settings), unset = NA, names = TRUE)
    do.call(Sys.setenv, as.list(settings))
    withr::defer(restore_env(old), envir = env)
  }
  log <- file.path(dir, "metastore.log")
  pid <- spawn(
    bs_binary("metastore", "BATCHSTORE_METASTORE_BIN"),
    c("serve", "--listen", "127.0.0.1:0", "--database-url",
      sprintf("sqlite://%s?mode=rwc", file.path(dir, "catalog.db")), "--warehouse", warehouse, args),
    log, env = c("BATCHSTORE_LOG=warn", sprintf("%s=%s", names(settings), settings))
  )
  withr::defer(stop_process(pid), envir = env)
  wait_until(function() file.exists(log) && any(grepl("^listening on ", readLines(log, warn = FALSE))),
             "the metastore did not start")
  line <- grep("^listening on ", readLines(log, warn = FALSE), value = TRUE)[1L]
  endpoint <- paste0("http://", sub("^listening on ", "", line))
  if (connect) sf_connect(endpoint)
  list(endpoint = endpoint, settings = settings, warehouse = warehouse, dir = dir)
}

restore_env <- function(old) {
  for (name in names(old)) {
    if (is.na(old[[name]])) Sys.unsetenv(name) else do.call(Sys.setenv, setNames(list(old[[name]]), name))
  }
}

# Runs Python code with the batchstore package against `server`; returns its stdout lines.
run_python <- function(server, code) {
  script <- tempfile(fileext = ".py")
  writeLines(code, script)
  env <- c(sprintf("BATCHSTORE_ENDPOINT=%s", server$endpoint),
           sprintf("%s=%s", names(server$settings), server$settings))
  out <- suppressWarnings(system2("env", c(CLEAN_ENV, env, "python3", script), stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0) stop("python failed:\n", paste(out, collapse = "\n"))
  out
}

python_has_batchstore <- function() {
  identical(suppressWarnings(system2("env", c(CLEAN_ENV, "python3", "-c", shQuote("import batchstore")),
                                     stdout = FALSE, stderr = FALSE)), 0L)
}

skip_without_python <- function() {
  if (python_has_batchstore()) return(invisible())
  if (identical(Sys.getenv("BATCHSTORE_REQUIRE_PYTHON"), "1")) {
    stop("the Python package is not installed (make test-python installs it)")
  }
  testthat::skip("the batchstore Python package is not installed")
}

# tablectl against `server`; stops with its stderr when it fails.
run_tablectl <- function(server, ...) {
  out <- suppressWarnings(system2(bs_binary("tablectl", "BATCHSTORE_TABLECTL_BIN"),
                                  c("--endpoint", server$endpoint, ...), stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0) stop("tablectl failed:\n", paste(out, collapse = "\n"))
  out
}
