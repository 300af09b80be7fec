//! Domain types of the catalog, free of SQL and gRPC.
//!
//! The service converts wire messages into these, the catalog works on them, and nothing here
//! knows which database or transport is in use.

use crate::error::{CatalogError, CatalogResult};
use crate::names::{self, NameKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Microseconds since the Unix epoch, UTC, as assigned by the catalog.
pub type Micros = i64;

/// The type of a partition key; values are normalised to its canonical text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionKeyType {
    String,
    Int64,
    Date,
}

impl PartitionKeyType {
    /// Canonical text of `value` for this type: integers without leading zeros or `+`,
    /// dates as `YYYY-MM-DD`, strings unchanged.
    ///
    /// # Errors
    /// `InvalidArgument` when the value does not parse as the key's type.
    pub fn canonical(self, key: &str, value: &str) -> CatalogResult<String> {
        names::validate_partition_value(key, value)?;
        match self {
            PartitionKeyType::String => Ok(value.to_owned()),
            PartitionKeyType::Int64 => value
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| {
                    CatalogError::InvalidArgument(format!(
                        "partition key {key} is an int64 key, but the value {} is not a whole number",
                        names::quote_for_message(value)
                    ))
                }),
            PartitionKeyType::Date => chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
                .ok()
                .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
                .map(|d| d.format("%Y-%m-%d").to_string())
                .ok_or(())
                .map_err(|_| {
                    CatalogError::InvalidArgument(format!(
                        "partition key {key} is a date key, but the value {} is not a date in the form YYYY-MM-DD (years 0001 to 9999)",
                        names::quote_for_message(value)
                    ))
                }),
        }
    }
}

/// A partition key of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionKeyDef {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: PartitionKeyType,
}

/// Checks a table's partition keys: valid names, no duplicates, at most 16.
///
/// # Errors
/// `InvalidArgument` naming the offending key.
pub fn validate_partition_keys(keys: &[PartitionKeyDef]) -> CatalogResult<()> {
    if keys.len() > names::MAX_PARTITION_KEYS {
        return Err(CatalogError::InvalidArgument(format!(
            "a table has at most {} partition keys; {} were given",
            names::MAX_PARTITION_KEYS,
            keys.len()
        )));
    }
    for (i, key) in keys.iter().enumerate() {
        names::validate_name(NameKind::PartitionKey, &key.name)?;
        if keys[..i].iter().any(|k| k.name == key.name) {
            return Err(CatalogError::InvalidArgument(format!(
                "partition key {} is listed twice",
                key.name
            )));
        }
    }
    Ok(())
}

/// One value per partition key, canonical, in the table's key order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionValues(pub Vec<String>);

