//! Who may do what, tried from outside against the real metastore on SQLite and PostgreSQL.
//!
//! The matrix takes the RPCs from the service descriptor itself, so an RPC added without an
//! entry here fails the test: every RPC × every kind of credential (none, malformed, forged,
//! expired, wrong audience, valid without a grant, read, write, admin) must give the code the
//! grants imply, and appear exactly once in the audit trail with that outcome. Then: a batch
//! can be committed or aborted only by its owner; the token file and the JWKS are reloaded
//! while clients stay connected.

use anyhow::{Context, Result, bail, ensure};
use batchstore_proto::v1 as pb;
use batchstore_tests::credentials::{
    AUDIENCE, ISSUER, SigningKey, claims, jwks, token_entry, unsigned_token,
};
use batchstore_tests::{Backend, Metastore, TestDatabase, on_both_backends, spec, table_ref};
use prost::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request};

type Rpc = pb::metastore_client::MetastoreClient<Channel>;

const ROOT_TOKEN: &str = "root-token-0123456789";
const WRITER_TOKEN: &str = "writer-token-0123456789";
const ADMIN_TOKEN: &str = "nsadmin-token-0123456789";

/// A request carrying `token` (when given) and a claimed actor.
fn req<T>(message: T, authorization: Option<&str>, actor: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii"));
    }
    request
        .metadata_mut()
        .insert("batchstore-actor", actor.parse().expect("ascii"));
    request
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A metastore that accepts the token file and JWTs signed by `key`, with `root` as admin.
struct Secured {
    server: Metastore,
    dir: tempfile::TempDir,
    key: SigningKey,
}

