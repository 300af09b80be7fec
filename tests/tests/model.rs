//! Model-based test of the catalog: random sequences of operations (writes with random column
//! orders, multi-partition commits, compare-and-swap with right and wrong expectations,
//! rollbacks, tags, retries of earlier commits, as-of reads at past stamps, whole-table and
//! projected reads) run against the real service, alternating between two replicas of one
//! PostgreSQL database (one server on SQLite), and every answer is checked against a small
//! in-memory model of the catalog. proptest shrinks a failing sequence to a minimal one.
//!
//! `make test` runs a fixed seed and a few dozen sequences; `BATCHSTORE_MODEL_CASES` and
//! `BATCHSTORE_MODEL_SEED` run more (`make test-long`).

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use batchstore_client::{Client, ReadRequest, Selector, TableName};
use batchstore_proto::v1 as pb;
use batchstore_tests::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::Code;

const PARTITIONS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, Copy)]
enum Cas {
    None,
    Right,
    Wrong,
    New,
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        parts: Vec<usize>,
        cas: Cas,
        swap: bool,
        replica: usize,
    },
    Retry {
        which: usize,
        replica: usize,
    },
    Rollback {
        part: usize,
        back: usize,
        cas: Cas,
        replica: usize,
    },
    Tag {
        part: usize,
        back: usize,
    },
    ReadTag {
        which: usize,
    },
    ReadAsOf {
        which: usize,
        before: bool,
    },
    ReadWhole {
        project: bool,
    },
}

fn cas() -> impl Strategy<Value = Cas> {
    prop_oneof![
        Just(Cas::None),
        Just(Cas::Right),
        Just(Cas::Wrong),
        Just(Cas::New)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::sample::subsequence(vec![0usize, 1, 2], 1..=2), cas(), any::<bool>(), 0..2usize)
            .prop_map(|(parts, cas, swap, replica)| Op::Write { parts, cas, swap, replica }),
        2 => (any::<usize>(), 0..2usize).prop_map(|(which, replica)| Op::Retry { which, replica }),
        2 => (0..3usize, any::<usize>(), cas(), 0..2usize)
            .prop_map(|(part, back, cas, replica)| Op::Rollback { part, back, cas, replica }),
        1 => (0..3usize, any::<usize>()).prop_map(|(part, back)| Op::Tag { part, back }),
        1 => any::<usize>().prop_map(|which| Op::ReadTag { which }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(which, before)| Op::ReadAsOf { which, before }),
        1 => any::<bool>().prop_map(|project| Op::ReadWhole { project }),
    ]
}

/// Rollbacks resent with their request id (and answered with their first version), all cases.
static RESENT_ROLLBACKS: AtomicUsize = AtomicUsize::new(0);

/// One history entry of the model.
#[derive(Debug, Clone)]
struct Entry {
    batch: String,
    value: i64,
    stamp: i64,
    rollback: bool,
}

/// The model: each partition's history, tags, every commit stamp, and earlier commits.
#[derive(Debug, Default)]
struct Model {
    history: BTreeMap<usize, Vec<Entry>>,
    /// batch id → value its data holds.
    values: BTreeMap<String, i64>,
    tags: Vec<(String, String)>,
    stamps: Vec<i64>,
    commits: Vec<(pb::CommitRequest, pb::CommitResponse)>,
    /// Rollbacks that made a version, with it: a resend of one (same request id) must be
    /// answered with that version, whatever happened since.
    rollbacks: Vec<(pb::RollbackRequest, pb::CommittedPartition)>,
    next_value: i64,
}

impl Model {
    fn current(&self, part: usize) -> Option<&Entry> {
        self.history.get(&part).and_then(|h| h.last())
    }

    fn as_of(&self, part: usize, stamp: i64) -> Option<&Entry> {
        self.history
            .get(&part)
            .and_then(|h| h.iter().rev().find(|e| e.stamp <= stamp))
    }
}

struct World {
    replicas: Vec<Metastore>,
    rpcs: Vec<metastore_client::MetastoreClient<tonic::transport::Channel>>,
    client: Client,
    _db: TestDatabase,
}

fn expectation(model: &Model, part: usize, cas: Cas) -> Option<String> {
    match cas {
        Cas::None => None,
        Cas::New => Some("-".into()),
        Cas::Right => Some(
            model
                .current(part)
                .map_or_else(|| "-".into(), |e| e.batch.clone()),
        ),
        Cas::Wrong => Some(uuid::Uuid::now_v7().to_string()),
    }
}

fn holds(model: &Model, part: usize, expected: &Option<String>) -> bool {
    match (expected.as_deref(), model.current(part)) {
        (None, _) => true,
        (Some("-"), current) => current.is_none(),
        (Some(e), Some(current)) => current.batch == e,
        (Some(_), None) => false,
    }
}

