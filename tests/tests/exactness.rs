//! Exactness of the commit protocol under retries, races and hostile input, over gRPC against
//! the real metastore on SQLite and PostgreSQL: a retry is compared with what it repeats, one
//! commit has one timestamp and as-of reads are repeatable, rollbacks are idempotent, and
//! every documented limit holds at the limit and past it while other clients are served.

use batchstore_proto::v1 as pb;
use batchstore_tests::*;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::Code;
use tonic::transport::Channel;

type Rpc = metastore_client::MetastoreClient<Channel>;
/// A change made to a request to turn it into a different one.
type Change = Box<dyn Fn(&mut pb::CommitRequest)>;

on_both_backends!(
    retry_is_compared_with_what_was_committed,
    retry_after_losing_the_race_is_answered_not_refused,
    a_commit_of_batches_committed_apart_is_refused_and_changes_nothing,
    a_commit_racing_its_identical_retry_is_answered_once,
    one_commit_one_timestamp_and_repeatable_as_of,
    as_of_in_the_future_is_refused,
    partition_named_twice_is_read_once,
    concurrent_rollbacks_to_one_target_append_one_version,
    retried_rollback_returns_its_version,
    a_rollback_with_a_request_id_is_exactly_once,
    the_current_version_reads_as_its_history_entry,
    compare_and_swap_flow_for_a_new_partition,
    batch_ids_in_another_spelling_are_refused,
    duplicate_lineage_inputs_are_refused,
    limits_hold_at_and_past_the_bound,
    huge_schema_does_not_block_other_clients,
    the_catalog_records_only_facts_it_checked,
    a_namespace_dropped_while_a_table_is_created_leaves_no_orphan,
    pending_batches_per_table_are_bounded,
    the_read_schema_covers_every_batch,
    leases_are_renewed_only_while_pending_and_live,
    an_upload_longer_than_its_lease_still_commits,
    a_batch_begun_early_is_written_or_given_up,
    footers_are_checked_on_s3,
    a_commit_of_a_batch_the_catalog_lost_is_not_found,
    every_file_of_a_commit_is_recorded_or_none,
    a_cancelled_write_ends_with_the_reading_of_its_input,
);

async fn setup(backend: Backend) -> anyhow::Result<(TestDatabase, Metastore, Rpc)> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let mut client = server.client().await?;
    create_table(&mut client, "sales", "items").await?;
    Ok((db, server, client))
}

/// As [`setup`], on a server whose every commit holds its stamped transaction open for
/// `pause_ms` before it ends (a fault the debug build injects).
async fn setup_pausing_commits(
    backend: Backend,
    pause_ms: u64,
) -> anyhow::Result<(TestDatabase, tempfile::TempDir, Metastore, Rpc)> {
    let db = TestDatabase::create(backend)?;
    let warehouse = tempfile::tempdir()?;
    let server = Metastore::start_with_env(
        &db.url,
        &warehouse.path().display().to_string(),
        &[],
        &pausing_commits(Duration::from_millis(pause_ms)),
    )?;
    let mut client = server.client().await?;
    create_table(&mut client, "sales", "items").await?;
    Ok((db, warehouse, server, client))
}

fn ds(value: &str) -> pb::PartitionSpec {
    spec(&[("ds", value)])
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Versions of the given partitions as of `as_of` (0 where a partition had no data yet).
async fn versions_as_of(
    client: &mut Rpc,
    partitions: &[&str],
    as_of: i64,
) -> Result<Vec<i64>, tonic::Status> {
    let resolved = client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("sales", "items"),
            partitions: vec![],
            selector: Some(pb::Selector {
                kind: Some(pb::selector::Kind::AsOfMicros(as_of)),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let by_value: BTreeMap<String, i64> = resolved
        .partitions
        .iter()
        .map(|p| {
            let value = p
                .partition
                .as_ref()
                .and_then(|s| s.values.first())
                .map(|v| v.value.clone())
                .unwrap_or_default();
            (value, p.version)
        })
        .collect();
    Ok(partitions
        .iter()
        .map(|p| by_value.get(*p).copied().unwrap_or(0))
        .collect())
}

/// Begins a batch for each partition and uploads `files` (name, rows) into each.
async fn staged(
    client: &mut Rpc,
    partitions: &[&str],
    files: &[(&str, i64)],
) -> anyhow::Result<Vec<pb::PartitionUpdate>> {
    let mut updates = Vec::new();
    for p in partitions {
        let begun = begin(client, "sales", "items", &ds(p), 0).await?;
        let mut uploaded = Vec::new();
        for (name, rows) in files {
            uploaded.push(upload(&begun.location, name, *rows)?);
        }
        updates.push(pb::PartitionUpdate {
            batch_id: begun.batch_id,
            files: uploaded,
            arrow_schema: int_schema(),
            expected_current_batch_id: None,
            input_batch_ids: vec![],
        });
    }
    Ok(updates)
}

fn commit_of(updates: Vec<pb::PartitionUpdate>, message: &str) -> pb::CommitRequest {
    pb::CommitRequest {
        updates,
        message: message.into(),
        actor: "tests".into(),
    }
}

async fn retry_is_compared_with_what_was_committed(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let first = write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let mut updates = staged(&mut client, &["1"], &[("part-00000.parquet", 4)]).await?;
    updates[0].expected_current_batch_id = Some(first.batch_id.clone());
    let original = commit_of(updates.clone(), "second");
    let committed = client.commit(original.clone()).await?.into_inner();
    assert!(!committed.already_committed);
    assert_eq!(committed.committed[0].version, 2);

    let location = begin(&mut client, "sales", "items", &ds("1"), 0)
        .await?
        .location;
    let extra = upload(&location, "part-00001.parquet", 1)?;
    let other_schema = schema_bytes(&[("y", arrow_schema::DataType::Utf8)]);
    let variants: Vec<(&str, Change)> = vec![
        (
            "an extra file",
            Box::new(move |r| r.updates[0].files.push(extra.clone())),
        ),
        ("a missing file", Box::new(|r| r.updates[0].files.clear())),
        (
            "a file of another size",
            Box::new(|r| r.updates[0].files[0].size_bytes += 1),
        ),
        (
            "a file of other rows",
            Box::new(|r| r.updates[0].files[0].rows += 1),
        ),
        (
            "another schema",
            Box::new(move |r| r.updates[0].arrow_schema = other_schema.clone()),
        ),
        (
            "another message",
            Box::new(|r| r.message = "changed".into()),
        ),
        (
            "an expectation of a new partition",
            Box::new(|r| {
                r.updates[0].expected_current_batch_id = Some("-".into());
            }),
        ),
        (
            "an expectation of another batch",
            Box::new(|r| {
                r.updates[0].expected_current_batch_id =
                    Some("01890000-0000-7000-8000-000000000000".into());
            }),
        ),
    ];
    for (what, change) in &variants {
        let mut retry = original.clone();
        change(&mut retry);
        let refused = client
            .commit(retry)
            .await
            .expect_err(&format!("a retry with {what} must be refused"));
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{what}: {refused:?}"
        );
        assert!(
            refused.message().contains("differs"),
            "{what}: {}",
            refused.message()
        );
    }
    // Identical, and identical without its expectation: the original version, nothing new.
    for retry in [original.clone(), {
        let mut r = original.clone();
        r.updates[0].expected_current_batch_id = None;
        r
    }] {
        let answer = client.commit(retry).await?.into_inner();
        assert!(answer.already_committed);
        assert_eq!(answer.committed[0].version, 2);
        assert_eq!(
            answer.committed[0].committed_at_micros,
            committed.committed[0].committed_at_micros
        );
    }
    let history = full_history(&mut client, "sales", "items", &ds("1")).await?;
    assert_eq!(history.len(), 2, "no retry added a version");
    Ok(())
}

/// A commit naming a batch an earlier commit made and a pending one is not a retry of either:
/// refused, both partitions as they were, and the pending batch still commits on its own.
async fn a_commit_of_batches_committed_apart_is_refused_and_changes_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let updates = staged(&mut client, &["1", "2"], &[("part-00000.parquet", 2)]).await?;
    client
        .commit(commit_of(vec![updates[0].clone()], "first alone"))
        .await?;
    for order in [
        updates.clone(),
        vec![updates[1].clone(), updates[0].clone()],
    ] {
        let refused = client
            .commit(commit_of(order, "both"))
            .await
            .expect_err("batches committed apart are not one commit");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("already committed by an earlier commit"),
            "{}",
            refused.message()
        );
    }
    assert_eq!(
        full_history(&mut client, "sales", "items", &ds("1"))
            .await?
            .len(),
        1
    );
    let never = full_history(&mut client, "sales", "items", &ds("2"))
        .await
        .expect_err("partition 2 was never written");
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    let alone = client
        .commit(commit_of(vec![updates[1].clone()], "second alone"))
        .await?
        .into_inner();
    assert!(!alone.already_committed);
    assert_eq!(alone.committed[0].version, 1);
    Ok(())
}

