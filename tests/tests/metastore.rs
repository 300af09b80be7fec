//! The metastore conformance suite: every scenario runs against the real `metastore` binary,
//! once on SQLite and once on a fresh PostgreSQL database, over gRPC.

use batchstore_proto::v1 as pb;
use batchstore_tests::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::Code;

on_both_backends!(
    lifecycle,
    cas_conflict,
    idempotent_commit_retry,
    atomic_multi_partition_commit,
    missing_or_wrong_files_are_refused,
    hostile_names,
    concurrent_commits_one_partition,
    expired_lease_abandons_batch,
    aborted_batch_cannot_commit,
    schema_mismatch_names_column,
    paging_and_lineage,
    graceful_shutdown_finishes_commit,
    commit_after_table_drop_is_refused,
    undecodable_requests_are_invalid_argument,
);

struct Fixture {
    _db: TestDatabase,
    server: Metastore,
    client: metastore_client::MetastoreClient<tonic::transport::Channel>,
}

async fn fixture(backend: Backend, extra_args: &[&str]) -> anyhow::Result<Fixture> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, extra_args)?;
    let client = server.client().await?;
    Ok(Fixture {
        _db: db,
        server,
        client,
    })
}

/// What a NOT_FOUND status says is missing, and its name, from the status's metadata.
fn missing(status: &tonic::Status) -> (String, String) {
    use batchstore_proto::wire::{MISSING_KEY, MISSING_NAME_KEY};
    let what = status
        .metadata()
        .get(MISSING_KEY)
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let name = status
        .metadata()
        .get_bin(MISSING_NAME_KEY)
        .and_then(|v| v.to_bytes().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    (what.unwrap_or_default(), name.unwrap_or_default())
}

fn ds(value: &str) -> pb::PartitionSpec {
    spec(&[("ds", value)])
}

async fn resolve(
    client: &mut metastore_client::MetastoreClient<tonic::transport::Channel>,
    partitions: Vec<pb::PartitionSpec>,
    kind: Option<pb::selector::Kind>,
) -> Result<Vec<pb::ResolvedPartition>, tonic::Status> {
    Ok(client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("sales", "items"),
            partitions,
            selector: Some(pb::Selector { kind }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .partitions)
}

async fn lifecycle(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let p = ds("20161031");
    let mut commits = Vec::new();
    for _ in 0..3 {
        commits.push(write_once(&mut client, "sales", "items", &p, None).await?);
    }
    assert_eq!(
        commits.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        commits
            .windows(2)
            .all(|w| w[0].committed_at_micros < w[1].committed_at_micros)
    );

    let history = full_history(&mut client, "sales", "items", &p).await?;
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert!(history[0].current && !history[1].current);
    assert_eq!(history[2].batch_id, commits[0].batch_id);
    assert_eq!(history[0].operation, "write");
    assert_eq!(history[0].actor, "tests");

    // Roll back to version 1: a new version 4 that points at batch 1; nothing is deleted.
    let rolled = client
        .rollback(pb::RollbackRequest {
            table: table_ref("sales", "items"),
            partition: Some(p.clone()),
            target: Some(pb::rollback_request::Target::ToVersion(1)),
            expected_current_batch_id: Some(commits[2].batch_id.clone()),
            message: String::new(),
            actor: "ops".into(),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .committed
        .expect("committed");
    assert_eq!(
        (rolled.version, rolled.batch_id.as_str()),
        (4, commits[0].batch_id.as_str())
    );
    let history = full_history(&mut client, "sales", "items", &p).await?;
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].operation, "rollback");
    assert_eq!(history[0].actor, "ops");
    assert_eq!(history[0].message, "rollback to version 1");

    use pb::selector::Kind;
    let current = resolve(&mut client, vec![p.clone()], None).await?;
    assert_eq!(
        (current[0].batch_id.as_str(), current[0].version),
        (commits[0].batch_id.as_str(), 4)
    );
    assert_eq!(current[0].files.len(), 1);
    assert_eq!(current[0].files[0].path, "part-00000.parquet");
    let v2 = resolve(&mut client, vec![p.clone()], Some(Kind::Version(2))).await?;
    assert_eq!(v2[0].batch_id, commits[1].batch_id);
    let by_batch = resolve(
        &mut client,
        vec![],
        Some(Kind::BatchId(commits[2].batch_id.clone())),
    )
    .await?;
    assert_eq!(
        (by_batch[0].batch_id.as_str(), by_batch[0].version),
        (commits[2].batch_id.as_str(), 3)
    );
    let as_of = resolve(
        &mut client,
        vec![p.clone()],
        Some(Kind::AsOfMicros(commits[2].committed_at_micros - 1)),
    )
    .await?;
    assert_eq!(
        as_of[0].batch_id, commits[1].batch_id,
        "as-of just before v3 must see v2"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let as_of_now = resolve(&mut client, vec![], Some(Kind::AsOfMicros(now))).await?;
    assert_eq!(as_of_now[0].batch_id, commits[0].batch_id);
    // A time that has not come yet could still change: refused, not answered.
    let future = resolve(&mut client, vec![], Some(Kind::AsOfMicros(i64::MAX))).await;
    assert_eq!(
        future.expect_err("the future").code(),
        Code::InvalidArgument
    );
    let before_all = resolve(
        &mut client,
        vec![p.clone()],
        Some(Kind::AsOfMicros(commits[0].committed_at_micros - 1)),
    )
    .await;
    assert_eq!(
        before_all.expect_err("nothing before v1").code(),
        Code::NotFound
    );
    let no_v9 = resolve(&mut client, vec![p.clone()], Some(Kind::Version(9)))
        .await
        .expect_err("no v9");
    assert_eq!(no_v9.code(), Code::NotFound);
    assert_eq!(missing(&no_v9), ("version".into(), "9".into()));
    assert!(no_v9.message().contains("1 to 4"), "{}", no_v9.message());

    client
        .create_tag(pb::CreateTagRequest {
            table: table_ref("sales", "items"),
            name: "training-2016-11".into(),
            target: Some(pb::create_tag_request::Target::PartitionVersion(
                pb::PartitionVersion {
                    partition: Some(p.clone()),
                    version: 2,
                },
            )),
        })
        .await?;
    let tagged = resolve(
        &mut client,
        vec![],
        Some(Kind::Tag("training-2016-11".into())),
    )
    .await?;
    assert_eq!(tagged[0].batch_id, commits[1].batch_id);
    let tags = client
        .list_tags(pb::ListTagsRequest {
            table: table_ref("sales", "items"),
        })
        .await?
        .into_inner()
        .tags;
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].version, 2);
    let dup = client
        .create_tag(pb::CreateTagRequest {
            table: table_ref("sales", "items"),
            name: "training-2016-11".into(),
            target: Some(pb::create_tag_request::Target::BatchId(
                commits[0].batch_id.clone(),
            )),
        })
        .await
        .expect_err("duplicate tag");
    assert_eq!(dup.code(), Code::AlreadyExists);
    client
        .delete_tag(pb::DeleteTagRequest {
            table: table_ref("sales", "items"),
            name: "training-2016-11".into(),
        })
        .await?;
    let gone = resolve(
        &mut client,
        vec![],
        Some(Kind::Tag("training-2016-11".into())),
    )
    .await
    .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(missing(&gone), ("tag".into(), "training-2016-11".into()));

    let table = client
        .get_table(pb::GetTableRequest {
            table: table_ref("sales", "items"),
        })
        .await?
        .into_inner()
        .table
        .expect("table");
    assert_eq!(table.partition_count, 1);
    assert!(
        !table.arrow_schema.is_empty(),
        "the first write fixes the schema"
    );

    let missing = client
        .get_table(pb::GetTableRequest {
            table: table_ref("sales", "nope"),
        })
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        self::missing(&missing),
        ("table".into(), "sales.nope".into())
    );
    assert!(
        missing.message().contains("sales.nope"),
        "{}",
        missing.message()
    );
    Ok(())
}