impl PartitionValues {
    /// Matches `(key, value)` pairs from a request against the table's keys: every key exactly
    /// once, no others, each value canonical for its type. Values with an empty key are
    /// positional: one per key, in the table's key order (all or none of a spec's values).
    ///
    /// # Errors
    /// `InvalidArgument` saying which key is missing, unknown, repeated or badly typed.
    pub fn from_pairs(keys: &[PartitionKeyDef], pairs: &[(String, String)]) -> CatalogResult<Self> {
        let positional = pairs.iter().filter(|(k, _)| k.is_empty()).count();
        if positional > 0 {
            return Self::from_positional(keys, pairs, positional);
        }
        let mut given: HashMap<&str, &str> = HashMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            if !keys.iter().any(|k| &k.name == key) {
                let known = key_list(keys);
                return Err(CatalogError::InvalidArgument(format!(
                    "{} is not a partition key of this table (its keys are: {known})",
                    names::quote_for_message(key)
                )));
            }
            if given.insert(key, value).is_some() {
                return Err(CatalogError::InvalidArgument(format!(
                    "partition key {key} is given twice"
                )));
            }
        }
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(value) = given.get(key.name.as_str()) else {
                return Err(CatalogError::InvalidArgument(format!(
                    "partition key {} is missing; this table is partitioned by {}",
                    key.name,
                    key_list(keys)
                )));
            };
            values.push(key.key_type.canonical(&key.name, value)?);
        }
        Ok(PartitionValues(values))
    }

    /// Values given without keys (an empty key), matched to the table's keys in order.
    fn from_positional(
        keys: &[PartitionKeyDef],
        pairs: &[(String, String)],
        positional: usize,
    ) -> CatalogResult<Self> {
        if positional < pairs.len() {
            return Err(CatalogError::InvalidArgument(
                "give partition values either all with their keys or all as bare values in key \
                 order, not mixed"
                    .into(),
            ));
        }
        if pairs.len() != keys.len() {
            return Err(CatalogError::InvalidArgument(format!(
                "{} partition value(s) were given, but the table has {} partition key(s): {}",
                pairs.len(),
                keys.len(),
                key_list(keys)
            )));
        }
        keys.iter()
            .zip(pairs)
            .map(|(key, (_, value))| key.key_type.canonical(&key.name, value))
            .collect::<CatalogResult<_>>()
            .map(PartitionValues)
    }

    /// The stable identity stored in the catalog: a JSON array of the values.
    pub fn to_json(&self) -> String {
        serde_json::Value::from(self.0.clone()).to_string()
    }

    /// Parses what `to_json` stored.
    ///
    /// # Errors
    /// `Internal` if the catalog holds something else.
    pub fn from_json(json: &str) -> CatalogResult<Self> {
        serde_json::from_str(json)
            .map(PartitionValues)
            .map_err(|e| CatalogError::Internal(format!("bad partition values in catalog: {e}")))
    }

    /// `ds=20161031/region=eu`, for messages.
    pub fn describe(&self, keys: &[PartitionKeyDef]) -> String {
        if keys.is_empty() {
            return "(the only partition)".to_owned();
        }
        keys.iter()
            .zip(&self.0)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    k.name,
                    names::quote_for_message(v).trim_matches('"')
                )
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Pairs of key name and value, in key order.
    pub fn pairs(&self, keys: &[PartitionKeyDef]) -> Vec<(String, String)> {
        keys.iter()
            .zip(&self.0)
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect()
    }
}

/// How a [`KeyPredicate`] compares a partition's value with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredicateOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

/// A condition on a partition key as a request gives it: key, comparison, values as text.
pub type KeyCondition = (String, PredicateOp, Vec<String>);

/// One condition on one partition key, its values canonical for the key's type and parsed
/// once: `in` as a set of canonical texts (a value has exactly one), the others as one
/// ordered value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPredicate {
    key_index: usize,
    key_type: PartitionKeyType,
    test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    In(std::collections::HashSet<String>),
    Compare(PredicateOp, Ordered),
}

/// A key value in its type's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Ordered {
    Int(i64),
    Date(chrono::NaiveDate),
    Text(String),
}

impl Ordered {
    fn of(key_type: PartitionKeyType, canonical: &str) -> Self {
        let parsed = match key_type {
            PartitionKeyType::Int64 => canonical.parse().ok().map(Ordered::Int),
            PartitionKeyType::Date => chrono::NaiveDate::parse_from_str(canonical, "%Y-%m-%d")
                .ok()
                .map(Ordered::Date),
            PartitionKeyType::String => None,
        };
        parsed.unwrap_or_else(|| Ordered::Text(canonical.to_owned()))
    }
}

/// Conditions on partition keys that every resolved partition must satisfy (AND), compared as
/// the key's type: int64 numerically, dates (canonical `YYYY-MM-DD`) and strings in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionFilter(Vec<KeyPredicate>);

