//! Who may do what: principals, permissions and grants, free of transport and SQL.
//!
//! A caller is a [`Principal`] proven by a bearer token (`tokens`: a file of token hashes;
//! `jwt`: signed JWTs against a JWKS). What it may do is decided by [`Grants`]: `read`, `write`
//! or `admin` on a namespace (or on `*`, every namespace) for the principal or one of its
//! groups, plus the bootstrap admins named at start. Permissions nest: admin ⊇ write ⊇ read.
//! The catalog stores grants (`catalog::access`); the service asks [`Grants::decide`] before it
//! acts (`service::guard`).

pub mod jwt;
pub mod tokens;
mod watched;

use crate::error::CatalogError;
use crate::model::Micros;
use batchstore_proto::wire::ALL_NAMESPACES;
use std::collections::HashMap;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a call needs on its namespace. Ordered: each level includes the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }

    /// Reads a stored permission.
    ///
    /// # Errors
    /// `Internal` for a value the catalog never writes.
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        match text {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            other => Err(CatalogError::Internal(format!(
                "unknown permission {other:?} in the catalog"
            ))),
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    Principal(String),
    Group(String),
}

impl Grantee {
    /// `principal` or `group`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Grantee::Principal(_) => "principal",
            Grantee::Group(_) => "group",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Grantee::Principal(n) | Grantee::Group(n) => n,
        }
    }

    /// Reads a grantee given on the command line: `NAME` or `group:NAME`.
    pub fn from_flag(text: &str) -> Self {
        let text = text.trim();
        match text.strip_prefix("group:") {
            Some(group) => Grantee::Group(group.to_owned()),
            None => Grantee::Principal(text.to_owned()),
        }
    }

    /// Reads a stored grantee.
    ///
    /// # Errors
    /// `Internal` for a kind the catalog never writes.
    pub fn from_stored(kind: &str, name: String) -> Result<Self, CatalogError> {
        match kind {
            "principal" => Ok(Grantee::Principal(name)),
            "group" => Ok(Grantee::Group(name)),
            other => Err(CatalogError::Internal(format!(
                "unknown grantee kind {other:?} in the catalog"
            ))),
        }
    }
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grantee::Principal(n) => write!(f, "{n}"),
            Grantee::Group(n) => write!(f, "group {n}"),
        }
    }
}

/// One stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// A namespace name, or [`ALL_NAMESPACES`].
    pub namespace: String,
    pub grantee: Grantee,
    pub permission: Permission,
    pub granted_by: String,
    pub granted_at: Micros,
}

/// One call, as the audit trail keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: Micros,
    pub principal: String,
    pub claimed_actor: String,
    pub method: String,
    pub namespace: String,
    pub target: String,
    pub outcome: String,
    pub detail: String,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Micros,
    pub principal: Option<String>,
    pub namespace: Option<String>,
    /// A table name within `namespace`.
    pub table: Option<String>,
}

/// Every grant, indexed for decisions, plus the bootstrap admins.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_grantee: HashMap<Grantee, Vec<(String, Permission)>>,
    admins: Vec<Grantee>,
}

impl Grants {
    pub fn new(records: impl IntoIterator<Item = GrantRecord>, admins: Vec<Grantee>) -> Self {
        let mut by_grantee: HashMap<Grantee, Vec<(String, Permission)>> = HashMap::new();
        for r in records {
            by_grantee
                .entry(r.grantee)
                .or_default()
                .push((r.namespace, r.permission));
        }
        Grants { by_grantee, admins }
    }

    /// The highest permission `principal` holds on `namespace`, directly or through a group,
    /// on the namespace itself or on every namespace.
    pub fn level(&self, principal: &Principal, namespace: &str) -> Option<Permission> {
        let grantees = std::iter::once(Grantee::Principal(principal.name.clone()))
            .chain(principal.groups.iter().map(|g| Grantee::Group(g.clone())));
        let mut best = None;
        for grantee in grantees {
            if self.admins.contains(&grantee) {
                return Some(Permission::Admin);
            }
            for (ns, permission) in self.by_grantee.get(&grantee).into_iter().flatten() {
                if ns == namespace || ns == ALL_NAMESPACES {
                    best = best.max(Some(*permission));
                }
            }
        }
        best
    }

    /// Allows the call, or says what the principal has and what is needed.
    ///
    /// # Errors
    /// `PermissionDenied`, naming the principal, the namespace, what it has and what it needs.
    pub fn decide(
        &self,
        principal: &Principal,
        namespace: &str,
        needed: Permission,
    ) -> Result<(), CatalogError> {
        let has = self.level(principal, namespace);
        if has >= Some(needed) {
            return Ok(());
        }
        let plain = namespace.len() <= 128
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.*".contains(c));
        let namespace = if plain {
            namespace.to_owned()
        } else {
            crate::names::quote_for_message(namespace)
        };
        let shown = if namespace == ALL_NAMESPACES {
            "every namespace".to_owned()
        } else {
            namespace.clone()
        };
        let has = match has {
            Some(p) => format!("has {} on {shown}", p.as_str()),
            None => format!("has no grant on {shown}"),
        };
        Err(CatalogError::PermissionDenied(format!(
            "{} {has}, {} is needed; ask an admin of it to run `tablectl grant {} {} {}`",
            principal.name,
            needed.as_str(),
            needed.as_str(),
            namespace,
            principal.name,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, grantee: Grantee, permission: Permission) -> GrantRecord {
        GrantRecord {
            namespace: ns.into(),
            grantee,
            permission,
            granted_by: "root".into(),
            granted_at: 0,
        }
    }

    #[test]
    fn levels_nest_and_come_from_principal_groups_and_everywhere() {
        let grants = Grants::new(
            [
                grant(
                    "sales",
                    Grantee::Principal("alice".into()),
                    Permission::Read,
                ),
                grant("sales", Grantee::Group("eng".into()), Permission::Write),
                grant("*", Grantee::Principal("carol".into()), Permission::Read),
            ],
            vec![Grantee::Principal("root".into())],
        );
        let alice = Principal {
            name: "alice".into(),
            groups: vec![],
        };
        let alice_eng = Principal {
            name: "alice".into(),
            groups: vec!["eng".into()],
        };
        let carol = Principal {
            name: "carol".into(),
            groups: vec![],
        };
        let root = Principal {
            name: "root".into(),
            groups: vec![],
        };
        assert_eq!(grants.level(&alice, "sales"), Some(Permission::Read));
        assert_eq!(grants.level(&alice, "hr"), None);
        assert_eq!(grants.level(&alice_eng, "sales"), Some(Permission::Write));
        assert_eq!(grants.level(&carol, "hr"), Some(Permission::Read));
        assert_eq!(grants.level(&root, "anything"), Some(Permission::Admin));
        assert!(grants.decide(&alice, "sales", Permission::Read).is_ok());
        let denied = grants
            .decide(&alice, "sales", Permission::Write)
            .expect_err("read is not write");
        assert_eq!(
            denied.to_string(),
            "alice has read on sales, write is needed; ask an admin of it to run \
             `tablectl grant write sales alice`"
        );
    }
}
