//! The work behind each `tablectl` command: call the client library, print the result.

use crate::cli::*;
use crate::files;
use crate::lifecycle;
use crate::output::{self, partition_object, size, time};
use crate::progress::Bar;
use anyhow::{Result, bail};
use batchstore_client::{
    AuditQuery, Client, CommitInfo, ConnectOptions, Expected, Grantee, KeyPredicate, KeyType,
    PartitionData, PartitionKey, PartitionSpec, PartitionValue, Permission, Progress, ReadRequest,
    RollbackTo, Rows, Selector, TableName, TagTarget, WriteOptions, WriteRequest,
    describe_partition, parse_time,
};
use serde_json::json;
use std::sync::Arc;

/// Runs one parsed command.
///
/// # Errors
/// Whatever the command met; the caller prints it as one line.
pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::connect_with(ConnectOptions {
        endpoint: cli.endpoint.clone(),
        token: cli.token.clone(),
        token_file: cli.token_file.clone(),
        ca_file: cli.ca_file.clone(),
        client_cert: cli.client_cert.clone(),
        client_key: cli.client_key.clone(),
        local_server: local_server(),
    })
    .await?;
    let json = cli.json;
    match cli.command {
        Command::Namespace(command) => namespace(&client, command, json).await,
        Command::Table(command) => table(&client, command, json).await,
        Command::Write(args) => write(&client, args, json).await,
        Command::Read(args) => read(&client, args, json).await,
        Command::Manifest(args) => manifest(&client, args, json).await,
        Command::Partitions(args) => {
            partitions(&client, &TableName::parse(&args.table)?, json).await
        }
        Command::History(args) => history(&client, args, json).await,
        Command::Rollback(args) => rollback(&client, args, json).await,
        Command::Tag(command) => tag(&client, command, json).await,
        Command::Batch { batch_id } => batch(&client, &batch_id, json).await,
        Command::Lineage { batch_id } => lineage(&client, &batch_id, json).await,
        Command::Grant {
            permission,
            namespace,
            grantee,
        } => {
            let grant = client
                .grant(
                    &namespace,
                    &Grantee::parse(&grantee),
                    Permission::parse(&permission)?,
                )
                .await?;
            let human = format!(
                "granted {} on {} to {}",
                grant.permission.as_str(),
                grant.namespace,
                grant.grantee
            );
            output::done(json, serde_json::to_value(&grant)?, human)
        }
        Command::Revoke { namespace, grantee } => {
            let grantee = Grantee::parse(&grantee);
            let revoked = client.revoke(&namespace, &grantee).await?;
            let human = if revoked {
                format!("revoked {grantee}'s grant on {namespace}")
            } else {
                format!("{grantee} had no grant on {namespace}")
            };
            output::done(json, json!({ "revoked": revoked }), human)
        }
        Command::Grants { namespace } => grants(&client, namespace.as_deref(), json).await,
        Command::Audit(args) => audit(&client, args, json).await,
        Command::Lease(command) => lifecycle::lease(&client, command, json).await,
        Command::Leases { scope, reads } => {
            lifecycle::leases(&client, scope.as_deref(), reads, json).await
        }
        Command::Gc(args) => lifecycle::gc(&client, args, json).await,
        Command::Whoami => {
            let me = client.who_am_i().await?;
            let human = if me.authenticated {
                format!(
                    "{} (groups: {})",
                    me.principal,
                    if me.groups.is_empty() {
                        "none".to_owned()
                    } else {
                        me.groups.join(", ")
                    }
                )
            } else {
                format!(
                    "{} (the metastore does not authenticate; this is the actor you claim)",
                    me.principal
                )
            };
            output::done(json, serde_json::to_value(&me)?, human)
        }
    }
}

/// `-p` values → a partition spec: `KEY=VALUE` when KEY looks like a key name, else positional.
/// The values are text; the client's one rule makes them canonical.
fn partition_spec(values: &[String]) -> Result<PartitionSpec> {
    Ok(PartitionSpec::from_values(
        values
            .iter()
            .map(|text| match text.split_once('=') {
                Some((key, value)) if looks_like_key(key) => {
                    (Some(key.to_owned()), PartitionValue::Text(value.to_owned()))
                }
                _ => (None, PartitionValue::Text(text.clone())),
            })
            .collect(),
    )?)
}