impl PartitionFilter {
    /// Checks `(key, op, values)` conditions against the table's keys.
    ///
    /// # Errors
    /// `InvalidArgument` for an unknown key, a value not of the key's type, a wrong number of
    /// values, or more conditions or values than [`crate::limits`] allows.
    pub fn new(keys: &[PartitionKeyDef], predicates: &[KeyCondition]) -> CatalogResult<Self> {
        use crate::limits::{MAX_FILTER_PREDICATES, MAX_PARTITIONS_PER_REQUEST};
        if predicates.len() > MAX_FILTER_PREDICATES {
            return Err(CatalogError::InvalidArgument(format!(
                "a partition filter has at most {MAX_FILTER_PREDICATES} conditions; {} were given",
                predicates.len()
            )));
        }
        let values: usize = predicates.iter().map(|(_, _, v)| v.len()).sum();
        if values > MAX_PARTITIONS_PER_REQUEST {
            return Err(CatalogError::InvalidArgument(format!(
                "a partition filter holds at most {MAX_PARTITIONS_PER_REQUEST} values in all; \
                 {values} were given"
            )));
        }
        let mut out = Vec::with_capacity(predicates.len());
        for (key, op, values) in predicates {
            let Some(key_index) = keys.iter().position(|k| &k.name == key) else {
                return Err(CatalogError::InvalidArgument(format!(
                    "the partition filter names {}, which is not a partition key of this table \
                     (its keys are: {})",
                    names::quote_for_message(key),
                    key_list(keys)
                )));
            };
            let def = &keys[key_index];
            let count_ok = match op {
                PredicateOp::In => (1..=MAX_PARTITIONS_PER_REQUEST).contains(&values.len()),
                _ => values.len() == 1,
            };
            if !count_ok {
                return Err(CatalogError::InvalidArgument(format!(
                    "the partition filter on {key} has {} values; `in` takes 1 to \
                     {MAX_PARTITIONS_PER_REQUEST}, every other comparison exactly one",
                    values.len()
                )));
            }
            let values = values
                .iter()
                .map(|v| def.key_type.canonical(&def.name, v))
                .collect::<CatalogResult<Vec<_>>>()?;
            let test = match op {
                PredicateOp::In => Test::In(values.into_iter().collect()),
                op => Test::Compare(*op, Ordered::of(def.key_type, &values[0])),
            };
            out.push(KeyPredicate {
                key_index,
                key_type: def.key_type,
                test,
            });
        }
        Ok(PartitionFilter(out))
    }

    /// True when no condition was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a partition satisfies every condition; `value_of(i)` is its value for the
    /// table's `i`-th key.
    pub fn matches<'a>(&self, value_of: impl Fn(usize) -> Option<&'a str>) -> bool {
        self.0.iter().all(|p| {
            let Some(value) = value_of(p.key_index) else {
                return false;
            };
            match &p.test {
                Test::In(set) => set.contains(value),
                Test::Compare(op, bound) => {
                    let ordering = Ordered::of(p.key_type, value).cmp(bound);
                    match op {
                        PredicateOp::Eq => ordering.is_eq(),
                        PredicateOp::Ne => ordering.is_ne(),
                        PredicateOp::Lt => ordering.is_lt(),
                        PredicateOp::Le => ordering.is_le(),
                        PredicateOp::Gt => ordering.is_gt(),
                        PredicateOp::Ge | PredicateOp::In => ordering.is_ge(),
                    }
                }
            }
        })
    }
}

fn key_list(keys: &[PartitionKeyDef]) -> String {
    if keys.is_empty() {
        "no keys at all: give no partition values".to_owned()
    } else {
        keys.iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A table as the catalog knows it.
#[derive(Debug, Clone)]
pub struct TableRecord {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub keys: Vec<PartitionKeyDef>,
    pub arrow_schema: Option<Vec<u8>>,
    pub created_at: Micros,
    /// Partitions with at least one version; counted only by `Catalog::get_table`.
    pub partition_count: Option<i64>,
    pub location: String,
    /// The table's own retention, and its namespace's default.
    pub retention: Retention,
    pub namespace_retention: Retention,
    /// When it was dropped (a dropped table can be undropped until GC purges it).
    pub dropped_at: Option<Micros>,
    /// What later writes may change in its schema.
    pub schema_policy: SchemaPolicy,
}

/// What a write may change in a table's schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Writes match the schema (columns by name, same types; a non-null column may be written
    /// into a nullable one; dictionary indexes may differ).
    #[default]
    Strict,
    /// Also: add nullable columns, leave out nullable columns, widen integers
    /// (int8→int16→int32→int64, likewise unsigned) and floats (float16→float32→float64), and
    /// make a column nullable. Never a drop of a non-null column, a rename or a narrowing.
    Additive,
}

impl SchemaPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaPolicy::Strict => "strict",
            SchemaPolicy::Additive => "additive",
        }
    }

    /// # Errors
    /// `InvalidArgument` naming the policies.
    pub fn parse(text: &str) -> CatalogResult<Self> {
        match text {
            "" | "strict" => Ok(SchemaPolicy::Strict),
            "additive" => Ok(SchemaPolicy::Additive),
            other => Err(CatalogError::InvalidArgument(format!(
                "unknown schema policy {}; use strict or additive",
                names::quote_for_message(other)
            ))),
        }
    }
}

