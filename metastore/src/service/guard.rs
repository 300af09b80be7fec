//! The guard every call passes: who is calling (authentication), whether it may (grants), and
//! the audit event it leaves, whatever its outcome.
//!
//! Without authentication configured every caller is let through under the actor it claims
//! (the server then listens on loopback only, see `server`). With it, a call without valid
//! credentials is UNAUTHENTICATED, a call without the needed grant PERMISSION_DENIED, and
//! the principal its token proves is the actor of every change it makes. Grants are kept in
//! memory and read again from the catalog at most [`AccessConfig::grants_ttl`] after a change
//! made through another replica (at once after one made through this one). Audit events are
//! written in batches by a background task ([`AuditLog`]), off every call's path.

use crate::access::jwt::{JwtConfig, JwtVerifier};
use crate::access::tokens::TokenFile;
use crate::access::{AuditEvent, Grantee, Grants, Permission, Principal};
use crate::catalog::Catalog;
use crate::error::{CatalogError, CatalogResult};
use crate::model::{BatchRecord, Micros};
use crate::names::{printable, quote_for_message};
use batchstore_proto::wire::{AUTHORIZATION_KEY, BEARER_PREFIX};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How callers are authenticated and authorized.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The token file (principals and token hashes).
    pub token_file: Option<PathBuf>,
    /// JWTs from an identity provider.
    pub jwt: Option<JwtConfig>,
    /// Principals (or `group:NAME`) that are admins of every namespace, whatever the grants say.
    pub admins: Vec<Grantee>,
    /// Longest a grant changed through another replica takes to be seen here.
    pub grants_ttl: Duration,
}

impl AccessConfig {
    /// True when callers must prove who they are.
    pub fn authenticates(&self) -> bool {
        self.token_file.is_some() || self.jwt.is_some()
    }
}

/// The principal recorded for calls whose credentials were refused.
pub const UNAUTHENTICATED_PRINCIPAL: &str = "(unauthenticated)";
/// The principal recorded for calls to a service without authentication.
pub const ANONYMOUS_PRINCIPAL: &str = "anonymous";

/// Longest detail and target texts an audit event keeps.
const DETAIL_CHARS: usize = 512;
/// Longest principal, actor, method and namespace an audit event keeps.
const NAME_CHARS: usize = 256;

/// Authentication, grants and the audit log of one service.
#[derive(Debug)]
pub struct Guard {
    tokens: Option<TokenFile>,
    jwt: Option<JwtVerifier>,
    grants: GrantCache,
    audit: AuditLog,
}

impl Guard {
    /// Opens the token file and JWKS and starts the audit writer (within a tokio runtime).
    ///
    /// # Errors
    /// When a configured file cannot be read or parsed.
    pub fn new(
        catalog: Catalog,
        config: AccessConfig,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        let tokens = config
            .token_file
            .as_deref()
            .map(TokenFile::open)
            .transpose()?;
        let jwt = config.jwt.clone().map(JwtVerifier::new).transpose()?;
        let (audit, writer) = AuditLog::start(catalog.clone());
        let guard = Guard {
            grants: GrantCache {
                catalog,
                admins: config.admins,
                ttl: config.grants_ttl,
                state: RwLock::new(None),
                empty: Arc::default(),
                reload: tokio::sync::Mutex::new(()),
                generation: Default::default(),
            },
            tokens,
            jwt,
            audit,
        };
        Ok((guard, writer))
    }

    /// True when callers must prove who they are.
    pub fn authenticates(&self) -> bool {
        self.tokens.is_some() || self.jwt.is_some()
    }

    /// Who is calling: the principal the gate proved (`proven`), else the one the request's
    /// token proves (or, without authentication, nobody in particular, acting under the
    /// claimed actor).
    ///
    /// # Errors
    /// `Unauthenticated` with what to do; `Unavailable` when grants cannot be loaded.
    pub async fn caller(
        &self,
        proven: Option<Arc<Principal>>,
        metadata: &tonic::metadata::MetadataMap,
        claimed_actor: String,
    ) -> CatalogResult<Caller> {
        let principal = match proven {
            Some(principal) => Some(principal),
            None if self.authenticates() => {
                Some(self.authenticate(metadata.get(AUTHORIZATION_KEY).map(|v| v.to_str()))?)
            }
            None => None,
        };
        let grants = match principal {
            Some(_) => self.grants.current().await?,
            None => self.grants.empty.clone(),
        };
        Ok(Caller {
            principal,
            claimed_actor,
            grants,
            facts: Arc::default(),
        })
    }