/// The `-p` values of a selection: none = every partition, else the one partition they name.
pub(crate) fn partition_specs(values: &[String]) -> Result<Vec<PartitionSpec>> {
    Ok(if values.is_empty() {
        Vec::new()
    } else {
        vec![partition_spec(values)?]
    })
}

fn looks_like_key(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn expected(text: Option<String>) -> Option<Expected> {
    text.as_deref().map(Expected::parse)
}

async fn namespace(client: &Client, command: NamespaceCommand, json: bool) -> Result<()> {
    match command {
        NamespaceCommand::Create {
            name,
            if_not_exists,
        } => {
            let created = client.create_namespace(&name, if_not_exists).await?;
            if json {
                output::json(&json!({ "namespace": name, "created": created }))
            } else {
                println!(
                    "{} namespace {name}",
                    if created { "created" } else { "kept existing" }
                );
                Ok(())
            }
        }
        NamespaceCommand::List => {
            let namespaces = client.list_namespaces().await?;
            if json {
                let list: Vec<_> = namespaces
                    .iter()
                    .map(|(n, t)| json!({ "name": n, "created_at": t }))
                    .collect();
                return output::json(&list);
            }
            output::table(
                &["namespace", "created"],
                namespaces
                    .iter()
                    .map(|(n, t)| vec![n.clone(), time(t)])
                    .collect(),
            );
            Ok(())
        }
        NamespaceCommand::Drop { name } => {
            client.drop_namespace(&name).await?;
            output::done(
                json,
                json!({ "dropped": name }),
                format!("dropped namespace {name}"),
            )
        }
    }
}

fn parse_key(text: &str) -> Result<PartitionKey> {
    let (name, key_type) = match text.split_once(':') {
        Some((name, t)) => (name, KeyType::parse(t)?),
        None => (text, KeyType::String),
    };
    Ok(PartitionKey {
        name: name.to_owned(),
        key_type,
    })
}

async fn table(client: &Client, command: TableCommand, json: bool) -> Result<()> {
    match command {
        TableCommand::Create {
            table,
            partition_keys,
            if_not_exists,
            schema_policy,
        } => {
            let name = TableName::parse(&table)?;
            let keys = partition_keys
                .iter()
                .map(|k| parse_key(k))
                .collect::<Result<Vec<_>>>()?;
            let (mut info, created) = client
                .create_table(&name, &keys, None, if_not_exists)
                .await?;
            if let Some(policy) = schema_policy {
                info = client.set_schema_policy(&name, &policy).await?;
            }
            if json {
                return output::json(&json!({ "table": info, "created": created }));
            }
            println!(
                "{} table {name} at {}",
                if created { "created" } else { "kept existing" },
                info.location
            );
            Ok(())
        }
        TableCommand::List {
            namespace,
            dropped: true,
        } => lifecycle::list_dropped(client, namespace.as_deref(), json).await,
        TableCommand::Undrop { table } => lifecycle::undrop(client, &table, json).await,
        TableCommand::Schema { table, history } => {
            lifecycle::schema(client, &table, history, json).await
        }
        TableCommand::SetSchemaPolicy { table, policy } => {
            let info = client
                .set_schema_policy(&TableName::parse(&table)?, &policy)
                .await?;
            output::done(
                json,
                json!({ "table": table, "schema_policy": info.schema_policy }),
                format!("schema policy of {table}: {}", info.schema_policy),
            )
        }
        TableCommand::SetRetention {
            target,
            keep_versions,
            keep_for,
            clear,
        } => {
            lifecycle::set_retention(
                client,
                &target,
                keep_versions,
                keep_for.as_deref(),
                clear,
                json,
            )
            .await
        }
        TableCommand::List {
            namespace,
            dropped: false,
        } => {
            let tables = client.list_tables(namespace.as_deref()).await?;
            if json {
                return output::json(&tables);
            }
            let rows = tables
                .iter()
                .map(|t| {
                    vec![
                        t.name.to_string(),
                        t.partition_keys
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        t.partition_count.to_string(),
                        time(&t.created_at),
                    ]
                })
                .collect();
            output::table(&["table", "partition keys", "partitions", "created"], rows);
            Ok(())
        }
        TableCommand::Describe { table } => {
            let info = client.get_table(&TableName::parse(&table)?).await?;
            if json {
                return output::json(&info);
            }
            println!("table      {}", info.name);
            println!("location   {}", info.location);
            println!("created    {}", time(&info.created_at));
            println!("partitions {}", info.partition_count);
            println!("schema     policy {}", info.schema_policy);
            println!(
                "retention  {}{}",
                info.effective_retention.describe(),
                if info.retention.is_set() || !info.effective_retention.is_set() {
                    ""
                } else {
                    " (the namespace's default)"
                }
            );
            let keys: Vec<Vec<String>> = info
                .partition_keys
                .iter()
                .map(|k| vec![k.name.clone(), k.key_type.name().to_owned()])
                .collect();
            output::table(&["partition key", "type"], keys);
            if info.columns.is_empty() {
                println!("schema     not fixed yet (the first write fixes it)");
            } else {
                output::table(
                    &["column", "type"],
                    info.columns
                        .iter()
                        .map(|(n, t)| vec![n.clone(), t.clone()])
                        .collect(),
                );
            }
            Ok(())
        }
        TableCommand::Drop { table } => {
            client.drop_table(&TableName::parse(&table)?).await?;
            output::done(
                json,
                json!({ "dropped": table }),
                format!("dropped table {table}"),
            )
        }
    }
}

fn print_commit(what: &str, table: &TableName, c: &CommitInfo, json: bool) -> Result<()> {
    if json {
        return output::json(&json!({
            "batch_id": c.batch_id,
            "version": c.version,
            "rows": c.rows,
            "bytes": c.bytes,
            "committed_at": c.committed_at,
            "partition": partition_object(&c.partition),
        }));
    }
    println!(
        "{what} {table} {}: version {}, batch {}, {} rows, {}",
        describe_partition(&c.partition),
        c.version,
        c.batch_id,
        c.rows,
        size(c.bytes)
    );
    Ok(())
}

async fn write(client: &Client, args: WriteArgs, json: bool) -> Result<()> {
    let table = TableName::parse(&args.target.table)?;
    let (data, total_rows) = files::open_input(&args.file)?;
    let bar = Bar::rows(total_rows, "writing").map(Arc::new);
    let options = WriteOptions {
        rows_per_file: args.rows_per_file,
        ..WriteOptions::default()
    };
    let progress = bar.clone().map(|b| b as Arc<dyn Progress>);
    let request = WriteRequest {
        table: table.clone(),
        partitions: vec![PartitionData {
            partition: partition_spec(&args.target.partition)?,
            expected: expected(args.expect_batch),
            data: Rows::Stream(data),
        }],
        message: args.message,
        inputs: args.inputs,
    };
    let committed = client
        .write_partitions(request, &options, progress)
        .await
        .and_then(|mut c| {
            c.pop().ok_or_else(|| {
                batchstore_client::ClientError::Internal("the commit returned nothing".into())
            })
        });
    if let Some(bar) = &bar {
        bar.finish();
    }
    print_commit("wrote", &table, &committed?, json)
}

/// This program serving the local home (`tablectl serve-home`), when it can name itself.
fn local_server() -> Option<Vec<String>> {
    let me = std::env::current_exe().ok()?;
    Some(vec![me.to_str()?.to_owned(), crate::SERVE_HOME.to_owned()])
}

/// The read request a selection's arguments describe.
fn read_request(args: &SelectionArgs) -> Result<ReadRequest> {
    let as_of = args.as_of.as_deref().map(parse_time).transpose()?;
    Ok(ReadRequest {
        table: Some(TableName::parse(&args.table)?),
        partitions: partition_specs(&args.partition)?,
        selector: Selector::choose(args.version, args.batch.clone(), args.tag.clone(), as_of)?,
        columns: args.columns.clone(),
        filter: args
            .filter
            .iter()
            .map(|text| KeyPredicate::parse(text))
            .collect::<batchstore_client::Result<_>>()?,
        ..ReadRequest::default()
    })
}

async fn manifest(client: &Client, args: SelectionArgs, json: bool) -> Result<()> {
    let manifest = client.manifest(&read_request(&args)?).await?;
    if json {
        return output::json(&manifest.to_json());
    }
    let rows = manifest
        .files
        .iter()
        .map(|f| {
            vec![
                f.path.clone(),
                describe_partition(&f.partition),
                f.version.to_string(),
                f.batch_id.clone(),
                f.rows.to_string(),
                size(f.size_bytes),
            ]
        })
        .collect();
    output::table(
        &["file", "partition", "version", "batch", "rows", "size"],
        rows,
    );
    let rows: i64 = manifest.files.iter().map(|f| f.rows).sum();
    let bytes: i64 = manifest.files.iter().map(|f| f.size_bytes).sum();
    println!(
        "{} file(s), {rows} rows, {} (schema: {})",
        manifest.files.len(),
        size(bytes),
        manifest
            .schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

async fn read(client: &Client, args: ReadArgs, json: bool) -> Result<()> {
    let request = read_request(&args.selection)?;
    let bar = Bar::rows(None, "reading").map(Arc::new);
    let result = client
        .read(&request, bar.clone().map(|b| b as Arc<dyn Progress>))
        .await;
    if let Some(bar) = &bar {
        bar.finish();
    }
    let result = result?;
    if let Some(path) = &args.output {
        files::write_output(path, result.schema.clone(), &result.batches)?;
        if json {
            return output::json(
                &json!({ "output": path, "rows": result.num_rows(), "partitions": result.partitions }),
            );
        }
        println!(
            "saved {} rows from {} partition(s) to {}",
            result.num_rows(),
            result.partitions.len(),
            path.display()
        );
        return Ok(());
    }
    let mut shown = Vec::new();
    let mut left = args.limit;
    for batch in &result.batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        shown.push(batch.slice(0, take));
        left -= take;
    }
    if json {
        let rows = arrow_json_rows(&shown)?;
        return output::json(
            &json!({ "rows": rows, "total_rows": result.num_rows(), "partitions": result.partitions }),
        );
    }
    if shown.is_empty() {
        println!("(no rows)");
    } else {
        println!("{}", arrow_cast::pretty::pretty_format_batches(&shown)?);
    }
    println!(
        "{} rows × {} columns from {} partition(s){}",
        result.num_rows(),
        result.schema.fields().len(),
        result.partitions.len(),
        if result.num_rows() > args.limit {
            format!(
                "; first {} shown (--limit, or -o FILE to save all)",
                args.limit
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Rows as JSON objects of display strings (for `read --json` without -o).
fn arrow_json_rows(
    batches: &[arrow_array::RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &Default::default()))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (field, formatter) in batch.schema().fields().iter().zip(&formatters) {
                let value = if batch
                    .column(batch.schema().index_of(field.name())?)
                    .is_null(i)
                {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(formatter.value(i).to_string())
                };
                row.insert(field.name().clone(), value);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

async fn partitions(client: &Client, table: &TableName, json: bool) -> Result<()> {
    let partitions = client.partitions(table).await?;
    if json {
        let list: Vec<_> = partitions
            .iter()
            .map(|p| {
                json!({
                    "partition": partition_object(&p.partition),
                    "batch_id": p.batch_id,
                    "version": p.version,
                    "rows": p.rows,
                    "bytes": p.bytes,
                    "updated_at": p.updated_at,
                })
            })
            .collect();
        return output::json(&list);
    }
    let rows = partitions
        .iter()
        .map(|p| {
            vec![
                describe_partition(&p.partition),
                p.version.to_string(),
                p.batch_id.clone(),
                p.rows.to_string(),
                size(p.bytes),
                time(&p.updated_at),
            ]
        })
        .collect();
    output::table(
        &["partition", "version", "batch", "rows", "size", "updated"],
        rows,
    );
    Ok(())
}

async fn batch(client: &Client, batch_id: &str, json: bool) -> Result<()> {
    let batch = client.get_batch(batch_id).await?;
    if json {
        return output::json(&batch);
    }
    let version = if batch.state == "committed" {
        format!(" as version {}", batch.version)
    } else {
        String::new()
    };
    println!(
        "batch {} of {} partition {}: {}{version}; {} rows, {} in {} file(s); created {}",
        batch.batch_id,
        batch.table,
        describe_partition(&batch.partition),
        batch.state,
        batch.rows,
        size(batch.bytes),
        batch.files,
        time(&batch.created_at)
    );
    Ok(())
}

async fn grants(client: &Client, namespace: Option<&str>, json: bool) -> Result<()> {
    let grants = client.grants(namespace).await?;
    if json {
        return output::json(&grants);
    }
    let rows = grants
        .iter()
        .map(|g| {
            vec![
                g.namespace.clone(),
                g.grantee.to_string(),
                g.permission.as_str().to_owned(),
                g.granted_by.clone(),
                time(&g.granted_at),
            ]
        })
        .collect();
    output::table(
        &[
            "namespace",
            "grantee",
            "permission",
            "granted by",
            "granted at",
        ],
        rows,
    );
    Ok(())
}

async fn audit(client: &Client, args: AuditArgs, json: bool) -> Result<()> {
    let (namespace, table) = match args.table.as_deref() {
        None => (None, None),
        Some(name) => match name.split_once('.') {
            Some((ns, table)) => (Some(ns.to_owned()), Some(table.to_owned())),
            None => (Some(name.to_owned()), None),
        },
    };
    let query = AuditQuery {
        since: args.since.as_deref().map(parse_time).transpose()?,
        principal: args.principal,
        namespace,
        table,
        limit: args.limit,
    };
    let events = client.audit(&query).await?;
    if json {
        return output::json(&events);
    }
    let rows = events
        .iter()
        .map(|e| {
            vec![
                time(&e.at),
                e.principal.clone(),
                e.method.clone(),
                e.target.clone(),
                e.outcome.clone(),
                e.detail.clone(),
            ]
        })
        .collect();
    output::table(
        &["at", "principal", "method", "target", "outcome", "detail"],
        rows,
    );
    Ok(())
}

async fn lineage(client: &Client, batch_id: &str, json: bool) -> Result<()> {
    let lineage = client.lineage(batch_id).await?;
    if json {
        return output::json(&lineage);
    }
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_owned()
        } else {
            ids.join(", ")
        }
    };
    println!("batch {}", lineage.batch_id);
    println!("  computed from: {}", list(&lineage.inputs));
    println!("  used by:       {}", list(&lineage.outputs));
    Ok(())
}

async fn history(client: &Client, args: PartitionArgs, json: bool) -> Result<()> {
    let table = TableName::parse(&args.table)?;
    let entries = client
        .history(&table, &partition_spec(&args.partition)?)
        .await?;
    if json {
        return output::json(&entries);
    }
    let rows = entries
        .iter()
        .map(|h| {
            vec![
                format!(
                    "{}{}",
                    h.version,
                    match (h.current, &h.expired) {
                        (true, _) => " *",
                        (false, Some(_)) => " (expired)",
                        (false, None) => "",
                    }
                ),
                h.operation.clone(),
                h.batch_id.clone(),
                h.rows.to_string(),
                size(h.bytes),
                time(&h.committed_at),
                h.actor.clone(),
                h.message.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "version",
            "operation",
            "batch",
            "rows",
            "size",
            "committed",
            "actor",
            "message",
        ],
        rows,
    );
    Ok(())
}

async fn rollback(client: &Client, args: RollbackArgs, json: bool) -> Result<()> {
    let table = TableName::parse(&args.target.table)?;
    let target = match (args.to_version, args.to_batch) {
        (Some(v), _) => RollbackTo::Version(v),
        (None, Some(b)) => RollbackTo::Batch(b),
        (None, None) => bail!("give --to-version N or --to-batch ID"),
    };
    let committed = client
        .rollback(
            &table,
            &partition_spec(&args.target.partition)?,
            target,
            expected(args.expect_batch),
            &args.message,
        )
        .await?;
    print_commit("rolled back", &table, &committed, json)
}

async fn tag(client: &Client, command: TagCommand, json: bool) -> Result<()> {
    match command {
        TagCommand::Create {
            table,
            name,
            partition,
            version,
            batch,
        } => {
            let table = TableName::parse(&table)?;
            let target = match batch {
                Some(batch) => TagTarget::Batch(batch),
                None => TagTarget::Version(partition_spec(&partition)?, version.unwrap_or(0)),
            };
            let tag = client.create_tag(&table, &name, target).await?;
            if json {
                return output::json(&tag);
            }
            println!(
                "tagged {} version {} (batch {}) as {}",
                describe_partition(&tag.partition),
                tag.version,
                tag.batch_id,
                tag.name
            );
            Ok(())
        }
        TagCommand::List { table } => {
            let tags = client.list_tags(&TableName::parse(&table)?).await?;
            if json {
                return output::json(&tags);
            }
            let rows = tags
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        describe_partition(&t.partition),
                        t.version.to_string(),
                        t.batch_id.clone(),
                        time(&t.created_at),
                    ]
                })
                .collect();
            output::table(&["tag", "partition", "version", "batch", "created"], rows);
            Ok(())
        }
        TagCommand::Delete { table, name } => {
            client.delete_tag(&TableName::parse(&table)?, &name).await?;
            output::done(
                json,
                json!({ "deleted": name }),
                format!("deleted tag {name}"),
            )
        }
    }
}
