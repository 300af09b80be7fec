//! Fault injection: writes through a proxy that cuts the metastore's replies (and their
//! connections), ends reply messages early or garbles them, at random must each end in a truthful outcome, and the catalog must never
//! show a partial, duplicate or phantom commit. Every write carries its own number in its
//! data, so what each version holds can be traced back to the write that made it.

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use batchstore_client::{
    Client, ClientError, Expected, KeyType, PartitionData, PartitionKey, PartitionSpec, RollbackTo,
    Rows, TableName, WriteOptions, WriteRequest,
};
use batchstore_tests::proxy::{Block, Fault, FaultProxy};
use batchstore_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

on_both_backends!(
    lost_replies_never_duplicate_or_lose_a_write,
    truncated_replies_never_duplicate_or_lose_a_write,
    lost_replies_never_duplicate_a_rollback,
    truncated_replies_never_duplicate_a_rollback,
    garbled_replies_never_duplicate_or_lose_a_write,
    garbled_replies_never_duplicate_a_rollback,
    a_refusal_after_a_lost_reply_is_settled_not_trusted,
);

/// Writes in one run; `BATCHSTORE_FAULT_WRITES` raises it (`make test-long`).
fn writes() -> usize {
    std::env::var("BATCHSTORE_FAULT_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn frame(write: i64, partitions: usize) -> Vec<(String, RecordBatch)> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "write",
        DataType::Int64,
        false,
    )]));
    (0..partitions)
        .map(|p| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![write; 3]))],
            )
            .expect("a valid batch");
            (format!("p{}", (write as usize + p) % 4), batch)
        })
        .collect()
}

#[derive(Debug, Default)]
struct Outcomes {
    /// write number → (partition, batch, version) for each partition it committed.
    acknowledged: BTreeMap<i64, Vec<(String, String, i64)>>,
    unknown: BTreeSet<i64>,
    /// write number → the error it was refused with.
    refused: BTreeMap<i64, String>,
}

async fn lost_replies_never_duplicate_or_lose_a_write(backend: Backend) -> anyhow::Result<()> {
    writes_through(backend, Fault::Cut, 120).await
}

/// A reply message that ends early without any transport error (the client's gRPC layer
/// reports INTERNAL, which the metastore did not send) leaves the outcome unknown too.
async fn truncated_replies_never_duplicate_or_lose_a_write(backend: Backend) -> anyhow::Result<()> {
    writes_through(backend, Fault::Truncate, 150).await
}

/// A reply whose message length is garbled (the client's gRPC layer reports OUT_OF_RANGE,
/// which the metastore did not send) leaves the outcome unknown too.
async fn garbled_replies_never_duplicate_or_lose_a_write(backend: Backend) -> anyhow::Result<()> {
    writes_through(backend, Fault::Garble, 150).await
}

