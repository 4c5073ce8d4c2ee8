//! The replica's own settings: `.syncreplica/config.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// Written by `mkreplica`; every setting is shown with its default.
pub const DEFAULT_CONFIG_TOML: &str = r#"# syncreplica settings for this replica.

# Paths that stay local to this replica, in gitignore syntax, in addition to
# the patterns in .syncreplicaignore at the replica root (itself local: never
# replicated; a line #include PATH in it adds the patterns of a shared,
# replicated file, which never exclude a path already recorded). Excluded
# paths are never exported and never overwritten or deleted by an import.
# Example for a replicated system tree: ["/etc/hosts", "/etc/fstab", "/etc/adjtime"]
exclude = []

# Days that a file deleted or replaced by an import is kept under
# .syncreplica/deleted/ before it is purged.
soft_delete_days = 30

# How long an export waits for a sibling to confirm what it was sent (each
# packet a sibling sends carries its epoch row: what it has) before it sends
# the unconfirmed changes again, in case a packet was lost. Only siblings
# that have sent this replica a packet confirm; on a one-way link nothing is
# resent automatically (syncreplica -export -resendall TARGET resends now).
# A number with a unit s, m, h or d ("7d", "36h"), or "never".
resend_after = "7d"

# Days of history the operation log keeps. Each export (and
# syncreplica -scrub) deletes from the log the operations older than this
# that every member still in the family has confirmed holding; a signed
# checkpoint stands for them in later creation packets. The recorded state
# of every path stays. A whole number of days.
oplog_keep_days = 180

# The same per sibling, overriding the above:
# [siblings.NAME]
# resend_after = "never"
"#;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "default_soft_delete_days")]
    pub soft_delete_days: u32,
    /// How long an export waits for confirmation before it resends.
    #[serde(default)]
    pub resend_after: ResendAfter,
    /// Days of history the operation log keeps (see `sync::scrub`).
    #[serde(default = "default_oplog_keep_days")]
    pub oplog_keep_days: u32,
    /// Settings per sibling, by member name.
    #[serde(default)]
    pub siblings: BTreeMap<String, SiblingConfig>,
}

/// Settings for one sibling (`[siblings.NAME]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiblingConfig {
    pub resend_after: Option<ResendAfter>,
}

/// `resend_after`: a period, or never (`None`). Written as a number and a
/// unit (`s`, `m`, `h`, `d`) or `never`; default 7 days.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct ResendAfter(pub Option<std::time::Duration>);

impl Default for ResendAfter {
    fn default() -> Self {
        ResendAfter(Some(std::time::Duration::from_secs(7 * 24 * 3600)))
    }
}

impl TryFrom<String> for ResendAfter {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        let trimmed = text.trim();
        if trimmed == "never" {
            return Ok(ResendAfter(None));
        }
        let bad = || {
            format!(
                "resend_after \"{text}\" is not a period: write a whole number and a unit s, m, h or d (\"7d\", \"36h\"), or \"never\""
            )
        };
        let unit_at = trimmed.len().checked_sub(1).ok_or_else(bad)?;
        let (number, unit) = trimmed.split_at(unit_at);
        let number: u64 = number.trim().parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 24 * 3600,
            _ => return Err(bad()),
        };
        let secs = number.checked_mul(seconds).ok_or_else(bad)?;
        Ok(ResendAfter(Some(std::time::Duration::from_secs(secs))))
    }
}

impl std::fmt::Display for ResendAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => write!(f, "never"),
            Some(period) => {
                let secs = period.as_secs();
                for (unit, size) in [("d", 24 * 3600), ("h", 3600), ("m", 60)] {
                    if secs >= size && secs % size == 0 {
                        return write!(f, "{}{unit}", secs / size);
                    }
                }
                write!(f, "{secs}s")
            }
        }
    }
}

fn default_soft_delete_days() -> u32 {
    30
}

fn default_oplog_keep_days() -> u32 {
    180
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exclude: Vec::new(),
            soft_delete_days: default_soft_delete_days(),
            resend_after: ResendAfter::default(),
            oplog_keep_days: default_oplog_keep_days(),
            siblings: BTreeMap::new(),
        }
    }
}

impl Config {
    /// `resend_after` for the sibling named `name`: its own setting, or the
    /// global one.
    pub fn resend_after_for(&self, name: &str) -> ResendAfter {
        self.siblings
            .get(name)
            .and_then(|sibling| sibling.resend_after)
            .unwrap_or(self.resend_after)
    }
}

impl Config {
    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => return Err(Error::io(path, err)),
        };
        Config::parse(&text, path)
    }

    /// Parses config text; errors name the file, the line and the key
    /// (shipping.toml's parser, [`shipping::toml_config::parse`]).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        shipping::toml_config::parse(text).map_err(|err| Error::Config {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }
}

/// "line N: message" for a file read with `toml::from_str`, the line
/// taken from the error's span.
pub fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    shipping::toml_config::TomlError::from_toml(text, err, None).to_string()
}

pub fn config_path(state_dir: &Path) -> PathBuf {
    state_dir.join(crate::store::layout::CONFIG_FILE)
}

pub fn write_default(state_dir: &Path) -> Result<()> {
    let path = config_path(state_dir);
    std::fs::write(&path, DEFAULT_CONFIG_TOML).at(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_parses_to_defaults() {
        let config = Config::parse(DEFAULT_CONFIG_TOML, Path::new("c.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = "exclude = []\nsoft_delete_dayz = 3\n";
        let err = Config::parse(text, Path::new("/r/.syncreplica/config.toml")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/r/.syncreplica/config.toml"), "{message}");
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("soft_delete_dayz"), "{message}");
        assert!(message.contains("key `soft_delete_dayz`"), "{message}");
    }

    #[test]
    fn resend_after_global_and_per_sibling() {
        let text = "resend_after = \"36h\"\n[siblings.lambik]\nresend_after = \"never\"\n";
        let config = Config::parse(text, Path::new("c.toml")).unwrap();
        assert_eq!(config.resend_after_for("boston").to_string(), "36h");
        assert_eq!(config.resend_after_for("lambik"), ResendAfter(None));
        let err = Config::parse("resend_after = \"7 weeks\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("7 weeks"), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn bad_value_is_rejected() {
        let err = Config::parse("soft_delete_days = -1\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err =
            Config::parse("oplog_keep_days = \"6 months\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("oplog_keep_days"), "{err}");
        let config = Config::parse("oplog_keep_days = 0\n", Path::new("c.toml")).unwrap();
        assert_eq!(config.oplog_keep_days, 0);
    }
}
