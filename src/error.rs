//! Library errors.
//!
//! The rules every error of this crate follows (written down as
//! rustic_core does, so a new variant can be checked against them):
//!
//! 1. An error names the file, value or member it is about, so the CLI can
//!    print `COMMAND: error: WHAT` without guessing.
//! 2. An error prints its cause in `Display` and does not also expose it as
//!    `source()`: causes are fields named `cause`, never `source`, and no
//!    variant is `#[source]`/`#[from]`. Wrappers of another crate's error
//!    are `#[error(transparent)]`, and those crates follow the same rule, so
//!    `{:#}` never repeats a cause.
//! 3. Errors that refuse one packet are a [`Refusal`]: the import moves on
//!    to the other packets. Everything else stops the command.
//! 4. Exit codes and hints are the CLI's business (`cli::report`); the
//!    library only says what went wrong.
//! 5. No string is ever matched to tell errors apart: match on variants.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },

    /// Neither `start` nor a parent is a replica root: `named` when
    /// `start` was named with `-replica DIR`, else it is the current
    /// directory.
    #[error(
        "{}",
        if *named {
            format!("-replica {}: not a replica (no replica there or in any of its parent directories)", start.display())
        } else {
            format!("no replica found in {} or any of its parent directories", start.display())
        }
    )]
    NoReplica { start: PathBuf, named: bool },

    /// `-replica DIR` names something that cannot be a replica: `why` is
    /// "no such directory", "is a file, not a directory" or "PARENT is a
    /// file, not a directory".
    #[error("-replica {}: {why}", path.display())]
    BadReplicaDir { path: PathBuf, why: String },

    #[error("{} is already inside replica \"{name}\" (rooted at {})", path.display(), root.display())]
    AlreadyInReplica {
        path: PathBuf,
        root: PathBuf,
        name: String,
    },

    #[error("{} already holds a replica (rooted at {}) below it", path.display(), root.display())]
    ContainsReplica { path: PathBuf, root: PathBuf },

    #[error("replica {} is locked by process {pid}{}", root.display(), holder_detail(.command))]
    Locked {
        root: PathBuf,
        pid: u32,
        command: Option<String>,
    },

    /// A command that changes the replica, run by a user who may not
    /// write its files or on a read-only filesystem.
    #[error(
        "cannot change replica {}: {}: {}",
        root.display(),
        path.display(),
        if *read_only_fs { "read-only file system" } else { "permission denied" }
    )]
    NotWritable {
        root: PathBuf,
        /// The file or folder that could not be written.
        path: PathBuf,
        read_only_fs: bool,
    },

    /// A command that changes the replica, run as root on a replica whose
    /// recorded state a user that is not root made and kept, while
    /// config.toml does not say what to keep: root's default keeps more
    /// (owners, devices) and would set the family's values on that user's
    /// files (review recheck 14e, new problem 1).
    #[error(
        "cannot change replica {} as root: it belongs to {owner} (uid {uid}), who made its \
         recorded state, and its .syncreplica/config.toml does not set preserve",
        root.display()
    )]
    RootOnUserReplica {
        root: PathBuf,
        uid: u32,
        /// The user's name, or the uid where it has none.
        owner: String,
    },

    #[error("state database {}: {cause}", path.display())]
    Database {
        path: PathBuf,
        cause: rusqlite::Error,
    },

    /// The filesystem of the replica's state folder filled up while an
    /// import wrote its scratch database (the packet's operations and its
    /// plan, kept on disk rather than in memory). Nothing was changed.
    #[error(
        "no room for the import's scratch database {}: the filesystem {} is full ({} free) \
         while {what}; nothing was changed",
        file.display(),
        mount.display(),
        human_size(*free)
    )]
    ScratchFull {
        /// The scratch database (removed again).
        file: PathBuf,
        /// The mount point of its filesystem.
        mount: PathBuf,
        /// Bytes free there when the write failed.
        free: u64,
        /// What was being written, e.g. "copying the packet's operations
        /// (4096 so far)".
        what: String,
    },

    /// The filesystem of the replica's state folder filled up while a
    /// change was written to the state database: the transaction was
    /// rolled back, nothing was changed.
    #[error(
        "no room for state database {}: the filesystem {} is full ({} free); the change \
         was rolled back, nothing was changed",
        file.display(),
        mount.display(),
        human_size(*free)
    )]
    StateFull {
        /// The state database.
        file: PathBuf,
        /// The mount point of its filesystem.
        mount: PathBuf,
        /// Bytes free there when the write failed.
        free: u64,
    },

    #[error(
        "state database {} has schema version {found}; this program knows version {known}",
        path.display()
    )]
    SchemaVersion {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error("state database {} is damaged: {what}", path.display())]
    CorruptState { path: PathBuf, what: String },

    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// A pattern of a local exclude source that cannot be used: `place`
    /// is "line N" of the ignore file, or the config.toml entry.
    #[error("{}: {place}: bad exclude pattern: {message}", path.display())]
    ExcludePattern {
        path: PathBuf,
        place: String,
        message: String,
    },

    #[error("invalid size \"{value}\": {why}")]
    BadSize { value: String, why: String },

    #[error("invalid replica name \"{}\": {why}", printable(name))]
    BadName { name: String, why: String },

    /// A member named where it cannot be used (this replica itself, a
    /// removed member).
    #[error("member \"{}\": {why}", printable(name))]
    Member { name: String, why: String },

    /// A sibling this replica cannot bring up to date by an update: it
    /// needs operations scrubbed from the log here.
    #[error("member \"{}\": {why}", printable(name))]
    CannotCatchUp { name: String, why: String },

    #[error("unknown replica \"{name}\" in family \"{family}\"")]
    UnknownReplica { name: String, family: String },

    #[error("invalid epoch setting \"{value}\": {why}")]
    BadEpochSetting { value: String, why: String },

    #[error("row \"{name}\" is this replica's own row; it is exact and cannot be changed")]
    OwnEpochRow { name: String },

    /// A `-resendpath` path that is not a well-formed replica-relative path.
    #[error("-resendpath \"{path}\": {why}")]
    BadResendPath { path: String, why: String },

    /// A `-resendpath` path this replica does not hold (absent, deleted or
    /// excluded here).
    #[error("-resendpath \"{path}\": replica \"{replica}\" does not hold it (absent, deleted or excluded here)")]
    NotHeld { path: String, replica: String },

    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },

    /// Packets written into, or imported from, the replica's own tree
    /// (not excluded there): a scan would record them as replicated files
    /// (and a -remove as a replicated delete). `role`: "-out directory",
    /// "packet folder" or "packet"; `rel`: the path relative to the root.
    #[error(
        "{role} {} is inside replica {}, where packets would be recorded and replicated as files; \
         nothing was done",
        path.display(), root.display()
    )]
    PacketsInsideReplica {
        role: &'static str,
        path: PathBuf,
        root: PathBuf,
        rel: Vec<u8>,
        is_dir: bool,
    },

    #[error("identity file {} is damaged: {what}", path.display())]
    BadIdentity { path: PathBuf, what: String },

    /// The key file for `mkreplica -import` is not there, not a key file,
    /// or another member's key: `what` says which.
    #[error("key file {}: {what}", path.display())]
    BadKeyFile { path: PathBuf, what: String },

    #[error("invalid -pexpire \"{value}\": {why}")]
    BadExpiry { value: String, why: String },

    /// A packet file could not be read, verified or written.
    #[error(transparent)]
    Packet(packet_format::Error),

    /// A file that is not a packet was named where packets are expected,
    /// or a packet cannot be queued.
    #[error("{}: {why}", path.display())]
    NotSubmittable { path: PathBuf, why: String },

    /// The content of a file changed between the scan and the export.
    #[error("{} changed while it was being exported; nothing was written, run the export again", path.display())]
    ChangedDuringExport { path: PathBuf },

    /// A signal (SIGINT, SIGTERM) stopped an export before its commit: the
    /// packet being written was discarded, its estimates left as they were.
    #[error("interrupted by {}; the packet being written was removed and is not recorded as sent (a target reported above as exported stays exported)", signal_name(*signal))]
    Interrupted { signal: i32 },

    /// A recorded chunk is no longer in the tree (creation export).
    #[error("chunk {chunk} of {path} is missing from the tree (changed since it was recorded)")]
    ChunkMissingLocally { chunk: String, path: String },

    /// A creation packet that cannot make a replica (refused before
    /// anything is made, or with what was made removed).
    #[error("creation packet {}: {what}; nothing was created", packet.display())]
    BadCreationPacket { packet: PathBuf, what: String },

    /// `mkreplica -import` into a folder with something in it.
    /// `no_content`: the packet carries no file content (a manifest, or a
    /// family without files), so `-adopt` is what the hint offers.
    #[error("{} is not empty", dir.display())]
    NotEmpty { dir: PathBuf, no_content: bool },

    /// A manifest (a creation packet without content) given to a plain
    /// `mkreplica -import`.
    #[error("creation packet {} is a manifest: it carries the recorded state but no content; nothing was created", packet.display())]
    ManifestNeedsAdopt { packet: PathBuf },

    /// A folder the command needs and does not make is not there.
    #[error("{}: no such directory ({what})", path.display())]
    MissingDirectory { path: PathBuf, what: &'static str },

    /// The directory packets go to (`-out`) cannot be made or written to:
    /// `what` says why, in words (the OS error included, not as a source).
    #[error("cannot write packets to the -out directory {}: {what}", path.display())]
    OutDirectory { path: PathBuf, what: String },

    /// The filesystem packets were being written to (the -out or
    /// -workdir directory, or a storage bay) filled up: what was being
    /// written was removed again and nothing was recorded as sent.
    #[error(
        "no room for packets in the {role} {}: {what} ({} free on {})",
        dir.display(),
        human_size(*free),
        mount.display()
    )]
    NoRoomForPackets {
        /// The directory written to, as the user named it.
        dir: PathBuf,
        /// "-out directory", "-workdir", "outgoing bay".
        role: &'static str,
        /// The mount point of its filesystem.
        mount: PathBuf,
        /// Bytes free there (after a failed write was removed).
        free: u64,
        /// What failed and what became of it, e.g. "writing the packet
        /// for \"beta\" failed; ...".
        what: String,
        /// The options that help, for the hint: "-maxsize" alone, or
        /// "-maxsize and -workdir".
        options: &'static str,
    },

    /// A passphrase is needed (`what`: for what), none was given with
    /// `-passphrase-file`, and standard input is not a terminal to ask it on.
    #[error("{what} needs a passphrase: no -passphrase-file was given, and standard input is not a terminal to ask it on; nothing was done")]
    NoTerminal { what: String },

    /// A command that asks for confirmation (`what`: what it would do,
    /// e.g. "removing member \"x\"") run without -force where standard
    /// input is not a terminal to ask on: refused before anything is done.
    #[error("{what} asks for confirmation, and standard input is not a terminal to ask it on; nothing was done")]
    NeedsConfirmation { what: String },

    /// The passphrase given (`from`: "-passphrase-file FILE" or "typed on
    /// the terminal") cannot be used: `why` says why.
    #[error("passphrase {from}: {why}; nothing was done")]
    BadPassphrase {
        from: String,
        why: PassphraseProblem,
    },

    /// The `-passphrase-file` named cannot be read (absent, not readable
    /// by this user, a directory): `cause` is the OS's error.
    #[error("-passphrase-file {}: cannot be read: {cause}; nothing was done", path.display())]
    PassphraseFile { path: PathBuf, cause: io::Error },

    /// The `-keyout FILE` of `mkreplica -export` is there already: a key
    /// file is never overwritten (it may hold another member's keys).
    #[error("-keyout {}: the file exists already, and a key file is never overwritten (it may hold another member's keys); nothing was done", path.display())]
    KeyOutExists { path: PathBuf },

    /// The folder of the `-keyout FILE` of `mkreplica -export` is not
    /// there (it is not made for the user, unlike -out).
    #[error("-keyout {}: its folder {} does not exist; nothing was done", path.display(), folder.display())]
    KeyOutNoFolder { path: PathBuf, folder: PathBuf },

    /// A file or folder named on the command line (after `option`, e.g.
    /// "-data", or as an operand when `None`) is not there. `pattern` when
    /// its name holds a shell wildcard (`*`, `?`, `[`): a pattern that
    /// matched nothing, which the shell passes on as it was typed.
    #[error(
        "{}{}: {}",
        option.map(|o| format!("{o} ")).unwrap_or_default(),
        path.display(),
        if *pattern {
            "matches no file (a shell passes on a pattern that matches nothing as it was typed)"
        } else {
            "no such file or directory"
        }
    )]
    NoSuchFile {
        path: PathBuf,
        option: Option<&'static str>,
        pattern: bool,
    },

    /// A command-line path of the right form that cannot be used as given:
    /// a directory where files are wanted, or one file named twice (exit 2).
    #[error("{option} {}: {why}", path.display())]
    BadArgument {
        option: &'static str,
        path: PathBuf,
        why: &'static str,
    },

    /// `mkreplica -init` or `-import` named a replica's own root as the
    /// directory for the new replica.
    #[error("{} is the root of replica \"{}\"; a new replica cannot be made there", path.display(), printable(name))]
    IsReplicaRoot { path: PathBuf, name: String },

    /// `mkreplica -import` of a creation packet whose new member this
    /// host holds already: an earlier import made it at `root` (`made`:
    /// when, RFC 3339), and it is still there. A second copy would be a
    /// clone, whose packets the siblings refuse.
    #[error(
        "replica \"{}\" of this creation packet is on this host already, at {} (made by mkreplica -import \
         {made}); a second copy of one member is a clone, whose packets its siblings refuse; nothing was created",
        printable(name),
        root.display()
    )]
    HostedAlready {
        name: String,
        root: PathBuf,
        made: String,
    },

    /// `mkreplica -import` found no key file where it looked.
    #[error("{}: no key file for the new member there", path.display())]
    MissingKeyFile { path: PathBuf },

    /// One packet refused; the others of an import go on.
    #[error(transparent)]
    Refused(Refusal),

    /// A crash injected by a test hook at apply step `step`.
    #[error("injected crash at step {step} ({what})")]
    InjectedCrash { step: usize, what: String },

    #[error(transparent)]
    Shipping(shipping::Error),

    /// A shipping error that comes from the configuration (a storage
    /// class, route or destination it lacks): `config` names the
    /// shipping.toml in use, or "the built-in shipping configuration".
    #[error("{config}: {cause}")]
    ShippingConfig {
        config: String,
        cause: shipping::Error,
    },

    /// Something that would log a change of this replica's own, refused
    /// while a restore from a backup (`mkreplica -restore`) is unfinished.
    #[error(
        "this replica is being restored from a backup: {what} would number a change of its own \
         like one its siblings may hold; it waits for {waits}"
    )]
    Restoring { what: String, waits: String },

    /// An export a target cannot read: its packets show an older packet
    /// format than the packet needs.
    #[error(
        "cannot export to \"{member}\": its packets show it reads packet format {has}, and {what}, \
         which needs format {needs}; nothing was written"
    )]
    NeedsUpgrade {
        member: String,
        has: String,
        needs: String,
        what: String,
    },
}