async fn retry_after_losing_the_race_is_answered_not_refused(
    backend: Backend,
) -> anyhow::Result<()> {
    // Two replicas on one database when it can be shared (PostgreSQL); on SQLite two clients
    // of one server. The batch is begun on A, committed through B, and the identical
    // compare-and-swap retry reaches A, which began it: the answer is the original version.
    let db = TestDatabase::create(backend)?;
    let a = Metastore::start(&db.url, &[])?;
    let b = match backend {
        Backend::Postgres => Some(Metastore::start_with_warehouse(
            &db.url,
            &a.warehouse.display().to_string(),
            &[],
        )?),
        Backend::Sqlite => None,
    };
    let mut on_a = a.client().await?;
    let mut on_b = match &b {
        Some(b) => b.client().await?,
        None => a.client().await?,
    };
    create_table(&mut on_a, "sales", "items").await?;
    let first = write_once(&mut on_a, "sales", "items", &ds("1"), None).await?;
    let mut updates = staged(&mut on_a, &["1"], &[("part-00000.parquet", 2)]).await?;
    updates[0].expected_current_batch_id = Some(first.batch_id);
    let request = commit_of(updates, "cas");
    let committed = on_b.commit(request.clone()).await?.into_inner();
    let retried = on_a.commit(request).await?.into_inner();
    assert!(retried.already_committed);
    assert_eq!(retried.committed[0].version, committed.committed[0].version);
    Ok(())
}

