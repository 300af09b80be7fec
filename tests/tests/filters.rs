//! Partition filters are resolved by the metastore exactly: for random filters over a table
//! with an int64, a date and a string key, every selector (current, version, as-of, batch,
//! named partitions) and every page size resolves exactly the partitions a model of the
//! comparison rules selects, on SQLite and PostgreSQL; bad filters are refused naming why.

use batchstore_proto::v1 as pb;
use batchstore_tests::*;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use tonic::Code;
use tonic::transport::Channel;

type Rpc = metastore_client::MetastoreClient<Channel>;

on_both_backends!(
    filters_resolve_exactly_the_matching_partitions,
    bad_filters_are_refused
);

/// A partition of the test table: (n, d, r).
type Part = (i64, String, String);

const OPS: [pb::PredicateOp; 7] = [
    pb::PredicateOp::Eq,
    pb::PredicateOp::Ne,
    pb::PredicateOp::Lt,
    pb::PredicateOp::Le,
    pb::PredicateOp::Gt,
    pb::PredicateOp::Ge,
    pb::PredicateOp::In,
];

/// A small deterministic generator (the seed is printed, and can be set with
/// BATCHSTORE_FILTER_SEED to replay a failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn partitions() -> Vec<Part> {
    let mut out = Vec::new();
    for n in [-3i64, 0, 2, 10, 100] {
        for (i, d) in ["2023-12-31", "2024-01-09", "2024-01-10"]
            .iter()
            .enumerate()
        {
            // Text order differs from numeric order for n ("10" < "2"), and r repeats.
            let r = ["eu", "us", "Eu", "a,b"][(n.unsigned_abs() as usize + i) % 4];
            out.push((n, (*d).to_owned(), r.to_owned()));
        }
    }
    out
}

fn part_spec(p: &Part) -> pb::PartitionSpec {
    spec(&[("n", &p.0.to_string()), ("d", &p.1), ("r", &p.2)])
}

fn key_of(spec: Option<&pb::PartitionSpec>) -> Part {
    let get = |k: &str| {
        spec.and_then(|s| s.values.iter().find(|v| v.key == k))
            .map(|v| v.value.clone())
            .unwrap_or_default()
    };
    (get("n").parse().unwrap_or(i64::MIN), get("d"), get("r"))
}

/// Whether a partition satisfies a predicate, by the documented rules: int64 numerically,
/// dates and strings in text order.
fn model(p: &Part, pred: &pb::KeyPredicate) -> bool {
    let order = |v: &str| match pred.key.as_str() {
        "n" => p.0.cmp(&v.trim().parse::<i64>().unwrap_or(0)),
        "d" => p.1.as_str().cmp(v),
        _ => p.2.as_str().cmp(v),
    };
    let op = pb::PredicateOp::try_from(pred.op).unwrap_or(pb::PredicateOp::Unspecified);
    match op {
        pb::PredicateOp::In => pred.values.iter().any(|v| order(v) == Ordering::Equal),
        pb::PredicateOp::Eq => order(&pred.values[0]).is_eq(),
        pb::PredicateOp::Ne => order(&pred.values[0]).is_ne(),
        pb::PredicateOp::Lt => order(&pred.values[0]).is_lt(),
        pb::PredicateOp::Le => order(&pred.values[0]).is_le(),
        pb::PredicateOp::Gt => order(&pred.values[0]).is_gt(),
        pb::PredicateOp::Ge => order(&pred.values[0]).is_ge(),
        pb::PredicateOp::Unspecified => false,
    }
}

fn random_value(rng: &mut Rng, key: &str) -> String {
    match key {
        // Non-canonical spellings of integers must compare as the integer.
        "n" => ["-3", "0", "2", "+2", "02", "10", "9", "100", "1000"][rng.below(9)].to_owned(),
        "d" => ["2023-12-31", "2024-01-09", "2024-01-10", "2025-01-01"][rng.below(4)].to_owned(),
        _ => ["eu", "Eu", "us", "a,b", "zz"][rng.below(5)].to_owned(),
    }
}