fn data(value: i64, swap: bool) -> anyhow::Result<RecordBatch> {
    let x: Arc<dyn Array> = Arc::new(Int64Array::from(vec![value, value]));
    let y: Arc<dyn Array> = Arc::new(StringArray::from(vec![format!("v{value}"); 2]));
    let (fields, columns) = if swap {
        (
            vec![
                Field::new("y", DataType::Utf8, true),
                Field::new("x", DataType::Int64, true),
            ],
            vec![y, x],
        )
    } else {
        (
            vec![
                Field::new("x", DataType::Int64, true),
                Field::new("y", DataType::Utf8, true),
            ],
            vec![x, y],
        )
    };
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn ipc(schema: &Schema) -> Vec<u8> {
    let generator = arrow_ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    generator
        .schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &Default::default())
        .ipc_message
}

fn check(condition: bool, what: String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(what))
    }
}

async fn run_case(world: &World, table: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let rpc_of = |replica: usize| world.rpcs[replica].clone();
    create_table(&mut rpc_of(0), "model", table)
        .await
        .map_err(|e| fail(&e))?;
    let mut model = Model::default();
    for op in ops {
        match op.clone() {
            Op::Write {
                parts,
                cas,
                swap,
                replica,
            } => {
                let rpc = &mut rpc_of(replica);
                let mut updates = Vec::new();
                let mut values = Vec::new();
                for &part in &parts {
                    let begun = begin(rpc, "model", table, &spec(&[("ds", PARTITIONS[part])]), 0)
                        .await
                        .map_err(|e| fail(&e))?;
                    model.next_value += 1;
                    let batch = data(model.next_value, swap).map_err(|e| fail(&e))?;
                    let file = upload_batch(&begun.location, "part-00000.parquet", &batch)
                        .map_err(|e| fail(&e))?;
                    updates.push(pb::PartitionUpdate {
                        batch_id: begun.batch_id,
                        files: vec![file],
                        arrow_schema: ipc(&batch.schema()),
                        expected_current_batch_id: expectation(&model, part, cas),
                        input_batch_ids: vec![],
                    });
                    values.push(model.next_value);
                }
                let all_hold = parts
                    .iter()
                    .zip(&updates)
                    .all(|(&p, u)| holds(&model, p, &u.expected_current_batch_id));
                let request = pb::CommitRequest {
                    updates,
                    message: "m".into(),
                    actor: "model".into(),
                };
                match rpc.commit(request.clone()).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        check(
                            all_hold,
                            format!("{op:?} committed though an expectation failed"),
                        )?;
                        let stamp = reply.committed[0].committed_at_micros;
                        for ((&part, committed), value) in
                            parts.iter().zip(&reply.committed).zip(&values)
                        {
                            let history = model.history.entry(part).or_default();
                            check(
                                committed.version == history.len() as i64 + 1,
                                format!(
                                    "{op:?}: version {} after {}",
                                    committed.version,
                                    history.len()
                                ),
                            )?;
                            check(
                                committed.committed_at_micros == stamp,
                                format!("{op:?}: two stamps"),
                            )?;
                            check(
                                history.last().is_none_or(|e| e.stamp < stamp),
                                format!("{op:?}: time ran backwards"),
                            )?;
                            history.push(Entry {
                                batch: committed.batch_id.clone(),
                                value: *value,
                                stamp,
                                rollback: false,
                            });
                            model.values.insert(committed.batch_id.clone(), *value);
                        }
                        model.stamps.push(stamp);
                        model.commits.push((request, reply));
                    }
                    Err(status) => {
                        check(
                            !all_hold,
                            format!("{op:?} refused though every expectation held: {status:?}"),
                        )?;
                        check(
                            status.code() == Code::Aborted,
                            format!("{op:?}: {status:?}"),
                        )?;
                    }
                }
            }
            Op::Retry { which, replica } => {
                let earlier = model.commits.len() + model.rollbacks.len();
                if earlier == 0 {
                    continue;
                }
                if which % earlier >= model.commits.len() {
                    let (request, original) =
                        model.rollbacks[which % earlier - model.commits.len()].clone();
                    let again = rpc_of(replica)
                        .rollback(request)
                        .await
                        .map_err(|e| fail(&e))?
                        .into_inner()
                        .committed
                        .unwrap_or_default();
                    check(
                        (again.version, again.committed_at_micros, &again.batch_id)
                            == (
                                original.version,
                                original.committed_at_micros,
                                &original.batch_id,
                            ),
                        format!("{op:?}: a resent rollback answered differently"),
                    )?;
                    RESENT_ROLLBACKS.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let (request, original) = model.commits[which % model.commits.len()].clone();
                let reply = rpc_of(replica)
                    .commit(request)
                    .await
                    .map_err(|e| fail(&e))?
                    .into_inner();
                check(
                    reply.already_committed,
                    format!("{op:?}: not recognised as a retry"),
                )?;
                for (a, b) in reply.committed.iter().zip(&original.committed) {
                    check(
                        (a.version, a.committed_at_micros, &a.batch_id)
                            == (b.version, b.committed_at_micros, &b.batch_id),
                        format!("{op:?}: the retry answered differently"),
                    )?;
                }
            }
            Op::Rollback {
                part,
                back,
                cas,
                replica,
            } => {
                let Some(history) = model.history.get(&part).filter(|h| !h.is_empty()).cloned()
                else {
                    continue;
                };
                let target_version = back % history.len() + 1;
                let target = history[target_version - 1].clone();
                let expected = expectation(&model, part, cas);
                let current = history.last().cloned().expect("not empty");
                let previous = history
                    .len()
                    .checked_sub(2)
                    .map(|i| history[i].batch.clone());
                let request = pb::RollbackRequest {
                    table: table_ref("model", table),
                    partition: Some(spec(&[("ds", PARTITIONS[part])])),
                    target: Some(pb::rollback_request::Target::ToVersion(
                        target_version as i64,
                    )),
                    expected_current_batch_id: expected.clone(),
                    message: String::new(),
                    actor: "model".into(),
                    request_id: uuid::Uuid::now_v7().to_string(),
                };
                let answer = rpc_of(replica).rollback(request.clone()).await;
                if current.batch == target.batch {
                    let held = match expected.as_deref() {
                        None => true,
                        Some("-") => false,
                        Some(e) => previous.as_deref() == Some(e),
                    };
                    if current.rollback && held {
                        let c = answer
                            .map_err(|e| fail(&e))?
                            .into_inner()
                            .committed
                            .unwrap_or_default();
                        check(
                            c.version == history.len() as i64,
                            format!("{op:?}: not idempotent"),
                        )?;
                    } else {
                        let code = answer.err().map(|s| s.code());
                        check(
                            code == Some(Code::FailedPrecondition),
                            format!("{op:?}: {code:?}"),
                        )?;
                    }
                } else if !holds(&model, part, &expected) {
                    let code = answer.err().map(|s| s.code());
                    check(code == Some(Code::Aborted), format!("{op:?}: {code:?}"))?;
                } else {
                    let c = answer
                        .map_err(|e| fail(&e))?
                        .into_inner()
                        .committed
                        .unwrap_or_default();
                    check(
                        c.version == history.len() as i64 + 1,
                        format!("{op:?}: version"),
                    )?;
                    check(c.batch_id == target.batch, format!("{op:?}: batch"))?;
                    check(
                        c.committed_at_micros > current.stamp,
                        format!("{op:?}: time"),
                    )?;
                    model.history.entry(part).or_default().push(Entry {
                        batch: target.batch.clone(),
                        value: target.value,
                        stamp: c.committed_at_micros,
                        rollback: true,
                    });
                    model.stamps.push(c.committed_at_micros);
                    model.rollbacks.push((request, c));
                }
            }
            Op::Tag { part, back } => {
                let Some(history) = model.history.get(&part).filter(|h| !h.is_empty()) else {
                    continue;
                };
                let version = back % history.len() + 1;
                let name = format!("t{}", model.tags.len());
                rpc_of(0)
                    .create_tag(pb::CreateTagRequest {
                        table: table_ref("model", table),
                        name: name.clone(),
                        target: Some(pb::create_tag_request::Target::PartitionVersion(
                            pb::PartitionVersion {
                                partition: Some(spec(&[("ds", PARTITIONS[part])])),
                                version: version as i64,
                            },
                        )),
                    })
                    .await
                    .map_err(|e| fail(&e))?;
                model.tags.push((name, history[version - 1].batch.clone()));
            }
            Op::ReadTag { which } => {
                if model.tags.is_empty() {
                    continue;
                }
                let (name, batch) = model.tags[which % model.tags.len()].clone();
                let read = read(world, table, Selector::Tag(name), false)
                    .await
                    .map_err(|e| fail(&e))?;
                let value = model.values[&batch];
                check(
                    read.values().all(|v| *v == vec![value, value]),
                    format!("{op:?}: {read:?}"),
                )?;
            }
            Op::ReadAsOf { which, before } => {
                if model.stamps.is_empty() {
                    continue;
                }
                let stamp = model.stamps[which % model.stamps.len()] - i64::from(before);
                let time = chrono::DateTime::from_timestamp_micros(stamp).expect("a time");
                let read = read(world, table, Selector::AsOf(time), false)
                    .await
                    .map_err(|e| fail(&e))?;
                let expected: BTreeMap<String, Vec<i64>> = PARTITIONS
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        model
                            .as_of(i, stamp)
                            .map(|e| ((*p).to_owned(), vec![e.value, e.value]))
                    })
                    .collect();
                check(
                    read == expected,
                    format!("{op:?} at {stamp}: {read:?} != {expected:?}"),
                )?;
            }
            Op::ReadWhole { project } => {
                if project && model.history.is_empty() {
                    let refused = read(world, table, Selector::Current, project).await;
                    check(
                        refused.is_err(),
                        format!("{op:?}: a column of a table without columns"),
                    )?;
                    continue;
                }
                let read = read(world, table, Selector::Current, project)
                    .await
                    .map_err(|e| fail(&e))?;
                let expected: BTreeMap<String, Vec<i64>> = PARTITIONS
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        model
                            .current(i)
                            .map(|e| ((*p).to_owned(), vec![e.value, e.value]))
                    })
                    .collect();
                check(
                    read == expected,
                    format!("{op:?}: {read:?} != {expected:?}"),
                )?;
            }
        }
    }
    Ok(())
}

