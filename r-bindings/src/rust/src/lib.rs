//! The native half of the batchstore R package.
//!
//! Entry points are thin: read the arguments, run the client's operation on the shared runtime
//! (`runtime`), convert data frames (`frame_in`, `frame_out`) and records (`records`). They
//! never throw: failures come back as `batchstore_native_error` values (`errors`), which the
//! R functions turn into classed conditions. The R-facing API lives in `R/`.

mod args;
mod errors;
mod frame_in;
mod frame_out;
mod host;
mod progress;
mod records;
mod rstrings;
mod runtime;
mod rvalues;

use batchstore_client::{
    Client, ClientError, ConnectOptions, GcScope, KeyPredicate, KeyType, LeaseName,
    PartitionColumns, PartitionData, PartitionKey, ReadRequest, Retention, RollbackTo, Rows,
    Selector, TableName, TagTarget, WriteOptions, WriteRequest,
};
use errors::{BindingError, Outcome, to_r};
use extendr_api::prelude::*;
use progress::Counter;
use runtime::{run, run_showing};
use std::sync::Arc;

/// Runs `body` with the connection's client and the table `namespace`.`table`, and returns
/// its value, or its error as a `batchstore_native_error`.
fn on_table(
    client: &Robj,
    namespace: &Robj,
    table: &Robj,
    body: impl FnOnce(Client, TableName) -> Outcome<Robj>,
) -> Robj {
    to_r(args::client(client).and_then(|client| body(client, args::table(namespace, table)?)))
}

/// Connects to a metastore (`endpoint` NULL: BATCHSTORE_ENDPOINT, else the local default).
/// Credentials left NULL come from the environment (`BATCHSTORE_TOKEN`, `BATCHSTORE_CA_FILE`,
/// ...), as the client decides.
#[extendr]
fn bs_connect(
    endpoint: Robj,
    token: Robj,
    token_file: Robj,
    ca_file: Robj,
    client_cert: Robj,
    client_key: Robj,
    local_server: Robj,
) -> Robj {
    to_r((|| {
        let path = |value: &Robj| args::optional_text(value).map(std::path::PathBuf::from);
        let options = ConnectOptions {
            endpoint: args::optional_text(&endpoint),
            token: args::optional_text(&token),
            token_file: path(&token_file),
            ca_file: path(&ca_file),
            client_cert: path(&client_cert),
            client_key: path(&client_key),
            local_server: Some(args::texts(&local_server, "local_server")?)
                .filter(|c| !c.is_empty()),
        };
        let client = run(async move { Client::connect_with(options).await })?;
        Ok(ExternalPtr::new(client).into())
    })())
}

/// Serves the local home named by `BATCHSTORE_HOME` until it is idle: the server a client
/// starts on demand (`Rscript -e 'batchstore:::bs_serve_home()'`).
#[extendr]
fn bs_serve_home() -> Robj {
    to_r(
        batchstore_metastore::home::serve_home()
            .map(|()| Robj::from(true))
            .map_err(|e| BindingError::Client(ClientError::Unavailable(format!("{e:#}")))),
    )
}

#[extendr]
fn bs_endpoint(client: Robj) -> Robj {
    to_r(args::client(&client).map(|c| c.endpoint().into()))
}

#[extendr]
fn bs_create_namespace(client: Robj, name: Robj, if_not_exists: Robj) -> Robj {
    to_r((|| {
        let client = args::client(&client)?;
        let name = args::text(&name, "namespace")?;
        let if_not_exists = args::flag(&if_not_exists);
        let created = run(async move { client.create_namespace(&name, if_not_exists).await })?;
        Ok(created.into())
    })())
}

/// `key_names` and `key_types` (string, int64, date) in key order.
#[extendr]
fn bs_create_table(
    client: Robj,
    namespace: Robj,
    table: Robj,
    key_names: Robj,
    key_types: Robj,
    if_not_exists: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let names = key_names.as_str_vector().unwrap_or_default();
        let types = key_types.as_str_vector().unwrap_or_default();
        if names.len() != types.len() {
            return Err(BindingError::InvalidArgument(
                "give one type per partition key".to_owned(),
            ));
        }
        let keys = names
            .iter()
            .zip(types)
            .map(|(n, t)| {
                Ok(PartitionKey {
                    name: (*n).to_owned(),
                    key_type: KeyType::parse(t)?,
                })
            })
            .collect::<Outcome<Vec<_>>>()?;
        let if_not_exists = args::flag(&if_not_exists);
        let created = run(async move {
            client
                .create_table(&name, &keys, None, if_not_exists)
                .await
                .map(|(_, created)| created)
        })?;
        Ok(created.into())
    })
}