    /// The principal an `authorization` value (`Bearer TOKEN`) proves. Cheap and synchronous:
    /// the gate runs it before a request's body is read.
    ///
    /// # Errors
    /// `Unauthenticated`, saying what is wrong and what to do.
    pub fn authenticate<E>(
        &self,
        authorization: Option<Result<&str, E>>,
    ) -> CatalogResult<Arc<Principal>> {
        let Some(value) = authorization else {
            return Err(CatalogError::Unauthenticated(
                "no token; set BATCHSTORE_TOKEN (or BATCHSTORE_TOKEN_FILE, tablectl --token, \
                 token= in Python and R) to a token this metastore accepts"
                    .into(),
            ));
        };
        let token = value
            .ok()
            .and_then(|v| v.strip_prefix(BEARER_PREFIX))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .ok_or_else(|| {
                CatalogError::Unauthenticated(
                    "the authorization metadata is not `Bearer TOKEN`".into(),
                )
            })?;
        if let Some(principal) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            return Ok(principal);
        }
        let looks_like_jwt = token.split('.').count() == 3;
        match &self.jwt {
            Some(jwt) if looks_like_jwt => {
                let principal = jwt.verify(token).map_err(CatalogError::Unauthenticated)?;
                // The two sources must not prove the same principal: a JWT naming a principal
                // of the token file would take over its grants and its pending batches.
                if self
                    .tokens
                    .as_ref()
                    .is_some_and(|t| t.defines(&principal.name))
                {
                    return Err(CatalogError::Unauthenticated(format!(
                        "the token names principal {}, which the token file defines; a JWT \
                         cannot prove a token-file principal",
                        quote_for_message(&principal.name)
                    )));
                }
                Ok(Arc::new(principal))
            }
            _ => Err(CatalogError::Unauthenticated(
                "the token is not one this metastore accepts; check BATCHSTORE_TOKEN".into(),
            )),
        }
    }

    /// Reserves the audit event of a call about to run (waiting while the queue is full), so
    /// that the call records exactly one event whatever becomes of it: see [`AuditSlot`].
    pub async fn audit_slot(
        &self,
        method: &'static str,
        claimed_actor: &str,
        proven: Option<&Principal>,
    ) -> AuditSlot {
        let permit = self.audit.queue.clone().reserve_owned().await.ok();
        if permit.is_none() {
            tracing::error!("the audit writer has stopped; an audit event is lost");
        }
        AuditSlot {
            permit,
            event: AuditEvent {
                principal: proven
                    .map_or(ANONYMOUS_PRINCIPAL, |p| p.name.as_str())
                    .to_owned(),
                claimed_actor: claimed_actor.to_owned(),
                method: method.to_owned(),
                ..AuditEvent::default()
            },
            facts: None,
        }
    }

    /// Records a call refused before it had a caller (bad credentials). Synchronous, and
    /// dropped (counted in the log) when the audit queue is full, so that a flood of refused
    /// calls can neither stall the service nor grow its memory.
    pub fn audit_refused(&self, method: &str, claimed_actor: &str, error: &CatalogError) {
        self.audit.record_now(AuditEvent {
            at: now_micros(),
            principal: UNAUTHENTICATED_PRINCIPAL.to_owned(),
            claimed_actor: claimed_actor.to_owned(),
            method: method.to_owned(),
            outcome: outcome(Some(error)).to_owned(),
            detail: error.to_string(),
            ..AuditEvent::default()
        });
    }

    /// Waits until every event recorded so far is in the catalog.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// Makes the next call read grants from the catalog again (after a change made here).
    pub fn grants_changed(&self) {
        self.grants.invalidate();
    }
}

