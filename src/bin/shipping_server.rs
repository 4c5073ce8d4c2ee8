//! `shipping_server`: glue over [`syncreplica::cli::shipping_server`].

use syncreplica::cli::{self, shipping_server::Args};

fn main() -> std::process::ExitCode {
    let args: Args = cli::parse_args();
    std::process::ExitCode::from(cli::shipping_server::run(args) as u8)
}