/// One schema a table has had.
#[derive(Debug, Clone)]
pub struct SchemaVersion {
    pub version: i64,
    pub arrow_schema: Vec<u8>,
    pub changed_at: Micros,
    pub change: String,
}

impl TableRecord {
    /// `namespace.table`, for messages.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// The retention GC applies: the table's own when it sets any rule, else the namespace's.
    pub fn effective_retention(&self) -> Retention {
        if self.retention.is_set() {
            self.retention
        } else {
            self.namespace_retention
        }
    }
}

/// How many old versions GC keeps: a version is kept when any rule set keeps it; with none
/// set, every version is kept. Current, tagged and leased batches are kept regardless.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the last N versions of each partition (N >= 1).
    pub keep_versions: Option<i64>,
    /// Keep every version that was current at some moment within this many microseconds.
    pub keep_for: Option<Micros>,
}

impl Retention {
    /// Longest duration a retention rule may name (100 years).
    const MAX_KEEP_FOR: Micros = 100 * 366 * 24 * 3600 * 1_000_000;

    /// Whether any rule is set.
    pub fn is_set(&self) -> bool {
        self.keep_versions.is_some() || self.keep_for.is_some()
    }

    /// # Errors
    /// `InvalidArgument` for a count below 1 or a duration that is not positive or too long.
    pub fn validate(&self) -> CatalogResult<()> {
        if let Some(n) = self.keep_versions
            && n < 1
        {
            return Err(CatalogError::InvalidArgument(format!(
                "keep_versions must be at least 1 (the current version is always kept); got {n}"
            )));
        }
        if let Some(t) = self.keep_for
            && !(1..=Self::MAX_KEEP_FOR).contains(&t)
        {
            return Err(CatalogError::InvalidArgument(format!(
                "keep_seconds must be between 1 and {} (100 years); got {}",
                Self::MAX_KEEP_FOR / 1_000_000,
                t / 1_000_000
            )));
        }
        Ok(())
    }

    /// In words, for messages and expiry reasons.
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
                describe_duration(t)
            ));
        }
        if rules.is_empty() {
            "keep every version".to_owned()
        } else {
            rules.join(" and ")
        }
    }
}

/// A duration in the largest whole unit that fits ("7d", "36h", "90s").
pub fn describe_duration(micros: Micros) -> String {
    let seconds = micros / 1_000_000;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// What a lease pins, and whose it is.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    pub lease_id: String,
    /// `None` for a read's own lease.
    pub name: Option<String>,
    pub namespace: String,
    pub table: String,
    pub holder: String,
    pub selection: String,
    pub created_at: Micros,
    pub expires_at: Micros,
    pub batch_ids: Vec<String>,
}

/// Where a GC run works: the whole catalog, a namespace, or one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcScope {
    All,
    Namespace(String),
    Table(String, String),
}

/// What a GC step did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcCounts {
    pub batches_expired: i64,
    pub batches_deleted: i64,
    pub files_deleted: i64,
    pub bytes_deleted: i64,
    pub tables_purged: i64,
    /// Batches whose files could not be deleted (a later run tries again).
    pub batches_failed: i64,
}

