use std::path::PathBuf;

use clap::Parser;

/// Record, export and inspect a replica's changes.
///
/// syncreplica keeps directory-tree replicas of one family in step between
/// sites that are poorly connected or not connected at all. Local edits are
/// found by a scan, which compares the tree with the recorded state and
/// records each change as an operation in the replica's operation log,
/// numbered 1, 2, 3... per origin replica (its epochs).
///
/// -export scans first, then writes, for each TARGET, the operations that
/// target lacks according to this replica's epoch table (third replicas'
/// operations included, so a hub forwards them) into signed packets of at
/// most -maxsize bytes each, and raises its estimates of the targets. Only
/// the content each target lacks is shipped: renamed and copied files, and
/// chunks repeated within the export, travel once or not at all. When a
/// target lacks nothing it says so and writes nothing.
///
/// -import verifies every packet found in the PACKET_OR_DIR arguments in
/// full (signature by a current family member, every entry's digest) before
/// anything is applied, then applies them in sequence order, whatever order
/// they are found in: a packet that depends on changes not yet received
/// waits (and is applied in the same run once its predecessor is), one
/// already applied is reported, one for another family or replica is left
/// alone. Local changes are recorded first and take part in conflict
/// detection: concurrent changes to one path get one deterministic winner
/// (a modification beats a deletion, then the newest mtime), and the
/// losing content is kept beside the file as
/// NAME.sync-conflict-YYYYMMDD-HHMMSS-REPLICA.EXT. Files an import deletes
/// or replaces are kept under .syncreplica/deleted/ for soft_delete_days.
/// Each packet is applied atomically: an import killed at any point leaves
/// every path old or new, and running it again finishes the job.
#[derive(Debug, Parser)]
#[command(name = "syncreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true))]
#[command(group = clap::ArgGroup::new("destination").args(["out", "ship", "fship"]))]
pub struct Args {
    /// List local changes not yet recorded, like `git status`, without
    /// recording them.
    #[arg(long, group = "mode")]
    pub status: bool,

    /// Scan the tree and record every local change in the operation log.
    #[arg(long, group = "mode")]
    pub record: bool,

    /// Write the operations each TARGET lacks into packets (see -out).
    #[arg(long, group = "mode", requires = "destination")]
    pub export: bool,

    /// Verify and apply the packets in PACKET_OR_DIR...
    #[arg(long, group = "mode")]
    pub import: bool,

    /// With -import: import the packets waiting in the incoming bay of the
    /// storage class (-sclass; default: every class), where shipping_server
    /// puts what it receives for local replicas. Packets applied or found
    /// already applied are removed from the bay; waiting ones and other
    /// replicas' stay.
    #[arg(long, conflicts_with = "targets")]
    pub receive: bool,

    /// With -import: remove packet files once applied or found already
    /// applied (files in named directories are otherwise left in place).
    #[arg(long)]
    pub remove: bool,

    /// With -export: an existing directory that receives the packet files,
    /// under their standard names (sync_<sender>_<time>_<target>_<seq>[_<k>of<n>].zip).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// With -export: put the packet parts into the storage class's outgoing
    /// bay, each with a shipping order for its target; the next
    /// `shipping_server -poll` delivers them along the configured routes.
    #[arg(long)]
    pub ship: bool,

    /// With -export: like -ship, then deliver at once to the first hop
    /// (later hops are forwarded by the shipping servers on the way). A
    /// failed delivery stays queued for `shipping_server -poll`.
    #[arg(long)]
    pub fship: bool,

    #[command(flatten)]
    pub bays: super::BayOptions,

    /// Storage class for -ship, -fship (default: "default") and -receive
    /// (default: every class).
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// Largest size of one packet file, overhead included, with an optional
    /// k, m or g suffix (at least 64k). Larger exports are split into parts,
    /// a large file spanning parts.
    #[arg(long, value_name = "SIZE", default_value = "2g")]
    pub maxsize: String,

    /// With -export: ship the content of every change, even chunks the
    /// target is believed to hold already (for a target whose import
    /// reported missing content).
    #[arg(long)]
    pub fullcontent: bool,

    /// Comment stored in the packets, shown by lspacket.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub comment: String,

    /// Directory where packets are written before they are moved to -out
    /// (default: the -out directory; parts appear there complete).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// With -export: the siblings to export to, by name or replica id.
    /// With -import: packet files, or directories holding them.
    #[arg(value_name = "TARGET | PACKET_OR_DIR")]
    pub targets: Vec<String>,
}
