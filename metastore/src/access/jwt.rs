//! JWTs from an identity provider, checked against its JWKS (a file, reloaded when it changes,
//! and/or a URL, fetched at start, every few minutes and when a token names an unknown key).
//!
//! Only asymmetric algorithms from an allow-list are accepted (never `none`, never HMAC: a
//! public key can then not be misused as a shared secret), a key must be named by the token's
//! `kid` (or be the set's only key) and be of the token's algorithm family, and `iss`, `aud`,
//! `exp` and `sub` are required; `nbf` is checked when present; `exp`/`nbf` allow a small
//! leeway for clock skew. The principal is the `sub` claim (or another, configured), its groups
//! the `groups` claim (a list of strings, or one string).

use super::Principal;
use super::watched::Watched;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How a JWT is checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub principal_claim: String,
    pub groups_claim: String,
    pub leeway: Duration,
}

/// The algorithms accepted when none are configured.
pub const DEFAULT_ALGORITHMS: &str = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA";

/// Parses an algorithm allow-list, refusing symmetric algorithms.
///
/// # Errors
/// An unknown or symmetric algorithm, or an empty list.
pub fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| format!("unknown JWT algorithm {name:?}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "{name} is a shared-secret algorithm; only public-key algorithms can be checked \
                 against a JWKS"
            ));
        }
        out.push(alg);
    }
    if out.is_empty() {
        return Err("the JWT algorithm list is empty".into());
    }
    Ok(out)
}

/// Checks JWTs.
#[derive(Debug)]
pub struct JwtVerifier {
    config: JwtConfig,
    file: Option<Watched<JwkSet>>,
    fetched: Arc<RwLock<Option<JwkSet>>>,
    refetch: Arc<tokio::sync::Notify>,
}

fn parse_jwks(text: &str) -> Result<JwkSet, String> {
    serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))
}

/// Keys are fetched from the URL this often, and at most this often on unknown key ids.
const REFETCH_EVERY: Duration = Duration::from_secs(300);
const REFETCH_AT_MOST: Duration = Duration::from_secs(10);

impl JwtVerifier {
    /// Reads the JWKS file and starts fetching the URL (call within a tokio runtime).
    ///
    /// # Errors
    /// When neither source is given, or the file cannot be read or parsed.
    pub fn new(config: JwtConfig) -> Result<Self, String> {
        if config.jwks_file.is_none() && config.jwks_url.is_none() {
            return Err("JWTs need a JWKS: give --jwks-file or --jwks-url".into());
        }
        let file = config
            .jwks_file
            .as_deref()
            .map(|p| Watched::open(p, parse_jwks))
            .transpose()?;
        let verifier = JwtVerifier {
            config,
            file,
            fetched: Arc::default(),
            refetch: Arc::default(),
        };
        if let Some(url) = verifier.config.jwks_url.clone() {
            tokio::spawn(fetch_keys(
                url,
                verifier.fetched.clone(),
                verifier.refetch.clone(),
            ));
        }
        Ok(verifier)
    }

    /// The principal a JWT proves, or why it proves nothing.
    ///
    /// # Errors
    /// A sentence for the caller: expired, wrong audience, bad signature, unknown key, ...
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| describe(e.kind()))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(format!(
                "the token is signed with {:?}, which this metastore does not accept",
                header.alg
            ));
        }
        let jwk = self.key(header.kid.as_deref())?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err("the token's algorithm is not its key's".into());
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| describe(e.kind()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.config.leeway.as_secs();
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key,
            &validation,
        )
        .map_err(|e| describe(e.kind()))?;
        let claims = data.claims;
        let name = claims
            .get(&self.config.principal_claim)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.len() <= 256 && !n.chars().any(char::is_control))
            .ok_or_else(|| {
                format!(
                    "the token has no {} claim naming its principal (1 to 256 printable \
                     characters)",
                    self.config.principal_claim
                )
            })?;
        let groups = match claims.get(&self.config.groups_claim) {
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .filter(|g| !g.is_empty() && g.len() <= 256 && !g.chars().any(char::is_control))
                .take(256)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            name: name.to_owned(),
            groups,
        })
    }

    /// The key a token names: looked up in the file (read again at once when the id is
    /// unknown, so a rotated file is seen without waiting) and in the fetched set.
    fn key(&self, kid: Option<&str>) -> Result<Jwk, String> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let from_file = |at_most| self.file.as_ref().and_then(|f| find(&f.current(at_most)));
        let from_url = || {
            self.fetched
                .read()
                .ok()
                .and_then(|set| set.as_ref().and_then(find))
        };
        if let Some(jwk) = from_file(None).or_else(from_url) {
            return Ok(jwk);
        }
        if let Some(jwk) = from_file(Some(Duration::from_millis(100))) {
            return Ok(jwk);
        }
        self.refetch.notify_one();
        Err(match kid {
            Some(kid) => format!(
                "the token's key {kid:?} is not in this metastore's JWKS (if keys were just \
                 rotated, retry in a few seconds)"
            ),
            None => "the token names no key (kid) and the JWKS has several".into(),
        })
    }
}

/// Fetches the JWKS from `url` at start, every [`REFETCH_EVERY`], and when asked (at most
/// every [`REFETCH_AT_MOST`]).
async fn fetch_keys(
    url: String,
    keys: Arc<RwLock<Option<JwkSet>>>,
    asked: Arc<tokio::sync::Notify>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build();
    let client = match client {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%error, "cannot build an HTTP client for the JWKS");
            return;
        }
    };
    let mut last = None::<Instant>;
    loop {
        if let Some(at) = last {
            let wait = REFETCH_AT_MOST.saturating_sub(at.elapsed());
            tokio::time::sleep(wait).await;
        }
        last = Some(Instant::now());
        let fetched = async {
            let response = client.get(&url).send().await?.error_for_status()?;
            response.json::<JwkSet>().await
        };
        match fetched.await {
            Ok(set) => {
                if let Ok(mut keys) = keys.write() {
                    *keys = Some(set);
                }
            }
            Err(error) => tracing::warn!(%url, %error, "fetching the JWKS failed"),
        }
        let _ = tokio::time::timeout(REFETCH_EVERY, asked.notified()).await;
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired; get a new one".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token is for another audience (aud)".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer (iss)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "the token is not a well-formed JWT".into(),
        other => format!("the token cannot be checked ({other:?})"),
    }
}
