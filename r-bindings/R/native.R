# The native entry points (src/rust/src/lib.rs). Each returns its value, or a
# `batchstore_native_error` that bs_check() (errors.R) raises as a classed condition.

bs_native <- list(
  connect = function(endpoint, token, token_file, ca_file, client_cert, client_key, local_server)
    .Call(wrap__bs_connect, endpoint, token, token_file, ca_file, client_cert, client_key, local_server),
  serve_home = function() .Call(wrap__bs_serve_home),
  endpoint = function(client) .Call(wrap__bs_endpoint, client),
  create_namespace = function(client, name, if_not_exists) {
    .Call(wrap__bs_create_namespace, client, name, if_not_exists)
  },
  create_table = function(client, namespace, table, key_names, key_types, if_not_exists) {
    .Call(wrap__bs_create_table, client, namespace, table, key_names, key_types, if_not_exists)
  },
  get_table = function(client, namespace, table) .Call(wrap__bs_get_table, client, namespace, table),
  list_tables = function(client, namespace) .Call(wrap__bs_list_tables, client, namespace),
  write = function(client, namespace, table, frame, rows, partition, expected_batch, message, inputs, progress) {
    .Call(wrap__bs_write, client, namespace, table, frame, rows, partition, expected_batch, message, inputs,
          progress)
  },
  read = function(client, namespace, table, partitions, version, batch_id, tag, as_of, columns, filter, progress) {
    .Call(wrap__bs_read, client, namespace, table, partitions, version, batch_id, tag, as_of, columns, filter,
          progress)
  },
  manifest = function(client, namespace, table, partitions, version, batch_id, tag, as_of, columns, filter) {
    .Call(wrap__bs_manifest, client, namespace, table, partitions, version, batch_id, tag, as_of, columns, filter)
  },
  history = function(client, namespace, table, partition) {
    .Call(wrap__bs_history, client, namespace, table, partition)
  },
  rollback = function(client, namespace, table, partition, to_version, to_batch, expected_batch, message) {
    .Call(wrap__bs_rollback, client, namespace, table, partition, to_version, to_batch, expected_batch, message)
  },
  partitions = function(client, namespace, table) .Call(wrap__bs_partitions, client, namespace, table),
  create_tag = function(client, namespace, table, name, partition, version, batch_id) {
    .Call(wrap__bs_create_tag, client, namespace, table, name, partition, version, batch_id)
  },
  list_tags = function(client, namespace, table) .Call(wrap__bs_list_tags, client, namespace, table),
  set_retention = function(client, namespace, table, keep_versions, keep_for) {
    .Call(wrap__bs_set_retention, client, namespace, table, keep_versions, keep_for)
  },
  undrop_table = function(client, namespace, table) .Call(wrap__bs_undrop_table, client, namespace, table),
  acquire_lease = function(client, namespace, table, name, partition, version, batch_id, tag, as_of, ttl) {
    .Call(wrap__bs_acquire_lease, client, namespace, table, name, partition, version, batch_id, tag, as_of, ttl)
  },
  extend_lease = function(client, namespace, table, name, ttl) {
    .Call(wrap__bs_extend_lease, client, namespace, table, name, ttl)
  },
  release_lease = function(client, namespace, table, name) {
    .Call(wrap__bs_release_lease, client, namespace, table, name)
  },
  leases = function(client, namespace, table) .Call(wrap__bs_leases, client, namespace, table),
  collect_garbage = function(client, namespace, table, dry_run) {
    .Call(wrap__bs_collect_garbage, client, namespace, table, dry_run)
  }
)