async fn cas_conflict(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let p = ds("1");
    let first = write_once(&mut client, "sales", "items", &p, Some("-".into())).await?;
    let again_new = write_once(&mut client, "sales", "items", &p, Some("-".into()))
        .await
        .expect_err("not new");
    assert_eq!(again_new.code(), Code::Aborted);

    let winner = write_once(
        &mut client,
        "sales",
        "items",
        &p,
        Some(first.batch_id.clone()),
    )
    .await?;
    let stale = write_once(
        &mut client,
        "sales",
        "items",
        &p,
        Some(first.batch_id.clone()),
    )
    .await
    .expect_err("stale");
    assert_eq!(stale.code(), Code::Aborted);
    assert!(
        stale.message().contains(&winner.batch_id),
        "the message names the winner: {}",
        stale.message()
    );
    assert_eq!(
        stale
            .metadata()
            .get("batchstore-error-kind")
            .and_then(|v| v.to_str().ok()),
        Some("conflict")
    );
    let history = full_history(&mut client, "sales", "items", &p).await?;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].batch_id, winner.batch_id);
    Ok(())
}

async fn idempotent_commit_retry(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let p = ds("1");
    write_once(&mut client, "sales", "items", &p, None).await?;
    let begun = begin(&mut client, "sales", "items", &p, 0).await?;
    assert_eq!(begun.current_version, 1);
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    let request = pb::CommitRequest {
        updates: vec![pb::PartitionUpdate {
            batch_id: begun.batch_id.clone(),
            files: vec![file],
            arrow_schema: int_schema(),
            expected_current_batch_id: Some(begun.current_batch_id.clone()),
            input_batch_ids: vec![],
        }],
        message: "m".into(),
        actor: "a".into(),
    };
    let first = client.commit(request.clone()).await?.into_inner();
    // The reply was "lost": the client retries the same request, even after another write.
    write_once(&mut client, "sales", "items", &p, None).await?;
    let retry = client.commit(request).await?.into_inner();
    assert!(!first.already_committed);
    assert!(retry.already_committed);
    assert_eq!(retry.committed[0].version, first.committed[0].version);
    assert_eq!(retry.committed[0].version, 2);
    assert_eq!(
        full_history(&mut client, "sales", "items", &p).await?.len(),
        3
    );
    Ok(())
}

