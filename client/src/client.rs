//! The client: one connection to a metastore plus the stores batch locations live in.
//!
//! Here: connecting (endpoint, deadlines, keepalive, the actor on every call) and the helpers
//! every call shares. The calls themselves live by concern: `tables` (namespaces and tables),
//! `versions` (batches, partitions, history, rollback, tags), `write` and `read` (the data
//! path). A `Client` is cheap to clone and safe to share between tasks.

use crate::error::{ClientError, Result};
use crate::home::LocalHome;
use crate::storage::Stores;
use batchstore_proto::v1::metastore_client::MetastoreClient;
use batchstore_proto::wire::{ACTOR_KEY, AUTHORIZATION_KEY, BEARER_PREFIX};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Where to find the metastore when no endpoint is given and `BATCHSTORE_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// Deadline of a metadata call (the commit has its own, longer one).
pub(crate) const RPC_DEADLINE: Duration = Duration::from_secs(60);
/// No call waits longer than this for its answer, however stalled the server;
/// `BATCHSTORE_CALL_TIMEOUT_SECONDS` sets another bound.
const CALL_LIMIT: Duration = Duration::from_secs(600);
/// How often an open connection is checked for life while a call waits.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// The metastore's gRPC client, every call stamped with the caller's credentials.
pub(crate) type Rpc = MetastoreClient<InterceptedService<Channel, Credentials>>;

/// Where and as whom to connect. Anything left `None` is taken from the environment:
/// `BATCHSTORE_ENDPOINT`, `BATCHSTORE_TOKEN` (else the first line of `BATCHSTORE_TOKEN_FILE`),
/// `BATCHSTORE_CA_FILE`, `BATCHSTORE_CLIENT_CERT` and `BATCHSTORE_CLIENT_KEY`.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `http://HOST:PORT`, `https://HOST:PORT` (TLS) or `HOST:PORT`.
    pub endpoint: Option<String>,
    /// The bearer token proving who calls.
    pub token: Option<String>,
    /// A file holding the token (its first line), when `token` is not given.
    pub token_file: Option<PathBuf>,
    /// PEM certificates of the CA that signed the metastore's certificate (besides the
    /// system's roots), for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM), for a metastore that requires them (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// How this front end runs a local metastore (`metastore serve-home`): with it, a client
    /// given no endpoint (and no `BATCHSTORE_ENDPOINT`) that finds nothing at the default
    /// address uses the user's local home, starting its server when none runs (see `home`).
    pub local_server: Option<Vec<String>>,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl ConnectOptions {
    /// Options for `endpoint` (or the environment's), everything else from the environment.
    pub fn endpoint(endpoint: Option<&str>) -> Self {
        ConnectOptions {
            endpoint: endpoint.filter(|e| !e.is_empty()).map(str::to_owned),
            ..ConnectOptions::default()
        }
    }

    /// Fills what is unset from the environment.
    fn with_environment(mut self) -> Self {
        if self.endpoint.as_deref().is_none_or(str::is_empty) {
            self.endpoint = std::env::var("BATCHSTORE_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty());
        }
        if self.token.as_deref().is_none_or(str::is_empty) && self.token_file.is_none() {
            self.token = std::env::var("BATCHSTORE_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty());
            if self.token.is_none() {
                self.token_file = env_path("BATCHSTORE_TOKEN_FILE");
            }
        }
        self.ca_file = self.ca_file.or_else(|| env_path("BATCHSTORE_CA_FILE"));
        self.client_cert = self
            .client_cert
            .or_else(|| env_path("BATCHSTORE_CLIENT_CERT"));
        self.client_key = self
            .client_key
            .or_else(|| env_path("BATCHSTORE_CLIENT_KEY"));
        self
    }

    /// The token, read from its file when given that way.
    fn token(&self) -> Result<Option<String>> {
        if let Some(token) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(token.to_owned()));
        }
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::InvalidArgument(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_owned();
        if token.is_empty() {
            return Err(ClientError::InvalidArgument(format!(
                "the token file {} is empty",
                path.display()
            )));
        }
        Ok(Some(token))
    }

    /// TLS settings for an `https://` endpoint.
    fn tls(&self) -> Result<ClientTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| {
                ClientError::InvalidArgument(format!(
                    "cannot read the {what} {}: {e}",
                    path.display()
                ))
            })
        };
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::InvalidArgument(
                    "a client certificate needs its key and the other way round: set both \
                     BATCHSTORE_CLIENT_CERT and BATCHSTORE_CLIENT_KEY"
                        .into(),
                ));
            }
        }
        Ok(tls)
    }
}

