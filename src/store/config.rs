//! The replica's own settings: `.syncreplica/config.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// Metadata keys (SPEC.md §6.4). All even: a reader that does not know
/// them may ignore them (it then keeps the file as its own user would).
pub mod meta_keys {
    pub const OWNER: u32 = 2;
    pub const XATTRS: u32 = 4;
    pub const ACL_ACCESS: u32 = 6;
    pub const ACL_DEFAULT: u32 = 8;
    pub const HARD_LINK: u32 = 10;
    /// The keys this version reads from disk: a recorded value under any
    /// other key is carried over by the scan (it cannot be observed).
    pub const OBSERVED: &[u32] = &[OWNER, XATTRS, ACL_ACCESS, ACL_DEFAULT, HARD_LINK];
}

/// What a replica keeps (`preserve` in config.toml). Mode, file mtimes and
/// symlink targets are always kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preserve {
    pub owner: bool,
    pub group: bool,
    pub acls: bool,
    pub xattrs: bool,
    pub hardlinks: bool,
    pub devices: bool,
    pub specials: bool,
    /// Owners and ACL entries by number only (`-numeric-ids`): names are
    /// neither looked up when reading nor used when applying.
    pub numeric_ids: bool,
}

impl Preserve {
    /// Every item, as root keeps them.
    pub const ALL: Preserve = Preserve {
        owner: true,
        group: true,
        acls: true,
        xattrs: true,
        hardlinks: true,
        devices: true,
        specials: true,
        numeric_ids: false,
    };

    /// What the running user can apply: everything as root; otherwise all
    /// but owners and device nodes (a user may give a file to one of its
    /// own groups, which is tried, and warned about where it fails).
    pub fn default_for_user() -> Preserve {
        if rustix::process::geteuid().is_root() {
            Preserve::ALL
        } else {
            Preserve {
                owner: false,
                devices: false,
                ..Preserve::ALL
            }
        }
    }

    /// From the names of config.toml's `preserve` list.
    pub fn from_names(names: &[String], numeric_ids: bool) -> Result<Preserve, String> {
        let mut preserve = Preserve {
            owner: false,
            group: false,
            acls: false,
            xattrs: false,
            hardlinks: false,
            devices: false,
            specials: false,
            numeric_ids,
        };
        for name in names {
            let flag = match name.as_str() {
                "owner" => &mut preserve.owner,
                "group" => &mut preserve.group,
                "acls" => &mut preserve.acls,
                "xattrs" => &mut preserve.xattrs,
                "hardlinks" => &mut preserve.hardlinks,
                "devices" => &mut preserve.devices,
                "specials" => &mut preserve.specials,
                other => {
                    return Err(format!(
                        "preserve: \"{other}\" is not one of owner, group, acls, xattrs, \
                         hardlinks, devices, specials"
                    ))
                }
            };
            *flag = true;
        }
        Ok(preserve)
    }

    /// The items kept, and whether they are applied as root (the user a
    /// member runs as decides what it can apply: owners, attributes
    /// outside `user.*`, setuid bits), as bits: what the state database
    /// remembers of the set its recorded state was last reconciled with
    /// ([`Preserve::within`]).
    pub fn kept_bits(&self, as_root: bool) -> u32 {
        [
            self.owner,
            self.group,
            self.acls,
            self.xattrs,
            self.hardlinks,
            self.devices,
            self.specials,
            as_root,
        ]
        .iter()
        .enumerate()
        .fold(0, |bits, (n, kept)| bits | (u32::from(*kept) << n))
    }

    /// This set less what `bits` ([`Preserve::kept_bits`]) did not keep:
    /// what a replica reads and compares until it has set on disk the
    /// recorded values of the items it keeps now and did not keep then
    /// (an item it never applied is not a local change).
    pub fn within(&self, bits: u32) -> Preserve {
        let had = |n: u32| bits & (1 << n) != 0;
        Preserve {
            owner: self.owner && had(0),
            group: self.group && had(1),
            acls: self.acls && had(2),
            xattrs: self.xattrs && had(3),
            hardlinks: self.hardlinks && had(4),
            devices: self.devices && had(5),
            specials: self.specials && had(6),
            numeric_ids: self.numeric_ids,
        }
    }