/// A list: namespace, table, key_names, key_types, columns, types, partition_count.
#[extendr]
fn bs_get_table(client: Robj, namespace: Robj, table: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let info = run(async move { client.get_table(&name).await })?;
        Ok(list!(
            namespace = info.name.namespace.as_str(),
            table = info.name.table.as_str(),
            key_names = Strings::from_values(info.partition_keys.iter().map(|k| k.name.as_str())),
            key_types = Strings::from_values(info.partition_keys.iter().map(|k| k.key_type.name())),
            columns = Strings::from_values(info.columns.iter().map(|c| c.0.as_str())),
            types = Strings::from_values(info.columns.iter().map(|c| c.1.as_str())),
            partition_count = info.partition_count as f64
        )
        .into())
    })
}

#[extendr]
fn bs_list_tables(client: Robj, namespace: Robj) -> Robj {
    to_r((|| {
        let client = args::client(&client)?;
        let namespace = args::optional_text(&namespace);
        let tables = run(async move { client.list_tables(namespace.as_deref()).await })?;
        let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
        Ok(Strings::from_values(&names).into())
    })())
}

/// Writes `frame` (with `rows` rows) as a new version of one partition; `inputs` are the
/// batches it was computed from (lineage). A missing table is created from the partition's
/// named values.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn bs_write(
    client: Robj,
    namespace: Robj,
    table: Robj,
    frame: Robj,
    rows: Robj,
    partition: Robj,
    expected_batch: Robj,
    message: Robj,
    inputs: Robj,
    progress: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let rows = args::optional_number(&rows, "rows")?.unwrap_or(0).max(0) as usize;
        let batch = frame_in::to_record_batch(&frame, rows)?;
        let schema = batch.schema();
        let data = PartitionData {
            partition: records::partition(&partition)?,
            expected: args::expected(&expected_batch),
            data: Rows::Batches(schema, vec![batch]),
        };
        let request = WriteRequest {
            table: name,
            partitions: vec![data],
            message: args::optional_text(&message).unwrap_or_default(),
            inputs: args::texts(&inputs, "inputs")?,
        };
        let counter = args::progress_delay(&progress).map(|d| Arc::new(Counter::new("writing", d)));
        let shown = counter
            .clone()
            .map(|c| c as Arc<dyn batchstore_client::Progress>);
        let options = WriteOptions {
            create_table_if_missing: true,
            ..WriteOptions::default()
        };
        let cancel = options.cancel.clone();
        let committed = run_showing(
            async move { client.write_partitions(request, &options, shown).await },
            counter.as_deref(),
            Some(&cancel),
        )?;
        records::commits(&committed)
    })
}

/// The read request of `sf_reader`/`sf_scan`'s arguments. `filter`: conditions on partition
/// keys as text (`"ds >= 2024-01-01"`), parsed by the client.
#[allow(clippy::too_many_arguments)]
fn read_request(
    name: TableName,
    partitions: &Robj,
    version: &Robj,
    batch_id: &Robj,
    tag: &Robj,
    as_of: &Robj,
    columns: &Robj,
    filter: &Robj,
) -> Outcome<ReadRequest> {
    let selector = Selector::choose(
        args::optional_number(version, "version")?,
        args::optional_text(batch_id),
        args::optional_text(tag),
        args::optional_time(as_of)?,
    )?;
    let columns = if columns.is_null() {
        None
    } else {
        Some(args::texts(columns, "columns")?)
    };
    Ok(ReadRequest {
        table: Some(name),
        partitions: records::partitions(partitions)?,
        selector,
        columns,
        filter: args::texts(filter, "filter")?
            .iter()
            .map(|text| KeyPredicate::parse(text))
            .collect::<batchstore_client::Result<_>>()?,
        partition_columns: PartitionColumns::Auto,
        parallelism: 0,
    })
}

