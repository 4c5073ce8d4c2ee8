//! `shipping_server`: glue over [`syncreplica::cli::shipping_server`].

use syncreplica::cli::{self, shipping_server::Args};

fn main() {
    let args: Args = cli::parse_args();
    std::process::exit(cli::shipping_server::run(args));
}
