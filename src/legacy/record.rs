//! The original 0.x server's session records, so that a rolling migration on one Redis keeps
//! every user's whitelist and data.
//!
//! The original kept each session in a Redis hash `session:<id>` (TTL 600 s, refreshed every
//! minute while connected) with the fields
//! - `whitelist`: the patterns joined by `|` (missing or empty: the server's default whitelist);
//! - `created`: milliseconds since the epoch;
//! - `data_<key>`: one per entry of the session data object, its value as a string.
//!
//! [`LegacyRecord`] is that hash, typed: it converts from and to the hash's fields, and from and
//! to what a Rohrpost session holds (whitelist patterns and a JSON data value).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::topics::Pattern;

/// Prefix of the original's session keys.
pub const KEY_PREFIX: &str = "session:";
const WHITELIST: &str = "whitelist";
const CREATED: &str = "created";
const DATA_PREFIX: &str = "data_";
/// The `whitelist` of a session that may use no topic at all: to the original two empty
/// patterns, which match no topic (it ignores messages without one), to Rohrpost no pattern.
/// (An empty field would mean the default whitelist to both.)
const NO_PATTERN: &str = "|";

/// One session's hash in the original's form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyRecord {
    /// The `whitelist` field as stored (`None`: there is none).
    pub whitelist: Option<String>,
    /// The `data_<key>` fields, by key.
    pub data: BTreeMap<String, String>,
    /// The `created` field, in ms since the epoch, when it is a number.
    pub created_ms: Option<u64>,
}

impl LegacyRecord {
    /// The Redis key of session `id`'s hash.
    pub fn key(id: &str) -> String {
        format!("{KEY_PREFIX}{id}")
    }

    /// The record of a hash's fields (`HGETALL`); `None` when there are none (no such key).
    /// Fields the original did not write are ignored.
    pub fn from_fields(fields: impl IntoIterator<Item = (String, String)>) -> Option<Self> {
        let mut record = LegacyRecord::default();
        let mut any = false;
        for (field, value) in fields {
            any = true;
            if field == WHITELIST {
                record.whitelist = Some(value);
            } else if field == CREATED {
                record.created_ms = value.trim().parse().ok();
            } else if let Some(key) = field.strip_prefix(DATA_PREFIX) {
                record.data.insert(key.to_owned(), value);
            }
        }
        any.then_some(record)
    }

