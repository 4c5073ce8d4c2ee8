use std::path::PathBuf;

use clap::Parser;

/// Make this replica a mirror of a member, or an ordinary member again.
///
/// `chreplica -mirror UPSTREAM` makes this replica a mirror of the member
/// UPSTREAM (for a migrated server kept an exact copy of its source until
/// cut-over): from then on it records no change of its own, so none is
/// ever sent as authoritative, and the family's version always wins here.
/// What the scan that starts every command finds on one of the family's
/// paths is undone: changed metadata (mode, times, owner, group, ACLs,
/// xattrs, hard links) is set back at once; a file with new content is
/// left in place, served as it is, until the family's version replaces it
/// (the import that applies it keeps the local version in
/// .syncreplica/deleted/DAY/PATH); a deletion or another kind of entry is
/// set aside (whatever is on disk is moved to .syncreplica/deleted/DAY/PATH,
/// soft-deleted as imports keep replaced versions, listed in the command's
/// report). Either way the family's version is asked for from UPSTREAM:
/// this replica's next packet to UPSTREAM carries the request, and
/// UPSTREAM's next export brings it back. Local paths the family does not have are left alone
/// and never recorded or sent. Changes recorded before it became a mirror
/// are sent as usual.
///
/// `chreplica -nomirror` makes it an ordinary member again: changes found
/// from then on are recorded and sent as any member's (files set aside
/// meanwhile stay in .syncreplica/deleted/).
///
/// lsreplica shows whether a replica is a mirror, and of whom.
#[derive(Debug, Parser)]
#[command(name = "chreplica", version, after_help = super::EXIT_STATUS_HELP)]
#[command(group = clap::ArgGroup::new("change").required(true))]
pub struct Args {
    /// Make this replica a mirror of member UPSTREAM (by name or replica id).
    #[arg(long, value_name = "UPSTREAM", group = "change")]
    pub mirror: Option<String>,

    /// Make this replica an ordinary member again.
    #[arg(long, group = "change")]
    pub nomirror: bool,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,
}

use crate::cli;
use crate::error::printable;
use crate::replica::{self, Replica};

const NAME: &str = "chreplica";

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut replica =
        Replica::open(&replica::discover(args.replica.as_deref())?)?.lock("chreplica")?;
    cli::print_lock_takeover(NAME, &replica);
    let name = printable(&replica.identity.replica_name).into_owned();
    let before = replica.state().mirror_upstream()?;
    let upstream = match &args.mirror {
        Some(upstream) => {
            let member = replica.member(upstream)?;
            if member.replica == replica.identity.replica_id {
                anyhow::bail!(
                    "\"{}\" is this replica; a mirror mirrors another member (name the source it copies)",
                    printable(upstream)
                );
            }
            if let Some(removed) = replica.state().removal_of(&member.replica)? {
                anyhow::bail!(
                    "\"{}\" was removed from the family {}; name a current member",
                    printable(&member.name),
                    crate::sync::family::removal_text(&replica, &removed)?
                );
            }
            Some(member)
        }
        None => None,
    };
    let id = upstream.as_ref().map(|m| m.replica);
    replica
        .state_mut()
        .transaction(|tx| Ok(crate::store::state::set_mirror(tx, id.as_ref())?))?;
    match (&upstream, before) {
        (Some(member), _) => outln!(
            "Replica \"{name}\" is now a mirror of \"{}\": it records no change of its own, and local \
             changes to the family's paths are undone and asked for again from \"{}\".",
            printable(&member.name),
            printable(&member.name)
        ),
        (None, Some(_)) => outln!(
            "Replica \"{name}\" is an ordinary member again: its changes are recorded and sent from now on."
        ),
        (None, None) => outln!("Replica \"{name}\" is an ordinary member already; nothing changed."),
    }
    Ok(())
}
