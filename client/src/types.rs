//! Plain types of the client API, serialisable for `tablectl --json` and front ends.

use crate::error::{ClientError, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `namespace.table`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableName {
    pub namespace: String,
    pub table: String,
}

impl TableName {
    pub fn new(namespace: impl Into<String>, table: impl Into<String>) -> Self {
        TableName {
            namespace: namespace.into(),
            table: table.into(),
        }
    }

    /// Parses `namespace.table`.
    ///
    /// # Errors
    /// `InvalidArgument` when there is no dot.
    pub fn parse(text: &str) -> Result<Self> {
        match text.split_once('.') {
            Some((ns, table)) if !ns.is_empty() && !table.is_empty() => {
                Ok(TableName::new(ns, table))
            }
            _ => Err(ClientError::InvalidArgument(format!(
                "{text:?} is not a table name; write NAMESPACE.TABLE, for example sales.sold_items"
            ))),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.table)
    }
}

/// Type of a partition key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    String,
    Int64,
    Date,
}

impl KeyType {
    /// The type's name as users write it: `string`, `int64` or `date`.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Int64 => "int64",
            KeyType::Date => "date",
        }
    }

    /// Parses `string`, `int64` (or `int`, `integer`), `date`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything else.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "string" | "str" | "text" => Ok(KeyType::String),
            "int64" | "int" | "integer" | "bigint" => Ok(KeyType::Int64),
            "date" => Ok(KeyType::Date),
            other => Err(ClientError::InvalidArgument(format!(
                "unknown partition key type {other:?}; use string, int64 or date"
            ))),
        }
    }
}

/// A partition key of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionKey {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
}

/// A table as the metastore describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: TableName,
    pub partition_keys: Vec<PartitionKey>,
    /// Column name and Arrow type, once the schema is fixed.
    pub columns: Vec<(String, String)>,
    pub created_at: DateTime<Utc>,
    pub location: String,
    pub partition_count: i64,
    #[serde(skip)]
    pub arrow_schema: Vec<u8>,
    /// The table's own retention, and the one garbage collection applies (the table's, else
    /// its namespace's default).
    pub retention: Retention,
    pub effective_retention: Retention,
    /// For a dropped table: when it was dropped, and after when GC may free it for good.
    pub dropped_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
    /// What a write may change in the schema: "strict" or "additive".
    pub schema_policy: String,
}

/// One schema a table has had.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaVersionInfo {
    pub version: i64,
    /// Column name and Arrow type.
    pub columns: Vec<(String, String)>,
    pub changed_at: DateTime<Utc>,
    /// What changed, in words.
    pub change: String,
}

/// How many old versions garbage collection keeps. A version is kept when any rule set keeps
/// it; with none set, every version is kept. The current version, tagged batches and leased
/// batches are always kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Keep the last N versions of each partition (1 = only the current one).
    pub keep_versions: Option<i64>,
    /// Keep every version that was current at some moment within this long.
    #[serde(serialize_with = "serialize_duration")]
    pub keep_for: Option<std::time::Duration>,
}

impl Retention {
    /// Whether any rule is set.
    pub fn is_set(&self) -> bool {
        self.keep_versions.is_some() || self.keep_for.is_some()
    }

    /// In words: "keep the last 3 versions and versions current within 7days".
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(n) = self.keep_versions {
            rules.push(if n == 1 {
                "keep only the current version".to_owned()
            } else {
                format!("keep the last {n} versions")
            });
        }
        if let Some(t) = self.keep_for {
            rules.push(format!(
                "keep versions current within the last {}",
                humantime::format_duration(t)
            ));
        }
        if rules.is_empty() {
            "keep every version".to_owned()
        } else {
            rules.join(" and ")
        }
    }
}

fn serialize_duration<S: serde::Serializer>(
    value: &Option<std::time::Duration>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_some(&humantime::format_duration(*d).to_string()),
        None => serializer.serialize_none(),
    }
}

/// Parses a duration as people write it: "7d", "36h", "90m", "3600s", "2w", "1d 12h".
///
/// # Errors
/// `InvalidArgument` saying what is accepted.
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        ClientError::InvalidArgument(format!(
            "cannot read {text:?} as a duration ({e}); write e.g. 7d, 36h, 90m or 3600s"
        ))
    })
}

/// Which version of each partition to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selector {
    #[default]
    Current,
    Version(i64),
    Batch(String),
    Tag(String),
    AsOf(DateTime<Utc>),
}

