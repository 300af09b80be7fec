# Tokens, grants, TLS and mutual TLS from R, against a real metastore that authenticates. The
# certificates come from the `testkit` binary (the same generator as the Rust and Python suites).

token_entry <- function(name, token) {
  hash <- system2(bs_binary("metastore", "BATCHSTORE_METASTORE_BIN"), c("token", "hash"),
                  input = token, stdout = TRUE)
  sprintf('[[principal]]\nname = "%s"\ngroups = []\ntoken_sha256 = "%s"\n', name, hash)
}

start_secured <- function(env = parent.frame()) {
  dir <- tempfile("secured")
  dir.create(dir)
  withr::defer(unlink(dir, recursive = TRUE), envir = env)
  tls <- file.path(dir, "tls")
  system2(bs_binary("testkit", "BATCHSTORE_TESTKIT_BIN"), c("tls", tls))
  tokens <- file.path(dir, "tokens.toml")
  writeLines(c(token_entry("root", "root-token"), token_entry("alice", "alice-token")), tokens)
  server <- start_metastore(env = env, connect = FALSE, args = c(
    "--token-file", tokens, "--admin", "root",
    "--tls-cert", file.path(tls, "server.pem"), "--tls-key", file.path(tls, "server.key"),
    "--tls-client-ca", file.path(tls, "ca.pem")
  ))
  server$endpoint <- sub("^http://127.0.0.1", "https://localhost", server$endpoint)
  server$tls <- tls
  old <- Sys.getenv(c("BATCHSTORE_TOKEN", "BATCHSTORE_TOKEN_FILE", "BATCHSTORE_CA_FILE",
                      "BATCHSTORE_CLIENT_CERT", "BATCHSTORE_CLIENT_KEY"), unset = NA, names = TRUE)
  Sys.unsetenv(names(old))
  withr::defer(restore_env(old), envir = env)
  server
}

connect_as <- function(server, token = NULL, ..., ca_file = file.path(server$tls, "ca.pem"),
                       client_cert = file.path(server$tls, "client.pem"),
                       client_key = file.path(server$tls, "client.key"), default = FALSE) {
  sf_connect(server$endpoint, default = default, token = token, ca_file = ca_file,
             client_cert = client_cert, client_key = client_key, ...)
}

tablectl_as_root <- function(server, ...) {
  out <- suppressWarnings(system2(
    bs_binary("tablectl", "BATCHSTORE_TABLECTL_BIN"),
    c("--endpoint", server$endpoint, "--token", "root-token",
      "--ca-file", file.path(server$tls, "ca.pem"),
      "--client-cert", file.path(server$tls, "client.pem"),
      "--client-key", file.path(server$tls, "client.key"), ...),
    stdout = TRUE, stderr = TRUE))
  status <- attr(out, "status")
  if (!is.null(status) && status != 0) stop("tablectl failed:\n", paste(out, collapse = "\n"))
  out
}

test_that("tokens and grants decide what an R session may do, over mutual TLS", {
  server <- start_secured()
  root <- connect_as(server, "root-token")
  sf_create_table("sales", "items", keys = "ds", con = root)

  none <- expect_error(sf_tables("sales", con = connect_as(server)), class = "batchstore_unauthenticated")
  expect_match(conditionMessage(none), "no token; set BATCHSTORE_TOKEN")
  expect_error(sf_tables("sales", con = connect_as(server, "guess")), class = "batchstore_unauthenticated")

  token_file <- tempfile()
  writeLines("alice-token", token_file)
  alice <- connect_as(server, token_file = token_file)
  denied <- expect_error(sf_reader("sales", "items", partitions = c(ds = "1"), con = alice),
                         class = "batchstore_permission_denied")
  expect_match(conditionMessage(denied), "alice has no grant on sales, read is needed")
  tablectl_as_root(server, "grant", "read", "sales", "alice")
  denied <- expect_error(sf_writer(data.frame(x = 1:3), "sales", "items", partitions = c(ds = "1"), con = alice),
                         class = "batchstore_permission_denied")
  expect_match(conditionMessage(denied), "alice has read on sales, write is needed")
  tablectl_as_root(server, "grant", "write", "sales", "alice")
  sf_writer(data.frame(x = 1:3), "sales", "items", partitions = c(ds = "1"), con = alice)
  expect_identical(sf_reader("sales", "items", partitions = c(ds = "1"), con = alice)$x, 1:3)
  expect_identical(sf_history("sales", "items", c(ds = "1"), con = root)$actor, "alice")
})

test_that("TLS failures are clear conditions", {
  server <- start_secured()
  wrong <- expect_error(sf_tables(con = connect_as(server, "root-token",
                                                   ca_file = file.path(server$tls, "wrong-ca.pem"))),
                        class = "batchstore_unavailable")
  expect_match(conditionMessage(wrong), "certificate", ignore.case = TRUE)
  expect_error(sf_tables(con = connect_as(server, "root-token", client_cert = NULL, client_key = NULL)),
               class = "batchstore_unavailable")
  plain <- sub("^https://localhost", "http://127.0.0.1", server$endpoint)
  refused <- expect_error(sf_tables(con = sf_connect(plain, default = FALSE, token = "root-token")),
                          class = "batchstore_unavailable")
  expect_match(conditionMessage(refused), "https://", fixed = TRUE)
})