    /// The names of the items set in `bits` and not in `than`, the root
    /// bit as "what only root can apply".
    pub fn bit_names(bits: u32, than: u32) -> Vec<&'static str> {
        const NAMES: [&str; 8] = [
            "owner",
            "group",
            "acls",
            "xattrs",
            "hardlinks",
            "devices",
            "specials",
            "what only root can apply",
        ];
        NAMES
            .iter()
            .enumerate()
            .filter(|(n, _)| bits & !than & (1 << n) != 0)
            .map(|(_, name)| *name)
            .collect()
    }

    /// Whether special files of `kind` ([`crate::ops::special_kind`]) are
    /// kept: device nodes with `devices`, FIFOs and sockets with `specials`.
    pub fn keeps_special(&self, kind: u32) -> bool {
        use packet_format::ops::special_kind;
        match kind {
            special_kind::FIFO | special_kind::SOCKET => self.specials,
            special_kind::CHAR_DEVICE | special_kind::BLOCK_DEVICE => self.devices,
            _ => false,
        }
    }

    /// The metadata keys this replica records and compares.
    pub fn keys(&self) -> Vec<u32> {
        let mut kept = Vec::new();
        if self.owner || self.group {
            kept.push(meta_keys::OWNER);
        }
        if self.xattrs {
            kept.push(meta_keys::XATTRS);
        }
        if self.acls {
            kept.push(meta_keys::ACL_ACCESS);
            kept.push(meta_keys::ACL_DEFAULT);
        }
        if self.hardlinks {
            kept.push(meta_keys::HARD_LINK);
        }
        kept
    }
}

/// Written by `mkreplica`; every setting is shown with its default.
pub const DEFAULT_CONFIG_TOML: &str = r#"# syncreplica settings for this replica.

# Paths that stay local to this replica, in gitignore syntax, in addition to
# the patterns in .syncreplicaignore at the replica root (itself local: never
# replicated; a line #include PATH in it adds the patterns of a shared,
# replicated file, which never exclude a path already recorded). Excluded
# paths are never exported and never overwritten or deleted by an import.
# Patterns are relative to the replica root ("/" anchors there): for a
# replica rooted at /etc, ["/hosts", "/fstab", "/adjtime"] keeps the host's
# own /etc/hosts, /etc/fstab and /etc/adjtime.
exclude = []

# Days that a file deleted or replaced by an import is kept under
# .syncreplica/deleted/ before it is purged (0 to 36500).
soft_delete_days = 30

# How long an export waits for a sibling to confirm what it was sent (each
# packet a sibling sends carries its epoch row: what it has) before it sends
# the unconfirmed changes again, in case a packet was lost. Only siblings
# that have sent this replica a packet confirm; on a one-way link nothing is
# resent automatically (syncreplica -export -resend TARGET resends now).
# A number with a unit s, m, h or d ("7d", "36h"), or "never".
resend_after = "7d"

# What this replica keeps beyond content, mode and times, out of: owner,
# group, acls, xattrs (user.* always; security.* and trusted.* as root),
# hardlinks, devices, specials (FIFOs and sockets). Unset: what the running
# user can apply (everything as root; all but owner and devices otherwise).
# An item kept but not applicable here is warned about at each import.
# preserve = ["owner", "group", "acls", "xattrs", "hardlinks", "devices", "specials"]

# Owners and ACL entries by number only, for sites whose user and group
# names map to other ids (like rsync --numeric-ids).
numeric_ids = false

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
    #[serde(
        default = "default_soft_delete_days",
        deserialize_with = "de_soft_delete_days"
    )]
    pub soft_delete_days: u32,
    /// How long an export waits for confirmation before it resends.
    #[serde(default)]
    pub resend_after: ResendAfter,
    /// Days of history the operation log keeps (see `sync::scrub`).
    #[serde(
        default = "default_oplog_keep_days",
        deserialize_with = "de_oplog_keep_days"
    )]
    pub oplog_keep_days: u32,
    /// Settings per sibling, by member name.
    #[serde(default)]
    pub siblings: BTreeMap<String, SiblingConfig>,
    /// What is kept beyond content, mode and times (`None`: what the
    /// running user can apply, [`Preserve::default_for_user`]).
    #[serde(default)]
    pub preserve: Option<Vec<String>>,
    /// Owners and ACL entries by number only.
    #[serde(default)]
    pub numeric_ids: bool,
    /// Encrypt update packets to their targets (issue 15); `false` is what
    /// `-noencrypt` does for every export.
    #[serde(default = "default_encrypt")]
    pub encrypt: bool,
}