impl std::ops::AddAssign for GcCounts {
    fn add_assign(&mut self, other: GcCounts) {
        self.batches_expired += other.batches_expired;
        self.batches_deleted += other.batches_deleted;
        self.files_deleted += other.files_deleted;
        self.bytes_deleted += other.bytes_deleted;
        self.tables_purged += other.tables_purged;
        self.batches_failed += other.batches_failed;
    }
}

/// One step of a GC run.
#[derive(Debug, Clone, Default)]
pub struct GcStep {
    pub counts: GcCounts,
    /// "" when the run is done.
    pub resume_token: String,
    /// Batches expired and not yet deleted, in the scope, after this step.
    pub remaining: i64,
    /// Why batches could not be deleted in this step (the first few).
    pub errors: Vec<String>,
}

/// Something under the warehouse that no known batch owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Relative to the warehouse root.
    pub path: String,
    pub size_bytes: i64,
    pub last_modified: Micros,
    pub reason: String,
}

/// A namespace.
#[derive(Debug, Clone)]
pub struct NamespaceRecord {
    pub name: String,
    pub created_at: Micros,
}

/// A file in a batch directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: String,
    pub size_bytes: i64,
    pub rows: i64,
}

/// Life cycle of a batch: pending → committed, or pending → aborted / abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    Pending,
    Committed,
    Aborted,
    Abandoned,
}

impl BatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Pending => "pending",
            BatchState::Committed => "committed",
            BatchState::Aborted => "aborted",
            BatchState::Abandoned => "abandoned",
        }
    }

    /// # Errors
    /// `Internal` for a state the catalog should never hold.
    pub fn parse(s: &str) -> CatalogResult<Self> {
        match s {
            "pending" => Ok(BatchState::Pending),
            "committed" => Ok(BatchState::Committed),
            "aborted" => Ok(BatchState::Aborted),
            "abandoned" => Ok(BatchState::Abandoned),
            other => Err(CatalogError::Internal(format!(
                "unknown batch state {other}"
            ))),
        }
    }
}

/// A batch and where it stands.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    pub batch_id: String,
    pub table: TableRecord,
    pub partition_id: i64,
    pub partition: PartitionValues,
    pub state: BatchState,
    pub location: String,
    pub created_at: Micros,
    pub lease_expires_at: Micros,
    pub version: Option<i64>,
    pub committed_at: Option<Micros>,
    pub rows: i64,
    pub bytes: i64,
    pub files: Vec<DataFile>,
    /// The principal that began it (`None`: begun without authentication).
    pub began_by: Option<String>,
    /// Set once GC expired it (never readable again), with why; and once its files are gone.
    pub expired: Option<Expiry>,
    pub deleted_at: Option<Micros>,
}

/// When and why GC expired a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: Micros,
    pub reason: String,
}

/// A check the service makes of each batch a call acts on, once the catalog has loaded it
/// (who may act on it); an error stops the call before anything changes.
pub type BatchCheck<'a> = &'a (dyn Fn(&BatchRecord) -> crate::error::CatalogResult<()> + Sync);

/// What the caller must hold on a namespace whose batch a call only refers to (a lineage
/// input): the service's grant decision, given to the catalog.
pub type NamespaceCheck<'a> = &'a (dyn Fn(&str) -> crate::error::CatalogResult<()> + Sync);

/// What BeginWrite hands the client.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub batch_id: String,
    pub location: String,
    pub lease_expires_at: Micros,
    pub current_batch_id: Option<String>,
    pub current_version: i64,
}

/// What the commit-and-swap expects to find as the partition's current batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedCurrent {
    /// The partition has never been written.
    Nothing,
    /// The partition currently points at this batch.
    Batch(String),
}

/// One partition's part of a commit.
#[derive(Debug, Clone)]
pub struct PartitionUpdate {
    pub batch_id: String,
    pub files: Vec<DataFile>,
    pub arrow_schema: Vec<u8>,
    pub expected: Option<ExpectedCurrent>,
    pub inputs: Vec<String>,
}