impl Secured {
    fn start(db: &TestDatabase, tokens: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = SigningKey::generate("k1")?;
        std::fs::write(dir.path().join("tokens.toml"), tokens)?;
        std::fs::write(dir.path().join("jwks.json"), jwks(&[&key]))?;
        let token_file = dir.path().join("tokens.toml").display().to_string();
        let jwks_file = dir.path().join("jwks.json").display().to_string();
        let mut args = vec![
            "--token-file",
            &token_file,
            "--jwks-file",
            &jwks_file,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
            "--admin",
            "root",
            "--grants-cache-seconds",
            "0",
        ];
        args.extend_from_slice(extra);
        let server = Metastore::start(&db.url, &args)?;
        Ok(Secured { server, dir, key })
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn standard_tokens() -> String {
    [
        token_entry("root", &[], ROOT_TOKEN),
        token_entry("writer", &["pipelines"], WRITER_TOKEN),
        token_entry("nsadmin", &[], ADMIN_TOKEN),
    ]
    .concat()
}

/// The kinds of credential a call can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cred {
    None,
    Malformed,
    UnknownToken,
    BadSignature,
    Unsigned,
    AlgorithmConfusion,
    Expired,
    WrongAudience,
    NoGrant,
    Read,
    Write,
    Admin,
}

const CREDS: [Cred; 12] = [
    Cred::None,
    Cred::Malformed,
    Cred::UnknownToken,
    Cred::BadSignature,
    Cred::Unsigned,
    Cred::AlgorithmConfusion,
    Cred::Expired,
    Cred::WrongAudience,
    Cred::NoGrant,
    Cred::Read,
    Cred::Write,
    Cred::Admin,
];

/// The permission a method needs on its namespace (`None`: any authenticated caller).
fn needed(method: &str) -> Option<Option<Level>> {
    use Level::*;
    Some(match method {
        "ListNamespaces" | "WhoAmI" => None,
        "GetTable" | "ListTables" | "GetBatch" | "ResolvePartitions" | "ListPartitions"
        | "GetHistory" | "ListTags" | "GetLineage" | "AcquireLease" | "ExtendLease"
        | "ReleaseLease" | "ListLeases" | "GetSchemaHistory" => Some(Read),
        "BeginWrite" | "Commit" | "AbortWrite" | "RenewLease" | "Rollback" | "CreateTag"
        | "DeleteTag" => Some(Write),
        "CreateNamespace" | "DropNamespace" | "CreateTable" | "DropTable" | "Grant" | "Revoke"
        | "ListGrants" | "ListAuditEvents" | "SetRetention" | "UndropTable" | "CollectGarbage"
        | "SetSchemaPolicy" => Some(Admin),
        // The warehouse spans every namespace: admin on `*` only (no cell holds it).
        "FindOrphans" => Some(Global),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Read,
    Write,
    Admin,
    Global,
}

/// What a valid credential holds on the cell's namespace.
fn level(cred: Cred) -> Option<Level> {
    match cred {
        Cred::Read => Some(Level::Read),
        Cred::Write => Some(Level::Write),
        Cred::Admin => Some(Level::Admin),
        _ => None,
    }
}

fn authenticates(cred: Cred) -> bool {
    matches!(cred, Cred::NoGrant | Cred::Read | Cred::Write | Cred::Admin)
}

/// What one cell of the matrix acts on: a namespace of its own with a table, two committed
/// versions of `ds=1`, a tag on the first, a pending batch, and an empty second namespace.
#[derive(Debug, Default, Clone)]
struct Fixture {
    ns: String,
    empty_ns: String,
    first: String,
    pending: String,
    pending_file: Option<pb::DataFile>,
}

const TABLE: &str = "t";

struct Matrix<'a> {
    rpc: Rpc,
    secured: &'a Secured,
    root: String,
}

impl Matrix<'_> {
    /// The authorization header of `cred` (valid ones name a principal holding `level`).
    fn authorization(&self, cred: Cred) -> Result<Option<String>> {
        let key = &self.secured.key;
        let good = |sub: &str, groups: &[&str]| claims(sub, groups, AUDIENCE, 600);
        Ok(match cred {
            Cred::None => None,
            Cred::Malformed => Some("Basic cm9vdDpyb290".to_owned()),
            Cred::UnknownToken => Some(bearer("no-such-token")),
            Cred::BadSignature => Some(bearer(
                &SigningKey::generate("k1")?.sign(&good("root", &[]))?,
            )),
            Cred::Unsigned => Some(bearer(&unsigned_token("k1", &good("root", &[])))),
            Cred::AlgorithmConfusion => Some(bearer(&key.forge_hs256(&good("root", &[]))?)),
            Cred::Expired => Some(bearer(&key.sign(&claims("root", &[], AUDIENCE, -3600))?)),
            Cred::WrongAudience => Some(bearer(&key.sign(&claims("root", &[], "other", 600))?)),
            Cred::NoGrant => Some(bearer(&key.sign(&good("stranger", &[]))?)),
            // A reader through a group grant, from a JWT.
            Cred::Read => Some(bearer(&key.sign(&good("reader", &["analysts"]))?)),
            // A writer and an admin through grants to themselves, from the token file.
            Cred::Write => Some(bearer(WRITER_TOKEN)),
            Cred::Admin => Some(bearer(ADMIN_TOKEN)),
        })
    }

    fn root<T>(&self, message: T) -> Request<T> {
        req(message, Some(&self.root), "setup")
    }

    async fn grant(&mut self, ns: &str, grantee: pb::Grantee, permission: Level) -> Result<()> {
        let permission = match permission {
            Level::Read => pb::Permission::Read,
            Level::Write => pb::Permission::Write,
            Level::Admin | Level::Global => pb::Permission::Admin,
        };
        self.rpc
            .grant(self.root(pb::GrantRequest {
                namespace: ns.into(),
                grantee: Some(grantee),
                permission: permission as i32,
            }))
            .await?;
        Ok(())
    }

    async fn write(&mut self, ns: &str, auth: &str, rows: i64) -> Result<String> {
        let begun = self.begin(ns, auth).await?;
        let file = batchstore_tests::upload(&begun.location, "part-00000.parquet", rows)?;
        self.rpc
            .commit(req(
                batchstore_tests::commit_request(begun.batch_id.clone(), vec![file], None),
                Some(auth),
                "setup",
            ))
            .await?;
        Ok(begun.batch_id)
    }

    async fn begin(&mut self, ns: &str, auth: &str) -> Result<pb::BeginWriteResponse> {
        Ok(self
            .rpc
            .begin_write(req(
                pb::BeginWriteRequest {
                    table: table_ref(ns, TABLE),
                    partition: Some(spec(&[("ds", "1")])),
                    lease_seconds: 0,
                },
                Some(auth),
                "setup",
            ))
            .await?
            .into_inner())
    }

    /// A fresh namespace for cell `n`, with grants making `cred` hold its level there (and a
    /// stranger holding admin on another namespace only).
    async fn fixture(&mut self, n: usize, cred: Cred) -> Result<Fixture> {
        let ns = format!("m{n}");
        let empty_ns = format!("m{n}e");
        for name in [&ns, &empty_ns] {
            self.rpc
                .create_namespace(self.root(pb::CreateNamespaceRequest {
                    name: name.clone(),
                    if_not_exists: false,
                }))
                .await?;
        }
        self.rpc
            .create_table(self.root(batchstore_tests::ds_table(&ns, TABLE)))
            .await?;
        // A dropped table, for UndropTable.
        self.rpc
            .create_table(self.root(batchstore_tests::ds_table(&ns, "gone")))
            .await?;
        self.rpc
            .drop_table(self.root(pb::DropTableRequest {
                table: table_ref(&ns, "gone"),
            }))
            .await?;
        for name in [&ns, &empty_ns] {
            let principal = |p: &str| pb::Grantee {
                principal: p.into(),
                group: String::new(),
            };
            match cred {
                Cred::Read => {
                    let group = pb::Grantee {
                        principal: String::new(),
                        group: "analysts".into(),
                    };
                    self.grant(name, group, Level::Read).await?;
                }
                Cred::Write => self.grant(name, principal("writer"), Level::Write).await?,
                Cred::Admin => self.grant(name, principal("nsadmin"), Level::Admin).await?,
                _ => {}
            }
        }
        let root = self.root.clone();
        let first = self.write(&ns, &root, 3).await?;
        self.write(&ns, &root, 4).await?;
        self.rpc
            .create_tag(self.root(pb::CreateTagRequest {
                table: table_ref(&ns, TABLE),
                name: "first".into(),
                target: Some(pb::create_tag_request::Target::BatchId(first.clone())),
            }))
            .await?;
        // The pending batch is the caller's own when it may write (so Commit can succeed);
        // otherwise root's.
        let owner = if level(cred) >= Some(Level::Write) {
            self.authorization(cred)?.context("a valid credential")?
        } else {
            root
        };
        let pending = self.begin(&ns, &owner).await?;
        let file = batchstore_tests::upload(&pending.location, "part-00000.parquet", 5)?;
        // A named lease, the caller's own when it may read (so it may extend and release it).
        let holder = if level(cred) >= Some(Level::Read) {
            self.authorization(cred)?.context("a valid credential")?
        } else {
            self.root.clone()
        };
        self.rpc
            .acquire_lease(req(
                pb::AcquireLeaseRequest {
                    table: table_ref(&ns, TABLE),
                    name: "held".into(),
                    ..Default::default()
                },
                Some(&holder),
                "setup",
            ))
            .await?;
        Ok(Fixture {
            ns,
            empty_ns,
            first,
            pending: pending.batch_id,
            pending_file: Some(file),
        })
    }

    /// Calls `method` as `cred` on `fx`, claiming actor `actor`; returns the answer's code.
    async fn call(&mut self, method: &str, cred: Cred, fx: &Fixture, actor: &str) -> Result<Code> {
        let auth = self.authorization(cred)?;
        let auth = auth.as_deref();
        let r = &mut self.rpc;
        let t = || table_ref(&fx.ns, TABLE);
        let p = || Some(spec(&[("ds", "1")]));
        let grantee = || {
            Some(pb::Grantee {
                principal: "someone".into(),
                group: String::new(),
            })
        };
        macro_rules! go {
            ($rpc:ident, $msg:expr) => {
                r.$rpc(req($msg, auth, actor)).await.map(|_| ())
            };
        }
        let outcome = match method {
            "CreateNamespace" => go!(
                create_namespace,
                pb::CreateNamespaceRequest {
                    name: fx.ns.clone(),
                    if_not_exists: true,
                }
            ),
            "ListNamespaces" => go!(list_namespaces, pb::ListNamespacesRequest::default()),
            "DropNamespace" => go!(
                drop_namespace,
                pb::DropNamespaceRequest {
                    name: fx.empty_ns.clone(),
                }
            ),
            "CreateTable" => go!(
                create_table,
                pb::CreateTableRequest {
                    table: table_ref(&fx.ns, "t2"),
                    partition_keys: vec![],
                    arrow_schema: vec![],
                    if_not_exists: false,
                    schema_policy: String::new(),
                }
            ),
            "GetTable" => go!(get_table, pb::GetTableRequest { table: t() }),
            "ListTables" => go!(
                list_tables,
                pb::ListTablesRequest {
                    namespace: fx.ns.clone(),
                    ..Default::default()
                }
            ),
            "DropTable" => go!(drop_table, pb::DropTableRequest { table: t() }),
            "BeginWrite" => go!(
                begin_write,
                pb::BeginWriteRequest {
                    table: t(),
                    partition: p(),
                    lease_seconds: 0,
                }
            ),
            "Commit" => {
                let mut commit = batchstore_tests::commit_request(
                    fx.pending.clone(),
                    fx.pending_file.clone().into_iter().collect(),
                    None,
                );
                commit.actor = actor.into();
                go!(commit, commit)
            }
            "AbortWrite" => go!(
                abort_write,
                pb::AbortWriteRequest {
                    batch_id: fx.pending.clone(),
                }
            ),
            "RenewLease" => go!(
                renew_lease,
                pb::RenewLeaseRequest {
                    batch_id: fx.pending.clone(),
                    lease_seconds: 60,
                }
            ),
            "GetBatch" => go!(
                get_batch,
                pb::GetBatchRequest {
                    batch_id: fx.first.clone(),
                }
            ),
            "ResolvePartitions" => go!(
                resolve_partitions,
                pb::ResolvePartitionsRequest {
                    table: t(),
                    ..Default::default()
                }
            ),
            "ListPartitions" => go!(
                list_partitions,
                pb::ListPartitionsRequest {
                    table: t(),
                    ..Default::default()
                }
            ),
            "GetHistory" => go!(
                get_history,
                pb::GetHistoryRequest {
                    table: t(),
                    partition: p(),
                    ..Default::default()
                }
            ),
            "Rollback" => go!(
                rollback,
                pb::RollbackRequest {
                    table: t(),
                    partition: p(),
                    target: Some(pb::rollback_request::Target::ToVersion(1)),
                    expected_current_batch_id: None,
                    message: String::new(),
                    actor: actor.into(),
                    request_id: String::new(),
                }
            ),
            "CreateTag" => go!(
                create_tag,
                pb::CreateTagRequest {
                    table: t(),
                    name: "second".into(),
                    target: Some(pb::create_tag_request::Target::BatchId(fx.first.clone())),
                }
            ),
            "ListTags" => go!(list_tags, pb::ListTagsRequest { table: t() }),
            "DeleteTag" => go!(
                delete_tag,
                pb::DeleteTagRequest {
                    table: t(),
                    name: "first".into(),
                }
            ),
            "GetLineage" => go!(
                get_lineage,
                pb::GetLineageRequest {
                    batch_id: fx.first.clone(),
                }
            ),
            "Grant" => go!(
                grant,
                pb::GrantRequest {
                    namespace: fx.ns.clone(),
                    grantee: grantee(),
                    permission: pb::Permission::Read as i32,
                }
            ),
            "Revoke" => go!(
                revoke,
                pb::RevokeRequest {
                    namespace: fx.ns.clone(),
                    grantee: grantee(),
                }
            ),
            "ListGrants" => go!(
                list_grants,
                pb::ListGrantsRequest {
                    namespace: fx.ns.clone(),
                }
            ),
            "ListAuditEvents" => go!(
                list_audit_events,
                pb::ListAuditEventsRequest {
                    namespace: fx.ns.clone(),
                    ..Default::default()
                }
            ),
            "WhoAmI" => go!(who_am_i, pb::WhoAmIRequest {}),
            "SetRetention" => go!(
                set_retention,
                pb::SetRetentionRequest {
                    namespace: fx.ns.clone(),
                    table: TABLE.into(),
                    retention: Some(pb::Retention {
                        keep_versions: Some(5),
                        keep_seconds: None,
                    }),
                }
            ),
            "UndropTable" => go!(
                undrop_table,
                pb::UndropTableRequest {
                    table: table_ref(&fx.ns, "gone"),
                }
            ),
            "AcquireLease" => go!(
                acquire_lease,
                pb::AcquireLeaseRequest {
                    table: t(),
                    name: "job".into(),
                    ..Default::default()
                }
            ),
            "ExtendLease" => go!(
                extend_lease,
                pb::ExtendLeaseRequest {
                    table: t(),
                    name: "held".into(),
                    ttl_seconds: 60,
                    ..Default::default()
                }
            ),
            "ReleaseLease" => go!(
                release_lease,
                pb::ReleaseLeaseRequest {
                    table: t(),
                    name: "held".into(),
                    ..Default::default()
                }
            ),
            "ListLeases" => go!(
                list_leases,
                pb::ListLeasesRequest {
                    namespace: fx.ns.clone(),
                    ..Default::default()
                }
            ),
            "CollectGarbage" => go!(
                collect_garbage,
                pb::CollectGarbageRequest {
                    namespace: fx.ns.clone(),
                    table: TABLE.into(),
                    dry_run: true,
                    ..Default::default()
                }
            ),
            "FindOrphans" => go!(find_orphans, pb::FindOrphansRequest::default()),
            "SetSchemaPolicy" => go!(
                set_schema_policy,
                pb::SetSchemaPolicyRequest {
                    table: t(),
                    schema_policy: "additive".into(),
                }
            ),
            "GetSchemaHistory" => go!(
                get_schema_history,
                pb::GetSchemaHistoryRequest { table: t() }
            ),
            other => bail!("RPC {other} has no call in the access matrix; add one"),
        };
        Ok(match outcome {
            Ok(()) => Code::Ok,
            Err(status) => {
                if !matches!(
                    status.code(),
                    Code::PermissionDenied | Code::Unauthenticated
                ) && status.code() != Code::Ok
                {
                    eprintln!("{method} as {cred:?}: {status:?}");
                }
                status.code()
            }
        })
    }
}

/// The service's RPC names, from the descriptor the server is generated from.
fn service_methods() -> Result<Vec<String>> {
    let set = prost_types::FileDescriptorSet::decode(batchstore_proto::FILE_DESCRIPTOR_SET)?;
    let methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "Metastore")
        .flat_map(|s| &s.method)
        .map(|m| m.name().to_owned())
        .collect();
    ensure!(methods.len() >= 25, "the descriptor lists {methods:?}");
    Ok(methods)
}