fn random_filter(rng: &mut Rng) -> Vec<pb::KeyPredicate> {
    (0..rng.below(3) + 1)
        .map(|_| {
            let key = ["n", "d", "r"][rng.below(3)];
            let op = OPS[rng.below(OPS.len())];
            let count = if op == pb::PredicateOp::In {
                rng.below(3) + 1
            } else {
                1
            };
            pb::KeyPredicate {
                key: key.to_owned(),
                op: op as i32,
                values: (0..count).map(|_| random_value(rng, key)).collect(),
            }
        })
        .collect()
}

/// Every partition a request resolves, following pages.
async fn resolve_all(
    client: &mut Rpc,
    mut request: pb::ResolvePartitionsRequest,
) -> Result<Vec<Part>, tonic::Status> {
    let mut out = Vec::new();
    loop {
        let page = client
            .resolve_partitions(request.clone())
            .await?
            .into_inner();
        // Paging applies to whole-table reads (named partitions come back in one reply).
        if request.page_size > 0 && request.partitions.is_empty() {
            assert!(
                page.partitions.len() <= request.page_size as usize,
                "page of {} for page size {}: {:?} {:?}",
                page.partitions.len(),
                request.page_size,
                request.selector,
                request.partitions.len()
            );
        }
        out.extend(page.partitions.iter().map(|p| key_of(p.partition.as_ref())));
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        request.page_token = page.next_page_token;
    }
}

async fn setup(backend: Backend) -> anyhow::Result<(TestDatabase, Metastore, Rpc, Vec<String>)> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let mut client = server.client().await?;
    client
        .create_namespace(pb::CreateNamespaceRequest {
            name: "f".into(),
            if_not_exists: true,
        })
        .await?;
    let key = |name: &str, t: pb::PartitionKeyType| pb::PartitionKey {
        name: name.into(),
        r#type: t as i32,
    };
    client
        .create_table(pb::CreateTableRequest {
            table: table_ref("f", "t"),
            partition_keys: vec![
                key("n", pb::PartitionKeyType::Int64),
                key("d", pb::PartitionKeyType::Date),
                key("r", pb::PartitionKeyType::String),
            ],
            ..Default::default()
        })
        .await?;
    let mut batches = Vec::new();
    for p in partitions() {
        let committed = write_once(&mut client, "f", "t", &part_spec(&p), None).await?;
        batches.push(committed.batch_id);
    }
    Ok((db, server, client, batches))
}

async fn filters_resolve_exactly_the_matching_partitions(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client, batches) = setup(backend).await?;
    let all = partitions();
    // A second version of a few partitions, so version and as-of selectors differ from current.
    let as_of_before = {
        let t = client
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("f", "t"),
                ..Default::default()
            })
            .await?
            .into_inner();
        t.partitions
            .iter()
            .map(|p| p.committed_at_micros)
            .max()
            .unwrap_or(0)
    };
    for p in all.iter().step_by(4) {
        write_once(&mut client, "f", "t", &part_spec(p), None).await?;
    }
    let twice: BTreeSet<Part> = all.iter().step_by(4).cloned().collect();

    let seed = std::env::var("BATCHSTORE_FILTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f117_u64 ^ (backend == Backend::Postgres) as u64);
    println!("filter seed {seed} (BATCHSTORE_FILTER_SEED replays it)");
    let mut rng = Rng(seed.max(1));
    for case in 0..60 {
        let filter = random_filter(&mut rng);
        let page_size = [0, 1, 2, 5][rng.below(4)];
        let matching = |candidates: &mut dyn Iterator<Item = Part>| -> Vec<Part> {
            let mut v: Vec<Part> = candidates
                .filter(|p| filter.iter().all(|f| model(p, f)))
                .collect();
            v.sort();
            v
        };
        let (selector, candidates): (pb::selector::Kind, Vec<Part>) = match case % 5 {
            0 | 1 => (pb::selector::Kind::Current(true), all.clone()),
            2 => (
                pb::selector::Kind::Version(2),
                twice.iter().cloned().collect(),
            ),
            3 => (pb::selector::Kind::AsOfMicros(as_of_before), all.clone()),
            _ => {
                let i = rng.below(all.len());
                (
                    pb::selector::Kind::BatchId(batches[i].clone()),
                    vec![all[i].clone()],
                )
            }
        };
        let request = pb::ResolvePartitionsRequest {
            table: table_ref("f", "t"),
            selector: Some(pb::Selector {
                kind: Some(selector.clone()),
            }),
            page_size,
            partition_filter: filter.clone(),
            // Half the cases through the leased path every client read takes.
            lease_seconds: (case % 2) as i64 * 60,
            ..Default::default()
        };
        let mut got = resolve_all(&mut client, request.clone()).await?;
        got.sort();
        let want = matching(&mut candidates.clone().into_iter());
        assert_eq!(got, want, "case {case}: {filter:?} with {selector:?}");

        // Named partitions: those that do not match are left out, not refused.
        if matches!(selector, pb::selector::Kind::Current(_)) {
            let named: Vec<Part> = (0..4).map(|_| all[rng.below(all.len())].clone()).collect();
            let mut got = resolve_all(
                &mut client,
                pb::ResolvePartitionsRequest {
                    partitions: named.iter().map(part_spec).collect(),
                    ..request
                },
            )
            .await?;
            got.sort();
            let mut want = matching(&mut named.into_iter());
            want.dedup();
            assert_eq!(got, want, "case {case}: named, {filter:?}");
        }
    }
    Ok(())
}