/// A version created by a commit or rollback.
#[derive(Debug, Clone)]
pub struct CommittedVersion {
    pub batch_id: String,
    pub namespace: String,
    pub table: String,
    pub partition: Vec<(String, String)>,
    pub version: i64,
    pub committed_at: Micros,
    pub rows: i64,
    pub bytes: i64,
}

/// The result of a commit.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub committed: Vec<CommittedVersion>,
    pub already_committed: bool,
}

/// One entry of a partition's history.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub version: i64,
    pub batch_id: String,
    pub operation: String,
    pub actor: String,
    pub message: String,
    pub committed_at: Micros,
    pub rows: i64,
    pub bytes: i64,
    pub current: bool,
    /// Set when GC expired the entry's batch.
    pub expired: Option<Expiry>,
}

/// Which version of a partition a read wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Current,
    Version(i64),
    Batch(String),
    Tag(String),
    AsOf(Micros),
}

/// A partition resolved to one batch, with everything needed to read it.
#[derive(Debug, Clone)]
pub struct ResolvedPartition {
    pub partition: Vec<(String, String)>,
    pub batch_id: String,
    pub version: i64,
    pub location: String,
    pub files: Vec<DataFile>,
    pub rows: i64,
    pub bytes: i64,
    pub committed_at: Micros,
}

/// A partition in a listing.
#[derive(Debug, Clone)]
pub struct PartitionSummary {
    pub partition: Vec<(String, String)>,
    pub batch_id: String,
    pub version: i64,
    pub rows: i64,
    pub bytes: i64,
    pub updated_at: Micros,
}

/// A tag naming a batch.
#[derive(Debug, Clone)]
pub struct TagRecord {
    pub name: String,
    pub batch_id: String,
    pub partition: Vec<(String, String)>,
    pub version: i64,
    pub created_at: Micros,
    pub created_by: String,
}

/// What a tag points at when it is created.
#[derive(Debug, Clone)]
pub enum TagTarget {
    Batch(String),
    /// Version 0 means the partition's current version.
    PartitionVersion(Vec<(String, String)>, i64),
}

/// What a rollback returns to.
#[derive(Debug, Clone)]
pub enum RollbackTarget {
    Version(i64),
    Batch(String),
}

/// A page of results and the token for the next page ("" when done).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<PartitionKeyDef> {
        vec![
            PartitionKeyDef {
                name: "ds".into(),
                key_type: PartitionKeyType::Date,
            },
            PartitionKeyDef {
                name: "shard".into(),
                key_type: PartitionKeyType::Int64,
            },
        ]
    }

    #[test]
    fn values_are_canonical_and_in_key_order() {
        let pairs = vec![
            ("shard".into(), "007".into()),
            ("ds".into(), "2016-10-31".into()),
        ];
        let values = PartitionValues::from_pairs(&keys(), &pairs).expect("valid");
        assert_eq!(values.0, vec!["2016-10-31".to_owned(), "7".to_owned()]);
        assert_eq!(values.to_json(), r#"["2016-10-31","7"]"#);
    }

    #[test]
    fn missing_unknown_and_mistyped_keys_are_refused() {
        let missing = PartitionValues::from_pairs(&keys(), &[("ds".into(), "2016-10-31".into())]);
        assert!(
            missing
                .expect_err("missing")
                .to_string()
                .contains("shard is missing")
        );
        let unknown = PartitionValues::from_pairs(
            &keys(),
            &[
                ("ds".into(), "2016-10-31".into()),
                ("x".into(), "1".into()),
                ("shard".into(), "1".into()),
            ],
        );
        assert!(
            unknown
                .expect_err("unknown")
                .to_string()
                .contains("not a partition key")
        );
        let bad_date = PartitionValues::from_pairs(
            &keys(),
            &[
                ("ds".into(), "2016-02-30".into()),
                ("shard".into(), "1".into()),
            ],
        );
        assert!(
            bad_date
                .expect_err("date")
                .to_string()
                .contains("YYYY-MM-DD")
        );
    }
}
