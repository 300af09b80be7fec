//! The client: one connection to a metastore plus the stores batch locations live in.
//!
//! Here: connecting (endpoint, deadlines, keepalive, the actor on every call) and the helpers
//! every call shares. The calls themselves live by concern: `tables` (namespaces and tables),
//! `versions` (batches, partitions, history, rollback, tags), `write` and `read` (the data
//! path). A `Client` is cheap to clone and safe to share between tasks.

use crate::error::{ClientError, Result};
use crate::storage::Stores;
use batchstore_proto::v1::metastore_client::MetastoreClient;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Channel, Endpoint};

/// Where to find the metastore when no endpoint is given and `BATCHSTORE_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Deadline of a metadata call (the commit has its own, longer one).
pub(crate) const RPC_DEADLINE: Duration = Duration::from_secs(60);
/// No call waits longer than this for its answer, however stalled the server;
/// `BATCHSTORE_CALL_TIMEOUT_SECONDS` sets another bound.
const CALL_LIMIT: Duration = Duration::from_secs(600);
/// How often an open connection is checked for life while a call waits.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// The metastore's gRPC client, every call stamped with the actor.
pub(crate) type Rpc = MetastoreClient<InterceptedService<Channel, Actor>>;

/// Names who acts on every call (`batchstore-actor` metadata), so every audited change, tags
/// included, records the same actor: `BATCHSTORE_ACTOR`, else `USER`, else `anonymous`.
/// Characters metadata cannot carry (non-ASCII, control) become `?`.
#[derive(Debug, Clone)]
pub(crate) struct Actor(MetadataValue<Ascii>);

impl Actor {
    fn from_environment() -> Self {
        let name = std::env::var("BATCHSTORE_ACTOR")
            .or_else(|_| std::env::var("USER"))
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_owned());
        let shown: String = name
            .chars()
            .take(256)
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        Actor(
            MetadataValue::try_from(shown.as_str())
                .unwrap_or_else(|_| MetadataValue::from_static("anonymous")),
        )
    }
}

impl Interceptor for Actor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert(batchstore_proto::wire::ACTOR_KEY, self.0.clone());
        Ok(request)
    }
}

/// A connection to a batchstore metastore.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) rpc: Rpc,
    pub(crate) stores: Arc<Stores>,
    endpoint: String,
}

impl Client {
    /// Connects to `endpoint`, or `BATCHSTORE_ENDPOINT`, or the local default.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed endpoint; `Unavailable` when nothing answers there.
    pub async fn connect(endpoint: Option<&str>) -> Result<Self> {
        let endpoint = match endpoint {
            Some(e) if !e.is_empty() => e.to_owned(),
            _ => std::env::var("BATCHSTORE_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()),
        };
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| {
                ClientError::InvalidArgument(format!("bad metastore endpoint {endpoint:?}: {e}"))
            })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(call_limit())
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "cannot reach the metastore at {endpoint} ({e}); start it (make run) or set \
                     BATCHSTORE_ENDPOINT to its address"
                ))
            })?;
        let rpc = MetastoreClient::with_interceptor(channel, Actor::from_environment())
            .max_decoding_message_size(512 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Ok(Client {
            rpc,
            stores: Arc::new(Stores::default()),
            endpoint,
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Follows `next_page_token` to the last page. `fetch` gets a page token and returns that page's
/// items and the next token ("" after the last page).
pub(crate) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).await?;
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

pub(crate) fn missing(what: &str) -> ClientError {
    ClientError::Internal(format!("the metastore's reply has no {what}"))
}

/// The longest any call waits: [`CALL_LIMIT`], or `BATCHSTORE_CALL_TIMEOUT_SECONDS`.
fn call_limit() -> Duration {
    std::env::var("BATCHSTORE_CALL_TIMEOUT_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(CALL_LIMIT, Duration::from_secs)
}