/// Writes through a proxy that breaks replies as `fault` says (`per_mille` of the chunks),
/// then the catalog compared with what each write was told.
async fn writes_through(backend: Backend, fault: Fault, per_mille: u64) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let direct = Client::connect(Some(&server.endpoint())).await?;
    let table = TableName::new("sales", "faults");
    direct.create_namespace("sales", true).await?;
    direct
        .create_table(
            &table,
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    let seed = match backend {
        Backend::Sqlite => 7,
        Backend::Postgres => 11,
    };
    let proxy = FaultProxy::start_with(&server.address, fault, per_mille, seed).await?;
    let faulty = loop {
        // Connecting may itself meet a cut; that is not what this test is about.
        if let Ok(client) = Client::connect(Some(&proxy.endpoint())).await {
            break client;
        }
    };
    let mut outcomes = Outcomes::default();
    let total = writes();
    for write in 0..total as i64 {
        // Every third write commits two partitions at once.
        let parts = frame(write, if write % 3 == 0 { 2 } else { 1 });
        let partitions = parts
            .into_iter()
            .map(|(ds, batch)| PartitionData {
                partition: PartitionSpec::named([("ds", ds)]),
                expected: None,
                data: Rows::Batches(batch.schema(), vec![batch.clone()]),
            })
            .collect();
        let request = WriteRequest {
            table: table.clone(),
            partitions,
            message: format!("write {write}"),
            inputs: vec![],
        };
        match faulty
            .write_partitions(request, &WriteOptions::default(), None)
            .await
        {
            Ok(committed) => {
                let entry = committed
                    .into_iter()
                    .map(|c| {
                        let ds = c.partition[0].1.clone();
                        (ds, c.batch_id, c.version)
                    })
                    .collect();
                outcomes.acknowledged.insert(write, entry);
            }
            Err(ClientError::OutcomeUnknown(_)) => {
                outcomes.unknown.insert(write);
            }
            Err(error) => {
                outcomes.refused.insert(write, error.to_string());
            }
        }
    }
    proxy.set_armed(false);

    // What the catalog holds, version by version, traced to the write that made it.
    let mut made_by: BTreeMap<i64, Vec<(String, String, i64)>> = BTreeMap::new();
    let mut batches_seen = BTreeSet::new();
    for (ds, batch, version, write) in trace_versions(&direct, &table).await? {
        assert!(
            batches_seen.insert(batch.clone()),
            "batch {batch} appears twice in history: a duplicate commit"
        );
        made_by.entry(write).or_default().push((ds, batch, version));
    }
    for (write, mut made) in made_by.clone() {
        made.sort();
        match outcomes.acknowledged.get(&write) {
            Some(acknowledged) => {
                let mut acknowledged = acknowledged.clone();
                acknowledged.sort();
                assert_eq!(
                    made, acknowledged,
                    "write {write} is recorded as acknowledged"
                );
            }
            None => assert!(
                outcomes.unknown.contains(&write),
                "write {write} was reported refused, yet it is in the catalog: {made:?} ({:?})",
                outcomes.refused.get(&write)
            ),
        }
        let expected_partitions = if write % 3 == 0 { 2 } else { 1 };
        assert_eq!(made.len(), expected_partitions, "write {write} is partial");
    }
    for write in outcomes.acknowledged.keys() {
        assert!(
            made_by.contains_key(write),
            "acknowledged write {write} is not in the catalog"
        );
    }
    println!(
        "fault injection ({backend:?}, {fault:?}): {total} writes, {} replies broken; {} \
         acknowledged, {} refused truthfully, {} outcome unknown ({} of them committed); 0 \
         divergences",
        proxy.cuts(),
        outcomes.acknowledged.len(),
        outcomes.refused.len(),
        outcomes.unknown.len(),
        outcomes
            .unknown
            .iter()
            .filter(|w| made_by.contains_key(w))
            .count()
    );
    assert!(proxy.cuts() > 0, "the proxy injected faults");
    Ok(())
}

/// Rollbacks through the proxy that cuts replies, while another client keeps writing to the
/// same partition: a rollback resent after its reply was lost, and after a write landed
/// meanwhile, must be answered with the version it made, never make a second one. Each
/// rollback's message names it, so its history entries can be counted.
async fn lost_replies_never_duplicate_a_rollback(backend: Backend) -> anyhow::Result<()> {
    rollbacks_through(backend, Fault::Cut).await
}

async fn truncated_replies_never_duplicate_a_rollback(backend: Backend) -> anyhow::Result<()> {
    rollbacks_through(backend, Fault::Truncate).await
}

async fn garbled_replies_never_duplicate_a_rollback(backend: Backend) -> anyhow::Result<()> {
    rollbacks_through(backend, Fault::Garble).await
}