async fn atomic_multi_partition_commit(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let (p1, p2) = (ds("a"), ds("b"));
    let a1 = write_once(&mut client, "sales", "items", &p1, None).await?;
    let b1 = write_once(&mut client, "sales", "items", &p2, None).await?;
    let mut updates = Vec::new();
    for (p, expected) in [(&p1, a1.batch_id.clone()), (&p2, a1.batch_id.clone())] {
        let begun = begin(&mut client, "sales", "items", p, 0).await?;
        updates.push(pb::PartitionUpdate {
            files: vec![upload(&begun.location, "part-00000.parquet", 1)?],
            batch_id: begun.batch_id,
            arrow_schema: int_schema(),
            // p1's expectation holds, p2's is stale (it names p1's batch).
            expected_current_batch_id: Some(expected),
            input_batch_ids: vec![],
        });
    }
    let refused = client
        .commit(pb::CommitRequest {
            updates: updates.clone(),
            message: "both".into(),
            actor: String::new(),
        })
        .await
        .expect_err("one update is stale");
    assert_eq!(refused.code(), Code::Aborted);
    for (p, batch) in [(&p1, &a1.batch_id), (&p2, &b1.batch_id)] {
        let history = full_history(&mut client, "sales", "items", p).await?;
        assert_eq!(history.len(), 1, "nothing applied");
        assert_eq!(&history[0].batch_id, batch);
    }
    // Fixed, the same batches commit together.
    updates[1].expected_current_batch_id = Some(b1.batch_id.clone());
    let ok = client
        .commit(pb::CommitRequest {
            updates,
            message: "both".into(),
            actor: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        ok.committed.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![2, 2]
    );
    Ok(())
}

async fn missing_or_wrong_files_are_refused(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let real = upload(&begun.location, "part-00000.parquet", 5)?;
    let commit = |files: Vec<pb::DataFile>| pb::CommitRequest {
        updates: vec![pb::PartitionUpdate {
            batch_id: begun.batch_id.clone(),
            files,
            arrow_schema: int_schema(),
            expected_current_batch_id: None,
            input_batch_ids: vec![],
        }],
        message: String::new(),
        actor: String::new(),
    };
    let ghost = pb::DataFile {
        path: "part-00001.parquet".into(),
        size_bytes: 10,
        rows: 1,
    };
    let missing = client
        .commit(commit(vec![real.clone(), ghost]))
        .await
        .expect_err("missing file");
    assert_eq!(missing.code(), Code::FailedPrecondition);
    assert!(
        missing.message().contains("part-00001.parquet"),
        "{}",
        missing.message()
    );
    let wrong = pb::DataFile {
        size_bytes: 99,
        ..real.clone()
    };
    let wrong_size = client
        .commit(commit(vec![wrong]))
        .await
        .expect_err("wrong size");
    assert_eq!(wrong_size.code(), Code::FailedPrecondition);
    assert!(
        wrong_size
            .message()
            .contains(&format!("{} bytes", real.size_bytes)),
        "{}",
        wrong_size.message()
    );
    let escape = pb::DataFile {
        path: "../../escape.parquet".into(),
        ..real.clone()
    };
    assert_eq!(
        client
            .commit(commit(vec![escape]))
            .await
            .expect_err("path")
            .code(),
        Code::InvalidArgument
    );
    let unresolved = resolve(&mut client, vec![ds("1")], None)
        .await
        .expect_err("never written");
    assert_eq!(unresolved.code(), Code::NotFound);
    // The batch is still pending and commits once its files are right.
    assert_eq!(
        client
            .commit(commit(vec![real]))
            .await?
            .into_inner()
            .committed[0]
            .version,
        1
    );
    Ok(())
}

async fn hostile_names(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        server,
        _db,
    } = fixture(backend, &[]).await?;
    let long = "a".repeat(1000);
    let corpus: Vec<&str> = vec![
        "",
        "..",
        "/",
        "a/../b",
        "a\0b",
        &long,
        "x'; DROP TABLE tables; --",
        "\"quoted\"",
        "ds=1",
        "naïve",
        "数据",
        "%2e%2e",
        ".",
        "a b",
    ];
    for name in &corpus {
        let ns = client
            .create_namespace(pb::CreateNamespaceRequest {
                name: (*name).into(),
                if_not_exists: false,
            })
            .await;
        assert_eq!(
            ns.expect_err(name).code(),
            Code::InvalidArgument,
            "namespace {name:?}"
        );
        let table = client
            .create_table(pb::CreateTableRequest {
                table: table_ref("sales", name),
                partition_keys: vec![],
                arrow_schema: vec![],
                if_not_exists: false,
                schema_policy: String::new(),
            })
            .await;
        assert_eq!(
            table.expect_err(name).code(),
            Code::InvalidArgument,
            "table {name:?}"
        );
        let key = client
            .create_table(pb::CreateTableRequest {
                table: table_ref("sales", "t"),
                partition_keys: vec![pb::PartitionKey {
                    name: (*name).into(),
                    r#type: 0,
                }],
                arrow_schema: vec![],
                if_not_exists: false,
                schema_policy: String::new(),
            })
            .await;
        assert_eq!(
            key.expect_err(name).code(),
            Code::InvalidArgument,
            "key {name:?}"
        );
        let get = client
            .get_table(pb::GetTableRequest {
                table: table_ref(name, "t"),
            })
            .await;
        assert_eq!(
            get.expect_err(name).code(),
            Code::InvalidArgument,
            "lookup {name:?}"
        );
    }
    create_table(&mut client, "sales", "items").await?;
    let table_dir = server.warehouse.join("sales").join("items");
    let mut accepted = 0;
    for value in &corpus {
        let p = ds(value);
        let begun = client
            .begin_write(pb::BeginWriteRequest {
                table: table_ref("sales", "items"),
                partition: Some(p.clone()),
                lease_seconds: 0,
            })
            .await;
        if value.is_empty() || value.contains('\0') {
            assert_eq!(
                begun.expect_err(value).code(),
                Code::InvalidArgument,
                "value {value:?}"
            );
            continue;
        }
        let begun = begun?.into_inner();
        let dir = local_dir(&begun.location)?;
        assert!(
            is_within(&dir, &table_dir),
            "{value:?} escaped to {}",
            dir.display()
        );
        let relative = dir.strip_prefix(&table_dir)?;
        assert_eq!(
            relative.components().count(),
            2,
            "{value:?} → {}",
            relative.display()
        );
        let committed = write_once(&mut client, "sales", "items", &p, None).await?;
        let read = resolve(&mut client, vec![p.clone()], None).await?;
        assert_eq!(read[0].batch_id, committed.batch_id);
        assert_eq!(
            read[0].partition.as_ref().expect("partition").values[0].value,
            *value
        );
        accepted += 1;
    }
    assert_eq!(accepted, corpus.len() - 2);
    let listed = client
        .list_partitions(pb::ListPartitionsRequest {
            table: table_ref("sales", "items"),
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(listed.partitions.len(), accepted);
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    Ok(())
}

async fn hammer(
    server: &Metastore,
    clients: usize,
    commits: usize,
    p: &pb::PartitionSpec,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = server.client().await?;
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..commits {
                write_once(&mut client, "sales", "items", &p, None).await?;
            }
            Ok::<_, tonic::Status>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn assert_gapless(
    client: &mut metastore_client::MetastoreClient<tonic::transport::Channel>,
    p: &pb::PartitionSpec,
    expected: i64,
) -> anyhow::Result<()> {
    let history = full_history(client, "sales", "items", p).await?;
    assert_eq!(history.len() as i64, expected);
    let versions: BTreeSet<i64> = history.iter().map(|h| h.version).collect();
    assert_eq!(
        versions,
        (1..=expected).collect::<BTreeSet<_>>(),
        "versions 1..={expected} without gaps"
    );
    let batches: BTreeSet<&str> = history.iter().map(|h| h.batch_id.as_str()).collect();
    assert_eq!(batches.len() as i64, expected, "every commit its own batch");
    let current = resolve(client, vec![p.clone()], None).await?;
    assert_eq!(current[0].version, expected);
    assert_eq!(
        current[0].batch_id, history[0].batch_id,
        "current is the batch of the last version"
    );
    Ok(())
}

async fn concurrent_commits_one_partition(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        server,
        _db,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let p = ds("hot");
    hammer(&server, 8, 50, &p).await?;
    assert_gapless(&mut client, &p, 400).await?;
    Ok(())
}

/// Replicas are stateless: two metastore processes on one PostgreSQL database, hammered at
/// once on the same partition, keep versions gapless and the pointer right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_share_one_database() -> anyhow::Result<()> {
    let db = TestDatabase::create(Backend::Postgres)?;
    let first = Metastore::start(&db.url, &[])?;
    let second =
        Metastore::start_with_warehouse(&db.url, &first.warehouse.display().to_string(), &[])?;
    let mut client = first.client().await?;
    create_table(&mut client, "sales", "items").await?;
    let p = ds("hot");
    let (a, b) = tokio::join!(hammer(&first, 4, 50, &p), hammer(&second, 4, 50, &p));
    a?;
    b?;
    assert_gapless(&mut client, &p, 400).await?;
    Ok(())
}

async fn expired_lease_abandons_batch(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 1).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = client
        .commit(commit_request(begun.batch_id.clone(), vec![file], None))
        .await
        .expect_err("lease expired");
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert!(late.message().contains("lease"), "{}", late.message());
    let batch = client
        .get_batch(pb::GetBatchRequest {
            batch_id: begun.batch_id,
        })
        .await?
        .into_inner()
        .batch
        .expect("batch");
    assert_eq!(batch.state, pb::BatchState::Abandoned as i32);
    assert_eq!(
        resolve(&mut client, vec![ds("1")], None)
            .await
            .expect_err("unchanged")
            .code(),
        Code::NotFound
    );
    Ok(())
}

async fn aborted_batch_cannot_commit(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    client
        .abort_write(pb::AbortWriteRequest {
            batch_id: begun.batch_id.clone(),
        })
        .await?;
    client
        .abort_write(pb::AbortWriteRequest {
            batch_id: begun.batch_id.clone(),
        })
        .await?;
    let refused = client
        .commit(commit_request(begun.batch_id.clone(), vec![file], None))
        .await
        .expect_err("aborted");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("aborted"),
        "{}",
        refused.message()
    );
    let unknown = client
        .abort_write(pb::AbortWriteRequest {
            batch_id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);
    let garbage = client
        .abort_write(pb::AbortWriteRequest {
            batch_id: "'; --".into(),
        })
        .await;
    assert_eq!(garbage.expect_err("garbage").code(), Code::InvalidArgument);
    Ok(())
}

async fn schema_mismatch_names_column(backend: Backend) -> anyhow::Result<()> {
    use arrow_schema::DataType;
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    let refused = client
        .commit(pb::CommitRequest {
            updates: vec![pb::PartitionUpdate {
                batch_id: begun.batch_id,
                files: vec![file],
                arrow_schema: schema_bytes(&[("x", DataType::Utf8)]),
                expected_current_batch_id: None,
                input_batch_ids: vec![],
            }],
            message: String::new(),
            actor: String::new(),
        })
        .await
        .expect_err("mismatch");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("\"x\""), "{}", refused.message());
    assert_eq!(
        refused
            .metadata()
            .get("batchstore-error-kind")
            .and_then(|v| v.to_str().ok()),
        Some("schema_mismatch")
    );
    assert_eq!(
        full_history(&mut client, "sales", "items", &ds("1"))
            .await?
            .len(),
        1
    );
    Ok(())
}