    /// The hash's fields, to write (`HSET`).
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = self
            .data
            .iter()
            .map(|(key, value)| (format!("{DATA_PREFIX}{key}"), value.clone()))
            .collect();
        if let Some(whitelist) = &self.whitelist {
            fields.push((WHITELIST.to_owned(), whitelist.clone()));
        }
        if let Some(created) = self.created_ms {
            fields.push((CREATED.to_owned(), created.to_string()));
        }
        fields
    }

    /// A session holding `whitelist` and `data`, created at `created_ms`, in the original's form.
    /// Patterns holding `|` are left out: the original would split them into other patterns,
    /// which could allow what they do not. Data that is no object has no entries, and entries
    /// that are no strings are written as their JSON text (the original kept only strings).
    pub fn of<'a>(
        whitelist: impl IntoIterator<Item = &'a str>,
        data: &Value,
        created_ms: u64,
    ) -> Self {
        let patterns: Vec<&str> = whitelist.into_iter().filter(|p| !p.contains('|')).collect();
        let whitelist = if patterns.is_empty() {
            NO_PATTERN.to_owned()
        } else {
            patterns.join("|")
        };
        let data = match data {
            Value::Object(entries) => entries
                .iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (key.clone(), text)
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        LegacyRecord {
            whitelist: Some(whitelist),
            data,
            created_ms: Some(created_ms),
        }
    }

    /// The whitelist it gives a session: `default` when the field is missing or empty (as the
    /// original did), else its patterns (empty and invalid ones skipped).
    pub fn patterns(&self, default: &[Pattern]) -> Vec<Pattern> {
        match self.whitelist.as_deref() {
            None | Some("") => default.to_vec(),
            Some(joined) => joined
                .split('|')
                .filter_map(|p| Pattern::parse(p, usize::MAX).ok())
                .collect(),
        }
    }

    /// The session data it gives a session: an object of its entries, as strings (as the
    /// original read them back).
    pub fn data(&self) -> Value {
        let entries: Map<String, Value> = (self.data.iter())
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();
        Value::Object(entries)
    }

    /// Whether both give a session the same whitelist and data (when it was created aside).
    pub fn same_state(&self, other: &LegacyRecord) -> bool {
        self.whitelist == other.whitelist && self.data == other.data
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    fn patterns(list: &[&str]) -> Vec<Pattern> {
        list.iter()
            .map(|p| Pattern::parse(p, usize::MAX).unwrap())
            .collect()
    }

    #[test]
    fn the_originals_hash_is_read_as_it_read_it() {
        let record = LegacyRecord::from_fields(fields(&[
            ("whitelist", "anonym.*|members.42"),
            ("created", "1371024000000"),
            ("data_name", "ada"),
            ("data_level", "3"),
            ("something", "else"),
        ]))
        .unwrap();
        let default = patterns(&["default.*"]);
        assert_eq!(
            record.patterns(&default),
            patterns(&["anonym.*", "members.42"])
        );
        assert_eq!(record.data(), json!({"name": "ada", "level": "3"}));
        assert_eq!(record.created_ms, Some(1_371_024_000_000));
        assert_eq!(LegacyRecord::key("abc"), "session:abc");
    }

    #[test]
    fn a_missing_hash_is_no_record_and_missing_fields_are_defaults() {
        assert_eq!(LegacyRecord::from_fields(Vec::new()), None);
        let default = patterns(&["default.*"]);
        for whitelist in [None, Some("")] {
            let mut hash = fields(&[("created", "soon")]);
            if let Some(w) = whitelist {
                hash.push(("whitelist".into(), w.into()));
            }
            let record = LegacyRecord::from_fields(hash).unwrap();
            assert_eq!(record.patterns(&default), default, "{whitelist:?}");
            assert_eq!(record.data(), json!({}));
            assert_eq!(record.created_ms, None);
        }
    }

    #[test]
    fn a_session_is_written_in_the_originals_form() {
        let data = json!({"name": "ada", "level": 3, "tags": ["a"], "none": null});
        let record = LegacyRecord::of(["anonym.*", "members.42"], &data, 1_000);
        let mut written = record.fields();
        written.sort();
        assert_eq!(
            written,
            fields(&[
                ("created", "1000"),
                ("data_level", "3"),
                ("data_name", "ada"),
                ("data_none", "null"),
                ("data_tags", "[\"a\"]"),
                ("whitelist", "anonym.*|members.42"),
            ])
        );
        // Read back, it is what was written.
        assert_eq!(LegacyRecord::from_fields(written), Some(record));
    }

    #[test]
    fn patterns_the_original_would_split_are_left_out() {
        let record = LegacyRecord::of(["a.*", "b|c.*", "d"], &json!({}), 0);
        assert_eq!(record.whitelist.as_deref(), Some("a.*|d"));
    }

    #[test]
    fn no_pattern_stays_no_pattern_and_is_not_the_default() {
        let record = LegacyRecord::of(std::iter::empty(), &json!({}), 0);
        let read = LegacyRecord::from_fields(record.fields()).unwrap();
        assert_eq!(read.patterns(&patterns(&["default.*"])), Vec::new());
    }

    #[test]
    fn data_that_is_no_object_has_no_entries() {
        for data in [json!(null), json!("x"), json!([1, 2]), json!(7)] {
            assert!(LegacyRecord::of(["a"], &data, 0).data.is_empty(), "{data}");
        }
    }

    #[test]
    fn the_same_state_ignores_when_it_was_created() {
        let ours = LegacyRecord::of(["a.*"], &json!({"n": 1}), 1_000);
        let mut theirs = ours.clone();
        theirs.created_ms = Some(2_000);
        assert!(ours.same_state(&theirs));
        theirs.data.insert("n".into(), "2".into());
        assert!(!ours.same_state(&theirs));
        let mut theirs = ours.clone();
        theirs.whitelist = Some("a.*|b.*".into());
        assert!(!ours.same_state(&theirs));
    }
}