/// Why a passphrase cannot be used ([`Error::BadPassphrase`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassphraseProblem {
    #[error("not UTF-8 text")]
    NotText,
    /// Enter alone, on the terminal.
    #[error("it is empty")]
    Empty,
    /// A `-passphrase-file` whose first line is empty.
    #[error("its first line is empty (the passphrase is the file's first line)")]
    EmptyFirstLine,
    /// A new passphrase (at `mkreplica -export`) shorter than `min`
    /// characters: `len` characters.
    #[error("it has {len} character{}, fewer than the {min} a new passphrase needs", if *len == 1 { "" } else { "s" })]
    TooShort { len: usize, min: usize },
    /// The two passphrases typed at `mkreplica -export` differ.
    #[error("the two passphrases typed differ")]
    Differ,
    /// The terminal could not be read: the OS's error, in words.
    #[error("the terminal cannot be read: {0}")]
    Terminal(String),
}

/// Why one packet is refused as a whole. Nothing of it is applied; the
/// import goes on with the other packets.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A path that is not enclosed in the replica, or not well-formed.
    #[error("packet path \"{path}\" refused: {why}")]
    HostilePath { path: String, why: String },

    /// The packet is damaged or forged.
    #[error(transparent)]
    Damaged(packet_format::Error),

    /// The file is no packet at all: not a zip archive, or a zip archive
    /// of something else (`why` says which).
    #[error("not a packet: {why}")]
    NotAPacket { why: String },

    /// The packet file could not be read (permissions, I/O): not damage.
    #[error("cannot be read: {cause}")]
    Unreadable { cause: String },

    /// Intact, but not signed by a current member of the family (it may be
    /// signed by a member that a packet of the same run introduces).
    #[error("not signed by a current member of the family: {signature}")]
    NotAMember { signature: String },

    /// An operation whose origin did not seal it (SPEC.md §7): forged in
    /// another member's name, or altered on the way.
    #[error("{what}")]
    Unsealed { what: String },

    /// Signed or sealed with a key `member` replaced at its epoch `epoch`
    /// (`mkreplica -rekey`), for that member's own epochs after it
    /// (SPEC.md §7.1): the old key may be in other hands. `what` says
    /// what reaches beyond `epoch`.
    #[error(
        "signed or sealed with the key \"{member}\" replaced at its epoch {epoch} (mkreplica -rekey), \
         good for its changes up to {epoch} only, yet {what}; nothing of this packet was applied"
    )]
    RetiredKey {
        member: String,
        epoch: u64,
        what: String,
    },

    /// Signed by one member, naming another as its sender.
    #[error("claims to come from {claimed} but is signed by {signer}")]
    Impersonation { claimed: String, signer: String },

    /// Content that does not match its hash.
    #[error("chunk {chunk} of {path}, as carried by the packet, does not match its id")]
    BadContent { chunk: String, path: String },

    /// Content the packet relies on this replica holding, which it does not.
    #[error(
        "chunk {chunk} of {path} is neither in the packet nor in this replica \
         (the sender believed this replica still had that content); nothing was changed"
    )]
    MissingContent {
        chunk: String,
        path: String,
        /// The path, as the packet gives it.
        rel: Vec<u8>,
    },

    /// Operations that contradict the operation log (gaps, claims in this
    /// replica's name).
    #[error("{what}")]
    OperationLog { what: String },

    /// A membership change that contradicts the known members.
    #[error("{what}")]
    Membership { what: String },

    /// The replica's filesystem has too little free space for what the
    /// packet writes (checked before anything is staged).
    #[error(
        "needs {}, has {} free on {} (the filesystem of replica {}); nothing was changed",
        human_size(*needed),
        human_size(*free),
        mount.display(),
        root.display()
    )]
    NoSpace {
        needed: u64,
        free: u64,
        mount: PathBuf,
        root: PathBuf,
    },

    /// Something a later version of the packet format added that this
    /// program cannot apply and may not ignore (SPEC.md §6): an operation
    /// kind, a path-state kind or a critical metadata key.
    #[error("{what} needs a newer syncreplica; nothing of this packet was applied")]
    NeedsNewer { what: String },

    /// Paths that cannot form one tree.
    #[error("the batch's paths could not be arranged into a consistent tree")]
    Inconsistent,

    /// Two copies of one replica (one creation packet imported twice) are
    /// both in use: the packet comes from the copy this replica did not
    /// hear from first, or carries an operation numbered like a different
    /// one this replica has. Recorded as a clone alarm (`lsreplica`).
    #[error("replica \"{replica}\" is cloned: {what}; nothing of this packet was applied")]
    Cloned { replica: String, what: String },

    /// Signed by a member removed from the family (`rmreplica`): nothing
    /// of it is accepted, not even its epoch row.
    #[error("signed by \"{replica}\", which was removed from the family {how}; nothing of this packet was applied")]
    Removed { replica: String, how: String },
}

