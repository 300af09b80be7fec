# Connections to a metastore. One default connection per session, made on first use, so most
# code never calls sf_connect(); every function also takes `con =` for a second metastore.

bs_state <- new.env(parent = emptyenv())

# Credentials left NULL come from the environment: BATCHSTORE_TOKEN (else the first line of
# BATCHSTORE_TOKEN_FILE), BATCHSTORE_CA_FILE, BATCHSTORE_CLIENT_CERT and BATCHSTORE_CLIENT_KEY.
sf_connect <- function(endpoint = NULL, default = TRUE, token = NULL, token_file = NULL,
                       ca_file = NULL, client_cert = NULL, client_key = NULL) {
  if (!is.null(endpoint) && !(is.character(endpoint) && length(endpoint) == 1L && !is.na(endpoint))) {
    bs_invalid("endpoint must be a single string such as \"http://127.0.0.1:50051\"")
  }
  strings <- list(token = token, token_file = token_file, ca_file = ca_file,
                  client_cert = client_cert, client_key = client_key)
  for (name in names(strings)) {
    value <- strings[[name]]
    if (!is.null(value) && !(is.character(value) && length(value) == 1L && !is.na(value))) {
      bs_invalid(paste0(name, " must be a single string or NULL"))
    }
  }
  pointer <- bs_check(bs_native$connect(endpoint, token, token_file, ca_file, client_cert, client_key,
                                        bs_local_server()))
  con <- structure(
    list(pointer = pointer, endpoint = bs_check(bs_native$endpoint(pointer))),
    class = "batchstore_connection"
  )
  if (isTRUE(default)) bs_state$default <- con
  invisible(con)
}

# How this R runs a local metastore when none is configured: Rscript serving the home
# (BATCHSTORE_HOME) with this very package.
bs_local_server <- function() {
  library_dir <- dirname(system.file(package = "batchstore"))
  c(file.path(R.home("bin"), "Rscript"), "--vanilla", "-e",
    sprintf("library(batchstore, lib.loc = %s); batchstore:::bs_serve_home()", deparse(library_dir)))
}

# Serves the local home until it is idle (what bs_local_server() runs).
bs_serve_home <- function() invisible(bs_check(bs_native$serve_home()))

# The default connection, made from BATCHSTORE_ENDPOINT on first use.
bs_default_connection <- function() {
  if (is.null(bs_state$default)) sf_connect()
  bs_state$default
}

bs_pointer <- function(con) {
  if (is.null(con)) con <- bs_default_connection()
  if (!inherits(con, "batchstore_connection")) {
    bs_invalid("con must be a connection made by sf_connect()", sys.call(-2))
  }
  con$pointer
}

print.batchstore_connection <- function(x, ...) {
  cat("<batchstore connection to ", x$endpoint, ">\n", sep = "")
  invisible(x)
}