impl Selector {
    /// The one rule for choosing a version: at most one of a version number, a batch id, a tag
    /// and a time; none means the current version.
    ///
    /// # Errors
    /// `InvalidArgument` when more than one is given.
    pub fn choose(
        version: Option<i64>,
        batch: Option<String>,
        tag: Option<String>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Self> {
        let given = [
            version.map(Selector::Version),
            batch.map(Selector::Batch),
            tag.map(Selector::Tag),
            as_of.map(Selector::AsOf),
        ];
        let mut chosen = given.into_iter().flatten();
        let first = chosen.next().unwrap_or_default();
        if chosen.next().is_some() {
            return Err(ClientError::InvalidArgument(
                "give at most one of version, batch_id, tag and as_of".to_owned(),
            ));
        }
        Ok(first)
    }
}

/// The one reading of a time a user typed (an as-of): RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` or
/// `YYYY-MM-DDTHH:MM:SS[.f]` (UTC), or `YYYY-MM-DD` (midnight UTC).
///
/// # Errors
/// `InvalidArgument` naming the accepted forms.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    if let Some(midnight) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(midnight.and_utc());
    }
    let shown: String = text.chars().take(60).collect();
    Err(ClientError::InvalidArgument(format!(
        "cannot read {shown:?} as a time; use RFC 3339 (2016-10-31T12:00:00Z), \
         \"2016-10-31 12:00:00\" (UTC) or 2016-10-31"
    )))
}

/// What the commit-and-swap must find as the partition's current batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The partition has never been written.
    Nothing,
    Batch(String),
}

impl Expected {
    /// The one reading of an expectation a user typed: `-` (or nothing at all, as BeginWrite
    /// reports a new partition's current batch) means the partition must be new; anything
    /// else is a batch id, which the metastore checks.
    pub fn parse(text: &str) -> Self {
        if batchstore_proto::wire::expects_new(text.trim()) {
            Expected::Nothing
        } else {
            Expected::Batch(text.trim().to_owned())
        }
    }
}

/// A version created by a write or rollback.
#[derive(Debug, Clone, Serialize)]
pub struct CommitInfo {
    pub batch_id: String,
    pub version: i64,
    pub rows: i64,
    pub bytes: i64,
    pub committed_at: DateTime<Utc>,
    pub partition: Vec<(String, String)>,
    /// True when a retried commit found the batch already committed.
    pub already_committed: bool,
}

/// A batch and where it stands (`pending`, `committed`, `aborted`, `abandoned`).
#[derive(Debug, Clone, Serialize)]
pub struct BatchInfo {
    pub batch_id: String,
    pub table: TableName,
    pub partition: Vec<(String, String)>,
    pub state: String,
    /// The version its commit created (0 unless committed).
    pub version: i64,
    pub rows: i64,
    pub bytes: i64,
    pub created_at: DateTime<Utc>,
    pub lease_expires_at: DateTime<Utc>,
    /// How many files it holds.
    pub files: usize,
    /// Set once garbage collection expired it (it can never be read again), and once its
    /// files were deleted.
    pub expired: Option<Expiry>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// When and why garbage collection expired a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// An expiry from the wire's pair of fields (0: not expired).
pub(crate) fn expiry(at_micros: i64, reason: String) -> Option<Expiry> {
    (at_micros != 0).then(|| Expiry {
        at: from_micros(at_micros),
        reason,
    })
}

/// Where a batch's data came from and went: the batches it was computed from (`inputs`, given
/// when it was written) and the batches computed from it (`outputs`).
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    pub batch_id: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// One entry of a partition's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub version: i64,
    pub batch_id: String,
    pub operation: String,
    pub actor: String,
    pub message: String,
    pub committed_at: DateTime<Utc>,
    pub rows: i64,
    pub bytes: i64,
    pub current: bool,
    /// Set when garbage collection expired this entry's batch.
    pub expired: Option<Expiry>,
}

/// A partition with its current batch.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: Vec<(String, String)>,
    pub batch_id: String,
    pub version: i64,
    pub rows: i64,
    pub bytes: i64,
    pub updated_at: DateTime<Utc>,
}

/// A tag.
#[derive(Debug, Clone, Serialize)]
pub struct TagInfo {
    pub name: String,
    pub batch_id: String,
    pub partition: Vec<(String, String)>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    /// The principal that made it.
    pub created_by: String,
}

/// Microseconds since the epoch → UTC time (the epoch for out-of-range values).
pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_selector() {
        assert_eq!(
            Selector::choose(None, None, None, None).unwrap(),
            Selector::Current
        );
        assert_eq!(
            Selector::choose(Some(3), None, None, None).unwrap(),
            Selector::Version(3)
        );
        let error = Selector::choose(Some(3), None, Some("t".into()), None).unwrap_err();
        assert!(matches!(error, ClientError::InvalidArgument(_)), "{error}");
    }

    #[test]
    fn times_read_one_way() {
        let noon = parse_time("2016-10-31T12:00:00Z").unwrap();
        assert_eq!(parse_time("2016-10-31 12:00:00").unwrap(), noon);
        assert_eq!(parse_time("2016-10-31T14:00:00+02:00").unwrap(), noon);
        assert_eq!(parse_time(" 2016-10-31 12:00 ").unwrap(), noon);
        assert_eq!(
            parse_time("2016-10-31").unwrap(),
            parse_time("2016-10-31 00:00:00").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
    }
}