/// Reads partitions (empty list: all) as a data.frame. `selector`: current, version, batch,
/// tag or as_of (value in seconds since the epoch).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn bs_read(
    client: Robj,
    namespace: Robj,
    table: Robj,
    partitions: Robj,
    version: Robj,
    batch_id: Robj,
    tag: Robj,
    as_of: Robj,
    columns: Robj,
    filter: Robj,
    progress: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let request = read_request(
            name,
            &partitions,
            &version,
            &batch_id,
            &tag,
            &as_of,
            &columns,
            &filter,
        )?;
        let counter = args::progress_delay(&progress).map(|d| Arc::new(Counter::new("reading", d)));
        let shown = counter
            .clone()
            .map(|c| c as Arc<dyn batchstore_client::Progress>);
        let result = run_showing(
            async move { client.read(&request, shown).await },
            counter.as_deref(),
            None,
        )?;
        frame_out::to_data_frame(&result.schema, &result.batches)
    })
}

/// The files of a selection as a data.frame (one row per file), its schema as an attribute.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn bs_manifest(
    client: Robj,
    namespace: Robj,
    table: Robj,
    partitions: Robj,
    version: Robj,
    batch_id: Robj,
    tag: Robj,
    as_of: Robj,
    columns: Robj,
    filter: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let request = read_request(
            name,
            &partitions,
            &version,
            &batch_id,
            &tag,
            &as_of,
            &columns,
            &filter,
        )?;
        let manifest = run(async move { client.manifest(&request).await })?;
        records::manifest(&manifest)
    })
}

#[extendr]
fn bs_history(client: Robj, namespace: Robj, table: Robj, partition: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let partition = records::partition(&partition)?;
        let entries = run(async move { client.history(&name, &partition).await })?;
        records::history(&entries)
    })
}

#[extendr]
#[allow(clippy::too_many_arguments)]
fn bs_rollback(
    client: Robj,
    namespace: Robj,
    table: Robj,
    partition: Robj,
    to_version: Robj,
    to_batch: Robj,
    expected_batch: Robj,
    message: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let partition = records::partition(&partition)?;
        let target = match (
            args::optional_number(&to_version, "to_version")?,
            args::optional_text(&to_batch),
        ) {
            (Some(v), None) => RollbackTo::Version(v),
            (None, Some(b)) => RollbackTo::Batch(b),
            _ => {
                return Err(BindingError::InvalidArgument(
                    "give exactly one of to_version and to_batch".to_owned(),
                ));
            }
        };
        let expected = args::expected(&expected_batch);
        let message = args::optional_text(&message).unwrap_or_default();
        let committed = run(async move {
            client
                .rollback(&name, &partition, target, expected, &message)
                .await
        })?;
        records::commits(std::slice::from_ref(&committed))
    })
}

#[extendr]
fn bs_partitions(client: Robj, namespace: Robj, table: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let partitions = run(async move { client.partitions(&name).await })?;
        records::partition_list(&partitions)
    })
}

/// Tags a partition's version (0: current), or a batch when `batch_id` is given.
#[extendr]
fn bs_create_tag(
    client: Robj,
    namespace: Robj,
    table: Robj,
    name: Robj,
    partition: Robj,
    version: Robj,
    batch_id: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, table| {
        let name = args::text(&name, "tag name")?;
        let target = match args::optional_text(&batch_id) {
            Some(batch) => TagTarget::Batch(batch),
            None => TagTarget::Version(
                records::partition(&partition)?,
                args::optional_number(&version, "version")?.unwrap_or(0),
            ),
        };
        let tag = run(async move { client.create_tag(&table, &name, target).await })?;
        records::tags(std::slice::from_ref(&tag))
    })
}

#[extendr]
fn bs_list_tags(client: Robj, namespace: Robj, table: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let tags = run(async move { client.list_tags(&name).await })?;
        records::tags(&tags)
    })
}

/// Sets a table's retention (`table` NULL: the namespace's default). Returns the effective
/// retention: a list of keep_versions and keep_seconds (NULL when unset).
#[extendr]
fn bs_set_retention(
    client: Robj,
    namespace: Robj,
    table: Robj,
    keep_versions: Robj,
    keep_for: Robj,
) -> Robj {
    to_r(args::client(&client).and_then(|client| {
        let namespace = args::text(&namespace, "namespace")?;
        let table = args::optional_text(&table);
        let retention = Retention {
            keep_versions: args::optional_number(&keep_versions, "keep_versions")?,
            keep_for: args::optional_duration(&keep_for, "keep_for")?,
        };
        let effective = run(async move {
            client
                .set_retention(&namespace, table.as_deref(), &retention)
                .await
        })?;
        Ok(list!(
            keep_versions = effective.keep_versions.map(|n| n as f64),
            keep_seconds = effective.keep_for.map(|d| d.as_secs_f64())
        )
        .into())
    }))
}

