//! `shipping_server`: glue over [`shipping::cli`].

fn main() {
    let args: shipping::cli::Args = shipping::cli::parse_args();
    std::process::exit(shipping::cli::run(args));
}