/// The same compare-and-swap commit sent twice at once (a client's retry, a hedged request):
/// the second waits while the first holds its transaction open (a fault the debug build
/// injects), then finds its batch committed. Both are answered with the one version, with
/// files and without (a batch of no files has no file rows to collide on first).
async fn a_commit_racing_its_identical_retry_is_answered_once(
    backend: Backend,
) -> anyhow::Result<()> {
    let (_db, _warehouse, server, mut client) = setup_pausing_commits(backend, 300).await?;
    let mut current = write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let no_files: &[(&str, i64)] = &[];
    for files in [no_files, &[("part-00000.parquet", 2)]] {
        let mut updates = staged(&mut client, &["1"], files).await?;
        updates[0].expected_current_batch_id = Some(current.batch_id.clone());
        let request = commit_of(updates, "cas");
        let mut other = server.client().await?;
        let sent = request.clone();
        let first = tokio::spawn(async move { other.commit(sent).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = client.commit(request).await;
        let first = first.await?;
        let (first, second) = (first?.into_inner(), second?.into_inner());
        assert_eq!(
            first.committed[0].version,
            second.committed[0].version,
            "{} files: {first:?} vs {second:?}",
            files.len()
        );
        assert_eq!(
            u8::from(first.already_committed) + u8::from(second.already_committed),
            1,
            "exactly one of the two made the version: {first:?} vs {second:?}"
        );
        let history = client
            .get_history(pb::GetHistoryRequest {
                table: table_ref("sales", "items"),
                partition: Some(ds("1")),
                ..Default::default()
            })
            .await?
            .into_inner();
        let made = history
            .entries
            .iter()
            .filter(|e| e.batch_id == first.committed[0].batch_id)
            .count();
        assert_eq!(made, 1, "one history entry for the batch: {history:?}");
        current = first
            .committed
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no version"))?;
    }
    Ok(())
}

async fn one_commit_one_timestamp_and_repeatable_as_of(backend: Backend) -> anyhow::Result<()> {
    // Every commit holds its stamped transaction open for a while (a fault the debug build
    // injects), so readers meet commits in flight all the time.
    let (_db, _warehouse, server, mut client) = setup_pausing_commits(backend, 40).await?;
    let partitions = ["a", "b", "c"];
    let files = [("part-00000.parquet", 1)];
    let updates = staged(&mut client, &partitions, &files).await?;
    let initial = client.commit(commit_of(updates, "v1")).await?.into_inner();
    let stamps: Vec<i64> = initial
        .committed
        .iter()
        .map(|c| c.committed_at_micros)
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] == w[1]),
        "one stamp: {stamps:?}"
    );
    assert_eq!(
        versions_as_of(&mut client, &partitions, stamps[0]).await?,
        vec![1, 1, 1]
    );
    assert_eq!(
        versions_as_of(&mut client, &partitions, stamps[0] - 1).await?,
        vec![0, 0, 0]
    );

    // Writers commit all partitions together while readers read as of "now"; every answer is
    // whole (all partitions at one version), and reading the same times again afterwards
    // gives the same answers.
    let rounds = 12;
    let writer = {
        let mut client = server.client().await?;
        tokio::spawn(async move {
            for round in 0..rounds {
                let updates = staged(&mut client, &partitions, &files).await?;
                client
                    .commit(commit_of(updates, &format!("round {round}")))
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let mut answered = Vec::new();
    let mut reader = server.client().await?;
    while !writer.is_finished() {
        let as_of = now_micros();
        let versions = versions_as_of(&mut reader, &partitions, as_of).await?;
        assert!(
            versions.windows(2).all(|w| w[0] == w[1]),
            "a torn commit at {as_of}: {versions:?}"
        );
        answered.push((as_of, versions));
        // The current versions of named partitions are read at one moment too.
        let named = reader
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("sales", "items"),
                partitions: partitions.iter().map(|p| ds(p)).collect(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let current: Vec<i64> = named.partitions.iter().map(|p| p.version).collect();
        assert!(
            current.windows(2).all(|w| w[0] == w[1]),
            "a torn commit in a read of named partitions: {current:?}"
        );
    }
    writer.await??;
    assert!(answered.len() > 5, "the reader read during the writes");
    for (as_of, versions) in &answered {
        assert_eq!(
            &versions_as_of(&mut client, &partitions, *as_of).await?,
            versions,
            "the read as of {as_of} changed"
        );
    }
    Ok(())
}

async fn as_of_in_the_future_is_refused(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let refused = versions_as_of(&mut client, &["1"], now_micros() + 3_600_000_000)
        .await
        .expect_err("an hour ahead");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("future"),
        "{}",
        refused.message()
    );
    // A moment ahead (clock skew) is waited for, then answered.
    assert_eq!(
        versions_as_of(&mut client, &["1"], now_micros() + 300_000).await?,
        vec![1]
    );
    Ok(())
}

async fn partition_named_twice_is_read_once(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let resolved = client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("sales", "items"),
            partitions: vec![ds("1"), ds("1"), spec(&[("", "1")])],
            selector: None,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(resolved.partitions.len(), 1);
    Ok(())
}

async fn rollback_request(target_version: i64, expected: Option<String>) -> pb::RollbackRequest {
    pb::RollbackRequest {
        table: table_ref("sales", "items"),
        partition: Some(ds("1")),
        target: Some(pb::rollback_request::Target::ToVersion(target_version)),
        expected_current_batch_id: expected,
        message: String::new(),
        actor: "tests".into(),
        request_id: String::new(),
    }
}

async fn concurrent_rollbacks_to_one_target_append_one_version(
    backend: Backend,
) -> anyhow::Result<()> {
    let (_db, server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut client = server.client().await?;
        tasks.push(tokio::spawn(async move {
            client.rollback(rollback_request(1, None).await).await
        }));
    }
    for task in tasks {
        let answer = task.await??.into_inner();
        assert_eq!(answer.committed.map(|c| c.version), Some(3));
    }
    assert_eq!(
        full_history(&mut client, "sales", "items", &ds("1"))
            .await?
            .len(),
        3
    );
    Ok(())
}

async fn retried_rollback_returns_its_version(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let second = write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let request = rollback_request(1, Some(second.batch_id.clone())).await;
    let first = client.rollback(request.clone()).await?.into_inner();
    let retry = client.rollback(request).await?.into_inner();
    assert_eq!(first.committed.map(|c| c.version), Some(3));
    assert_eq!(retry.committed.map(|c| c.version), Some(3));
    // Rolling back to what a write (not a rollback) made current is still refused.
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let refused = client
        .rollback(rollback_request(4, None).await)
        .await
        .expect_err("already current");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        full_history(&mut client, "sales", "items", &ds("1"))
            .await?
            .len(),
        4
    );
    Ok(())
}

async fn a_rollback_with_a_request_id_is_exactly_once(backend: Backend) -> anyhow::Result<()> {
    let (_db, server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let history_len = async |client: &mut Rpc| -> anyhow::Result<usize> {
        Ok(full_history(client, "sales", "items", &ds("1"))
            .await?
            .len())
    };
    let with_id = |version: i64, id: &str| {
        let mut request = pb::RollbackRequest {
            table: table_ref("sales", "items"),
            partition: Some(ds("1")),
            target: Some(pb::rollback_request::Target::ToVersion(version)),
            actor: "tests".into(),
            ..Default::default()
        };
        request.request_id = id.to_owned();
        request
    };
    let first = client.rollback(with_id(1, "r-1")).await?.into_inner();
    assert_eq!(first.committed.as_ref().map(|c| c.version), Some(3));
    // A write lands, then the first rollback is sent again (its reply was lost): it is
    // answered with the version it made, and appends nothing.
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let again = client.rollback(with_id(1, "r-1")).await?.into_inner();
    assert_eq!(again.committed, first.committed);
    assert_eq!(history_len(&mut client).await?, 4);
    // The same id for another target is refused, naming the id; a new id rolls back.
    let reused = client
        .rollback(with_id(2, "r-1"))
        .await
        .expect_err("one id, two targets");
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert!(reused.message().contains("r-1"), "{}", reused.message());
    let second = client.rollback(with_id(1, "r-2")).await?.into_inner();
    assert_eq!(second.committed.map(|c| c.version), Some(5));
    // Copies of one request sent at once make one version between them.
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = server.client().await?;
        let request = with_id(2, "r-3");
        tasks.push(tokio::spawn(async move { client.rollback(request).await }));
    }
    for task in tasks {
        let answer = task.await??.into_inner();
        assert_eq!(answer.committed.map(|c| c.version), Some(7));
    }
    assert_eq!(history_len(&mut client).await?, 7);
    // Ids are bounded and plain.
    for bad in ["has space", "ü", &"x".repeat(65)] {
        let refused = client
            .rollback(with_id(1, bad))
            .await
            .expect_err("a bad request id");
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
    }
    assert_eq!(history_len(&mut client).await?, 7);
    Ok(())
}

/// A current version is resolved from the partition row alone; the same version named by its
/// number is resolved from history and batches. Both must give the same answer after writes,
/// a multi-partition commit and rollbacks.
async fn the_current_version_reads_as_its_history_entry(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let resolve = async |client: &mut Rpc, kind: Option<pb::selector::Kind>| {
        let resolved = client
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("sales", "items"),
                partitions: vec![ds("1")],
                selector: kind.map(|kind| pb::Selector { kind: Some(kind) }),
                ..Default::default()
            })
            .await?
            .into_inner();
        anyhow::Ok(resolved.partitions[0].clone())
    };
    let check = async |client: &mut Rpc| -> anyhow::Result<()> {
        let current = resolve(client, None).await?;
        let by_version =
            resolve(client, Some(pb::selector::Kind::Version(current.version))).await?;
        assert_eq!(current, by_version);
        // A whole-table page reads its rows the same way.
        let page = client
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("sales", "items"),
                ..Default::default()
            })
            .await?
            .into_inner();
        let listed = page
            .partitions
            .iter()
            .find(|p| p.partition == current.partition)
            .cloned();
        assert_eq!(listed.as_ref(), Some(&current));
        Ok(())
    };
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    check(&mut client).await?;
    // Two partitions in one commit (one stamp for both), with two files.
    let mut updates = Vec::new();
    for p in ["1", "2"] {
        let begun = begin(&mut client, "sales", "items", &ds(p), 0).await?;
        let files = vec![
            upload(&begun.location, "part-00000.parquet", 3)?,
            upload(&begun.location, "part-00001.parquet", 2)?,
        ];
        updates.push(
            commit_request(begun.batch_id, files, None)
                .updates
                .remove(0),
        );
    }
    client
        .commit(pb::CommitRequest {
            updates,
            actor: "tests".into(),
            ..Default::default()
        })
        .await?;
    check(&mut client).await?;
    client.rollback(rollback_request(1, None).await).await?;
    check(&mut client).await?;
    let current = resolve(&mut client, None).await?;
    // Version 3 points back at version 1's batch (3 rows; version 2 had 5 in two files).
    assert_eq!((current.version, current.rows), (3, 3), "{current:?}");
    Ok(())
}

