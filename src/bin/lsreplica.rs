//! `lsreplica`: list the family's members.

use syncreplica::cli::{self, lsreplica::Args};
use syncreplica::replica::{self, Replica};

fn main() {
    let args: Args = cli::parse_args();
    cli::run("lsreplica", || {
        let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
        print!(
            "{}",
            syncreplica::cli::render::lsreplica::render_members(&replica, args.long)?
        );
        Ok(())
    })
}