async fn rollbacks_through(backend: Backend, fault: Fault) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let direct = Client::connect(Some(&server.endpoint())).await?;
    let table = TableName::new("sales", "rollbacks");
    let partition = PartitionSpec::named([("ds", "r")]);
    write_one(&direct, &table, &partition, 0).await?;
    write_one(&direct, &table, &partition, 1).await?;
    let seed = match backend {
        Backend::Sqlite => 5,
        Backend::Postgres => 13,
    };
    let proxy = FaultProxy::start_with(&server.address, fault, 150, seed).await?;
    let faulty = loop {
        if let Ok(client) = Client::connect(Some(&proxy.endpoint())).await {
            break client;
        }
    };
    let stop = batchstore_client::CancellationToken::new();
    let writer = tokio::spawn({
        let (direct, stop) = (direct.clone(), stop.clone());
        let (table, partition) = (table.clone(), partition.clone());
        async move {
            let mut n = 2;
            while !stop.is_cancelled() {
                write_one(&direct, &table, &partition, n).await?;
                n += 1;
            }
            Ok::<_, ClientError>(n - 2)
        }
    });
    let total = writes();
    let (mut acknowledged, mut unknown, mut refused) = (BTreeMap::new(), 0, BTreeMap::new());
    for r in 0..total as i64 {
        let target = RollbackTo::Version(1 + r % 2);
        match faulty
            .rollback(&table, &partition, target, None, &format!("rollback {r}"))
            .await
        {
            Ok(info) => {
                acknowledged.insert(format!("rollback {r}"), info.version);
            }
            Err(error) if error.retryable() => unknown += 1,
            // Already current by an earlier rollback: refused before any change.
            Err(error) => {
                refused.insert(format!("rollback {r}"), error.to_string());
            }
        }
    }
    stop.cancel();
    let written = writer.await??;
    proxy.set_armed(false);

    let mut made: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for entry in direct.history(&table, &partition).await? {
        if entry.operation == "rollback" {
            made.entry(entry.message).or_default().push(entry.version);
        }
    }
    for (message, versions) in &made {
        assert_eq!(versions.len(), 1, "{message} made versions {versions:?}");
    }
    for (message, version) in &acknowledged {
        assert_eq!(
            made.get(message),
            Some(&vec![*version]),
            "{message} was acknowledged at version {version}"
        );
    }
    for (message, error) in &refused {
        assert!(
            !made.contains_key(message),
            "{message} was refused ({error}), yet it made version(s) {:?}",
            made.get(message)
        );
    }
    println!(
        "rollback faults ({backend:?}, {fault:?}): {total} rollbacks beside {written} writes, {} \
         replies broken; {} acknowledged, {} refused truthfully, {unknown} outcome unknown; 0 \
         duplicates",
        proxy.cuts(),
        acknowledged.len(),
        refused.len(),
    );
    assert!(proxy.cuts() > 0, "the proxy injected faults");
    Ok(())
}

/// Writes write number `n` (three rows) to one partition, creating the table if needed.
async fn write_one(
    client: &Client,
    table: &TableName,
    partition: &PartitionSpec,
    n: i64,
) -> Result<(), ClientError> {
    let (_, batch) = frame(n, 1).remove(0);
    let data = PartitionData {
        partition: partition.clone(),
        expected: None,
        data: Rows::Batches(batch.schema(), vec![batch.clone()]),
    };
    let options = WriteOptions {
        create_table_if_missing: true,
        ..WriteOptions::default()
    };
    client
        .write(table, data, "", &options, None)
        .await
        .map(|_| ())
}

