//! `lsepoch`: print the epoch table.

use syncreplica::cli::{self, lsepoch::Args};
use syncreplica::replica::{self, Replica};

fn main() {
    let args: Args = cli::parse_args();
    cli::run("lsepoch", || {
        let replica = Replica::open(&replica::discover(args.replica.as_deref())?)?;
        print!(
            "{}",
            syncreplica::sync::epochs::render_rows(&replica, &args.rows)?
        );
        Ok(())
    })
}