async fn audit_events(rpc: &mut Rpc, root: &str) -> Result<Vec<pb::AuditEvent>> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = rpc
            .list_audit_events(req(
                pb::ListAuditEventsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                (!root.is_empty()).then_some(root),
                "audit-reader",
            ))
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        page_token = page.next_page_token;
    }
}

/// Every RPC × every credential gives the code its grants imply, and is audited once.
async fn every_rpc_checks_every_credential(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let secured = Secured::start(&db, &standard_tokens(), &[])?;
    let mut matrix = Matrix {
        rpc: secured.server.client().await?,
        secured: &secured,
        root: bearer(ROOT_TOKEN),
    };
    // The stranger is admin somewhere else, so "no grant here" is not "no grant anywhere".
    matrix
        .rpc
        .create_namespace(matrix.root(pb::CreateNamespaceRequest {
            name: "elsewhere".into(),
            if_not_exists: false,
        }))
        .await?;
    let stranger = pb::Grantee {
        principal: "stranger".into(),
        group: String::new(),
    };
    matrix.grant("elsewhere", stranger, Level::Admin).await?;

    let methods = service_methods()?;
    let shared = matrix.fixture(0, Cred::None).await?;
    let mut expected: BTreeMap<String, (String, Code)> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut n = 0;
    for method in &methods {
        let Some(needs) = needed(method) else {
            bail!("RPC {method} has no permission in the access matrix; add one");
        };
        for cred in CREDS {
            n += 1;
            let fx = if authenticates(cred) {
                matrix.fixture(n, cred).await?
            } else {
                shared.clone()
            };
            let want = if !authenticates(cred) {
                Code::Unauthenticated
            } else if needs.is_none() || level(cred) >= needs {
                Code::Ok
            } else {
                Code::PermissionDenied
            };
            let actor = format!("cell-{n}");
            let got = matrix.call(method, cred, &fx, &actor).await?;
            if got != want {
                wrong.push(format!("{method} as {cred:?}: {got:?}, expected {want:?}"));
            }
            expected.insert(actor, (method.clone(), want));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // Every cell's call is in the audit trail exactly once, with its outcome.
    let root = matrix.root.clone();
    let events = audit_events(&mut matrix.rpc, &root).await?;
    let mut seen: BTreeMap<String, Vec<&pb::AuditEvent>> = BTreeMap::new();
    for event in &events {
        if event.claimed_actor.starts_with("cell-") {
            seen.entry(event.claimed_actor.clone())
                .or_default()
                .push(event);
        }
    }
    for (actor, (method, code)) in &expected {
        let found = seen.get(actor).map(Vec::as_slice).unwrap_or_default();
        ensure!(
            found.len() == 1,
            "{actor} ({method}) is audited {} times: {found:?}",
            found.len()
        );
        let event = found[0];
        ensure!(
            event.method == *method && outcome_matches(&event.outcome, *code),
            "{actor}: audited as {} {}, called {method} expecting {code:?}",
            event.method,
            event.outcome
        );
    }
    ensure!(seen.len() == expected.len(), "stray audit events");
    eprintln!(
        "access matrix: {} RPCs x {} credentials = {} calls, each audited once",
        methods.len(),
        CREDS.len(),
        expected.len()
    );
    Ok(())
}

fn outcome_matches(outcome: &str, code: Code) -> bool {
    let name = match code {
        Code::Ok => "OK",
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::PermissionDenied => "PERMISSION_DENIED",
        _ => return false,
    };
    outcome == name
}

/// Principal B can neither commit, abort nor renew A's pending batch; A's commit then lands
/// with A's own file.
async fn only_the_owner_commits_or_aborts(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let tokens = team_tokens();
    let secured = Secured::start(&db, &tokens, &[])?;
    let mut rpc = secured.server.client().await?;
    let (alice, bob) = (bearer("alice-token"), bearer("bob-token"));
    team_tables(&mut rpc, &["items"]).await?;
    let begun = rpc
        .begin_write(req(
            pb::BeginWriteRequest {
                table: table_ref("sales", "items"),
                partition: Some(spec(&[("ds", "1")])),
                lease_seconds: 0,
            },
            Some(&alice),
            "alice",
        ))
        .await?
        .into_inner();
    let mine = batchstore_tests::upload(&begun.location, "part-00000.parquet", 7)?;
    let planted = batchstore_tests::upload(&begun.location, "part-00001.parquet", 1)?;

    // Bob, claiming to be alice, tries every way in.
    let hijack = batchstore_tests::commit_request(begun.batch_id.clone(), vec![planted], None);
    let denied = rpc
        .commit(req(hijack, Some(&bob), "alice"))
        .await
        .expect_err("bob committed alice's batch");
    ensure!(denied.code() == Code::PermissionDenied, "{denied:?}");
    ensure!(
        denied.message().contains("alice"),
        "the refusal names the owner: {}",
        denied.message()
    );
    let denied = rpc
        .abort_write(req(
            pb::AbortWriteRequest {
                batch_id: begun.batch_id.clone(),
            },
            Some(&bob),
            "alice",
        ))
        .await
        .expect_err("bob aborted alice's batch");
    ensure!(denied.code() == Code::PermissionDenied, "{denied:?}");
    let denied = rpc
        .renew_lease(req(
            pb::RenewLeaseRequest {
                batch_id: begun.batch_id.clone(),
                lease_seconds: 60,
            },
            Some(&bob),
            "alice",
        ))
        .await
        .expect_err("bob renewed alice's lease");
    ensure!(denied.code() == Code::PermissionDenied, "{denied:?}");

    // Alice's own commit lands with her file only, under her name.
    let committed = rpc
        .commit(req(
            batchstore_tests::commit_request(begun.batch_id.clone(), vec![mine], None),
            Some(&alice),
            "mallory",
        ))
        .await?
        .into_inner();
    let entry = &committed.committed[0];
    ensure!(entry.version == 1, "{committed:?}");
    let history = rpc
        .get_history(req(
            pb::GetHistoryRequest {
                table: table_ref("sales", "items"),
                partition: Some(spec(&[("ds", "1")])),
                ..Default::default()
            },
            Some(&bob),
            "bob",
        ))
        .await?
        .into_inner();
    let last = &history.entries[0];
    ensure!(
        last.rows == 7 && last.actor == "alice",
        "the commit is alice's 7 rows, not a claim: {last:?}"
    );
    Ok(())
}

/// Tokens of root and of alice and bob, both in the group `team`.
fn team_tokens() -> String {
    [
        token_entry("root", &[], ROOT_TOKEN),
        token_entry("alice", &["team"], "alice-token"),
        token_entry("bob", &["team"], "bob-token"),
    ]
    .concat()
}

/// Namespace `sales` with `tables` in it, writable by the group `team` (made by root).
async fn team_tables(rpc: &mut Rpc, tables: &[&str]) -> Result<()> {
    let root = bearer(ROOT_TOKEN);
    rpc.create_namespace(req(
        pb::CreateNamespaceRequest {
            name: "sales".into(),
            if_not_exists: false,
        },
        Some(&root),
        "root",
    ))
    .await?;
    rpc.grant(req(
        pb::GrantRequest {
            namespace: "sales".into(),
            grantee: Some(pb::Grantee {
                principal: String::new(),
                group: "team".into(),
            }),
            permission: pb::Permission::Write as i32,
        },
        Some(&root),
        "root",
    ))
    .await?;
    for table in tables {
        rpc.create_table(req(
            batchstore_tests::ds_table("sales", table),
            Some(&root),
            "root",
        ))
        .await?;
    }
    Ok(())
}

/// Pending batches are bounded per principal, over all tables: past the bound BeginWrite is
/// refused naming the principal, others are not affected, and aborting one makes room.
async fn pending_batches_are_bounded_per_principal(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let tokens = team_tokens();
    let secured = Secured::start(&db, &tokens, &["--max-pending-per-principal", "2"])?;
    let mut rpc = secured.server.client().await?;
    let (alice, bob) = (bearer("alice-token"), bearer("bob-token"));
    team_tables(&mut rpc, &["items", "other"]).await?;
    let begin = |table: &str, ds: &str, who: &str| {
        req(
            pb::BeginWriteRequest {
                table: table_ref("sales", table),
                partition: Some(spec(&[("ds", ds)])),
                lease_seconds: 0,
            },
            Some(who),
            "someone",
        )
    };
    let first = rpc
        .begin_write(begin("items", "1", &alice))
        .await?
        .into_inner();
    rpc.begin_write(begin("other", "1", &alice)).await?;
    let refused = rpc
        .begin_write(begin("items", "2", &alice))
        .await
        .expect_err("a third pending batch of one principal");
    ensure!(
        refused.code() == Code::FailedPrecondition
            && refused.message().contains("alice")
            && refused.message().contains("one principal"),
        "{refused:?}"
    );
    rpc.begin_write(begin("items", "2", &bob)).await?;
    rpc.abort_write(req(
        pb::AbortWriteRequest {
            batch_id: first.batch_id,
        },
        Some(&alice),
        "alice",
    ))
    .await?;
    rpc.begin_write(begin("items", "2", &alice)).await?;
    Ok(())
}

/// Calls WhoAmI on `rpc` (one open connection) with `authorization`.
async fn who(rpc: &mut Rpc, authorization: &str) -> Result<String, tonic::Status> {
    rpc.who_am_i(req(pb::WhoAmIRequest {}, Some(authorization), "t"))
        .await
        .map(|r| r.into_inner().principal)
}

/// Polls until `check` holds (files are looked at again about once a second).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} did not happen within 30 s")
}

fn replace(path: &Path, text: &str) -> Result<()> {
    // Written beside and renamed over, as an operator's tooling would.
    let next = path.with_extension("next");
    std::fs::write(&next, text)?;
    std::fs::rename(&next, path)?;
    Ok(())
}

/// The token file and the JWKS change under connected clients: new principals and keys are
/// accepted and removed ones refused, without a restart; a broken edit keeps the last good one.
async fn token_file_and_jwks_are_reloaded(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let secured = Secured::start(&db, &token_entry("alice", &[], "alice-token"), &[])?;
    let mut rpc = secured.server.client().await?;
    let (alice, carol) = (bearer("alice-token"), bearer("carol-token"));
    ensure!(who(&mut rpc, &alice).await? == "alice");
    // A JWT cannot prove a principal the token file defines (it would take over its grants
    // and pending batches).
    let impostor = bearer(&secured.key.sign(&claims("alice", &[], AUDIENCE, 600))?);
    let refused = who(&mut rpc, &impostor)
        .await
        .expect_err("a JWT claimed alice");
    ensure!(
        refused.code() == Code::Unauthenticated && refused.message().contains("token file"),
        "{refused:?}"
    );
    let refused = who(&mut rpc, &carol).await.expect_err("carol is unknown");
    ensure!(refused.code() == Code::Unauthenticated, "{refused:?}");

    // A broken edit is ignored: alice still gets in.
    replace(&secured.path("tokens.toml"), "[[principal]]\nname = ")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(who(&mut rpc, &alice).await? == "alice");

    replace(
        &secured.path("tokens.toml"),
        &token_entry("carol", &[], "carol-token"),
    )?;
    eventually("carol admitted", async || {
        who(&mut rpc, &carol).await.is_ok_and(|p| p == "carol")
    })
    .await?;
    let refused = who(&mut rpc, &alice).await.expect_err("alice was removed");
    ensure!(refused.code() == Code::Unauthenticated, "{refused:?}");

    // Key rotation: a token from the next key is refused until the JWKS lists it; once the
    // old key is gone its tokens are refused.
    let next = SigningKey::generate("k2")?;
    let old_token = bearer(&secured.key.sign(&claims("dave", &[], AUDIENCE, 600))?);
    let new_token = bearer(&next.sign(&claims("erin", &[], AUDIENCE, 600))?);
    ensure!(who(&mut rpc, &old_token).await? == "dave");
    let refused = who(&mut rpc, &new_token).await.expect_err("k2 is unknown");
    ensure!(refused.code() == Code::Unauthenticated, "{refused:?}");
    replace(&secured.path("jwks.json"), &jwks(&[&secured.key, &next]))?;
    eventually("k2 accepted", async || {
        who(&mut rpc, &new_token).await.is_ok_and(|p| p == "erin")
    })
    .await?;
    replace(&secured.path("jwks.json"), &jwks(&[&next]))?;
    eventually("k1 retired", async || {
        who(&mut rpc, &old_token)
            .await
            .is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await?;
    ensure!(who(&mut rpc, &new_token).await? == "erin");
    Ok(())
}

/// Grants cannot be planted on a metastore without authentication, and die with their
/// namespace: a namespace created again under the same name starts without them.
async fn grants_need_authentication_and_die_with_their_namespace(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let open = Metastore::start(&db.url, &[])?;
    let mut rpc = open.client().await?;
    let plant = pb::GrantRequest {
        namespace: "*".into(),
        grantee: Some(pb::Grantee {
            principal: "mallory".into(),
            group: String::new(),
        }),
        permission: pb::Permission::Admin as i32,
    };
    let refused = rpc
        .grant(req(plant.clone(), None, "mallory"))
        .await
        .expect_err("a grant was planted without authentication");
    ensure!(refused.code() == Code::FailedPrecondition, "{refused:?}");
    drop(rpc);
    drop(open);

    let secured = Secured::start(
        &db,
        &[
            token_entry("root", &[], ROOT_TOKEN),
            token_entry("mallory", &[], "mallory-token"),
        ]
        .concat(),
        &[],
    )?;
    let mut rpc = secured.server.client().await?;
    let root = bearer(ROOT_TOKEN);
    let mallory = bearer("mallory-token");
    let listed = rpc
        .list_grants(req(pb::ListGrantsRequest::default(), Some(&root), "root"))
        .await?
        .into_inner();
    ensure!(listed.grants.is_empty(), "planted: {listed:?}");
    let create = |name: &str| pb::CreateNamespaceRequest {
        name: name.into(),
        if_not_exists: false,
    };
    rpc.create_namespace(req(create("sales"), Some(&root), "root"))
        .await?;
    rpc.grant(req(
        pb::GrantRequest {
            namespace: "sales".into(),
            ..plant
        },
        Some(&root),
        "root",
    ))
    .await?;
    let tables = || pb::ListTablesRequest {
        namespace: "sales".into(),
        ..Default::default()
    };
    rpc.list_tables(req(tables(), Some(&mallory), "mallory"))
        .await?;
    rpc.drop_namespace(req(
        pb::DropNamespaceRequest {
            name: "sales".into(),
        },
        Some(&root),
        "root",
    ))
    .await?;
    rpc.create_namespace(req(create("sales"), Some(&root), "root"))
        .await?;
    let denied = rpc
        .list_tables(req(tables(), Some(&mallory), "mallory"))
        .await
        .expect_err("the old namespace's grant carried over");
    ensure!(denied.code() == Code::PermissionDenied, "{denied:?}");
    Ok(())
}

/// Lineage names only batches the caller may read: a writer of one namespace cannot link (or
/// probe) a batch of a namespace it cannot read, and GetLineage hides such batches.
async fn lineage_names_only_what_the_caller_may_read(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let tokens = [
        token_entry("root", &[], ROOT_TOKEN),
        token_entry("alice", &[], "alice-token"),
    ]
    .concat();
    let secured = Secured::start(&db, &tokens, &[])?;
    let mut matrix = Matrix {
        rpc: secured.server.client().await?,
        secured: &secured,
        root: bearer(ROOT_TOKEN),
    };
    let alice = bearer("alice-token");
    for ns in ["open", "secret"] {
        matrix
            .rpc
            .create_namespace(matrix.root(pb::CreateNamespaceRequest {
                name: ns.into(),
                if_not_exists: false,
            }))
            .await?;
        matrix
            .rpc
            .create_table(matrix.root(batchstore_tests::ds_table(ns, TABLE)))
            .await?;
    }
    let alice_grantee = pb::Grantee {
        principal: "alice".into(),
        group: String::new(),
    };
    matrix.grant("open", alice_grantee, Level::Write).await?;
    let root = matrix.root.clone();
    let hidden = matrix.write("secret", &root, 2).await?;

    // Root links an open batch to the secret one; alice sees the open batch, not its input.
    let begun = matrix.begin("open", &root).await?;
    let file = batchstore_tests::upload(&begun.location, "part-00000.parquet", 1)?;
    let mut commit = batchstore_tests::commit_request(begun.batch_id.clone(), vec![file], None);
    commit.updates[0].input_batch_ids = vec![hidden.clone()];
    matrix.rpc.commit(matrix.root(commit)).await?;
    let lineage = |id: &str| pb::GetLineageRequest {
        batch_id: id.to_owned(),
    };
    let as_root = matrix
        .rpc
        .get_lineage(matrix.root(lineage(&begun.batch_id)))
        .await?
        .into_inner();
    ensure!(as_root.inputs == vec![hidden.clone()], "{as_root:?}");
    let as_alice = matrix
        .rpc
        .get_lineage(req(lineage(&begun.batch_id), Some(&alice), "alice"))
        .await?
        .into_inner();
    ensure!(as_alice.inputs.is_empty(), "alice sees {as_alice:?}");

    // Alice cannot name the secret batch as an input of her own write.
    let begun = matrix.begin("open", &alice).await?;
    let file = batchstore_tests::upload(&begun.location, "part-00000.parquet", 1)?;
    let mut commit = batchstore_tests::commit_request(begun.batch_id.clone(), vec![file], None);
    commit.updates[0].input_batch_ids = vec![hidden];
    let denied = matrix
        .rpc
        .commit(req(commit, Some(&alice), "alice"))
        .await
        .expect_err("alice linked a batch she cannot read");
    ensure!(
        denied.code() == Code::PermissionDenied && denied.message().contains("secret"),
        "{denied:?}"
    );
    Ok(())
}

/// A call whose client gives up while it runs still leaves its one audit event: a commit held
/// open by the debug build's pause, abandoned by its client after 200 ms, is audited as
/// CANCELLED and changed nothing.
async fn an_abandoned_call_is_audited_once(backend: Backend) -> Result<()> {
    let db = TestDatabase::create(backend)?;
    let dir = tempfile::tempdir()?;
    let server = Metastore::start_with_env(
        &db.url,
        &dir.path().join("warehouse").display().to_string(),
        &[],
        &batchstore_tests::pausing_commits(std::time::Duration::from_millis(1500)),
    )?;
    let mut rpc = server.client().await?;
    batchstore_tests::create_table(&mut rpc, "sales", "items").await?;
    let partition = spec(&[("ds", "1")]);
    let begun = batchstore_tests::begin(&mut rpc, "sales", "items", &partition, 0).await?;
    let file = batchstore_tests::upload(&begun.location, "part-00000.parquet", 3)?;
    let mut commit = req(
        batchstore_tests::commit_request(begun.batch_id.clone(), vec![file], None),
        None,
        "quitter",
    );
    commit.get_mut().actor = "quitter".into();
    commit.set_timeout(Duration::from_millis(200));
    let gave_up = rpc
        .commit(commit)
        .await
        .expect_err("the paused commit answered");
    ensure!(
        matches!(gave_up.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{gave_up:?}"
    );
    // Past the pause: had the commit gone on, it would be done by now.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    match batchstore_tests::full_history(&mut rpc, "sales", "items", &partition).await {
        Err(status) if status.code() == Code::NotFound => {}
        Ok(history) if history.is_empty() => {}
        other => bail!("the abandoned commit changed the partition: {other:?}"),
    }
    let events = audit_events(&mut rpc, "").await?;
    let mine: Vec<&pb::AuditEvent> = events
        .iter()
        .filter(|e| e.claimed_actor == "quitter")
        .collect();
    ensure!(
        mine.len() == 1 && mine[0].method == "Commit" && mine[0].outcome == "CANCELLED",
        "{mine:?}"
    );
    Ok(())
}

on_both_backends!(
    an_abandoned_call_is_audited_once,
    lineage_names_only_what_the_caller_may_read,
    grants_need_authentication_and_die_with_their_namespace,
    every_rpc_checks_every_credential,
    only_the_owner_commits_or_aborts,
    pending_batches_are_bounded_per_principal,
    token_file_and_jwks_are_reloaded,
);

/// Without authentication the server refuses a non-loopback address unless told otherwise.
#[test]
fn no_auth_beyond_loopback_needs_an_explicit_flag() -> Result<()> {
    let db = TestDatabase::create(Backend::Sqlite)?;
    let dir = tempfile::tempdir()?;
    let output = std::process::Command::new(batchstore_tests::metastore_binary()?)
        .args(["serve", "--listen", "0.0.0.0:0", "--database-url", &db.url])
        .arg("--warehouse")
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "it served: {stderr}");
    ensure!(
        stderr.contains("without authentication") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    let server = Metastore::start_at(
        "0.0.0.0:0",
        &db.url,
        &dir.path().display().to_string(),
        &["--insecure-no-auth"],
        &[],
    )?;
    drop(server);
    Ok(())
}

/// tablectl over TLS and mutual TLS, with tokens: the right CA and certificate get in; a
/// plaintext client, the wrong CA, a missing client certificate, a missing token and a missing
/// grant each get one clear line and a non-zero exit.
#[test]
fn tablectl_over_tls_and_mtls_with_tokens() -> Result<()> {
    use batchstore_tests::credentials::TlsFiles;
    use batchstore_tests::tablectl::Tablectl;
    let db = TestDatabase::create(Backend::Sqlite)?;
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles::write(&dir.path().join("tls"))?;
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        [
            token_entry("root", &[], ROOT_TOKEN),
            token_entry("alice", &[], "alice-token"),
        ]
        .concat(),
    )?;
    let tokens = tokens.display().to_string();
    let warehouse = dir.path().join("warehouse").display().to_string();
    let start = |mutual: bool| {
        let mut args = vec![
            "--token-file".to_owned(),
            tokens.clone(),
            "--admin".to_owned(),
            "root".to_owned(),
        ];
        args.extend(tls.server_args(mutual));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Metastore::start_with_warehouse(&db.url, &warehouse, &args)
    };
    let path = |p: &Path| p.display().to_string();
    let (ca, wrong_ca) = (path(&tls.ca), path(&tls.wrong_ca));
    let (client_cert, client_key) = (path(&tls.client_cert), path(&tls.client_key));
    let data = dir.path().join("in.parquet");
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "x",
        std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3])) as arrow_array::ArrayRef,
    )])?;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&data)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    let data = path(&data);

    let failure = |cli: &Tablectl, args: &[&str]| -> Result<String> {
        let out = cli.run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(
            !out.status.success(),
            "tablectl {args:?} succeeded: {stderr}"
        );
        ensure!(
            stderr.trim().lines().count() == 1,
            "one line expected: {stderr}"
        );
        Ok(stderr)
    };

    // TLS, server certificate only.
    let server = start(false)?;
    let port = server.address.rsplit(':').next().context("port")?;
    let https = Tablectl {
        endpoint: format!("https://localhost:{port}"),
        env: vec![("BATCHSTORE_CA_FILE".into(), ca.clone())],
    };
    let as_root = |args: &[&str]| {
        let mut all = vec!["--token", ROOT_TOKEN];
        all.extend_from_slice(args);
        https.ok(&all)
    };
    ensure!(as_root(&["whoami"])?.contains("root"));
    as_root(&["namespace", "create", "sales"])?;
    as_root(&["table", "create", "sales.items", "--partition-key", "ds"])?;
    as_root(&["grant", "read", "sales", "alice"])?;
    ensure!(as_root(&["grants", "sales"])?.contains("alice"));

    let stderr = failure(&https, &["table", "list"])?;
    ensure!(
        stderr.contains("no token") && stderr.contains("BATCHSTORE_TOKEN"),
        "{stderr}"
    );
    let stderr = failure(
        &https,
        &[
            "--token",
            "alice-token",
            "write",
            "sales.items",
            "-p",
            "ds=1",
            &data,
        ],
    )?;
    ensure!(
        stderr.contains("PERMISSION_DENIED")
            && stderr.contains("alice has read on sales, write is needed"),
        "{stderr}"
    );
    as_root(&["grant", "write", "sales", "alice"])?;
    https.ok(&[
        "--token",
        "alice-token",
        "write",
        "sales.items",
        "-p",
        "ds=1",
        &data,
    ])?;
    let history = https.json(&[
        "--token",
        "alice-token",
        "history",
        "sales.items",
        "-p",
        "ds=1",
    ])?;
    ensure!(history.to_string().contains("\"alice\""), "{history}");

    let plaintext = Tablectl {
        endpoint: format!("http://127.0.0.1:{port}"),
        env: vec![],
    };
    let stderr = failure(&plaintext, &["--token", ROOT_TOKEN, "whoami"])?;
    ensure!(stderr.contains("https://"), "{stderr}");
    // A token is never sent in clear text to another host.
    let remote = Tablectl {
        endpoint: "http://192.0.2.1:50051".into(),
        env: vec![],
    };
    let stderr = failure(&remote, &["--token", ROOT_TOKEN, "whoami"])?;
    ensure!(
        stderr.contains("refusing to send a token in clear text to 192.0.2.1"),
        "{stderr}"
    );
    let stderr = failure(
        &https,
        &["--token", ROOT_TOKEN, "--ca-file", &wrong_ca, "whoami"],
    )?;
    ensure!(
        stderr.to_lowercase().contains("certificate"),
        "the wrong CA is named as a certificate problem: {stderr}"
    );
    drop(server);

    // Mutual TLS: the client's certificate is required.
    let server = start(true)?;
    let port = server.address.rsplit(':').next().context("port")?;
    let mtls = Tablectl {
        endpoint: format!("https://localhost:{port}"),
        env: vec![("BATCHSTORE_CA_FILE".into(), ca.clone())],
    };
    let stderr = failure(&mtls, &["--token", ROOT_TOKEN, "whoami"])?;
    ensure!(stderr.contains("certificate"), "{stderr}");
    let out = mtls.ok(&[
        "--token",
        "alice-token",
        "--client-cert",
        &client_cert,
        "--client-key",
        &client_key,
        "read",
        "sales.items",
        "-p",
        "ds=1",
    ])?;
    ensure!(out.contains('3'), "{out}");
    Ok(())
}

