# Lifecycle: retention, dropped tables, leases and garbage collection.

# Sets how many old versions garbage collection keeps, for a table or (resource NULL) as the
# namespace's default. keep_versions = N keeps the last N versions of each partition (1: only
# the current one); keep_for (seconds, a difftime, or text such as "30d") keeps every version
# that was current within that long. A version is kept when any rule keeps it; with none,
# every version is kept. Current, tagged and leased batches are always kept. Returns the
# effective retention as a list(keep_versions, keep_seconds).
sf_set_retention <- function(namespace, resource = NULL, keep_versions = NULL, keep_for = NULL, con = NULL) {
  call <- sys.call()
  namespace <- bs_name(namespace, "namespace", call)
  if (!is.null(resource)) resource <- bs_name(resource, "resource", call)
  invisible(bs_check(bs_native$set_retention(bs_pointer(con), namespace, resource, keep_versions, keep_for), call))
}

# Brings back the most recently dropped table of this name, with its data and history.
sf_undrop_table <- function(namespace, resource, con = NULL) {
  call <- sys.call()
  invisible(bs_check(bs_native$undrop_table(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call)
  ), call))
}

# Pins a selection (default: the current version of every partition) against garbage
# collection under `name` for `ttl` (seconds, a difftime or text such as "7d"; default the
# metastore's, one day). Returns the lease as a one-row data.frame.
sf_lease <- function(namespace, resource, name, partitions = NULL, version = NULL, batch_id = NULL,
                     tag = NULL, as_of = NULL, ttl = NULL, con = NULL) {
  call <- sys.call()
  if (inherits(as_of, "POSIXlt")) as_of <- as.POSIXct(as_of)
  bs_check(bs_native$acquire_lease(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_name(name, "name", call), bs_many_partitions(partitions, call), version, batch_id, tag, as_of, ttl
  ), call)
}

# Extends a lease to `ttl` from now (the catalog's clock); returns its new expiry.
sf_renew_lease <- function(namespace, resource, name, ttl = NULL, con = NULL) {
  call <- sys.call()
  bs_check(bs_native$extend_lease(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_name(name, "name", call), ttl
  ), call)
}

# Releases a lease; FALSE when it had already run out or been released.
sf_release_lease <- function(namespace, resource, name, con = NULL) {
  call <- sys.call()
  bs_check(bs_native$release_lease(
    bs_pointer(con), bs_name(namespace, "namespace", call), bs_name(resource, "resource", call),
    bs_name(name, "name", call)
  ), call)
}

# Live named leases, soonest to expire first.
sf_leases <- function(namespace = NULL, resource = NULL, con = NULL) {
  call <- sys.call()
  if (!is.null(namespace)) namespace <- bs_name(namespace, "namespace", call)
  if (!is.null(resource)) resource <- bs_name(resource, "resource", call)
  bs_check(bs_native$leases(bs_pointer(con), namespace, resource), call)
}

# Runs garbage collection to the end (everything, a namespace, or one table); returns what it
# did as a one-row data.frame. With dry_run = TRUE nothing changes.
sf_collect_garbage <- function(namespace = NULL, resource = NULL, dry_run = FALSE, con = NULL) {
  call <- sys.call()
  if (!is.null(namespace)) namespace <- bs_name(namespace, "namespace", call)
  if (!is.null(resource)) resource <- bs_name(resource, "resource", call)
  bs_check(bs_native$collect_garbage(bs_pointer(con), namespace, resource, isTRUE(dry_run)), call)
}