#[extendr]
fn bs_undrop_table(client: Robj, namespace: Robj, table: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, name| {
        let info = run(async move { client.undrop_table(&name).await })?;
        Ok(info.name.to_string().into())
    })
}

/// Takes a named lease on a selection; returns it as a one-row data.frame.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn bs_acquire_lease(
    client: Robj,
    namespace: Robj,
    table: Robj,
    name: Robj,
    partition: Robj,
    version: Robj,
    batch_id: Robj,
    tag: Robj,
    as_of: Robj,
    ttl: Robj,
) -> Robj {
    on_table(&client, &namespace, &table, |client, table| {
        let name = args::text(&name, "lease name")?;
        let partitions = records::partitions(&partition)?;
        let selector = Selector::choose(
            args::optional_number(&version, "version")?,
            args::optional_text(&batch_id),
            args::optional_text(&tag),
            args::optional_time(&as_of)?,
        )?;
        let ttl = args::optional_duration(&ttl, "ttl")?;
        let lease = run(async move {
            client
                .acquire_lease(&table, &partitions, &selector, &name, ttl)
                .await
        })?;
        records::leases(std::slice::from_ref(&lease))
    })
}

/// Extends a named lease; returns when it now expires.
#[extendr]
fn bs_extend_lease(client: Robj, namespace: Robj, table: Robj, name: Robj, ttl: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, table| {
        let lease = LeaseName::Named(table, args::text(&name, "lease name")?);
        let ttl = args::optional_duration(&ttl, "ttl")?;
        let until = run(async move { client.extend_lease(&lease, ttl).await })?;
        records::time(&until)
    })
}

#[extendr]
fn bs_release_lease(client: Robj, namespace: Robj, table: Robj, name: Robj) -> Robj {
    on_table(&client, &namespace, &table, |client, table| {
        let lease = LeaseName::Named(table, args::text(&name, "lease name")?);
        let released = run(async move { client.release_lease(&lease).await })?;
        Ok(released.into())
    })
}

#[extendr]
fn bs_leases(client: Robj, namespace: Robj, table: Robj) -> Robj {
    to_r(args::client(&client).and_then(|client| {
        let namespace = args::optional_text(&namespace);
        let table = args::optional_text(&table);
        let leases = run(async move {
            client
                .leases(namespace.as_deref(), table.as_deref(), false)
                .await
        })?;
        records::leases(&leases)
    }))
}

/// Runs garbage collection to the end (NULL namespace: everything).
#[extendr]
fn bs_collect_garbage(client: Robj, namespace: Robj, table: Robj, dry_run: Robj) -> Robj {
    to_r(args::client(&client).and_then(|client| {
        let scope = match (args::optional_text(&namespace), args::optional_text(&table)) {
            (None, _) => GcScope::All,
            (Some(ns), None) => GcScope::Namespace(ns),
            (Some(ns), Some(t)) => GcScope::Table(TableName::new(ns, t)),
        };
        let dry_run = args::flag(&dry_run);
        let counts = run(async move { client.collect_garbage(&scope, dry_run, |_| {}).await })?;
        records::gc_counts(&counts.done)
    }))
}

extendr_module! {
    mod batchstore;
    fn bs_connect;
    fn bs_serve_home;
    fn bs_endpoint;
    fn bs_create_namespace;
    fn bs_create_table;
    fn bs_get_table;
    fn bs_list_tables;
    fn bs_write;
    fn bs_read;
    fn bs_manifest;
    fn bs_history;
    fn bs_rollback;
    fn bs_partitions;
    fn bs_create_tag;
    fn bs_list_tags;
    fn bs_set_retention;
    fn bs_undrop_table;
    fn bs_acquire_lease;
    fn bs_extend_lease;
    fn bs_release_lease;
    fn bs_leases;
    fn bs_collect_garbage;
}
