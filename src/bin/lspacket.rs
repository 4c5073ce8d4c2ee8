//! `lspacket`: list and check packets.

use syncreplica::cli::{self, lspacket::Args};
use syncreplica::listing::{self, LocalView};
use syncreplica::packets;
use syncreplica::replica::{self, Replica};

const NAME: &str = "lspacket";

fn main() {
    let args: Args = cli::parse_args();
    cli::run(NAME, || run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    // Inside a replica, check signatures against the family's keys and
    // mark the local target; outside one, list all the same.
    let replica = match replica::discover(args.replica.as_deref()) {
        Ok(root) => Some(Replica::open(&root)?),
        Err(syncreplica::Error::NoReplica { .. }) if args.replica.is_none() => None,
        Err(err) => return Err(err.into()),
    };
    let (keys, view) = match &replica {
        Some(replica) => (
            replica.members()?.iter().map(|m| m.public_key).collect(),
            Some(LocalView::of(replica)?),
        ),
        None => (Vec::new(), None),
    };
    let files = packets::collect_packet_files(&args.packets)?;
    if files.is_empty() {
        println!("No packets found.");
        return Ok(());
    }
    let mut problems = 0;
    let mut json = Vec::new();
    for file in &files {
        let exam = packet_format::examine_packet(file, &keys);
        if listing::is_problem(&exam) {
            problems += 1;
        }
        if args.fmt == "json" {
            json.push(listing::render_json(&exam, view.as_ref()));
        } else if args.short {
            println!("{}", file.display());
        } else {
            print!("{}", listing::render_text(&exam, args.long, view.as_ref()));
            println!();
        }
    }
    if args.fmt == "json" {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    if problems > 0 {
        anyhow::bail!(
            "{problems} of {} packet{} damaged or not signed by a known family member",
            files.len(),
            if files.len() == 1 { " is" } else { "s are" }
        );
    }
    Ok(())
}