/// Serves `document` over HTTP on loopback (one JWKS endpoint); returns its URL.
async fn serve_jwks(document: std::sync::Arc<std::sync::Mutex<String>>) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/jwks.json", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = document.lock().map(|d| d.clone()).unwrap_or_default();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

/// JWKS from a URL: fetched at start, and fetched again when a token names a key it lacks
/// (key rotation at the identity provider), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_is_fetched_and_refetched_for_new_keys() -> Result<()> {
    let db = TestDatabase::create(Backend::Sqlite)?;
    let first = SigningKey::generate("k1")?;
    let next = SigningKey::generate("k2")?;
    let document = std::sync::Arc::new(std::sync::Mutex::new(jwks(&[&first])));
    let url = serve_jwks(document.clone()).await?;
    let server = Metastore::start(
        &db.url,
        &[
            "--jwks-url",
            &url,
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
        ],
    )?;
    let mut rpc = server.client().await?;
    let old_token = bearer(&first.sign(&claims("dave", &[], AUDIENCE, 600))?);
    let new_token = bearer(&next.sign(&claims("erin", &["eng"], AUDIENCE, 600))?);
    eventually("the JWKS fetched at start", async || {
        who(&mut rpc, &old_token).await.is_ok_and(|p| p == "dave")
    })
    .await?;
    let refused = who(&mut rpc, &new_token).await.expect_err("k2 is unknown");
    ensure!(
        refused.code() == Code::Unauthenticated && refused.message().contains("k2"),
        "{refused:?}"
    );
    *document.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = jwks(&[&next]);
    eventually("k2 fetched", async || {
        who(&mut rpc, &new_token).await.is_ok_and(|p| p == "erin")
    })
    .await?;
    Ok(())
}

