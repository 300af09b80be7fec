//! The storage layout: the one place that turns validated names, partition values and
//! server-generated batch ids into object paths.
//!
//! ```text
//! {warehouse}/{namespace}/{table}/{key1}={value1}/…/_batch={batch_id}/part-00000.parquet
//! ```
//!
//! Values are percent-escaped (Hive style): every byte outside `[A-Za-z0-9._-]` becomes `%XX`, so
//! no value can contain `/`, and a `key=value` segment can never be `.` or `..`. Escaped values
//! longer than [`MAX_ESCAPED_VALUE`] bytes are cut and suffixed with `~` and a hash of the whole
//! value, which keeps every segment under file-system name limits. The `~` never appears in an
//! escaped value, so a cut name never collides with an uncut one; the batch id makes every batch
//! directory unique in any case. Paths are for storage only: the catalog, not the path, says
//! which partition a batch belongs to.

use crate::model::{PartitionKeyDef, PartitionValues};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Bytes of escaped value kept in a path segment before it is cut and hashed.
pub const MAX_ESCAPED_VALUE: usize = 96;

/// Everything but `[A-Za-z0-9._-]` is escaped.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// Escapes one partition value into a safe path segment fragment.
pub fn escape_value(value: &str) -> String {
    let escaped = utf8_percent_encode(value, ESCAPED).to_string();
    if escaped.len() <= MAX_ESCAPED_VALUE {
        return escaped;
    }
    // Cut at an escape boundary so no half "%XX" remains, then add the hash of the full value.
    let mut cut = MAX_ESCAPED_VALUE - 17;
    while cut > 0
        && (escaped.as_bytes()[cut - 1] == b'%'
            || escaped.as_bytes()[cut.saturating_sub(2)] == b'%')
    {
        cut -= 1;
    }
    let digest = Sha256::digest(value.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{hash}", &escaped[..cut])
}

/// `ds=20161031/region=eu`, or "" for a table without partition keys.
pub fn partition_dir(keys: &[PartitionKeyDef], values: &PartitionValues) -> String {
    keys.iter()
        .zip(&values.0)
        .map(|(key, value)| format!("{}={}", key.name, escape_value(value)))
        .collect::<Vec<_>>()
        .join("/")
}

/// The table directory, relative to the warehouse root: `namespace/table`.
pub fn table_dir(namespace: &str, table: &str) -> String {
    format!("{namespace}/{table}")
}

/// A batch directory, relative to the warehouse root.
pub fn batch_dir(
    namespace: &str,
    table: &str,
    keys: &[PartitionKeyDef],
    values: &PartitionValues,
    batch_id: &str,
) -> String {
    let partition = partition_dir(keys, values);
    let mut dir = table_dir(namespace, table);
    if !partition.is_empty() {
        dir.push('/');
        dir.push_str(&partition);
    }
    dir.push_str("/_batch=");
    dir.push_str(batch_id);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PartitionKeyType;

    fn key(name: &str) -> PartitionKeyDef {
        PartitionKeyDef {
            name: name.into(),
            key_type: PartitionKeyType::String,
        }
    }

    #[test]
    fn ordinary_values_stay_readable() {
        assert_eq!(escape_value("20161031"), "20161031");
        assert_eq!(escape_value("2016-10-31"), "2016-10-31");
        assert_eq!(escape_value("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn no_value_can_leave_its_directory() {
        for value in ["..", ".", "../../etc", "a/../b", "/", "\\", "%2F", "~x"] {
            let escaped = escape_value(value);
            assert!(
                !escaped.contains('/') && !escaped.contains('\\'),
                "{value} → {escaped}"
            );
            let segment = format!("ds={escaped}");
            assert!(segment != "." && segment != "..");
        }
    }

    #[test]
    fn long_values_are_cut_and_hashed_distinctly() {
        let a = "é".repeat(500);
        let b = format!("{}x", "é".repeat(499));
        let (ea, eb) = (escape_value(&a), escape_value(&b));
        assert!(ea.len() <= MAX_ESCAPED_VALUE, "{}", ea.len());
        assert_ne!(ea, eb);
        assert!(ea.contains('~'));
        assert!(!ea[..ea.find('~').expect("hash marker")].ends_with('%'));
    }

    #[test]
    fn batch_dir_layout() {
        let values = PartitionValues(vec!["20161031".into(), "e u".into()]);
        let dir = batch_dir(
            "sales",
            "items",
            &[key("ds"), key("region")],
            &values,
            "0193",
        );
        assert_eq!(dir, "sales/items/ds=20161031/region=e%20u/_batch=0193");
        let none = batch_dir("sales", "items", &[], &PartitionValues(vec![]), "0193");
        assert_eq!(none, "sales/items/_batch=0193");
    }
}