async fn paging_and_lineage(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    let mut batches = Vec::new();
    for i in 0..5 {
        batches.push(
            write_once(&mut client, "sales", "items", &ds(&i.to_string()), None)
                .await?
                .batch_id,
        );
    }
    // A negative page size is refused, not taken for the default.
    let negative = [
        client
            .list_partitions(pb::ListPartitionsRequest {
                table: table_ref("sales", "items"),
                page_size: -1,
                page_token: String::new(),
            })
            .await
            .map(|_| ()),
        client
            .list_namespaces(pb::ListNamespacesRequest {
                page_size: i32::MIN,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        client
            .get_history(pb::GetHistoryRequest {
                table: table_ref("sales", "items"),
                partition: Some(ds("0")),
                page_size: -5,
                ..Default::default()
            })
            .await
            .map(|_| ()),
    ];
    for refused in negative {
        let refused = refused.expect_err("a negative page size");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("page_size"), "{refused:?}");
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_partitions(pb::ListPartitionsRequest {
                table: table_ref("sales", "items"),
                page_size: 2,
                page_token: token,
            })
            .await?
            .into_inner();
        assert!(page.partitions.len() <= 2);
        seen.extend(page.partitions.into_iter().map(|p| p.batch_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, batches);

    let begun = begin(&mut client, "sales", "items", &ds("derived"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    client
        .commit(pb::CommitRequest {
            updates: vec![pb::PartitionUpdate {
                batch_id: begun.batch_id.clone(),
                files: vec![file],
                arrow_schema: int_schema(),
                expected_current_batch_id: None,
                input_batch_ids: vec![batches[0].clone(), batches[1].clone()],
            }],
            message: String::new(),
            actor: String::new(),
        })
        .await?;
    let lineage = client
        .get_lineage(pb::GetLineageRequest {
            batch_id: begun.batch_id.clone(),
        })
        .await?
        .into_inner();
    let mut expected = vec![batches[0].clone(), batches[1].clone()];
    expected.sort();
    assert_eq!(lineage.inputs, expected);
    let upstream = client
        .get_lineage(pb::GetLineageRequest {
            batch_id: batches[0].clone(),
        })
        .await?
        .into_inner();
    assert_eq!(upstream.outputs, vec![begun.batch_id]);

    let namespaces = client
        .list_namespaces(pb::ListNamespacesRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(
        namespaces
            .namespaces
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        vec!["sales"]
    );
    let in_use = client
        .drop_namespace(pb::DropNamespaceRequest {
            name: "sales".into(),
        })
        .await
        .expect_err("has tables");
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    client
        .drop_table(pb::DropTableRequest {
            table: table_ref("sales", "items"),
        })
        .await?;
    client
        .drop_namespace(pb::DropNamespaceRequest {
            name: "sales".into(),
        })
        .await?;
    Ok(())
}

/// SIGTERM while a commit is inside its transaction: the server finishes it and answers before
/// exiting. The commit is held in flight on purpose (the debug-only fault pause) and the test
/// checks the overlap: the answer arrives after the signal was sent.
async fn graceful_shutdown_finishes_commit(backend: Backend) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let dir = tempfile::tempdir()?;
    let pause = pausing_commits(Duration::from_millis(1500));
    let mut server = Metastore::start_with_env(
        &db.url,
        &dir.path().join("warehouse").display().to_string(),
        &[],
        &pause,
    )?;
    let mut client = server.client().await?;
    create_table(&mut client, "sales", "items").await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let files = (0..20)
        .map(|i| upload(&begun.location, &format!("part-{i:05}.parquet"), 1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut committer = client.clone();
    let commit = tokio::spawn(async move {
        let answer = committer
            .commit(commit_request(begun.batch_id, files, None))
            .await;
        (answer, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate()).await??;
    let (answer, answered) = commit.await?;
    assert!(
        answered > signalled,
        "the commit was answered before SIGTERM; the test did not overlap them"
    );
    let committed = answer?.into_inner();
    assert_eq!(committed.committed[0].version, 1);
    assert_eq!(committed.committed[0].rows, 20);
    assert!(status.success(), "exit status {status}");
    Ok(())
}

async fn commit_after_table_drop_is_refused(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        mut client,
        _db,
        server: _server,
    } = fixture(backend, &[]).await?;
    create_table(&mut client, "sales", "items").await?;
    write_once(&mut client, "sales", "items", &ds("1"), None).await?;
    let begun = begin(&mut client, "sales", "items", &ds("1"), 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 1)?;
    client
        .drop_table(pb::DropTableRequest {
            table: table_ref("sales", "items"),
        })
        .await?;
    let refused = client
        .commit(commit_request(begun.batch_id.clone(), vec![file], None))
        .await
        .expect_err("the table is gone");
    assert_eq!(refused.code(), Code::NotFound, "{}", refused.message());
    assert_eq!(missing(&refused), ("batch".into(), begun.batch_id.clone()));
    assert!(
        refused.message().contains("dropped"),
        "{}",
        refused.message()
    );
    // An abort tells a batch whose table was dropped (it may have been committed before) from
    // one the catalog never held (never committed): a client settling a lost reply relies on it.
    for batch_id in [begun.batch_id.clone(), uuid::Uuid::now_v7().to_string()] {
        let refused = client
            .abort_write(pb::AbortWriteRequest {
                batch_id: batch_id.clone(),
            })
            .await
            .expect_err("not abortable");
        assert_eq!(refused.code(), Code::NotFound, "{}", refused.message());
        let expected = if batch_id == begun.batch_id {
            ("table".to_owned(), "sales.items".to_owned())
        } else {
            ("batch".to_owned(), batch_id)
        };
        assert_eq!(missing(&refused), expected, "{}", refused.message());
    }
    Ok(())
}

/// Passes request bytes through as they are, and hands reply bytes back undecoded.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Bytes that are no Protobuf message (a varint that never ends, a field longer than the
/// message, an unknown wire type) are refused by every method with INVALID_ARGUMENT, tagged as
/// the metastore's own answer (an untagged INTERNAL would read as a fault on the way), and the
/// server keeps serving.
async fn undecodable_requests_are_invalid_argument(backend: Backend) -> anyhow::Result<()> {
    let Fixture {
        _db,
        server,
        mut client,
    } = fixture(backend, &[]).await?;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())?
        .connect()
        .await?;
    let mut raw = tonic::client::Grpc::new(channel);
    let methods = [
        "CreateNamespace",
        "ListNamespaces",
        "DropNamespace",
        "CreateTable",
        "GetTable",
        "ListTables",
        "DropTable",
        "BeginWrite",
        "Commit",
        "AbortWrite",
        "RenewLease",
        "GetBatch",
        "ResolvePartitions",
        "ListPartitions",
        "GetHistory",
        "Rollback",
        "CreateTag",
        "ListTags",
        "DeleteTag",
        "GetLineage",
        "Grant",
        "Revoke",
        "ListGrants",
        "ListAuditEvents",
        "WhoAmI",
        "SetRetention",
        "UndropTable",
        "AcquireLease",
        "ExtendLease",
        "ReleaseLease",
        "ListLeases",
        "CollectGarbage",
        "FindOrphans",
        "SetSchemaPolicy",
        "GetSchemaHistory",
    ];
    let bodies: [&[u8]; 3] = [&[0xff, 0xff, 0xff], &[0x0a, 0x20, b'x'], &[0x0f]];
    for method in methods {
        for body in bodies {
            raw.ready().await?;
            let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!(
                "/batchstore.v1.Metastore/{method}"
            ))?;
            let refused = raw
                .unary(tonic::Request::new(body.to_vec()), path, RawCodec)
                .await
                .expect_err(&format!("{method} decoded {body:?}"));
            assert_eq!(
                refused.code(),
                Code::InvalidArgument,
                "{method} {body:?}: {refused:?}"
            );
            assert_eq!(
                refused
                    .metadata()
                    .get(batchstore_proto::wire::ERROR_KIND_KEY)
                    .and_then(|v| v.to_str().ok()),
                Some("invalid_argument"),
                "{method} {body:?}: {refused:?}"
            );
        }
    }
    client
        .create_namespace(pb::CreateNamespaceRequest {
            name: "still_serving".into(),
            ..Default::default()
        })
        .await?;
    Ok(())
}