/// Text from outside (a name, a comment or a path from a packet, a file
/// name) as it may be shown: a backslash and every control character (a
/// newline, a terminal escape sequence's ESC) escaped, as Rust escapes
/// them (`\\`, `\n`, `\u{1b}`), and every byte that is not UTF-8 as
/// `\xNN`; so it can neither forge a line of output nor drive the
/// terminal, and two distinct texts never print the same. Every command
/// prints names and paths that came from elsewhere through this.
pub fn printable_bytes(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '\\' {
                out.push_str("\\\\");
            } else if ch.is_control() {
                out.extend(ch.escape_default());
            } else {
                out.push(ch);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// [`printable_bytes`] of a string; borrowed when nothing needs escaping.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(|c| c == '\\' || c.is_control()) {
        std::borrow::Cow::Owned(printable_bytes(text.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// [`printable_bytes`] of a path.
pub fn printable_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    printable_bytes(path.as_os_str().as_bytes())
}

/// `text` with the OS's error messages in words as a sentence goes on:
/// "Permission denied (os error 13)" becomes "permission denied" (the
/// number means nothing to a user, and the capital sits mid-sentence).
/// Where a message embeds an `io::Error` it says what failed around it.
pub fn plain_os_errors(text: &str) -> std::borrow::Cow<'_, str> {
    const MARK: &str = " (os error ";
    if !text.contains(MARK) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let Some(close) = rest[at + MARK.len()..].find(')') else {
            break;
        };
        let number = &rest[at + MARK.len()..at + MARK.len() + close];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&rest[..at + MARK.len()]);
            rest = &rest[at + MARK.len()..];
            continue;
        }
        // The OS's phrase starts after the last ": " or "(" (or at the
        // start).
        let phrase_start = std::cmp::max(
            rest[..at].rfind(": ").map_or(0, |p| p + 2),
            rest[..at].rfind('(').map_or(0, |p| p + 1),
        );
        out.push_str(&rest[..phrase_start]);
        let phrase = &rest[phrase_start..at];
        let mut chars = phrase.chars();
        if let Some(first) = chars.next() {
            let second_is_lower = chars.clone().next().is_none_or(|c| !c.is_uppercase());
            match second_is_lower {
                true => out.extend(first.to_lowercase()),
                false => out.push(first),
            }
            out.push_str(chars.as_str());
        }
        rest = &rest[at + MARK.len() + close + 1..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Output that was already formatted, made safe as a whole: its control
/// characters escaped (backslashes left, so what [`printable`] escaped is
/// not escaped twice), but for newlines when `keep_newlines` (a
/// multi-line listing whose fields were made [`printable`]) and tabs.
/// The last line of defence where output leaves a command: whatever text
/// from elsewhere a message carries cannot drive the terminal, and in a
/// one-line message (an error, a warning, a log line) cannot start a
/// line of its own.
pub fn neutralized(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| c.is_control() && c != '\t' && !(keep_newlines && c == '\n');
    if !text.chars().any(escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if escape(ch) {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A size for people: `512 bytes`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`…
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn holder_detail(command: &Option<String>) -> String {
    match command {
        Some(command) => format!(" ({command})"),
        None => String::new(),
    }
}

impl Error {
    /// The `-out` directory `path` could not be made (`making`) or written
    /// to: [`Error::OutDirectory`], saying which in words.
    pub fn out_directory(path: &std::path::Path, making: bool, cause: &io::Error) -> Error {
        let what = match (making, cause.kind()) {
            (true, io::ErrorKind::NotFound) => format!(
                "it does not exist and cannot be made there (its parent is missing, or the \
                 filesystem takes no new directories: {cause})"
            ),
            (true, _) => format!("it does not exist and cannot be made ({cause})"),
            (false, io::ErrorKind::PermissionDenied) => {
                format!("this user may not create files in it ({cause})")
            }
            (false, _) => format!("a file cannot be created in it ({cause})"),
        };
        Error::OutDirectory {
            path: path.to_path_buf(),
            what,
        }
    }

    /// The `-out DIR` named is a file: a usage mistake (exit 2).
    pub fn out_is_a_file(path: &std::path::Path) -> Error {
        Error::BadArgument {
            option: "-out",
            path: path.to_path_buf(),
            why: "is a file, not a directory",
        }
    }

    /// `path`, named on the command line (after `option`), is not there:
    /// [`Error::NoSuchFile`], a pattern when it holds a shell wildcard.
    pub fn no_such_file(path: &std::path::Path, option: Option<&'static str>) -> Error {
        use std::os::unix::ffi::OsStrExt;
        let pattern = path
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b'*' | b'?' | b'['));
        Error::NoSuchFile {
            path: path.to_path_buf(),
            option,
            pattern,
        }
    }

    pub fn io(path: impl Into<PathBuf>, cause: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// A refusal of the packet at hand because of `path`.
    pub fn hostile(path: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Refused(Refusal::HostilePath {
            path: path.into(),
            why: why.into(),
        })
    }
}

impl From<packet_format::Error> for Error {
    fn from(err: packet_format::Error) -> Error {
        Error::Packet(err)
    }
}

impl From<shipping::Error> for Error {
    fn from(err: shipping::Error) -> Error {
        Error::Shipping(err)
    }
}

/// Adds the path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| Error::io(path, cause))
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_said_in_words() {
        assert_eq!(
            plain_os_errors("Packet cannot be read: opening: Permission denied (os error 13)"),
            "Packet cannot be read: opening: permission denied"
        );
        assert_eq!(
            plain_os_errors("x: Read-only file system (os error 30); nothing was done"),
            "x: read-only file system; nothing was done"
        );
        assert_eq!(
            plain_os_errors("Address already in use (os error 98)"),
            "address already in use"
        );
        // Not an OS error's mark: left alone; an acronym keeps its capitals.
        assert_eq!(plain_os_errors("a (os error x)"), "a (os error x)");
        assert_eq!(plain_os_errors("b: EIO (os error 5)"), "b: EIO");
        assert_eq!(
            plain_os_errors("cannot be made (Read-only file system (os error 30))"),
            "cannot be made (read-only file system)"
        );
    }

    #[test]
    fn text_from_elsewhere_is_made_printable() {
        let hostile = "a\\b\u{1b}[31m\nSignature: verified\r\t";
        assert_eq!(
            printable(hostile),
            "a\\\\b\\u{1b}[31m\\nSignature: verified\\r\\t"
        );
        assert!(matches!(
            printable("plain-name"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable_bytes(b"caf\xe9"), "caf\\xe9");
        // Already formatted output: backslashes stay, tabs stay, newlines
        // stay only where asked.
        assert_eq!(
            neutralized(hostile, true),
            "a\\b\\u{1b}[31m\nSignature: verified\\r\t"
        );
        assert_eq!(
            neutralized(hostile, false),
            "a\\b\\u{1b}[31m\\nSignature: verified\\r\t"
        );
        let err = Error::BadName {
            name: "x\ny".into(),
            why: "no".into(),
        };
        assert_eq!(err.to_string(), "invalid replica name \"x\\ny\": no");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1023 bytes");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(2 * 1024 * 1024), "2.0 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
