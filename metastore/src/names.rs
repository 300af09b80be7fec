//! Validation of everything that names something in the catalog or in storage.
//!
//! Names arrive from outside and are hostile until checked. The rules are deliberately narrow so
//! that a valid name is safe in a SQL identifier, a path segment and a shell command alike.
//! Partition *values* are free text (they are data, not names) and are escaped by `layout`.

use crate::error::{CatalogError, CatalogResult};

/// Longest namespace, table or partition-key name, in characters.
pub const MAX_NAME_LEN: usize = 128;
/// Longest partition value, in bytes of UTF-8.
pub const MAX_PARTITION_VALUE_BYTES: usize = 1024;
/// Most partition keys a table may have.
pub const MAX_PARTITION_KEYS: usize = 16;
/// Longest tag name, in characters.
pub const MAX_TAG_LEN: usize = 128;

/// The sentence that states the naming rule, used in every refusal.
pub const NAME_RULE: &str = "names start with a lowercase letter or underscore, \
     continue with lowercase letters, digits or underscores, and are at most 128 characters";

/// What a name is for, so messages can say "table name" or "partition key".
#[derive(Debug, Clone, Copy)]
pub enum NameKind {
    Namespace,
    Table,
    PartitionKey,
}

impl NameKind {
    fn label(self) -> &'static str {
        match self {
            NameKind::Namespace => "namespace name",
            NameKind::Table => "table name",
            NameKind::PartitionKey => "partition key",
        }
    }
}

/// Checks a namespace, table or partition-key name against `[a-z_][a-z0-9_]{0,127}`.
///
/// # Errors
/// `InvalidArgument` with a sentence naming the offending input and stating the rule.
pub fn validate_name(kind: NameKind, name: &str) -> CatalogResult<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(CatalogError::InvalidArgument(format!(
            "invalid {}: {}; {NAME_RULE}",
            kind.label(),
            quote_for_message(name)
        )));
    }
    if matches!(kind, NameKind::PartitionKey) && name.starts_with('_') {
        return Err(CatalogError::InvalidArgument(format!(
            "invalid partition key {}: partition keys may not start with an underscore, \
             which is reserved for batchstore's own directories",
            quote_for_message(name)
        )));
    }
    Ok(())
}

/// Checks a partition value: any UTF-8 up to 1024 bytes, not empty, without NUL.
///
/// # Errors
/// `InvalidArgument` saying which key's value is wrong and why.
pub fn validate_partition_value(key: &str, value: &str) -> CatalogResult<()> {
    if value.is_empty() {
        return Err(CatalogError::InvalidArgument(format!(
            "the value for partition key {key} is empty; give a non-empty value"
        )));
    }
    if value.len() > MAX_PARTITION_VALUE_BYTES {
        return Err(CatalogError::InvalidArgument(format!(
            "the value for partition key {key} is {} bytes long; \
             partition values are at most {MAX_PARTITION_VALUE_BYTES} bytes",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(CatalogError::InvalidArgument(format!(
            "the value for partition key {key} contains a NUL character, which is not allowed"
        )));
    }
    Ok(())
}

/// Checks a tag name: 1–128 characters from `[A-Za-z0-9._-]`, not starting with `.` or `-`.
///
/// # Errors
/// `InvalidArgument` stating the rule.
pub fn validate_tag_name(name: &str) -> CatalogResult<()> {
    validate_label("tag", name)
}

/// Checks a lease name ("training-run-42"): the same rules as a tag name.
///
/// # Errors
/// `InvalidArgument` naming the rule.
pub fn validate_lease_name(name: &str) -> CatalogResult<()> {
    validate_label("lease", name)
}

/// A tag or lease name: 1 to [`MAX_TAG_LEN`] of `[A-Za-z0-9._-]`, not starting with `.`/`-`.
fn validate_label(what: &str, name: &str) -> CatalogResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TAG_LEN
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::InvalidArgument(format!(
            "invalid {what} name {}: {what}s are 1 to {MAX_TAG_LEN} letters, digits, '.', '_' \
             or '-', and do not start with '.' or '-'",
            quote_for_message(name)
        )))
    }
}

/// Checks a data file name inside a batch directory: a single path segment of
/// `[A-Za-z0-9._-]`, at most 200 characters, not starting with a dot.
///
/// # Errors
/// `InvalidArgument` naming the file.
pub fn validate_file_name(name: &str) -> CatalogResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::InvalidArgument(format!(
            "invalid data file name {}: a file in a batch is a plain name of letters, digits, \
             '.', '_' or '-' (no directories), such as part-00000.parquet",
            quote_for_message(name)
        )))
    }
}

/// Renders user input for an error message: quoted, control characters escaped, long input cut.
pub fn quote_for_message(input: &str) -> String {
    const SHOWN: usize = 64;
    let shown: String = input.chars().take(SHOWN).collect();
    let mut quoted = format!("{shown:?}");
    if input.chars().count() > SHOWN {
        quoted.push_str(&format!(" (… {} characters in all)", input.chars().count()));
    }
    quoted
}

/// Makes outside text safe to store as a record of what happened: control characters (NUL
/// included, which PostgreSQL refuses in text) become `?`, and the text is cut at `max`
/// characters.
pub fn printable(input: &str, max: usize) -> String {
    input
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_has_no_control_characters() {
        assert_eq!(printable("a\0b\nc\u{7f}dé", 100), "a?b?c?dé");
        assert_eq!(printable("abcdef", 3), "abc");
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in ["sales", "sold_items", "_staging", "t2", &"a".repeat(128)] {
            assert!(validate_name(NameKind::Table, name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        let long = "a".repeat(129);
        for name in [
            "", "..", "/", "a/../b", "a\0b", "Sales", "1abc", "a-b", "a b", "ä", "a'; drop", &long,
        ] {
            let err = validate_name(NameKind::Namespace, name).expect_err(name);
            assert!(err.to_string().contains("lowercase letter"), "{err}");
        }
    }

    #[test]
    fn partition_keys_may_not_start_with_underscore() {
        assert!(validate_name(NameKind::PartitionKey, "_batch").is_err());
        assert!(validate_name(NameKind::Table, "_batch").is_ok());
    }

    #[test]
    fn partition_values_are_free_text_within_limits() {
        assert!(validate_partition_value("ds", "../../etc/passwd").is_ok());
        assert!(validate_partition_value("ds", "naïve 'quoted' \"value\"").is_ok());
        assert!(validate_partition_value("ds", "").is_err());
        assert!(validate_partition_value("ds", "a\0b").is_err());
        assert!(validate_partition_value("ds", &"x".repeat(1025)).is_err());
        assert!(validate_partition_value("ds", &"x".repeat(1024)).is_ok());
    }

    #[test]
    fn file_names_are_single_segments() {
        assert!(validate_file_name("part-00000.parquet").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a\\b", "a b"] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_names() {
        assert!(validate_tag_name("training-2016-11").is_ok());
        assert!(validate_tag_name("-x").is_err());
        assert!(validate_tag_name("a/b").is_err());
    }
}