/// The gRPC code name of an outcome.
fn outcome(error: Option<&CatalogError>) -> &'static str {
    match error {
        None => "OK",
        Some(e) => match crate::service::status::code_of(e) {
            tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
            tonic::Code::NotFound => "NOT_FOUND",
            tonic::Code::AlreadyExists => "ALREADY_EXISTS",
            tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
            tonic::Code::Aborted => "ABORTED",
            tonic::Code::Unauthenticated => "UNAUTHENTICATED",
            tonic::Code::PermissionDenied => "PERMISSION_DENIED",
            tonic::Code::Unavailable => "UNAVAILABLE",
            _ => "INTERNAL",
        },
    }
}

fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// A call's reserved place in the audit queue. [`AuditSlot::finish`] records the call's
/// outcome; a slot dropped unfinished (the client went away or the deadline passed while the
/// call ran) records it as `CANCELLED`. Sending through the reservation cannot wait or fail, so
/// every call that got a slot has exactly one event.
#[derive(Debug)]
pub struct AuditSlot {
    permit: Option<mpsc::OwnedPermit<AuditMessage>>,
    event: AuditEvent,
    facts: Option<Arc<Mutex<Facts>>>,
}

impl AuditSlot {
    /// The call has its caller: the event names its principal and what it acts on.
    pub fn attach(&mut self, caller: &Caller) {
        self.event.principal = caller
            .principal
            .as_ref()
            .map_or(ANONYMOUS_PRINCIPAL, |p| p.name.as_str())
            .to_owned();
        self.facts = Some(caller.facts.clone());
    }

    /// Records the call's outcome.
    pub fn finish<T>(mut self, result: &CatalogResult<T>) {
        match result {
            Ok(_) => self.send(outcome(None), None),
            Err(error) => self.send(outcome(Some(error)), Some(error.to_string())),
        }
    }

    /// Records a call refused before it had a caller.
    pub fn refuse(mut self, error: &CatalogError) {
        if matches!(error, CatalogError::Unauthenticated(_)) {
            self.event.principal = UNAUTHENTICATED_PRINCIPAL.to_owned();
        }
        self.send(outcome(Some(error)), Some(error.to_string()));
    }

    fn send(&mut self, outcome: &str, detail: Option<String>) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let facts = self
            .facts
            .as_ref()
            .and_then(|f| f.lock().ok().map(|f| f.clone()))
            .unwrap_or_default();
        let event = AuditEvent {
            at: now_micros(),
            namespace: facts.namespace,
            target: facts.target,
            outcome: outcome.to_owned(),
            detail: detail.unwrap_or(facts.detail),
            ..std::mem::take(&mut self.event)
        };
        permit.send(AuditMessage::Event(clean(event)));
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        self.send(
            "CANCELLED",
            Some(
                "the call ended before its answer (its client went away or its deadline \
                 passed); a change it completed is in the partition's history"
                    .into(),
            ),
        );
    }
}

/// What a call acted on, for its audit event.
#[derive(Debug, Clone, Default)]
struct Facts {
    namespace: String,
    target: String,
    detail: String,
}

/// One call's caller: who, and what it may do.
#[derive(Debug)]
pub struct Caller {
    principal: Option<Arc<Principal>>,
    claimed_actor: String,
    grants: Arc<Grants>,
    facts: Arc<Mutex<Facts>>,
}

impl Caller {
    /// The actor recorded in history: the authenticated principal, else the claimed actor.
    pub fn actor(&self) -> String {
        match &self.principal {
            Some(p) => p.name.clone(),
            None => self.claimed_actor.clone(),
        }
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_deref()
    }

    /// Names what the call acts on, for the audit trail (the first naming wins).
    pub fn target(&self, namespace: &str, target: impl FnOnce() -> String) {
        if let Ok(mut facts) = self.facts.lock()
            && facts.namespace.is_empty()
            && facts.target.is_empty()
        {
            // Made printable and bounded with the rest of the event (`clean`).
            facts.namespace = namespace.to_owned();
            facts.target = target();
        }
    }

    /// Refuses a call that only means something when callers are authenticated (granting on
    /// a metastore without authentication would plant grants that take effect once it is on).
    ///
    /// # Errors
    /// `FailedPrecondition` without authentication.
    pub fn require_authentication(&self, what: &str) -> CatalogResult<()> {
        match self.principal {
            Some(_) => Ok(()),
            None => Err(CatalogError::FailedPrecondition(format!(
                "this metastore does not authenticate callers, so {what} cannot be managed; \
                 start it with --token-file or --jwks-file"
            ))),
        }
    }