fn default_encrypt() -> bool {
    true
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

/// The largest `soft_delete_days` (100 years).
pub const MAX_SOFT_DELETE_DAYS: u64 = 36_500;

fn de_soft_delete_days<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<u32, D::Error> {
    // A century at most: the range said in the error is one a person
    // can read (not u32's 4294967295), and anything longer is "keep".
    shipping::toml_config::whole_number(d, "soft_delete_days", "days", 0, MAX_SOFT_DELETE_DAYS)
        .map(|days| days as u32)
}

fn default_soft_delete_days() -> u32 {
    30
}

fn de_oplog_keep_days<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<u32, D::Error> {
    shipping::toml_config::whole_number(d, "oplog_keep_days", "days", 0, u64::from(u32::MAX))
        .map(|days| days as u32)
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
            preserve: None,
            numeric_ids: false,
            encrypt: true,
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
    /// What this replica keeps ([`Preserve`]); an
    /// unknown item name is an error naming it.
    pub fn preserve(&self) -> std::result::Result<Preserve, String> {
        match &self.preserve {
            None => Ok(Preserve {
                numeric_ids: self.numeric_ids,
                ..Preserve::default_for_user()
            }),
            Some(names) => Preserve::from_names(names, self.numeric_ids),
        }
    }

    /// Reads `path`; a missing file means the defaults.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => return Err(Error::io(path, err)),
        };
        let config = Config::parse(&text, path)?;
        config.preserve().map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
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

/// Sets the `exclude` list of the config file in `state_dir` (as written
/// by [`write_default`]: its `exclude = []` line is replaced).
pub fn set_excludes(state_dir: &Path, patterns: &[String]) -> Result<()> {
    let path = config_path(state_dir);
    let text = std::fs::read_to_string(&path).at(&path)?;
    let quoted: Vec<String> = patterns
        .iter()
        .map(|p| toml::Value::String(p.clone()).to_string())
        .collect();
    let text = text.replacen(
        "\nexclude = []\n",
        &format!("\nexclude = [{}]\n", quoted.join(", ")),
        1,
    );
    let config = Config::parse(&text, &path)?;
    debug_assert_eq!(&config.exclude, patterns);
    std::fs::write(&path, text).at(&path)
}

/// What a new member is given at its creation import (`mkreplica -import
/// [-adopt] -exclude PATTERN… -preserve LIST -numeric-ids`): written to its
/// config.toml before anything of the family's is written, so the import
/// itself applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnSettings {
    /// Exclude patterns (gitignore syntax, relative to the root).
    pub exclude: Vec<String>,
    /// The `preserve` list; `None` leaves it unset (what the user can apply).
    pub preserve: Option<Vec<String>>,
    /// `numeric_ids = true`.
    pub numeric_ids: bool,
}

/// Writes `own` into the config file in `state_dir` (as written by
/// [`write_default`]). Errors: an unknown preserve item, named.
pub fn set_own_settings(state_dir: &Path, own: &OwnSettings) -> Result<()> {
    if !own.exclude.is_empty() {
        set_excludes(state_dir, &own.exclude)?;
    }
    if own.preserve.is_none() && !own.numeric_ids {
        return Ok(());
    }
    let path = config_path(state_dir);
    let mut text = std::fs::read_to_string(&path).at(&path)?;
    if let Some(names) = &own.preserve {
        let quoted: Vec<String> = names
            .iter()
            .map(|p| toml::Value::String(p.clone()).to_string())
            .collect();
        text = text.replacen(
            "\n# preserve = [",
            &format!("\npreserve = [{}]\n# preserve = [", quoted.join(", ")),
            1,
        );
    }
    if own.numeric_ids {
        text = text.replacen("\nnumeric_ids = false\n", "\nnumeric_ids = true\n", 1);
    }
    let config = Config::parse(&text, &path)?;
    config.preserve().map_err(|message| Error::Config {
        path: path.clone(),
        message,
    })?;
    debug_assert_eq!(config.numeric_ids, own.numeric_ids);
    std::fs::write(&path, text).at(&path)
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
    fn a_negative_soft_delete_days_is_echoed_with_its_range() {
        let err = Config::parse("soft_delete_days = -1\n", Path::new("c.toml")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("soft_delete_days = -1"), "{message}");
        assert!(message.contains("from 0 to 36500"), "{message}");
        assert!(!message.contains("expected u32"), "{message}");
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
        assert!(!err.to_string().contains("u32"), "{err}");
        let err = Config::parse("oplog_keep_days = -3\n", Path::new("c.toml")).unwrap_err();
        assert!(!err.to_string().contains("u32"), "{err}");
        let config = Config::parse("oplog_keep_days = 0\n", Path::new("c.toml")).unwrap();
        assert_eq!(config.oplog_keep_days, 0);
    }
}