async fn compare_and_swap_flow_for_a_new_partition(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    // The documented flow: take the current batch BeginWrite reports, send it back.
    let begun = begin(&mut client, "sales", "items", &ds("new"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    let committed = client
        .commit(commit_request(
            begun.batch_id,
            vec![file],
            Some(begun.current_batch_id.clone()),
        ))
        .await?
        .into_inner();
    assert_eq!(committed.committed[0].version, 1);
    let again = begin(&mut client, "sales", "items", &ds("new"), 0).await?;
    assert_eq!(again.current_batch_id, committed.committed[0].batch_id);
    let file = upload(&again.location, "part-00000.parquet", 1)?;
    let stale = client
        .commit(commit_request(
            again.batch_id,
            vec![file],
            Some(String::new()),
        ))
        .await
        .expect_err("no longer new");
    assert_eq!(stale.code(), Code::Aborted);
    Ok(())
}

async fn batch_ids_in_another_spelling_are_refused(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let first = write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let id = first.batch_id.clone();
    for spelling in [
        id.to_uppercase(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
    ] {
        let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
        let file = upload(&begun.location, "part-00000.parquet", 1)?;
        let refused = client
            .commit(commit_request(
                begun.batch_id,
                vec![file],
                Some(spelling.clone()),
            ))
            .await
            .expect_err("another spelling");
        assert_eq!(refused.code(), Code::InvalidArgument, "{spelling}");
        assert!(refused.message().contains(&id), "{}", refused.message());
        let read = client
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("sales", "items"),
                partitions: vec![],
                selector: Some(pb::Selector {
                    kind: Some(pb::selector::Kind::BatchId(spelling.clone())),
                }),
                ..Default::default()
            })
            .await
            .expect_err("another spelling");
        assert_eq!(read.code(), Code::InvalidArgument, "{spelling}");
    }
    assert_eq!(
        full_history(&mut client, "sales", "items", &ds("1"))
            .await?
            .len(),
        1
    );
    Ok(())
}

async fn duplicate_lineage_inputs_are_refused(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let input = write_once(&mut client, "sales", "items", &ds("in"), None).await?;
    let mut updates = staged(&mut client, &["out"], &[("part-00000.parquet", 1)]).await?;
    updates[0].input_batch_ids = vec![input.batch_id.clone(), input.batch_id.clone()];
    let refused = client
        .commit(commit_of(updates, "lineage"))
        .await
        .expect_err("named twice");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("twice"), "{}", refused.message());
    Ok(())
}

async fn limits_hold_at_and_past_the_bound(backend: Backend) -> anyhow::Result<()> {
    use batchstore_metastore::limits;
    let (_db, _server, mut client) = setup(backend).await?;
    let files = [("part-00000.parquet", 1)];
    // Message: at the limit accepted, past it refused.
    let at = "m".repeat(limits::MAX_MESSAGE_BYTES);
    let updates = staged(&mut client, &["m"], &files).await?;
    client.commit(commit_of(updates, &at)).await?;
    let past = "m".repeat(limits::MAX_MESSAGE_BYTES + 1);
    let updates = staged(&mut client, &["m"], &files).await?;
    let refused = client
        .commit(commit_of(updates, &past))
        .await
        .expect_err("message too long");
    assert_eq!(refused.code(), Code::InvalidArgument);
    // Schema metadata.
    let with_metadata = |bytes: usize| {
        let schema = arrow_schema::Schema::new_with_metadata(
            vec![arrow_schema::Field::new(
                "x",
                arrow_schema::DataType::Int64,
                true,
            )],
            std::collections::HashMap::from([("k".to_owned(), "v".repeat(bytes - 1))]),
        );
        let generator = arrow_ipc::writer::IpcDataGenerator::default();
        let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
        generator
            .schema_to_bytes_with_dictionary_tracker(&schema, &mut tracker, &Default::default())
            .ipc_message
    };
    let mut updates = staged(&mut client, &["s"], &files).await?;
    updates[0].arrow_schema = with_metadata(limits::MAX_SCHEMA_METADATA_BYTES + 1);
    let refused = client
        .commit(commit_of(updates, "big metadata"))
        .await
        .expect_err("metadata too large");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("metadata"),
        "{}",
        refused.message()
    );
    assert!(
        refused.message().len() < 1000,
        "the refusal quotes a bounded prefix"
    );
    // The table's schema is x: int64 without metadata; metadata at the limit is refused as a
    // schema mismatch only if it differs, so check the limit on table creation instead.
    let at_limit = with_metadata(limits::MAX_SCHEMA_METADATA_BYTES);
    client
        .create_table(pb::CreateTableRequest {
            table: table_ref("sales", "meta"),
            partition_keys: vec![],
            arrow_schema: at_limit,
            if_not_exists: false,
            schema_policy: String::new(),
        })
        .await?;
    // Partitions per read.
    let too_many: Vec<pb::PartitionSpec> = (0..=limits::MAX_PARTITIONS_PER_REQUEST)
        .map(|i| ds(&i.to_string()))
        .collect();
    let refused = client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("sales", "items"),
            partitions: too_many,
            selector: None,
            ..Default::default()
        })
        .await
        .expect_err("too many partitions");
    assert_eq!(refused.code(), Code::InvalidArgument);
    // A hostile column name is quoted by a bounded prefix only.
    let hostile = "c".repeat(100_000);
    let mut updates = staged(&mut client, &["h"], &files).await?;
    updates[0].arrow_schema = schema_bytes(&[(hostile.as_str(), arrow_schema::DataType::Int64)]);
    let refused = client
        .commit(commit_of(updates, "hostile"))
        .await
        .expect_err("not the table's column");
    assert!(
        refused.message().len() < 2000,
        "{} bytes",
        refused.message().len()
    );
    Ok(())
}

async fn huge_schema_does_not_block_other_clients(backend: Backend) -> anyhow::Result<()> {
    use batchstore_metastore::limits;
    let (_db, server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let columns: Vec<(String, arrow_schema::DataType)> = (0..120_000)
        .map(|i| (format!("c{i}"), arrow_schema::DataType::Int64))
        .collect();
    let named: Vec<(&str, arrow_schema::DataType)> = columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let huge = schema_bytes(&named);
    let mut hostile = server.client().await?;
    let attack = tokio::spawn(async move {
        hostile
            .create_table(pb::CreateTableRequest {
                table: table_ref("sales", "wide"),
                partition_keys: vec![],
                arrow_schema: huge,
                if_not_exists: false,
                schema_policy: String::new(),
            })
            .await
    });
    // Meanwhile an ordinary client is answered (the timeout only guards against a hang).
    tokio::time::timeout(
        Duration::from_secs(60),
        versions_as_of(&mut client, &["1"], now_micros()),
    )
    .await??;
    let refused = attack.await?.expect_err("too wide");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains(&limits::MAX_COLUMNS.to_string())
            || refused.message().contains("bytes"),
        "{}",
        refused.message()
    );
    Ok(())
}

