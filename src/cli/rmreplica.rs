use std::path::PathBuf;

use clap::Parser;

/// Remove a member from the family for good.
///
/// Records, as a signed change of this replica, that the member NAME has
/// left the family (a decommissioned site, a cloned copy). The next export
/// to each sibling carries the removal; each sibling applies it when it
/// imports that packet. From then on a replica that has the removal
/// accepts no packet the removed member signs (syncreplica -import refuses
/// it and says so), exports nothing to it, and no longer waits for its
/// confirmations (nothing is resent to it). Changes the removed member
/// made before, relayed by other members, are still accepted.
///
/// A replica cannot remove itself, and a removal cannot be undone: to take
/// a removed site back, make it a new member under a new name with
/// mkreplica -export. Asks for confirmation unless -force is given.
///
/// What the removal cannot take back, and what to do about it. Packets
/// written to the member before its removal were encrypted to its key,
/// which its site still holds: whoever has both a stick and that key reads
/// them. So, once every sibling has the removal (lsreplica -long there):
/// rmreplica itself takes the member out of the shipping orders in this
/// host's outgoing bays on a directory (shipping.toml as -ship finds it;
/// a packet queued for it alone is deleted); in the other bays (return
/// bays, bays on S3, other hosts' and hubs' bays) delete the packets and
/// shipping orders addressed to the member (lspacket lists each packet's
/// targets; they will never be delivered) and, everywhere, those it sent
/// (they are refused); remove its [destinations] table and any [routes] through it
/// from shipping.toml; collect the USB sticks and other media that
/// carried packets to or from it and wipe them; destroy its creation
/// packet's passphrase file or key file (mkreplica -export -keyout) if any
/// is left; and at its site, if the machine is yours, delete the state
/// folder DIR/.syncreplica (its signing and encryption keys) or the whole
/// replica. If the site may be in hostile hands (a stolen laptop), treat
/// every file it held as disclosed: removing it stops what is sent from
/// now on, nothing before.
#[derive(Debug, Parser)]
#[command(name = "rmreplica", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// Remove without asking for confirmation.
    #[arg(long)]
    pub force: bool,

    /// The replica's root. Without it, the current directory and then its
    /// parents are searched for a replica.
    #[arg(long, value_name = "DIR")]
    pub replica: Option<PathBuf>,

    /// The member to remove, by name or replica id.
    #[arg(value_name = "NAME")]
    pub name: String,
}

use crate::cli;
use crate::error::printable;
use crate::replica::{self, Replica};

const NAME: &str = "rmreplica";

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Checked, and confirmed, on the replica opened for reading: a refused
    // or unconfirmed removal touches nothing, and no lock is held while
    // the question waits for an answer.
    let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
    let member = crate::sync::family::check_removable(&replica, &args.name)?;
    if !args.force {
        cli::require_terminal_to_confirm(format!(
            "removing member \"{}\"",
            printable(&member.name)
        ))?;
    }
    if !args.force
        && !cli::confirm(&format!(
            "Remove \"{}\" from family \"{}\" for good?",
            printable(&member.name),
            printable(&replica.identity.family_name)
        ))?
    {
        anyhow::bail!(
            "not confirmed; \"{}\" stays a member (use -force to skip the question)",
            member.name
        );
    }
    drop(replica);
    let mut replica = Replica::open(&replica::discover(args.replica.as_deref())?)?.lock(NAME)?;
    cli::print_lock_takeover(NAME, &replica);
    let removal = crate::sync::family::remove_member(&mut replica, &args.name)?;
    outln!(
        "Removed \"{}\" ({}) from family \"{}\" (change {} of this replica); \
         the next export to each sibling carries the removal.",
        printable(&removal.member.name),
        removal.member.replica,
        printable(&replica.identity.family_name),
        removal.epoch
    );
    withdraw_orders(&replica.identity.family_id, &removal.member.name);
    Ok(())
}

/// Takes the removed member out of the shipping orders of this host's
/// bays (shipping.toml as `-ship` finds it), saying what changed. The
/// removal is recorded already: a shipping configuration that cannot be
/// read is a warning here, not a failure.
fn withdraw_orders(family: &crate::ops::Id, member: &str) {
    let withdrawn = crate::ship::Shipping::load(None)
        .and_then(|shipping| shipping.withdraw(family, member, chrono::Utc::now()));
    match withdrawn {
        Ok((changed, skipped)) => {
            for (packet, removed) in &changed {
                match removed {
                    true => outln!(
                        "Removed queued packet {packet}: it was for \"{}\" only.",
                        printable(member)
                    ),
                    false => outln!(
                        "Withdrew \"{}\" from the shipping order of {packet}.",
                        printable(member)
                    ),
                }
            }
            for bay in &skipped {
                errln!(
                    "{NAME}: warning: the orders in {bay} (S3) were not looked at: delete those for \"{}\" there (lspacket -shipconf lists them)",
                    printable(member)
                );
            }
        }
        Err(err) => errln!(
            "{NAME}: warning: the shipping orders for \"{}\" in this host's bays were not withdrawn: {err}",
            printable(member)
        ),
    }
}
