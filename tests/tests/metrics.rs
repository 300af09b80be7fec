//! `/metrics`: after a known workload against the real metastore (SQLite and PostgreSQL), the
//! Prometheus text it serves parses, and its counts match the workload exactly: requests and
//! latency histograms by method and code, commits, rollbacks, and the database pool.

use batchstore_proto::v1 as pb;
use batchstore_tests::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};

on_both_backends!(metrics_count_the_workload);

/// A free loopback port for the metrics listener.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// GET /metrics, parsed: every sample line's `name{labels}` and value.
fn scrape(port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not HTTP: {text}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("not a sample line: {line}"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| anyhow::anyhow!("not a number in {line}"))?;
        samples.insert(series.to_owned(), value);
    }
    Ok(samples)
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

async fn metrics_count_the_workload(backend: Backend) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let server = Metastore::start(&db.url, &["--metrics-listen", &listen])?;
    let mut client = server.client().await?;
    create_table(&mut client, "m", "t").await?;
    const WRITES: usize = 7;
    for i in 0..WRITES {
        write_once(
            &mut client,
            "m",
            "t",
            &spec(&[("ds", &(i % 3).to_string())]),
            None,
        )
        .await?;
    }
    client
        .rollback(pb::RollbackRequest {
            table: table_ref("m", "t"),
            partition: Some(spec(&[("ds", "0")])),
            target: Some(pb::rollback_request::Target::ToVersion(1)),
            ..Default::default()
        })
        .await?;
    for _ in 0..3 {
        let missing = client
            .get_table(pb::GetTableRequest {
                table: table_ref("m", "nope"),
            })
            .await;
        assert_eq!(
            missing.map(|_| ()).expect_err("a missing table").code(),
            tonic::Code::NotFound
        );
    }

    let samples = scrape(port)?;
    let rpc = |method: &str, code: &str| {
        sample(
            &samples,
            &format!(
                "batchstore_rpc_requests_total{{grpc_method=\"{method}\",grpc_code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(rpc("Commit", "OK"), WRITES as f64, "{samples:#?}");
    assert_eq!(rpc("BeginWrite", "OK"), WRITES as f64);
    assert_eq!(rpc("Rollback", "OK"), 1.0);
    assert_eq!(rpc("GetTable", "NotFound"), 3.0);
    assert_eq!(rpc("CreateTable", "OK"), 1.0);
    let count = sample(
        &samples,
        "batchstore_rpc_duration_seconds_count{grpc_method=\"Commit\",grpc_code=\"OK\"}",
    );
    assert_eq!(count, WRITES as f64);
    let inf = sample(
        &samples,
        "batchstore_rpc_duration_seconds_bucket{grpc_method=\"Commit\",grpc_code=\"OK\",le=\"+Inf\"}",
    );
    assert_eq!(inf, WRITES as f64);
    assert!(
        sample(
            &samples,
            "batchstore_rpc_duration_seconds_sum{grpc_method=\"Commit\",grpc_code=\"OK\"}"
        ) > 0.0
    );
    assert_eq!(sample(&samples, "batchstore_commits_total"), WRITES as f64);
    assert_eq!(
        sample(&samples, "batchstore_committed_partitions_total"),
        WRITES as f64
    );
    assert_eq!(sample(&samples, "batchstore_rollbacks_total"), 1.0);
    assert!(
        sample(&samples, "batchstore_db_pool_connections") >= 1.0,
        "{samples:#?}"
    );
    assert!(samples.contains_key("batchstore_db_pool_idle_connections"));

    // A second scrape after one more commit moves exactly that commit's counters.
    write_once(&mut client, "m", "t", &spec(&[("ds", "9")]), None).await?;
    let again = scrape(port)?;
    assert_eq!(
        sample(&again, "batchstore_commits_total"),
        WRITES as f64 + 1.0
    );
    Ok(())
}
