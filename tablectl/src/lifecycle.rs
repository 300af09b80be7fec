//! The lifecycle commands: retention, undrop, leases, garbage collection, orphans and schemas.

use crate::cli::{GcArgs, LeaseCommand};
use crate::output::{self, size, time};
use crate::progress::Spinner;
use anyhow::{Result, bail};
use batchstore_client::{
    Client, GcCounts, GcScope, LeaseName, Retention, Selector, TableName, parse_duration,
    parse_time,
};
use serde_json::json;

/// `tablectl table set-retention TARGET …`.
pub async fn set_retention(
    client: &Client,
    target: &str,
    keep_versions: Option<i64>,
    keep_for: Option<&str>,
    clear: bool,
    json: bool,
) -> Result<()> {
    if !clear && keep_versions.is_none() && keep_for.is_none() {
        bail!(
            "say what to keep: --keep-versions N and/or --keep-for DURATION, or --clear to keep \
             every version"
        );
    }
    let retention = Retention {
        keep_versions,
        keep_for: keep_for.map(parse_duration).transpose()?,
    };
    let (namespace, table) = scope(target)?;
    let effective = client
        .set_retention(&namespace, table.as_deref(), &retention)
        .await?;
    let what = match table {
        Some(_) => format!("table {target}"),
        None => format!("namespace {target} (its tables' default)"),
    };
    output::done(
        json,
        json!({ "target": target, "retention": retention, "effective_retention": effective }),
        format!("retention of {what}: {}", effective.describe()),
    )
}

/// `NAMESPACE` or `NAMESPACE.TABLE` (parsed as every other table name).
fn scope(text: &str) -> Result<(String, Option<String>)> {
    Ok(if text.contains('.') {
        let table = TableName::parse(text)?;
        (table.namespace, Some(table.table))
    } else {
        (text.to_owned(), None)
    })
}

/// `tablectl table undrop TABLE`.
pub async fn undrop(client: &Client, table: &str, json: bool) -> Result<()> {
    let info = client.undrop_table(&TableName::parse(table)?).await?;
    if json {
        return output::json(&info);
    }
    println!(
        "undropped table {} ({} partitions, at {})",
        info.name, info.partition_count, info.location
    );
    Ok(())
}