/// Credentials are checked before a request's body is read: a call without them is refused
/// as UNAUTHENTICATED even when its body is one the service would never decode (over the
/// 64 MiB message limit), and a valid caller's same call gets the size error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_the_body_is_read() -> Result<()> {
    let db = TestDatabase::create(Backend::Sqlite)?;
    let secured = Secured::start(&db, &token_entry("root", &[], ROOT_TOKEN), &[])?;
    let mut rpc = secured
        .server
        .client()
        .await?
        .max_encoding_message_size(usize::MAX);
    let huge = || pb::CreateTableRequest {
        table: table_ref("sales", "items"),
        partition_keys: vec![],
        arrow_schema: vec![0u8; 65 * 1024 * 1024],
        if_not_exists: false,
        schema_policy: String::new(),
    };
    let refused = rpc
        .create_table(req(huge(), None, "flood"))
        .await
        .expect_err("accepted without a token");
    ensure!(refused.code() == Code::Unauthenticated, "{refused:?}");
    let too_big = rpc
        .create_table(req(huge(), Some(&bearer(ROOT_TOKEN)), "root"))
        .await
        .expect_err("a 65 MiB message was decoded");
    ensure!(
        too_big.code() != Code::Unauthenticated,
        "the valid caller was refused: {too_big:?}"
    );
    Ok(())
}