/// A server that accepts connections and never answers: a call ends with a clear error
/// after the call bound instead of hanging (the harness timeout only guards against a hang).
#[test]
fn a_stalled_metastore_is_an_error_not_a_hang() -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(4) {
            open.push(stream);
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let tablectl = batchstore_tests::tablectl::Tablectl {
        endpoint: format!("http://{address}"),
        env: vec![("BATCHSTORE_CALL_TIMEOUT_SECONDS".into(), "2".into())],
    };
    let mut child = tablectl
        .command(&["namespace", "list"])?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let started = std::time::Instant::now();
    while child.try_wait()?.is_none() {
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "tablectl hung on a stalled metastore"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error:"), "{stderr}");
    drop(held);
    Ok(())
}

/// A commit resent after its reply was lost, and refused, says nothing about the first send:
/// the write must not report the refusal as the truth unless it made sure nothing was
/// committed. The metastore holds each commit's transaction open for a while (a fault the
/// debug build injects), so the proxy can cut the client off while a commit is in flight.
async fn a_refusal_after_a_lost_reply_is_settled_not_trusted(
    backend: Backend,
) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let warehouse = tempfile::tempdir()?;
    let server = Metastore::start_with_env(
        &db.url,
        &warehouse.path().display().to_string(),
        &[],
        &pausing_commits(std::time::Duration::from_millis(1000)),
    )?;
    // The data files written so far: a new one means a write uploaded and sends its commit.
    let uploaded = || {
        fn count(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        count(&path)
                    } else {
                        usize::from(path.extension().is_some_and(|e| e == "parquet"))
                    }
                })
                .sum()
        }
        count(warehouse.path())
    };
    let in_flight = |files: usize| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while uploaded() == files {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the write never uploaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The commit follows its upload at once, and the metastore holds it for a second.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        anyhow::Ok(())
    };
    let direct = Client::connect(Some(&server.endpoint())).await?;
    let table = TableName::new("sales", "settled");
    let partition = PartitionSpec::named([("ds", "p")]);
    write_one(&direct, &table, &partition, 0).await?;
    let proxy = FaultProxy::start(&server.address, 0, 1).await?;
    let faulty = Client::connect(Some(&proxy.endpoint())).await?;
    let request = |n: i64, expected: Option<Expected>| {
        let (_, batch) = frame(n, 1).remove(0);
        WriteRequest {
            table: table.clone(),
            partitions: vec![PartitionData {
                partition: partition.clone(),
                expected,
                data: Rows::Batches(batch.schema(), vec![batch]),
            }],
            message: format!("write {n}"),
            inputs: vec![],
        }
    };
    let current = || async {
        let history = direct.history(&table, &partition).await?;
        let newest = history.iter().max_by_key(|e| e.version);
        anyhow::Ok(newest.map(|e| e.batch_id.clone()).unwrap_or_default())
    };

    // The first send is given up by the metastore (its connection closes during the
    // commit); another write moves the partition; the resend's compare-and-swap fails. The
    // refusal is true, and the client proves it by aborting the batch first.
    let before = current().await?;
    let files = uploaded();
    let write = tokio::spawn({
        let (faulty, request) = (
            faulty.clone(),
            request(1, Some(Expected::Batch(before.clone()))),
        );
        async move {
            faulty
                .write_partitions(request, &WriteOptions::default(), None)
                .await
        }
    });
    in_flight(files).await?;
    proxy.block(Block::Close);
    write_one(&direct, &table, &partition, 2).await?;
    proxy.block(Block::Open);
    let outcome = write.await?;
    let after = current().await?;
    match &outcome {
        Err(ClientError::Conflict { .. }) => {
            let history = direct.history(&table, &partition).await?;
            assert!(
                !history.iter().any(|e| e.message == "write 1"),
                "refused, yet committed: {history:?}"
            );
        }
        other => panic!("the resend's conflict, settled, is the answer; got {other:?}"),
    }
    assert_ne!(after, before, "the other write moved the partition");

    // The first send commits but its reply is lost; the table is dropped before the resend
    // arrives, which is then refused (NOT_FOUND). The client cannot abort the batch to prove
    // anything (it is committed), so the outcome is unknown, never "not found".
    let files = uploaded();
    let write = tokio::spawn({
        let (faulty, request) = (faulty.clone(), request(3, None));
        async move {
            faulty
                .write_partitions(request, &WriteOptions::default(), None)
                .await
        }
    });
    in_flight(files).await?;
    proxy.block(Block::LoseReplies);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !direct
        .history(&table, &partition)
        .await?
        .iter()
        .any(|e| e.message == "write 3")
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the commit whose reply was lost never landed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    direct.drop_table(&table).await?;
    proxy.block(Block::Open);
    let outcome = write.await?;
    assert!(
        matches!(outcome, Err(ClientError::OutcomeUnknown(_))),
        "a committed write must not be reported refused: {outcome:?}"
    );
    println!("settled ({backend:?}): a true refusal after a lost reply, and an unknown outcome");
    Ok(())
}
