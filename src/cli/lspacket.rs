use std::path::PathBuf;

use clap::Parser;

/// List and check packets.
///
/// Prints MultiSite's listing of each packet file named, or of the packet
/// files (sync_* and repl_*) in each directory named: the path, the packet
/// type (Update or Replica Creation), the family, the comment, the targets
/// (marking the local replica and whether it can apply the packet now, is
/// waiting for earlier changes, or has applied it already), the fragment
/// (part k of n) and the packet sequence number. Every packet is fully
/// verified; a damaged one is listed as damaged, never skipped.
///
/// Signatures are checked against the keys of the family members known to
/// the replica found from the current directory (or named with -replica),
/// and, when listing the storage bays, the shipping configuration's trusted
/// keys; otherwise a signer shows as an unknown key.
#[derive(Debug, Parser)]
#[command(name = "lspacket", version, after_help = LSPACKET_EXIT)]
pub struct Args {
    /// Add the packet id, sender, creation time, epoch range per origin, the
    /// sender's epoch row, format version, size and signature status.
    #[arg(long, conflicts_with = "short")]
    pub long: bool,

    /// Print only the paths of the packets.
    #[arg(long)]
    pub short: bool,

    /// Output format: text (MultiSite's listing) or json (for scripts).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub fmt: String,

    /// The replica whose family keys and epochs to check against. Without
    /// it, the current directory and its parents are searched; outside a
    /// replica, packets are still listed.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// With no PACKET_OR_DIR: list only this storage class's bays.
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// The shipping configuration whose bays are listed, instead of looking
    /// in $SYNCREPLICA_SHIPPING_CONF, the user's config directory and
    /// /etc/syncreplica/shipping.toml.
    #[arg(long, value_name = "FILE")]
    pub shipconf: Option<PathBuf>,

    /// Packet files or directories holding them. Without any, every packet
    /// in the storage bays is listed (outgoing, incoming and return bays of
    /// every class), with its shipping order: destinations left, expiry,
    /// failed attempts; returned packets are marked as expired.
    #[arg(value_name = "PACKET_OR_DIR")]
    pub packets: Vec<PathBuf>,
}

const LSPACKET_EXIT: &str = "\
Options may be written with one dash, as in MultiSite (-long), or two (--long).

Exit status:
  0  every packet listed is intact and signed by a family member
  1  a packet is damaged, its signature is bad or its key unknown, or the command failed
  2  the command line was wrong";