/// `tablectl table list --dropped`.
pub async fn list_dropped(client: &Client, namespace: Option<&str>, json: bool) -> Result<()> {
    let tables = client.list_dropped_tables(namespace).await?;
    if json {
        return output::json(&tables);
    }
    let rows = tables
        .iter()
        .map(|t| {
            vec![
                t.name.to_string(),
                t.dropped_at.as_ref().map(time).unwrap_or_default(),
                t.purge_after.as_ref().map(time).unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &["dropped table", "dropped", "undroppable until at least"],
        rows,
    );
    Ok(())
}

/// `tablectl lease …`.
pub async fn lease(client: &Client, command: LeaseCommand, json: bool) -> Result<()> {
    match command {
        LeaseCommand::Acquire {
            table,
            name,
            partition,
            version,
            batch,
            tag,
            as_of,
            ttl,
        } => {
            let table = TableName::parse(&table)?;
            let as_of = as_of.as_deref().map(parse_time).transpose()?;
            let selector = Selector::choose(version, batch, tag, as_of)?;
            let partitions = crate::commands::partition_specs(&partition)?;
            let ttl = ttl.as_deref().map(parse_duration).transpose()?;
            let lease = client
                .acquire_lease(&table, &partitions, &selector, &name, ttl)
                .await?;
            if json {
                return output::json(&lease);
            }
            println!(
                "lease {name} on {table} pins {} until {} (renew with `tablectl lease renew`)",
                lease.selection,
                time(&lease.expires_at)
            );
            Ok(())
        }
        LeaseCommand::Renew { table, name, ttl } => {
            let lease = LeaseName::Named(TableName::parse(&table)?, name.clone());
            let ttl = ttl.as_deref().map(parse_duration).transpose()?;
            let until = client.extend_lease(&lease, ttl).await?;
            output::done(
                json,
                json!({ "lease": name, "table": table, "expires_at": until }),
                format!("lease {name} on {table} now lasts until {}", time(&until)),
            )
        }
        LeaseCommand::Release { table, name } => {
            let lease = LeaseName::Named(TableName::parse(&table)?, name.clone());
            let released = client.release_lease(&lease).await?;
            output::done(
                json,
                json!({ "lease": name, "table": table, "released": released }),
                if released {
                    format!("released lease {name} on {table}")
                } else {
                    format!("{table} has no live lease {name} (it ran out or was released)")
                },
            )
        }
    }
}

/// `tablectl leases [SCOPE]`.
pub async fn leases(client: &Client, scope: Option<&str>, reads: bool, json: bool) -> Result<()> {
    let (namespace, table) = match scope {
        Some(s) => {
            let (ns, t) = self::scope(s)?;
            (Some(ns), t)
        }
        None => (None, None),
    };
    let leases = client
        .leases(namespace.as_deref(), table.as_deref(), reads)
        .await?;
    if json {
        return output::json(&leases);
    }
    let rows = leases
        .iter()
        .map(|l| {
            vec![
                if l.name.is_empty() {
                    "(a read)".to_owned()
                } else {
                    l.name.clone()
                },
                l.table.to_string(),
                l.holder.clone(),
                l.selection.clone(),
                time(&l.expires_at),
            ]
        })
        .collect();
    output::table(&["lease", "table", "holder", "pins", "expires"], rows);
    Ok(())
}

/// `tablectl gc …`.
pub async fn gc(client: &Client, args: GcArgs, json: bool) -> Result<()> {
    if args.orphans {
        return orphans(client, args.delete, args.limit, json).await;
    }
    let scope = match args.table.as_deref() {
        None => GcScope::All,
        Some(s) => match self::scope(s)? {
            (namespace, None) => GcScope::Namespace(namespace),
            (namespace, Some(table)) => GcScope::Table(TableName::new(namespace, table)),
        },
    };
    let spinner = Spinner::new(if args.dry_run {
        "counting what garbage collection would delete"
    } else {
        "collecting garbage"
    });
    let counts = client
        .collect_garbage(&scope, args.dry_run, |p| {
            spinner.say(format!(
                "expired {} batches, deleted {} ({} files, {}); {} awaiting deletion",
                p.done.batches_expired,
                p.done.batches_deleted,
                p.done.files_deleted,
                size(p.done.bytes_deleted),
                p.remaining
            ));
        })
        .await;
    spinner.finish();
    let run = counts?;
    if json {
        return output::json(
            &json!({ "dry_run": args.dry_run, "counts": run.done, "errors": run.errors }),
        );
    }
    println!("{}", summary(&run.done, args.dry_run));
    if run.done.batches_failed > 0 {
        println!(
            "{} batches could not be deleted (the next run tries again):",
            run.done.batches_failed
        );
        for error in &run.errors {
            println!("  {error}");
        }
    }
    Ok(())
}

fn summary(c: &GcCounts, dry_run: bool) -> String {
    if dry_run {
        format!(
            "dry run, nothing changed: a run would expire {} batches and delete {} ({} files, {} \
             recorded), and free {} dropped tables",
            c.batches_expired,
            c.batches_deleted,
            c.files_deleted,
            size(c.bytes_deleted),
            c.tables_purged
        )
    } else {
        format!(
            "expired {} batches; deleted {} batches ({} files, {}); freed {} dropped tables",
            c.batches_expired,
            c.batches_deleted,
            c.files_deleted,
            size(c.bytes_deleted),
            c.tables_purged
        )
    }
}

async fn orphans(client: &Client, delete: bool, limit: usize, json: bool) -> Result<()> {
    let spinner = Spinner::new("listing the warehouse");
    let report = client.find_orphans(limit).await;
    spinner.finish();
    let report = report?;
    let deleted = if delete && !report.orphans.is_empty() {
        let paths: Vec<String> = report.orphans.iter().map(|o| o.path.clone()).collect();
        client.delete_orphans(&paths).await?
    } else {
        Vec::new()
    };
    if json {
        return output::json(&json!({ "orphans": report, "deleted": deleted }));
    }
    let rows = report
        .orphans
        .iter()
        .map(|o| {
            vec![
                o.path.clone(),
                size(o.size_bytes),
                time(&o.last_modified),
                o.reason.clone(),
            ]
        })
        .collect();
    output::table(&["orphan", "size", "modified", "why"], rows);
    println!(
        "{} orphans ({}) among {} objects{}",
        report.total,
        size(report.total_bytes),
        report.scanned,
        if report.total as usize > report.orphans.len() {
            format!("; the first {} are listed", report.orphans.len())
        } else {
            String::new()
        }
    );
    if report.unreadable > 0 {
        println!(
            "{} entries could not be listed and were skipped (the first: {})",
            report.unreadable, report.first_unreadable
        );
    }
    if delete {
        println!("deleted {} orphans", deleted.len());
    } else if report.total > 0 {
        println!("nothing was deleted; run `tablectl gc --orphans --delete` to delete them");
    }
    Ok(())
}

/// `tablectl table schema TABLE [--history]`.
pub async fn schema(client: &Client, table: &str, history: bool, json: bool) -> Result<()> {
    let name = TableName::parse(table)?;
    if !history {
        let info = client.get_table(&name).await?;
        if json {
            return output::json(&json!({
                "table": table, "schema_policy": info.schema_policy, "columns": info.columns
            }));
        }
        println!("schema of {table} (policy {})", info.schema_policy);
        output::table(
            &["column", "type"],
            info.columns
                .iter()
                .map(|(n, t)| vec![n.clone(), t.clone()])
                .collect(),
        );
        return Ok(());
    }
    let versions = client.schema_history(&name).await?;
    if json {
        return output::json(&versions);
    }
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                time(&v.changed_at),
                v.change.clone(),
                v.columns
                    .iter()
                    .map(|(n, t)| format!("{n}: {t}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    output::table(&["version", "changed", "change", "columns"], rows);
    Ok(())
}