async fn the_catalog_records_only_facts_it_checked(backend: Backend) -> anyhow::Result<()> {
    use arrow_array::{RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let (db, _server, mut client) = setup(backend).await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let refusal =
        |files: Vec<pb::DataFile>, batch_id: String| commit_request(batch_id, files, None);

    // A file of strings declared as x: int64.
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let strings = RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, true)])),
        vec![std::sync::Arc::new(StringArray::from(vec!["hello"]))],
    )?;
    let file = upload_batch(&begun.location, "part-00000.parquet", &strings)?;
    let refused = client
        .commit(refusal(vec![file], begun.batch_id.clone()))
        .await
        .expect_err("strings are not int64");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("\"x\""), "{}", refused.message());

    // Row counts that the footer does not bear out, including ones that would overflow.
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 2)?;
    for claimed in [3, i64::MAX] {
        let lie = pb::DataFile {
            rows: claimed,
            ..file.clone()
        };
        let refused = client
            .commit(refusal(vec![lie], begun.batch_id.clone()))
            .await
            .expect_err("rows");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    let two = pb::DataFile {
        path: "part-00001.parquet".into(),
        ..file.clone()
    };
    std::fs::copy(
        local_dir(&begun.location)?.join("part-00000.parquet"),
        local_dir(&begun.location)?.join("part-00001.parquet"),
    )?;
    let overflow = client
        .commit(refusal(
            vec![
                pb::DataFile {
                    rows: i64::MAX,
                    ..file.clone()
                },
                pb::DataFile {
                    rows: i64::MAX,
                    ..two.clone()
                },
            ],
            begun.batch_id.clone(),
        ))
        .await
        .expect_err("overflowing rows");
    assert_eq!(overflow.code(), Code::InvalidArgument);

    // Not Parquet at all.
    let other = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    std::fs::create_dir_all(local_dir(&other.location)?)?;
    std::fs::write(
        local_dir(&other.location)?.join("part-00000.parquet"),
        b"not parquet at all",
    )?;
    let refused = client
        .commit(refusal(
            vec![pb::DataFile {
                path: "part-00000.parquet".into(),
                size_bytes: 18,
                rows: 1,
            }],
            other.batch_id,
        ))
        .await
        .expect_err("not parquet");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("Parquet"),
        "{}",
        refused.message()
    );

    // A symbolic link inside a local batch directory, pointing at a valid file elsewhere.
    let linked = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let elsewhere = tempfile::tempdir()?;
    let target = upload(
        &format!("file://{}", elsewhere.path().display()),
        "outside.parquet",
        2,
    )?;
    std::fs::create_dir_all(local_dir(&linked.location)?)?;
    std::os::unix::fs::symlink(
        elsewhere.path().join("outside.parquet"),
        local_dir(&linked.location)?.join("part-00000.parquet"),
    )?;
    let refused = client
        .commit(refusal(
            vec![pb::DataFile {
                path: "part-00000.parquet".into(),
                ..target
            }],
            linked.batch_id,
        ))
        .await
        .expect_err("a link");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("link"), "{}", refused.message());

    // A batch directory that is itself a link, to a directory holding a valid file.
    let linked_dir = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let target_dir = tempfile::tempdir()?;
    let target = upload(
        &format!("file://{}", target_dir.path().display()),
        "part-00000.parquet",
        2,
    )?;
    let batch_dir = local_dir(&linked_dir.location)?;
    std::fs::create_dir_all(
        batch_dir
            .parent()
            .ok_or_else(|| anyhow::anyhow!("a batch directory has a parent"))?,
    )?;
    std::os::unix::fs::symlink(target_dir.path(), &batch_dir)?;
    let refused = client
        .commit(refusal(vec![target], linked_dir.batch_id))
        .await
        .expect_err("a linked directory");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("link"), "{}", refused.message());

    // A FIFO in a file's place is refused at once (opening it must not wait for a writer).
    let fifo = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    std::fs::create_dir_all(local_dir(&fifo.location)?)?;
    let made = std::process::Command::new("mkfifo")
        .arg(local_dir(&fifo.location)?.join("part-00000.parquet"))
        .status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    let refused = client
        .commit(refusal(
            vec![pb::DataFile {
                path: "part-00000.parquet".into(),
                size_bytes: 100,
                rows: 1,
            }],
            fifo.batch_id,
        ))
        .await
        .expect_err("a FIFO");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("regular file"),
        "{}",
        refused.message()
    );

    // A footer larger than the tail read first (64 KiB) is read in full and checked: here a
    // file of 3,000 columns, declared with one row too many.
    create_table(&mut client, "sales", "wide").await?;
    let names: Vec<String> = (0..3000)
        .map(|i| format!("column_with_a_long_name_{i:05}"))
        .collect();
    let wide_schema: Vec<_> = names
        .iter()
        .map(|name| Field::new(name, DataType::Utf8, true))
        .collect();
    let declared = schema_bytes(
        &names
            .iter()
            .map(|name| (name.as_str(), DataType::Utf8))
            .collect::<Vec<_>>(),
    );
    let wide_request = |files: Vec<pb::DataFile>, batch_id: String| {
        let mut request = commit_request(batch_id, files, None);
        request.updates[0].arrow_schema = declared.clone();
        request
    };
    let columns: Vec<arrow_array::ArrayRef> = (0..3000)
        .map(|_| std::sync::Arc::new(StringArray::from(vec!["v"])) as arrow_array::ArrayRef)
        .collect();
    let wide = RecordBatch::try_new(std::sync::Arc::new(Schema::new(wide_schema)), columns)?;
    let wide_begun = begin(&mut client, "sales", "wide", &ds("1"), 0).await?;
    let wide_file = upload_batch(&wide_begun.location, "part-00000.parquet", &wide)?;
    let footer_length = {
        let bytes = std::fs::read(local_dir(&wide_begun.location)?.join("part-00000.parquet"))?;
        let end = bytes.len() - 8;
        u32::from_le_bytes(bytes[end..end + 4].try_into()?)
    };
    assert!(footer_length > 64 * 1024, "footer of {footer_length} bytes");
    let refused = client
        .commit(wide_request(
            vec![pb::DataFile {
                rows: 2,
                ..wide_file.clone()
            }],
            wide_begun.batch_id.clone(),
        ))
        .await
        .expect_err("one row too many");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("row"), "{}", refused.message());
    let wide_committed = client
        .commit(wide_request(vec![wide_file], wide_begun.batch_id))
        .await?
        .into_inner();
    assert_eq!(wide_committed.committed[0].rows, 1);

    // The truthful commit records rows and bytes from the file, and keeps its statistics.
    let committed = client
        .commit(refusal(vec![file.clone()], begun.batch_id.clone()))
        .await?
        .into_inner();
    assert_eq!(committed.committed[0].rows, 2);
    assert_eq!(committed.committed[0].bytes, file.size_bytes);
    let history = full_history(&mut client, "sales", "items", &ds("1")).await?;
    assert_eq!(history.len(), 2, "only the truthful commit added a version");
    assert_eq!((history[0].rows, history[0].bytes), (2, file.size_bytes));
    let stats = catalog_query(
        &db,
        &format!(
            "SELECT stats FROM batch_files WHERE batch_id = '{}'",
            begun.batch_id
        ),
    )?;
    let stats: serde_json::Value = serde_json::from_str(stats.trim())?;
    assert_eq!(stats["x"]["nulls"], 0, "{stats}");
    assert_eq!(stats["x"]["min"][0], "0000000000000000", "{stats}");
    assert_eq!(stats["x"]["max"][0], "0100000000000000", "{stats}");
    Ok(())
}

async fn a_namespace_dropped_while_a_table_is_created_leaves_no_orphan(
    backend: Backend,
) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let (mut both, mut orphans) = (0, 0);
    for round in 0..30 {
        let name = format!("race{round}");
        let mut client = server.client().await?;
        client
            .create_namespace(pb::CreateNamespaceRequest {
                name: name.clone(),
                if_not_exists: false,
            })
            .await?;
        let (mut creator, mut dropper) = (server.client().await?, server.client().await?);
        let create = creator.create_table(pb::CreateTableRequest {
            table: table_ref(&name, "t"),
            partition_keys: vec![],
            arrow_schema: vec![],
            if_not_exists: false,
            schema_policy: String::new(),
        });
        let drop = dropper.drop_namespace(pb::DropNamespaceRequest { name: name.clone() });
        let (created, dropped) = tokio::join!(create, drop);
        if created.is_ok() && dropped.is_ok() {
            both += 1;
        }
        let live = client
            .get_table(pb::GetTableRequest {
                table: table_ref(&name, "t"),
            })
            .await;
        if dropped.is_ok() && live.is_ok() {
            orphans += 1;
        }
    }
    assert_eq!(
        (both, orphans),
        (0, 0),
        "a table outlived its dropped namespace"
    );
    Ok(())
}

