//! Who may do what, from the client's side: grants, the audit trail, and who the metastore
//! takes the caller for.

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::types::from_micros;
use batchstore_proto::v1 as pb;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a grant allows on a namespace; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Resolve, list, history, get.
    Read,
    /// Read, plus begin, commit, abort, rollback and tags.
    Write,
    /// Write, plus creating and dropping tables and namespaces, and managing grants.
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

    /// Reads `read`, `write` or `admin`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            _ => Err(ClientError::InvalidArgument(format!(
                "{text:?} is not a permission; use read, write or admin"
            ))),
        }
    }

    fn to_pb(self) -> pb::Permission {
        match self {
            Permission::Read => pb::Permission::Read,
            Permission::Write => pb::Permission::Write,
            Permission::Admin => pb::Permission::Admin,
        }
    }

    fn from_pb(value: i32) -> Option<Self> {
        match pb::Permission::try_from(value).ok()? {
            pb::Permission::Read => Some(Permission::Read),
            pb::Permission::Write => Some(Permission::Write),
            pb::Permission::Admin => Some(Permission::Admin),
            pb::Permission::Unspecified => None,
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Grantee {
    Principal(String),
    Group(String),
}

impl Grantee {
    /// Reads `NAME` (a principal) or `group:NAME`.
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("group:") {
            Some(group) => Grantee::Group(group.to_owned()),
            None => Grantee::Principal(text.to_owned()),
        }
    }

    fn to_pb(&self) -> pb::Grantee {
        match self {
            Grantee::Principal(n) => pb::Grantee {
                principal: n.clone(),
                group: String::new(),
            },
            Grantee::Group(n) => pb::Grantee {
                principal: String::new(),
                group: n.clone(),
            },
        }
    }
}

impl std::fmt::Display for Grantee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grantee::Principal(n) => write!(f, "{n}"),
            Grantee::Group(n) => write!(f, "group:{n}"),
        }
    }
}

/// One grant.
#[derive(Debug, Clone, Serialize)]
pub struct GrantInfo {
    /// A namespace, or `*` for every namespace.
    pub namespace: String,
    pub grantee: Grantee,
    pub permission: Permission,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

fn grant_info(g: pb::GrantEntry) -> Result<GrantInfo> {
    let grantee = match g.grantee {
        Some(p) if !p.principal.is_empty() => Grantee::Principal(p.principal),
        Some(p) => Grantee::Group(p.group),
        None => return Err(crate::client::missing("grantee")),
    };
    Ok(GrantInfo {
        namespace: g.namespace,
        grantee,
        permission: Permission::from_pb(g.permission)
            .ok_or_else(|| crate::client::missing("permission"))?,
        granted_by: g.granted_by,
        granted_at: from_micros(g.granted_at_micros),
    })
}

/// One call in the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub principal: String,
    pub method: String,
    pub namespace: String,
    pub target: String,
    /// The gRPC code name of the answer (`OK`, `PERMISSION_DENIED`, ...).
    pub outcome: String,
    pub detail: String,
    /// The actor the client claimed (what a service without authentication records).
    pub claimed_actor: String,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<DateTime<Utc>>,
    pub principal: Option<String>,
    pub namespace: Option<String>,
    pub table: Option<String>,
    /// Stop after this many events (`None`: all).
    pub limit: Option<usize>,
}

/// Who the metastore takes the caller for.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub principal: String,
    pub groups: Vec<String>,
    /// False when the metastore runs without authentication (`principal` is then the claimed
    /// actor).
    pub authenticated: bool,
}

impl Client {
    /// Grants `permission` on `namespace` (`*`: every namespace), replacing the grantee's
    /// earlier grant there.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the namespace; `InvalidArgument` for bad names.
    pub async fn grant(
        &self,
        namespace: &str,
        grantee: &Grantee,
        permission: Permission,
    ) -> Result<GrantInfo> {
        let response = self
            .rpc
            .clone()
            .grant(pb::GrantRequest {
                namespace: namespace.into(),
                grantee: Some(grantee.to_pb()),
                permission: permission.to_pb().into(),
            })
            .await?;
        grant_info(
            response
                .into_inner()
                .grant
                .ok_or_else(|| crate::client::missing("grant"))?,
        )
    }

    /// Removes a grant; false when there was none.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the namespace.
    pub async fn revoke(&self, namespace: &str, grantee: &Grantee) -> Result<bool> {
        let response = self
            .rpc
            .clone()
            .revoke(pb::RevokeRequest {
                namespace: namespace.into(),
                grantee: Some(grantee.to_pb()),
            })
            .await?;
        Ok(response.into_inner().revoked)
    }

    /// The grants on `namespace`, or on every namespace the caller administers.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the namespace.
    pub async fn grants(&self, namespace: Option<&str>) -> Result<Vec<GrantInfo>> {
        let response = self
            .rpc
            .clone()
            .list_grants(pb::ListGrantsRequest {
                namespace: namespace.unwrap_or_default().into(),
            })
            .await?;
        response
            .into_inner()
            .grants
            .into_iter()
            .map(grant_info)
            .collect()
    }

    /// Audit events, oldest first, following pages until `query.limit` or the end.
    ///
    /// # Errors
    /// `PermissionDenied` without admin on the namespace (or on every namespace when none is
    /// given).
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let response = self
                .rpc
                .clone()
                .list_audit_events(pb::ListAuditEventsRequest {
                    since_micros: query.since.map_or(0, |t| t.timestamp_micros()),
                    principal: query.principal.clone().unwrap_or_default(),
                    namespace: query.namespace.clone().unwrap_or_default(),
                    table: query.table.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token: token,
                })
                .await?
                .into_inner();
            out.extend(response.events.into_iter().map(|e| AuditEntry {
                id: e.id,
                at: from_micros(e.at_micros),
                principal: e.principal,
                method: e.method,
                namespace: e.namespace,
                target: e.target,
                outcome: e.outcome,
                detail: e.detail,
                claimed_actor: e.claimed_actor,
            }));
            if let Some(limit) = query.limit.filter(|l| out.len() >= *l) {
                out.truncate(limit);
                return Ok(out);
            }
            if response.next_page_token.is_empty() {
                return Ok(out);
            }
            token = response.next_page_token;
        }
    }

    /// Who the metastore takes this client for.
    ///
    /// # Errors
    /// `Unauthenticated` when the token is refused.
    pub async fn who_am_i(&self) -> Result<Identity> {
        let r = self
            .rpc
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        Ok(Identity {
            principal: r.principal,
            groups: r.groups,
            authenticated: r.authenticated,
        })
    }
}
