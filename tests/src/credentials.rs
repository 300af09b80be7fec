//! Credentials made for tests: token files, Ed25519 JWT signing keys with their JWKS, forged
//! and broken tokens, and a TLS certificate authority with server and client certificates.
//!
//! Everything is generated fresh per test (rcgen over aws-lc-rs, the provider rustls uses
//! here); nothing is checked in. The `testkit` binary writes the same material to a directory
//! for the Python and R suites, so every language tests against one kind of credential.

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PKCS_ED25519,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The issuer and audience the tests' metastores are configured with.
pub const ISSUER: &str = "https://idp.test.batchstore";
pub const AUDIENCE: &str = "batchstore";

/// A token-file entry for `name`, with `groups`, admitting `token`.
pub fn token_entry(name: &str, groups: &[&str], token: &str) -> String {
    let groups = groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[principal]]\nname = {name:?}\ngroups = [{groups}]\ntoken_sha256 = \"{}\"\n\n",
        batchstore_metastore::access::tokens::token_hash(token)
    )
}

/// An Ed25519 key an identity provider signs JWTs with, known by `kid`.
pub struct SigningKey {
    pub kid: String,
    pair: KeyPair,
}

impl SigningKey {
    /// A fresh key.
    ///
    /// # Errors
    /// When key generation fails.
    pub fn generate(kid: &str) -> Result<Self> {
        Ok(SigningKey {
            kid: kid.to_owned(),
            pair: KeyPair::generate_for(&PKCS_ED25519)?,
        })
    }

    /// The key's public half as a JWK.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key_raw()),
        })
    }

    /// A JWT over `claims`, signed by this key, its header naming `kid`.
    ///
    /// # Errors
    /// When signing fails.
    pub fn sign(&self, claims: &Value) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_ed_pem(self.pair.serialize_pem().as_bytes())?;
        Ok(jsonwebtoken::encode(&header, claims, &key)?)
    }

    /// An HS256 token whose "secret" is this key's public half: the algorithm-confusion attack
    /// on verifiers that let the token pick the algorithm.
    ///
    /// # Errors
    /// When signing fails.
    pub fn forge_hs256(&self, claims: &Value) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let secret = jsonwebtoken::EncodingKey::from_secret(self.pair.public_key_raw())?;
        Ok(jsonwebtoken::encode(&header, claims, &secret)?)
    }
}

/// An unsigned token (`alg: none`) naming `kid`.
pub fn unsigned_token(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A JWKS document holding `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims for `sub` in `groups`, for the tests' issuer and `audience`, valid from a minute ago
/// until `expires_in` seconds from now (negative: already expired).
pub fn claims(sub: &str, groups: &[&str], audience: &str, expires_in: i64) -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": audience,
        "sub": sub,
        "groups": groups,
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + expires_in,
    })
}

/// A certificate authority, a server certificate for `localhost`/127.0.0.1 and a client
/// certificate it signed, plus an unrelated CA (the wrong one to trust), as PEM files.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub wrong_ca: PathBuf,
}

impl TlsFiles {
    /// Generates the certificates and writes them into `dir`.
    ///
    /// # Errors
    /// When generation or writing fails.
    pub fn write(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (ca, ca_key) = authority("batchstore test CA")?;
        let (wrong_ca, wrong_key) = authority("some other CA")?;
        let issuer = Issuer::from_params(&ca, &ca_key);

        let server_key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "batchstore metastore");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "batchstore client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer)?;

        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            wrong_ca: dir.join("wrong-ca.pem"),
        };
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let wrong_pem = wrong_ca.self_signed(&wrong_key)?.pem();
        for (path, text) in [
            (&files.ca, ca_pem),
            (&files.server_cert, server_cert.pem()),
            (&files.server_key, server_key.serialize_pem()),
            (&files.client_cert, client_cert.pem()),
            (&files.client_key, client_key.serialize_pem()),
            (&files.wrong_ca, wrong_pem),
        ] {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(files)
    }

    /// The metastore flags that serve TLS with these files (and require client certificates
    /// when `mutual`).
    pub fn server_args(&self, mutual: bool) -> Vec<String> {
        let mut args = vec![
            "--tls-cert".to_owned(),
            self.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            self.server_key.display().to_string(),
        ];
        if mutual {
            args.push("--tls-client-ca".to_owned());
            args.push(self.ca.display().to_string());
        }
        args
    }
}

fn authority(name: &str) -> Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ok((params, key))
}