async fn pending_batches_per_table_are_bounded(backend: Backend) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &["--max-pending-per-table", "3"])?;
    let mut client = server.client().await?;
    create_table(&mut client, "sales", "items").await?;
    let mut begun = Vec::new();
    for i in 0..3 {
        begun.push(begin(&mut client, "sales", "items", &ds(&i.to_string()), 0).await?);
    }
    let refused = begin(&mut client, "sales", "items", &ds("x"), 0)
        .await
        .expect_err("past the bound");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("abort"), "{}", refused.message());
    client
        .abort_write(pb::AbortWriteRequest {
            batch_id: begun[0].batch_id.clone(),
        })
        .await?;
    begin(&mut client, "sales", "items", &ds("x"), 0).await?;
    Ok(())
}

/// Dictionary columns as pandas writes them: int8 codes for few categories, int16 for more.
fn categories(
    codes: arrow_schema::DataType,
    values: usize,
    nullable: bool,
) -> anyhow::Result<arrow_array::RecordBatch> {
    use arrow_array::{Array, StringArray};
    use arrow_schema::DataType;
    let strings = StringArray::from_iter_values((0..values).map(|i| format!("v{i}")));
    let column = arrow_cast::cast(
        &strings,
        &DataType::Dictionary(Box::new(codes), Box::new(DataType::Utf8)),
    )?;
    let schema = arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "c",
        column.data_type().clone(),
        nullable,
    )]);
    Ok(arrow_array::RecordBatch::try_new(
        std::sync::Arc::new(schema),
        vec![column],
    )?)
}

async fn the_read_schema_covers_every_batch(backend: Backend) -> anyhow::Result<()> {
    use arrow_schema::DataType;
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let mut rpc = server.client().await?;
    let client = batchstore_client::Client::connect(Some(&server.endpoint())).await?;
    let stage = |rpc: &mut Rpc,
                 table: &'static str,
                 value: &'static str,
                 batch: arrow_array::RecordBatch| {
        let mut rpc = rpc.clone();
        async move {
            let begun = begin(&mut rpc, "sales", table, &ds(value), 0).await?;
            let file = upload_batch(&begun.location, "part-00000.parquet", &batch)?;
            anyhow::Ok(pb::PartitionUpdate {
                batch_id: begun.batch_id,
                files: vec![file],
                arrow_schema: batchstore_metastore::schema::encode(&batch.schema()),
                expected_current_batch_id: None,
                input_batch_ids: vec![],
            })
        }
    };
    let read_all = |table: &'static str| {
        let client = client.clone();
        async move {
            let read = client
                .read(
                    &batchstore_client::ReadRequest {
                        table: Some(batchstore_client::TableName::new("sales", table)),
                        ..Default::default()
                    },
                    None,
                )
                .await?;
            anyhow::Ok(read.num_rows())
        }
    };
    // One commit to a new table whose partitions use int16 and int8 codes, the narrower one
    // created first: the table's read schema takes the wider index.
    for table in ["one", "two", "three"] {
        create_table(&mut rpc, "sales", table).await?;
    }
    let narrow = stage(&mut rpc, "one", "1", categories(DataType::Int8, 3, true)?).await?;
    let wide = stage(
        &mut rpc,
        "one",
        "2",
        categories(DataType::Int16, 300, true)?,
    )
    .await?;
    rpc.commit(commit_of(vec![wide, narrow], "both")).await?;
    assert_eq!(read_all("one").await?, 303);
    // A batch begun before the table had a schema, committed after a narrower batch fixed it.
    let late = stage(
        &mut rpc,
        "two",
        "2",
        categories(DataType::Int16, 300, true)?,
    )
    .await?;
    let early = stage(&mut rpc, "two", "1", categories(DataType::Int8, 3, true)?).await?;
    rpc.commit(commit_of(vec![early], "early")).await?;
    rpc.commit(commit_of(vec![late], "late")).await?;
    assert_eq!(read_all("two").await?, 303);
    // One commit whose partitions differ in nullability: the table allows nulls, in any order.
    let strict = stage(
        &mut rpc,
        "three",
        "1",
        categories(DataType::Int8, 3, false)?,
    )
    .await?;
    let loose = stage(&mut rpc, "three", "2", categories(DataType::Int8, 3, true)?).await?;
    rpc.commit(commit_of(vec![strict, loose], "mixed")).await?;
    assert_eq!(read_all("three").await?, 6);
    let again = stage(&mut rpc, "three", "3", categories(DataType::Int8, 3, true)?).await?;
    rpc.commit(commit_of(vec![again], "nullable later")).await?;
    Ok(())
}

async fn leases_are_renewed_only_while_pending_and_live(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client) = setup(backend).await?;
    let renew = |batch_id: &str, lease_seconds: i64| pb::RenewLeaseRequest {
        batch_id: batch_id.to_owned(),
        lease_seconds,
    };
    // A live lease moves forward.
    let begun = begin(&mut client, "sales", "items", &ds("1"), 2).await?;
    let renewed = client
        .renew_lease(renew(&begun.batch_id, 600))
        .await?
        .into_inner();
    assert!(
        renewed.lease_expires_at_micros > begun.lease_expires_at_micros + 500_000_000,
        "{renewed:?} vs {begun:?}"
    );
    // Past the old expiry, the batch is alive and commits.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let file = upload(&begun.location, "part-00000.parquet", 3)?;
    client
        .commit(commit_request(begun.batch_id.clone(), vec![file], None))
        .await?;
    // A committed, an aborted, an expired or an unknown batch cannot be renewed.
    let committed = client.renew_lease(renew(&begun.batch_id, 60)).await;
    assert_eq!(
        committed.map_err(|s| s.code()).err(),
        Some(Code::FailedPrecondition)
    );
    let aborted = begin(&mut client, "sales", "items", &ds("2"), 60).await?;
    client
        .abort_write(pb::AbortWriteRequest {
            batch_id: aborted.batch_id.clone(),
        })
        .await?;
    let refused = client.renew_lease(renew(&aborted.batch_id, 60)).await;
    assert_eq!(
        refused.map_err(|s| s.code()).err(),
        Some(Code::FailedPrecondition)
    );
    let expired = begin(&mut client, "sales", "items", &ds("3"), 1).await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let refused = client
        .renew_lease(renew(&expired.batch_id, 60))
        .await
        .err()
        .map(|s| (s.code(), s.message().to_owned()));
    assert!(
        matches!(&refused, Some((Code::FailedPrecondition, m)) if m.contains("ran out")),
        "{refused:?}"
    );
    let unknown = client
        .renew_lease(renew("01890000-0000-7000-8000-000000000000", 60))
        .await;
    assert_eq!(unknown.map_err(|s| s.code()).err(), Some(Code::NotFound));
    let live = begin(&mut client, "sales", "items", &ds("4"), 60).await?;
    let too_long = client.renew_lease(renew(&live.batch_id, 1 << 40)).await;
    assert_eq!(
        too_long.map_err(|s| s.code()).err(),
        Some(Code::InvalidArgument)
    );
    Ok(())
}

