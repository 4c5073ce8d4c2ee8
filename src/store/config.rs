//! The replica's own settings: `.syncreplica/config.toml`.

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
"#;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default = "default_soft_delete_days")]
    pub soft_delete_days: u32,
}

fn default_soft_delete_days() -> u32 {
    30
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exclude: Vec::new(),
            soft_delete_days: default_soft_delete_days(),
        }
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
    fn bad_value_is_rejected() {
        let err = Config::parse("soft_delete_days = -1\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
