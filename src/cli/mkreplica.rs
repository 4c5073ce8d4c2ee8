use std::path::PathBuf;

use clap::Parser;

/// Create a replica family or a new member of one.
///
/// `mkreplica -init -family FAMILY NAME` creates a new family whose first
/// replica, NAME, is rooted at DIR (default: the current directory). Files
/// already in DIR become the replica's initial content and are recorded as
/// its first operations. The replica's state lives in DIR/.syncreplica/:
/// its identity, its ed25519 signing key (mode 0600), the family's members
/// and the state database.
///
/// `mkreplica -export -out DIR NEWNAME` (run in an existing replica) makes a
/// new member NEWNAME: it writes a replica-creation packet with all content
/// and the family's members into DIR (repl_<sender>_<time>_<NEWNAME>[_<k>of<n>].zip),
/// and the new member's secret signing key into DIR/NEWNAME.key (mode 0600).
/// The packet may travel by any route; carry the key file separately or by
/// a trusted route. Siblings learn the new member's public key with this
/// replica's next updates.
///
/// `mkreplica -import -replica DIR PACKET_OR_DIR...` creates the new replica
/// at DIR, which must be absent or empty, from the creation packet's parts
/// and NEWNAME.key (found beside the packet, or named with -key). It prints
/// the fingerprint of the key that signed the packet, for checking out of
/// band; with -fingerprint it refuses a packet signed by any other key.
#[derive(Debug, Parser)]
#[command(name = "mkreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
pub struct Args {
    /// Create a new replica family with NAME as its first member.
    #[arg(long, group = "mode", requires = "family")]
    pub init: bool,

    /// Write a replica-creation packet for a new member NAME (needs -out).
    #[arg(long, group = "mode", requires = "out")]
    pub export: bool,

    /// Create a replica from a creation packet's parts.
    #[arg(long, group = "mode")]
    pub import: bool,

    /// With -init: name of the new family.
    #[arg(long, value_name = "FAMILY")]
    pub family: Option<String>,

    /// With -export: existing directory that receives the packet parts and
    /// the new member's key file.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// With -export: largest size of one packet file, with an optional k, m
    /// or g suffix (at least 64k).
    #[arg(long, value_name = "SIZE", default_value = "2g")]
    pub maxsize: String,

    /// With -export: comment stored in the packet.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub comment: String,

    /// With -import: the SHA-256 fingerprint (64 hex digits) the packet's
    /// signing key must have, as printed by mkreplica -export at the sender.
    #[arg(long, value_name = "HEX")]
    pub fingerprint: Option<String>,

    /// With -import: the new member's key file (default: NEWNAME.key beside
    /// the packet).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Replica root: for -init and -import, where the new replica goes
    /// (default: the current directory); for -export, the exporting replica
    /// (default: found from the current directory up).
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// -init and -export: NAME of the new replica (letters, digits, '_', '-',
    /// '.'). -import: the creation packet's parts, or directories holding them.
    #[arg(value_name = "NAME | PACKET_OR_DIR", required = true)]
    pub names: Vec<String>,
}