/// Input that arrives slowly: `batches` batches of one row, `pause` apart. `released` is set
/// when the reader is dropped.
struct SlowInput {
    schema: arrow_schema::SchemaRef,
    left: usize,
    pause: Duration,
    released: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowInput {
    fn new(left: usize, pause: Duration) -> Self {
        SlowInput {
            schema: std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
                "v",
                arrow_schema::DataType::Int64,
                false,
            )])),
            left,
            pause,
            released: Default::default(),
        }
    }
}

impl Drop for SlowInput {
    fn drop(&mut self) {
        self.released
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Iterator for SlowInput {
    type Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        std::thread::sleep(self.pause);
        Some(arrow_array::RecordBatch::try_new(
            self.schema.clone(),
            vec![std::sync::Arc::new(arrow_array::Int64Array::from(vec![
                self.left as i64,
            ]))],
        ))
    }
}

impl arrow_array::RecordBatchReader for SlowInput {
    fn schema(&self) -> arrow_schema::SchemaRef {
        self.schema.clone()
    }
}

/// A write whose input takes three times its lease to arrive keeps its batch alive by
/// renewing the lease, and commits.
async fn an_upload_longer_than_its_lease_still_commits(backend: Backend) -> anyhow::Result<()> {
    use batchstore_client::{Client, PartitionData, PartitionSpec, Rows, TableName, WriteOptions};
    let (_db, server, _rpc) = setup(backend).await?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    let options = WriteOptions {
        lease: Some(Duration::from_secs(1)),
        ..WriteOptions::default()
    };
    let data = SlowInput::new(12, Duration::from_millis(250));
    let committed = client
        .write(
            &TableName::new("sales", "items"),
            PartitionData {
                partition: PartitionSpec::named([("ds", "slow")]),
                expected: None,
                data: Rows::stream(data),
            },
            "slow input",
            &options,
            None,
        )
        .await?;
    assert_eq!((committed.version, committed.rows), (1, 12));
    Ok(())
}

/// A write cancelled while its input is being read returns only once the reading has ended
/// and the input is released: nothing of the caller's is still in use after it (a Python
/// process exiting then would free pyarrow memory after pyarrow is gone).
async fn a_cancelled_write_ends_with_the_reading_of_its_input(
    backend: Backend,
) -> anyhow::Result<()> {
    use batchstore_client::{
        Client, ClientError, PartitionData, PartitionSpec, Rows, TableName, WriteOptions,
    };
    let (_db, server, _rpc) = setup(backend).await?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    let data = SlowInput::new(100, Duration::from_millis(300));
    let released = data.released.clone();
    let options = WriteOptions::default();
    let cancel = options.cancel.clone();
    let cancelling = tokio::spawn(async move {
        // Mid-way through the second batch's read.
        tokio::time::sleep(Duration::from_millis(450)).await;
        cancel.cancel();
    });
    let written = client
        .write(
            &TableName::new("sales", "items"),
            PartitionData {
                partition: PartitionSpec::named([("ds", "cancelled")]),
                expected: None,
                data: Rows::stream(data),
            },
            "cancelled",
            &options,
            None,
        )
        .await;
    let released_on_return = released.load(std::sync::atomic::Ordering::SeqCst);
    cancelling.await?;
    assert!(
        matches!(written, Err(ClientError::Cancelled { .. })),
        "{written:?}"
    );
    assert!(released_on_return, "the input was still being read");
    Ok(())
}

/// The states of a table's batches in the catalog, as `state|count` lines in state order.
fn batch_states(db: &TestDatabase, table: &str) -> anyhow::Result<String> {
    catalog_query(
        db,
        &format!(
            "SELECT state, count(*) FROM batches WHERE table_id IN \
             (SELECT id FROM tables WHERE name = '{table}') GROUP BY state ORDER BY state"
        ),
    )
}

/// Batches begun before their data is ready (a front end converting its frame meanwhile) are
/// written by the write they were begun for, create the table first only with the data in
/// hand, and are aborted, not left pending, when that write does not happen or names other
/// partitions.
async fn a_batch_begun_early_is_written_or_given_up(backend: Backend) -> anyhow::Result<()> {
    use batchstore_client::{
        Client, ClientError, PartitionData, PartitionSpec, Rows, TableName, WriteOptions,
        WriteRequest,
    };
    let (db, server, _rpc) = setup(backend).await?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    let options = WriteOptions {
        create_table_if_missing: true,
        ..WriteOptions::default()
    };
    let one_row = |partition: &str| {
        let batch = arrow_array::RecordBatch::try_from_iter([(
            "v",
            std::sync::Arc::new(arrow_array::Int64Array::from(vec![7])) as arrow_array::ArrayRef,
        )])
        .map_err(anyhow::Error::from)?;
        let reader = arrow_array::RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        Ok::<_, anyhow::Error>(PartitionData {
            partition: PartitionSpec::named([("ds", partition)]),
            expected: None,
            data: Rows::stream(reader),
        })
    };
    let write_to = |table: &TableName, partition: &str| {
        Ok::<_, anyhow::Error>(WriteRequest {
            table: table.clone(),
            partitions: vec![one_row(partition)?],
            message: String::new(),
            inputs: Vec::new(),
        })
    };
    let named = |partition: &str| vec![PartitionSpec::named([("ds", partition)])];

    // A table that does not exist yet: the early begin finds it missing and creates nothing;
    // the write creates it and commits.
    let fresh = TableName::new("early", "fresh");
    let early = client.begin_early(&fresh, named("1"), &options);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(
        client.get_table(&fresh).await,
        Err(ClientError::NotFound { .. })
    ));
    let committed = client
        .write_begun(write_to(&fresh, "1")?, &options, None, early)
        .await?;
    assert_eq!(committed.len(), 1);
    assert_eq!((committed[0].version, committed[0].rows), (1, 1));
    assert_eq!(batch_states(&db, "fresh")?, "committed|1\n");

    // An existing table: the batch begun early is the one committed.
    let early = client.begin_early(&fresh, named("2"), &options);
    let committed = client
        .write_begun(write_to(&fresh, "2")?, &options, None, early)
        .await?;
    assert_eq!(committed[0].version, 1);
    assert_eq!(batch_states(&db, "fresh")?, "committed|2\n");

    // Begun for other partitions than the write's: refused, and the batch is aborted.
    let early = client.begin_early(&fresh, named("3"), &options);
    let refused = client
        .write_begun(write_to(&fresh, "4")?, &options, None, early)
        .await;
    assert!(
        matches!(refused, Err(ClientError::InvalidArgument(_))),
        "{refused:?}"
    );
    assert_eq!(batch_states(&db, "fresh")?, "aborted|1\ncommitted|2\n");

    // A write that does not happen: aborted at once, the partition untouched.
    let early = client.begin_early(&fresh, named("1"), &options);
    early.abort().await;
    assert_eq!(batch_states(&db, "fresh")?, "aborted|2\ncommitted|2\n");