    /// Adds a detail for the audit trail.
    pub fn note(&self, detail: impl Into<String>) {
        if let Ok(mut facts) = self.facts.lock() {
            facts.detail = detail.into();
        }
    }

    /// Allows the call when the caller holds `needed` on `namespace` (always, without
    /// authentication); names the namespace as the call's target.
    ///
    /// # Errors
    /// `PermissionDenied` saying what the caller has and needs.
    pub fn require(&self, needed: Permission, namespace: &str) -> CatalogResult<()> {
        self.target(namespace, || namespace.to_owned());
        self.check(needed, namespace)
    }

    /// Like [`Caller::require`] for a namespace the call only refers to (it does not become
    /// the call's target).
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn check(&self, needed: Permission, namespace: &str) -> CatalogResult<()> {
        match &self.principal {
            None => Ok(()),
            Some(p) => self.grants.decide(p, namespace, needed),
        }
    }

    /// Like [`Caller::require`] for a table, naming `namespace.table` as the target.
    ///
    /// # Errors
    /// `PermissionDenied`.
    pub fn require_table(
        &self,
        needed: Permission,
        namespace: &str,
        table: &str,
    ) -> CatalogResult<()> {
        self.target(namespace, || format!("{namespace}.{table}"));
        self.require(needed, namespace)
    }

    /// True when the caller holds `needed` on `namespace`.
    pub fn can(&self, needed: Permission, namespace: &str) -> bool {
        match &self.principal {
            None => true,
            Some(p) => self.grants.level(p, namespace) >= Some(needed),
        }
    }

    /// The check of a batch the call acts on: `needed` on its namespace and, when `owner`,
    /// that the caller began it.
    pub fn batch_check(
        &self,
        needed: Permission,
        owner: bool,
    ) -> impl Fn(&BatchRecord) -> CatalogResult<()> + Sync + '_ {
        move |batch: &BatchRecord| {
            let ns = &batch.table.namespace;
            self.target(ns, || {
                format!("{}.{}@{}", ns, batch.table.name, batch.batch_id)
            });
            self.require(needed, ns)?;
            let Some(principal) = &self.principal else {
                return Ok(());
            };
            if owner && batch.began_by.as_deref() != Some(principal.name.as_str()) {
                return Err(CatalogError::PermissionDenied(format!(
                    "batch {} was begun by {}; only the principal that began a batch may commit, \
                     abort or renew it",
                    batch.batch_id,
                    batch
                        .began_by
                        .as_deref()
                        .map_or_else(|| "an unauthenticated caller".to_owned(), quote_for_message)
                )));
            }
            Ok(())
        }
    }
}

/// Grants in memory, read again when stale.
#[derive(Debug)]
struct GrantCache {
    catalog: Catalog,
    admins: Vec<Grantee>,
    ttl: Duration,
    state: RwLock<Option<(Instant, Arc<Grants>)>>,
    /// What a call without authentication holds (nothing; shared, not allocated per call).
    empty: Arc<Grants>,
    reload: tokio::sync::Mutex<()>,
    /// Bumped by every invalidation, so a reload that read the catalog before a change made
    /// here does not store what it read.
    generation: std::sync::atomic::AtomicU64,
}

impl GrantCache {
    fn fresh(&self) -> Option<Arc<Grants>> {
        let state = self.state.read().ok()?;
        let (loaded, grants) = state.as_ref()?;
        (loaded.elapsed() < self.ttl).then(|| grants.clone())
    }

    async fn current(&self) -> CatalogResult<Arc<Grants>> {
        if let Some(grants) = self.fresh() {
            return Ok(grants);
        }
        let _one_reader = self.reload.lock().await;
        if let Some(grants) = self.fresh() {
            return Ok(grants);
        }
        let loaded_at = Instant::now();
        let generation = self.generation.load(Ordering::SeqCst);
        let grants = Arc::new(Grants::new(
            self.catalog.all_grants().await?,
            self.admins.clone(),
        ));
        if let Ok(mut state) = self.state.write()
            && self.generation.load(Ordering::SeqCst) == generation
        {
            *state = Some((loaded_at, grants.clone()));
        }
        Ok(grants)
    }

    fn invalidate(&self) {
        if let Ok(mut state) = self.state.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            *state = None;
        }
    }
}

