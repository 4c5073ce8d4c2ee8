use std::path::PathBuf;

use clap::Parser;

/// List the members of a replica's family.
///
/// Prints each member's name, replica id and the fingerprint of its signing
/// key (SHA-256 of the ed25519 public key; "rekeyed at its epoch E" when
/// the member replaced its keys with mkreplica -rekey), marking the local replica;
/// CLONED for a member of which two copies are in use (one creation packet
/// imported twice: syncreplica -import refuses the second copy's packets);
/// REMOVED for a member removed from the family with rmreplica (its
/// packets are refused, nothing is exported to it); and RESTORING for this
/// replica while a restore from a backup (mkreplica -restore) is
/// unfinished.
#[derive(Debug, Parser)]
#[command(name = "lsreplica", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// Also show each member's public key (64 hex digits, what a relay
    /// host's shipping.toml lists in trusted_keys), the packet format it
    /// writes (its newest packet here says; exports to it carry nothing
    /// that format predates), its incarnation id (for this replica its own
    /// copy's, for the others the copy whose packets are accepted here:
    /// what a clone alarm names), and what this replica knows of it: the last
    /// packet sent to it and received from it, when it was last heard
    /// from, the changes it has not confirmed having, its epoch row, any
    /// clone alarm about it, its removal, its key rotations (mkreplica
    /// -rekey: the epoch, the key replaced), when this replica's tree was
    /// last verified the same as its (the tree digest of its packets; see
    /// syncreplica -verify), and for this replica the size of its
    /// operation log (operations, bytes) and what an unfinished restore
    /// waits for.
    #[arg(long)]
    pub long: bool,

    /// Output format: text (MultiSite's listing) or json (for scripts; a
    /// "version" field gives the shape's version).
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub fmt: super::Format,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// Members to list, by name or replica id (default: every member); a
    /// name that is no member of the family is an error.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

use crate::replica::{self, Replica};

pub fn run(args: Args) -> anyhow::Result<()> {
    let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    super::warn_config("lsreplica", &replica)?;
    if args.fmt == super::Format::Json {
        let mut listing = crate::cli::render::lsreplica::members(&replica)?;
        crate::cli::render::lsreplica::select(
            &mut listing,
            &args.names,
            &replica.identity.family_name,
        )?;
        outln!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    out!(
        "{}",
        crate::cli::render::lsreplica::render_members(&replica, args.long, &args.names)?
    );
    Ok(())
}