async fn bad_filters_are_refused(backend: Backend) -> anyhow::Result<()> {
    let (_db, _server, mut client, _) = setup(backend).await?;
    let predicate = |key: &str, op: pb::PredicateOp, values: &[&str]| pb::KeyPredicate {
        key: key.into(),
        op: op as i32,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let many: Vec<pb::KeyPredicate> = (0..65)
        .map(|_| predicate("n", pb::PredicateOp::Ge, &["0"]))
        .collect();
    let cases = [
        (
            vec![predicate("x", pb::PredicateOp::Eq, &["1"])],
            "not a partition key",
        ),
        (
            vec![predicate("n", pb::PredicateOp::Eq, &["one"])],
            "not a whole number",
        ),
        (
            vec![predicate("d", pb::PredicateOp::Lt, &["yesterday"])],
            "YYYY-MM-DD",
        ),
        (
            vec![predicate("n", pb::PredicateOp::Eq, &["1", "2"])],
            "exactly one",
        ),
        (vec![predicate("n", pb::PredicateOp::In, &[])], "values"),
        (
            vec![predicate("n", pb::PredicateOp::Unspecified, &["1"])],
            "no comparison",
        ),
        (vec![predicate("r", pb::PredicateOp::Eq, &["a\0b"])], ""),
        (many, "at most 64"),
        (
            vec![predicate("d", pb::PredicateOp::Gt, &["+10000-01-01"])],
            "0001 to 9999",
        ),
        (
            (0..3)
                .map(|_| pb::KeyPredicate {
                    key: "n".into(),
                    op: pb::PredicateOp::In as i32,
                    values: (0..4_000).map(|i| i.to_string()).collect(),
                })
                .collect(),
            "10000 values in all",
        ),
    ];
    for (filter, why) in cases {
        for lease_seconds in [0, 60] {
            let refused = client
                .resolve_partitions(pb::ResolvePartitionsRequest {
                    table: table_ref("f", "t"),
                    partition_filter: filter.clone(),
                    lease_seconds,
                    ..Default::default()
                })
                .await
                .expect_err("a bad filter is refused");
            assert_eq!(
                refused.code(),
                Code::InvalidArgument,
                "{filter:?}: {refused:?}"
            );
            assert!(
                refused.message().contains(why),
                "{why}: {}",
                refused.message()
            );
        }
    }
    // An `in` with more values than a read may name partitions is refused too.
    let huge: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let refused = client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("f", "t"),
            partition_filter: vec![pb::KeyPredicate {
                key: "n".into(),
                op: pb::PredicateOp::In as i32,
                values: huge,
            }],
            ..Default::default()
        })
        .await
        .expect_err("too many values");
    assert_eq!(refused.code(), Code::InvalidArgument);
    Ok(())
}