/// Reads the whole table through the client library: per partition, the `x` values (or, when
/// projecting `y` alone, the numbers its `v…` strings carry).
async fn read(
    world: &World,
    table: &str,
    selector: Selector,
    project: bool,
) -> anyhow::Result<BTreeMap<String, Vec<i64>>> {
    let request = ReadRequest {
        table: Some(TableName::new("model", table)),
        selector,
        columns: project.then(|| vec!["y".to_owned()]),
        ..ReadRequest::default()
    };
    let result = world.client.read(&request, None).await?;
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for batch in &result.batches {
        let ds = batch
            .column_by_name("ds")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
            .ok_or_else(|| anyhow::anyhow!("no ds column"))?;
        let values: Vec<i64> = if project {
            anyhow::ensure!(
                batch.num_columns() == 2,
                "a projection returned other columns"
            );
            let y = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| anyhow::anyhow!("y"))?;
            y.iter()
                .map(|v| {
                    v.and_then(|v| v.trim_start_matches('v').parse().ok())
                        .unwrap_or(-1)
                })
                .collect()
        } else {
            let x = batch
                .column_by_name("x")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                .ok_or_else(|| anyhow::anyhow!("x"))?;
            let y = batch
                .column_by_name("y")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| anyhow::anyhow!("y"))?;
            for (x, y) in x.iter().zip(y.iter()) {
                anyhow::ensure!(
                    y == x.map(|x| format!("v{x}")).as_deref(),
                    "columns swapped: {x:?} {y:?}"
                );
            }
            x.iter().map(|v| v.unwrap_or(-1)).collect()
        };
        for (i, v) in values.into_iter().enumerate() {
            out.entry(ds.value(i).to_owned()).or_default().push(v);
        }
    }
    Ok(out)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(backend: Backend) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let db = TestDatabase::create(backend)?;
    let first = Metastore::start(&db.url, &[])?;
    let mut replicas = vec![];
    if backend == Backend::Postgres {
        replicas.push(Metastore::start_with_warehouse(
            &db.url,
            &first.warehouse.display().to_string(),
            &[],
        )?);
    }
    replicas.insert(0, first);
    let mut rpcs = Vec::new();
    for server in replicas.iter().cycle().take(2) {
        rpcs.push(runtime.block_on(server.client())?);
    }
    let client = runtime.block_on(Client::connect(Some(&replicas[0].endpoint())))?;
    let world = World {
        replicas,
        rpcs,
        client,
        _db: db,
    };
    let cases = env("BATCHSTORE_MODEL_CASES", 24) as u32;
    let seed = env("BATCHSTORE_MODEL_SEED", 20_261_202);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    let tables = AtomicUsize::new(0);
    let operations = AtomicUsize::new(0);
    let outcome = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        let table = format!("t{}", tables.fetch_add(1, Ordering::SeqCst));
        operations.fetch_add(ops.len(), Ordering::SeqCst);
        runtime.block_on(run_case(&world, &table, &ops))
    });
    println!(
        "model ({backend:?}, {} replica(s), seed {seed}): {} sequences (shrinking included), {} \
         operations ({} of them rollbacks resent with their request id), {} divergence(s)",
        world.replicas.len(),
        tables.load(Ordering::SeqCst),
        operations.load(Ordering::SeqCst),
        RESENT_ROLLBACKS.load(Ordering::SeqCst),
        usize::from(outcome.is_err())
    );
    outcome.map_err(|e| anyhow::anyhow!("{e}"))
}

#[test]
fn model_on_sqlite() -> anyhow::Result<()> {
    run(Backend::Sqlite)
}

#[test]
fn model_on_postgres_two_replicas() -> anyhow::Result<()> {
    run(Backend::Postgres)
}