    // Merely dropped once begun: aborted in the background.
    let early = client.begin_early(&fresh, named("1"), &options);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(early);
    let mut states = String::new();
    for _ in 0..50 {
        states = batch_states(&db, "fresh")?;
        if states == "aborted|3\ncommitted|2\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(states, "aborted|3\ncommitted|2\n");
    let history = client
        .history(&fresh, &PartitionSpec::named([("ds", "1")]))
        .await?;
    assert_eq!(history.len(), 1);
    Ok(())
}

/// A record batch as the bytes of a Parquet file.
fn parquet_bytes(batch: &arrow_array::RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None)?;
    writer.write(batch)?;
    Ok(writer.into_inner()?)
}

/// The catalog records only facts it checked when the warehouse is on S3 too: the footer of
/// each file is read from the bucket, and a schema, a row count or a size that the file does
/// not bear out is refused, as is a file that is not there; a true commit records the rows
/// the footers hold.
async fn footers_are_checked_on_s3(backend: Backend) -> anyhow::Result<()> {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use batchstore_tests::s3::S3Server;
    use std::sync::Arc;
    let db = TestDatabase::create(backend)?;
    let s3 = S3Server::start("lake")?;
    let server = Metastore::start_with_env(&db.url, "s3://lake/warehouse", &[], &s3.env())?;
    let mut client = server.client().await?;
    create_table(&mut client, "sales", "items").await?;
    let key_of = |location: &str, name: &str| -> anyhow::Result<String> {
        let prefix = location
            .strip_prefix("s3://lake/")
            .ok_or_else(|| anyhow::anyhow!("not in the bucket: {location}"))?;
        Ok(format!("{prefix}/{name}"))
    };
    let ints = |n: i64| -> anyhow::Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from_iter_values(0..n))],
        )?)
    };
    let entry = |name: &str, bytes: &[u8], rows: i64| pb::DataFile {
        path: name.to_owned(),
        size_bytes: bytes.len() as i64,
        rows,
    };

    // Strings declared as int64.
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let strings = parquet_bytes(&RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["hello"]))],
    )?)?;
    s3.put(&key_of(&begun.location, "part-00000.parquet")?, &strings)?;
    let refused = client
        .commit(commit_request(
            begun.batch_id.clone(),
            vec![entry("part-00000.parquet", &strings, 1)],
            None,
        ))
        .await
        .expect_err("strings are not int64");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("\"x\""), "{}", refused.message());

    // Rows and sizes the footer does not bear out; a file that is not there.
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let two = parquet_bytes(&ints(2)?)?;
    s3.put(&key_of(&begun.location, "part-00000.parquet")?, &two)?;
    for lie in [
        entry("part-00000.parquet", &two, 3),
        pb::DataFile {
            size_bytes: two.len() as i64 + 1,
            ..entry("part-00000.parquet", &two, 2)
        },
        entry("part-00009.parquet", &two, 2),
    ] {
        let refused = client
            .commit(commit_request(
                begun.batch_id.clone(),
                vec![lie.clone()],
                None,
            ))
            .await
            .expect_err("a lie");
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{lie:?}: {refused:?}"
        );
    }
    // The truth commits, with the rows the footer holds.
    let committed = client
        .commit(commit_request(
            begun.batch_id.clone(),
            vec![entry("part-00000.parquet", &two, 2)],
            None,
        ))
        .await?
        .into_inner();
    assert_eq!(committed.committed[0].rows, 2);
    assert_eq!(committed.committed[0].version, 1);
    Ok(())
}

/// A batch whose row the catalog lost (PostgreSQL restarted before BeginWrite's row reached
/// disk; here deleted behind the server's back) while the server still remembers it: its
/// commit says the batch does not exist, changes nothing, and the server goes on serving.
async fn a_commit_of_a_batch_the_catalog_lost_is_not_found(backend: Backend) -> anyhow::Result<()> {
    let (db, _server, mut client) = setup(backend).await?;
    let updates = staged(&mut client, &["1"], &[("part-00000.parquet", 3)]).await?;
    let batch_id = updates[0].batch_id.clone();
    catalog_query(
        &db,
        &format!("DELETE FROM batches WHERE batch_id = '{batch_id}'"),
    )?;
    let refused = client
        .commit(commit_of(updates, "lost"))
        .await
        .expect_err("the batch is gone");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert!(
        refused.message().contains(&batch_id),
        "{}",
        refused.message()
    );
    let files = catalog_query(&db, "SELECT count(*) FROM batch_files")?;
    assert_eq!(files.trim(), "0", "nothing of the commit stays");
    let history = catalog_query(&db, "SELECT count(*) FROM history")?;
    assert_eq!(history.trim(), "0");
    // The next write of the partition commits as version 1.
    let committed = write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    assert_eq!(committed.version, 1);
    Ok(())
}

/// The catalog records a commit's files in statements of a bounded size: whatever their
/// number, every file of a commit is recorded once, with its rows, and none of a commit that
/// is refused.
async fn every_file_of_a_commit_is_recorded_or_none(backend: Backend) -> anyhow::Result<()> {
    let (db, _server, mut client) = setup(backend).await?;
    let names = |count: usize| -> Vec<(String, i64)> {
        (0..count)
            .map(|i| (format!("part-{i:05}.parquet"), 1 + (i % 3) as i64))
            .collect()
    };
    let recorded = |batch_id: &str| -> anyhow::Result<String> {
        catalog_query(
            &db,
            &format!(
                "SELECT count(*), count(DISTINCT path), coalesce(sum(rows), 0) \
                 FROM batch_files WHERE batch_id = '{batch_id}'"
            ),
        )
        .map(|out| out.trim().replace(['|', ','], " "))
    };
    let expect = |files: &[(String, i64)]| {
        let rows: i64 = files.iter().map(|(_, r)| r).sum();
        format!("{} {} {rows}", files.len(), files.len())
    };
    fn stage(files: &[(String, i64)]) -> Vec<(&str, i64)> {
        files
            .iter()
            .map(|(name, rows)| (name.as_str(), *rows))
            .collect()
    }
    // One partition per commit, at and around each statement's bound.
    for (i, count) in [1, 3, 200, 201, 401].into_iter().enumerate() {
        let files = names(count);
        let updates = staged(&mut client, &[&format!("n{i}")], &stage(&files)).await?;
        let batch_id = updates[0].batch_id.clone();
        let committed = client
            .commit(commit_of(updates, "files"))
            .await?
            .into_inner();
        assert_eq!(committed.committed[0].version, 1, "{count} files");
        assert_eq!(recorded(&batch_id)?, expect(&files), "{count} files");
    }
    // Two partitions in one commit, on both sides of the bound.
    let (small, large) = (names(200), names(201));
    let mut updates = staged(&mut client, &["m1"], &stage(&small)).await?;
    updates.extend(staged(&mut client, &["m2"], &stage(&large)).await?);
    let ids: Vec<String> = updates.iter().map(|u| u.batch_id.clone()).collect();
    client.commit(commit_of(updates, "two")).await?;
    assert_eq!(recorded(&ids[0])?, expect(&small));
    assert_eq!(recorded(&ids[1])?, expect(&large));
    // A refused compare-and-swap records none, whatever the number of files.
    for count in [3, 201] {
        let mut updates = staged(&mut client, &["n0"], &stage(&names(count))).await?;
        updates[0].expected_current_batch_id = Some(ids[0].clone());
        let batch_id = updates[0].batch_id.clone();
        let refused = client
            .commit(commit_of(updates, "stale"))
            .await
            .expect_err("a stale expectation");
        assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
        assert_eq!(recorded(&batch_id)?, "0 0 0", "{count} files");
    }
    Ok(())
}
