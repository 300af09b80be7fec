//! The token file: principals, their groups and the SHA-256 of each of their tokens, in TOML.
//! The file holds hashes only, so reading it gives nobody a token. It is reloaded when it
//! changes (`watched`). `metastore token new NAME` prints a fresh token and its entry.
//!
//! ```toml
//! [[principal]]
//! name = "alice"
//! groups = ["analysts"]
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! A principal may appear several times (one entry per token, for rotation without downtime).

use super::Principal;
use super::watched::Watched;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    token_sha256: String,
}

/// Token hash → principal.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
    names: std::collections::HashSet<String>,
}

impl TokenTable {
    /// Parses a token file.
    ///
    /// # Errors
    /// Bad TOML, an empty name, or a hash that is not 64 hex digits; each names the entry.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, entry) in file.principal.into_iter().enumerate() {
            let name = entry.name.trim();
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                return Err(format!(
                    "principal entry {} needs a name of 1 to 256 printable characters",
                    i + 1
                ));
            }
            let hash = parse_hash(&entry.token_sha256).ok_or_else(|| {
                format!(
                    "principal {name}: token_sha256 must be 64 hex digits (the SHA-256 of the \
                     token; `metastore token hash` prints it)"
                )
            })?;
            names.insert(name.to_owned());
            let principal = Arc::new(Principal {
                name: name.to_owned(),
                groups: entry.groups,
            });
            if by_hash.insert(hash, principal).is_some() {
                return Err(format!("principal {name}: this token hash is listed twice"));
            }
        }
        Ok(TokenTable { by_hash, names })
    }

    /// The principal a token proves.
    pub fn lookup(&self, token: &str) -> Option<Arc<Principal>> {
        self.by_hash.get(&sha256(token)).cloned()
    }
}

/// The token file, reloaded when it changes.
#[derive(Debug)]
pub struct TokenFile(Watched<TokenTable>);

impl TokenFile {
    /// Reads the file.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    pub fn open(path: &Path) -> Result<Self, String> {
        Watched::open(path, TokenTable::parse).map(TokenFile)
    }

    pub fn lookup(&self, token: &str) -> Option<Arc<Principal>> {
        self.0.current(None).lookup(token)
    }

    /// True when the file defines a principal of this name (whose identity a JWT may then
    /// not claim).
    pub fn defines(&self, name: &str) -> bool {
        self.0.current(None).names.contains(name)
    }
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hex SHA-256 of a token, as the token file holds it.
pub fn token_hash(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A new random token: 32 bytes from the operating system, URL-safe text.
///
/// # Errors
/// When the system's random source cannot be read.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "bst_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_their_hash_only() {
        let text = format!(
            "[[principal]]\nname = \"alice\"\ngroups = [\"eng\"]\ntoken_sha256 = \"{}\"\n",
            token_hash("secret")
        );
        let table = TokenTable::parse(&text).expect("parses");
        let alice = table.lookup("secret").expect("known");
        assert_eq!(
            (alice.name.as_str(), alice.groups.clone()),
            ("alice", vec!["eng".into()])
        );
        assert!(table.lookup("Secret").is_none());
        assert!(!text.contains("\"secret\""));
    }

    #[test]
    fn bad_entries_are_refused_with_their_name() {
        let short = "[[principal]]\nname = \"bob\"\ntoken_sha256 = \"abc\"\n";
        assert!(TokenTable::parse(short).expect_err("short").contains("bob"));
        let unknown = "[[principal]]\nname = \"bob\"\ntoken = \"x\"\n";
        assert!(TokenTable::parse(unknown).is_err());
    }
}