/// What every call carries: who acts (`batchstore-actor`: `BATCHSTORE_ACTOR`, else `USER`,
/// else `anonymous`; the metastore records it only when it does not authenticate) and the
/// bearer token, when there is one. Characters metadata cannot carry become `?`.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    actor: MetadataValue<Ascii>,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    fn new(token: Option<&str>) -> Result<Self> {
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
        let authorization = token
            .map(|t| {
                MetadataValue::try_from(format!("{BEARER_PREFIX}{t}")).map_err(|_| {
                    ClientError::InvalidArgument(
                        "the token holds characters a token cannot have (it must be printable \
                         ASCII); check BATCHSTORE_TOKEN"
                            .into(),
                    )
                })
            })
            .transpose()?;
        Ok(Credentials {
            actor: MetadataValue::try_from(shown.as_str())
                .unwrap_or_else(|_| MetadataValue::from_static("anonymous")),
            authorization,
        })
    }
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        metadata.insert(ACTOR_KEY, self.actor.clone());
        if let Some(authorization) = &self.authorization {
            metadata.insert(AUTHORIZATION_KEY, authorization.clone());
        }
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
    /// Connects to `endpoint`, or `BATCHSTORE_ENDPOINT`, or the local default, with the
    /// environment's credentials.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed endpoint; `Unavailable` when nothing answers there.
    pub async fn connect(endpoint: Option<&str>) -> Result<Self> {
        Self::connect_with(ConnectOptions::endpoint(endpoint)).await
    }

    /// Connects as `options` say (the environment fills what they leave unset).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed endpoint or unreadable TLS or token files;
    /// `Unavailable` when nothing answers there (or the TLS handshake fails).
    pub async fn connect_with(options: ConnectOptions) -> Result<Self> {
        let options = options.with_environment();
        if options.endpoint.is_none()
            && let Some(start) = options.local_server.clone()
            && !default_endpoint_answers().await
        {
            return Self::connect_home(LocalHome::from_env(start)?).await;
        }
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        let tls = endpoint.starts_with("https://");
        let mut builder = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| {
                ClientError::InvalidArgument(format!("bad metastore endpoint {endpoint:?}: {e}"))
            })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(call_limit())
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .tcp_nodelay(true);
        if tls {
            builder = builder.tls_config(options.tls()?).map_err(|e| {
                ClientError::InvalidArgument(format!("bad TLS settings for {endpoint}: {e}"))
            })?;
        }
        let token = options.token()?;
        if token.is_some() && !tls {
            refuse_clear_text_token(builder.uri())?;
        }
        let credentials = Credentials::new(token.as_deref())?;
        let channel = builder.connect().await.map_err(|e| {
            let hint = if tls {
                "check that it serves TLS with a certificate for this host name, signed by a CA \
                 in BATCHSTORE_CA_FILE or the system's roots (and, when it asks for one, a client \
                 certificate in BATCHSTORE_CLIENT_CERT/BATCHSTORE_CLIENT_KEY)"
            } else {
                "start it (make run) or set BATCHSTORE_ENDPOINT to its address; if it serves \
                 TLS, use an https:// endpoint"
            };
            ClientError::Unavailable(format!(
                "cannot reach the metastore at {endpoint} ({}); {hint}",
                crate::error::error_chain(&e)
            ))
        })?;
        Ok(Self::over(channel, credentials, endpoint))
    }

    /// Connects to the local home's metastore, starting it when none runs. The endpoint reads
    /// `local:HOME`.
    ///
    /// # Errors
    /// `Unavailable` when its server cannot be reached or started.
    pub async fn connect_home(home: LocalHome) -> Result<Self> {
        let home = Arc::new(home);
        let endpoint = format!("local:{}", home.dir().display());
        let connector = {
            let home = home.clone();
            tower::service_fn(move |_: tonic::codegen::http::Uri| {
                let home = home.clone();
                async move {
                    home.connect()
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                }
            })
        };
        let channel = Endpoint::from_static("http://localhost")
            .timeout(call_limit())
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .connect_with_connector(connector)
            .await
            .map_err(|e| {
                ClientError::Unavailable(format!(
                    "cannot reach the local metastore in {} ({})",
                    home.dir().display(),
                    crate::error::error_chain(&e)
                ))
            })?;
        Ok(Self::over(channel, Credentials::new(None)?, endpoint))
    }

    fn over(channel: Channel, credentials: Credentials, endpoint: String) -> Self {
        let rpc = MetastoreClient::with_interceptor(channel, credentials)
            .max_decoding_message_size(512 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        Client {
            rpc,
            stores: Arc::new(Stores::default()),
            endpoint,
        }
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Whether a metastore answers at the default address: it must answer a gRPC call as the
/// metastore does (a refusal of credentials counts) within a second, so a port taken by
/// something else falls back to the local home, and nothing listening is known at once.
async fn default_endpoint_answers() -> bool {
    let probe = async {
        let channel = Endpoint::from_static(DEFAULT_ENDPOINT)
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .ok()?;
        let answer = MetastoreClient::new(channel)
            .who_am_i(batchstore_proto::v1::WhoAmIRequest::default())
            .await;
        Some(match answer {
            Ok(_) => true,
            Err(status) => matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
        })
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}

/// A bearer token goes in clear text only to this machine: anyone on the path to another host
/// could read it and act as its principal. `BATCHSTORE_ALLOW_CLEARTEXT_TOKEN=1` allows it where
/// the path is trusted (for example a sidecar that adds TLS).
fn refuse_clear_text_token(uri: &tonic::codegen::http::Uri) -> Result<()> {
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let allowed = std::env::var("BATCHSTORE_ALLOW_CLEARTEXT_TOKEN").is_ok_and(|v| v == "1");
    if local || allowed {
        return Ok(());
    }
    Err(ClientError::InvalidArgument(format!(
        "refusing to send a token in clear text to {host}: use an https:// endpoint (or set \
         BATCHSTORE_ALLOW_CLEARTEXT_TOKEN=1 if the path to it is trusted)"
    )))
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

#[cfg(test)]
mod tests {
    use super::refuse_clear_text_token;

    #[test]
    fn tokens_go_in_clear_text_only_to_this_machine() {
        for local in [
            "http://localhost:1",
            "http://127.0.0.1:1",
            "http://127.3.2.1:1",
            "http://[::1]:1",
        ] {
            let uri = local.parse().expect("a uri");
            assert!(refuse_clear_text_token(&uri).is_ok(), "{local}");
        }
        for remote in [
            "http://192.0.2.1:1",
            "http://metastore.internal:1",
            "http://[2001:db8::1]:1",
        ] {
            let uri = remote.parse().expect("a uri");
            assert!(refuse_clear_text_token(&uri).is_err(), "{remote}");
        }
    }
}
