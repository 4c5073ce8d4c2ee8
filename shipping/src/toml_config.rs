//! TOML configuration files parsed into serde types, with errors that name
//! the line and the key: the line from toml's span of the error, the key
//! from the path `serde_path_to_error` records on the way down. Used for
//! `shipping.toml` and for the replica's `.syncreplica/config.toml`.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;

/// Why a TOML file could not be read into its type, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// The dotted key (`table.key`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            position(self.line, self.key.as_deref()),
            self.message
        )
    }
}

impl std::error::Error for TomlError {}

/// `line N: key `K`: `, or the part of it that is known.
pub fn position(line: Option<usize>, key: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(line) = line {
        text.push_str(&format!("line {line}: "));
    }
    if let Some(key) = key {
        text.push_str(&format!("key `{key}`: "));
    }
    text
}

/// The 1-based line holding byte `offset` of `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses `text` into `T`.
pub fn parse<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, TomlError> {
    let document =
        toml::Deserializer::parse(text).map_err(|err| TomlError::from_toml(text, &err, None))?;
    serde_path_to_error::deserialize(document).map_err(|err| {
        let key = dotted_key(err.path());
        TomlError::from_toml(text, err.inner(), key)
    })
}

impl TomlError {
    /// `err`, from parsing `text`, at the line of its span; `key` when
    /// known.
    pub fn from_toml(text: &str, err: &toml::de::Error, key: Option<String>) -> TomlError {
        let span: Option<Range<usize>> = err.span();
        let mut message = err.message().trim().to_string();
        // toml says only "duplicate key": name the key and the line that
        // first set it, so the reader knows which of the two to remove.
        if message == "duplicate key" {
            if let Some(span) = span.clone().filter(|s| text.get(s.clone()).is_some()) {
                let name = text[span.clone()].trim().trim_matches('"').to_string();
                if let Some(first) = first_setting(text, &name, span.start) {
                    message = format!("duplicate key: `{name}` is already set on line {first}");
                } else {
                    message = format!("duplicate key: `{name}` is set twice");
                }
            }
        }
        TomlError {
            line: span.map(|span| line_of(text, span.start)),
            key,
            message,
        }
    }
}

/// The 1-based line, before byte `before` and in the same table, where a
/// line sets `name` (`name = …`), if one does.
fn first_setting(text: &str, name: &str, before: usize) -> Option<usize> {
    let head = &text[..before.min(text.len())];
    // The table the duplicate is in starts after the last header line.
    let table_start = head
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .rfind(|&at| head[at..].trim_start().starts_with('['))
        .unwrap_or(0);
    let mut offset = table_start;
    for line in head[table_start..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        let bare = trimmed.strip_prefix('"').map_or(trimmed, |rest| rest);
        if let Some(rest) = bare.strip_prefix(name) {
            let rest = rest.trim_start_matches('"').trim_start();
            if rest.starts_with('=') && offset < before {
                return Some(line_of(text, offset));
            }
        }
        offset += line.len();
    }
    None
}

/// The table keys of `path`, joined by dots; list indexes are left out
/// (an element is named by its list's key).
fn dotted_key(path: &serde_path_to_error::Path) -> Option<String> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
            serde_path_to_error::Segment::Enum { variant } => Some(variant.as_str()),
            _ => None,
        })
        .collect();
    (!keys.is_empty()).then(|| keys.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        size: u32,
        #[serde(default)]
        names: Vec<u32>,
        #[serde(default)]
        tables: BTreeMap<String, Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        value: u32,
    }

    fn error(text: &str) -> TomlError {
        parse::<Doc>(text).unwrap_err()
    }

    #[test]
    fn a_duplicate_key_is_named_with_the_line_that_first_set_it() {
        let err = error("size = 1\n[tables.a]\nvalue = 1\nvalue = 2\n");
        assert_eq!(err.line, Some(4), "{err}");
        assert!(
            err.to_string()
                .contains("duplicate key: `value` is already set on line 3"),
            "{err}"
        );
        let err = error("size = 1\nsize = 2\n");
        assert!(
            err.to_string()
                .contains("duplicate key: `size` is already set on line 1"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_names_its_line_and_key() {
        let err = error("\nsize = \"big\"\n");
        assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("size")));
        assert!(err.to_string().starts_with("line 2: key `size`: "), "{err}");
    }

    #[test]
    fn a_list_element_is_named_by_the_list() {
        let err = error("names = [\n  1,\n  \"x\",\n]\n");
        assert_eq!((err.line, err.key.as_deref()), (Some(3), Some("names")));
    }

    #[test]
    fn nested_tables_and_unknown_keys() {
        let err = error("[tables.a]\nvalue = 1\n[tables.b]\nvalue = -1\n");
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(4), Some("tables.b.value"))
        );
        let err = error("size = 1\n[tables.a]\nvalue = 1\nvalu = 2\n");
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(4), Some("tables.a.valu"))
        );
        let err = error("size = 1\nsise = 2\n");
        assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("sise")));
    }

    #[test]
    fn a_syntax_error_has_a_line() {
        let err = error("size = 1\nsize = 2\n");
        assert_eq!(err.line, Some(2), "{err}");
        let err = error("size = \n");
        assert_eq!(err.line, Some(1), "{err}");
    }
}

/// A whole number from `min` to `max` for key `key`, for
/// `deserialize_with`: anything else (a negative number, a string, a
/// fraction, one out of range) is refused echoing the value as written,
/// with the rule and the range, instead of serde's "expected u32".
/// `what` says what the number counts ("days", "seconds").
pub fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    key: &str,
    what: &str,
    min: u64,
    max: u64,
) -> Result<u64, D::Error> {
    let value = toml::Value::deserialize(d)?;
    match value {
        toml::Value::Integer(n) if n >= 0 && (min..=max).contains(&(n as u64)) => Ok(n as u64),
        other => Err(serde::de::Error::custom(format!(
            "{key} = {other}: give a whole number of {what} from {min} to {max}"
        ))),
    }
}

#[cfg(test)]
mod whole_number_tests {
    #[derive(Debug, serde::Deserialize)]
    struct Days {
        #[serde(deserialize_with = "days")]
        #[allow(dead_code)]
        days: u64,
    }

    fn days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::whole_number(d, "days", "days", 1, 10)
    }

    #[test]
    fn the_value_is_echoed_with_the_range() {
        for (text, shown) in [
            ("-1", "days = -1"),
            ("\"x\"", "days = \"x\""),
            ("11", "days = 11"),
            ("1.5", "days = 1.5"),
        ] {
            let err = super::parse::<Days>(&format!("days = {text}\n")).unwrap_err();
            assert!(err.message.contains(shown), "{err}");
            assert!(err.message.contains("from 1 to 10"), "{err}");
            assert!(!err.message.contains("expected"), "{err}");
        }
        assert!(super::parse::<Days>("days = 3\n").is_ok());
    }
}