/// The audit log's queue; a background task writes what it holds in batches.
#[derive(Debug, Clone)]
struct AuditLog {
    queue: mpsc::Sender<AuditMessage>,
    /// Wakes the writer for a flush: events themselves never wake it (see `write_audit`).
    flushing: Arc<tokio::sync::Notify>,
    /// Events of refused calls dropped because the queue was full.
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
enum AuditMessage {
    Event(AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// Events queued before a call waits for the writer (the queue's bound).
const AUDIT_QUEUE: usize = 10_000;
/// Longest an event waits for others to be written with it.
const AUDIT_GATHER: Duration = Duration::from_millis(100);
/// Events written per transaction at most.
const AUDIT_BATCH: usize = 1_000;

impl AuditLog {
    fn start(catalog: Catalog) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, incoming) = mpsc::channel(AUDIT_QUEUE);
        let flushing = Arc::new(tokio::sync::Notify::new());
        (
            AuditLog {
                queue,
                flushing: flushing.clone(),
                dropped: Arc::default(),
            },
            tokio::spawn(write_audit(catalog, incoming, flushing)),
        )
    }

    fn record_now(&self, event: AuditEvent) {
        if self
            .queue
            .try_send(AuditMessage::Event(clean(event)))
            .is_err()
        {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_multiple_of(10_000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "the audit queue is full: events of refused calls are being dropped"
                );
            }
        }
    }

    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(AuditMessage::Flush(done)).await.is_ok() {
            self.flushing.notify_one();
            let _ = flushed.await;
        }
    }
}

/// Every field of an event may hold a client's text: stored printable and bounded.
fn clean(event: AuditEvent) -> AuditEvent {
    AuditEvent {
        principal: printable(&event.principal, NAME_CHARS),
        claimed_actor: printable(&event.claimed_actor, NAME_CHARS),
        method: printable(&event.method, NAME_CHARS),
        namespace: printable(&event.namespace, NAME_CHARS),
        target: printable(&event.target, DETAIL_CHARS),
        detail: printable(&event.detail, DETAIL_CHARS),
        ..event
    }
}

/// Writes queued audit events until every sender is gone (the service stopped), then the rest.
///
/// After an event arrives, the writer sleeps for [`AUDIT_GATHER`] (or until a flush is asked
/// for) and then writes everything queued meanwhile, [`AUDIT_BATCH`] events per transaction:
/// one write per batch, not one per call competing with commits for the database. While it
/// sleeps, events wait in the queue without waking it, so a call costs no task wake-up.
async fn write_audit(
    catalog: Catalog,
    mut incoming: mpsc::Receiver<AuditMessage>,
    flushing: Arc<tokio::sync::Notify>,
) {
    let mut events = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = incoming.recv().await {
        if matches!(first, AuditMessage::Event(_)) {
            tokio::select! {
                () = tokio::time::sleep(AUDIT_GATHER) => {}
                () = flushing.notified() => {}
            }
        }
        // At most a queue's worth per round, so that a busy service is written as it goes.
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next.take().or_else(|| {
            (taken < AUDIT_QUEUE)
                .then(|| incoming.try_recv().ok())
                .flatten()
        }) {
            taken += 1;
            match message {
                AuditMessage::Event(e) => events.push(e),
                AuditMessage::Flush(done) => flushes.push(done),
            }
        }
        for chunk in events.chunks(AUDIT_BATCH) {
            write_events(&catalog, chunk).await;
        }
        events.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch of events, retrying a few times; if the batch still fails, writes its
/// events one by one so that one bad event does not take the others with it.
async fn write_events(catalog: &Catalog, events: &[AuditEvent]) {
    let mut attempt = 0;
    loop {
        match catalog.record_audit(events).await {
            Ok(()) => return,
            Err(error) if attempt < 5 => {
                attempt += 1;
                tracing::warn!(%error, attempt, "writing audit events failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            Err(error) => {
                let mut lost = 0;
                for event in events {
                    if catalog
                        .record_audit(std::slice::from_ref(event))
                        .await
                        .is_err()
                    {
                        lost += 1;
                    }
                }
                if lost > 0 {
                    tracing::error!(%error, lost, "audit events could not be written");
                }
                return;
            }
        }
    }
}
