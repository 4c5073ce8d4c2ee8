use std::path::PathBuf;

use clap::Parser;

/// Submit packet files to the shipping system, as MultiSite's mkorder.
///
/// Puts each packet (written with -out, carried in by hand, or taken back
/// from a return bay) into the outgoing bay of the storage class with a
/// shipping order, for the DESTINATIONs named or, without any, for the
/// targets in the packet's header. The next `shipping_server -poll`
/// delivers it, or at once with -fship. Every packet is checked first: a
/// damaged one, one already queued, or a name given twice submits nothing
/// (and creates no bay).
#[derive(Debug, Parser)]
#[command(name = "mkorder", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// The packet file to submit; repeat -data for several (-data A.zip
    /// -data B.zip): a second file after one -data is taken for a
    /// DESTINATION, and refused. A packet in a bay on S3 is named by its
    /// URL, s3://BUCKET/PREFIX/BAY/PACKET (BAY the outgoing, incoming or
    /// return bay of a storage class in the shipping configuration), as
    /// the expiry notice names a returned packet.
    #[arg(long, value_name = "PACKET", required = true)]
    pub data: Vec<PathBuf>,

    /// Leave the packets for the next `shipping_server -poll` (the default).
    #[arg(long, conflicts_with = "fship")]
    pub ship: bool,

    /// Deliver to the first hop at once; a failed delivery stays queued.
    #[arg(long)]
    pub fship: bool,

    /// Keep the packet files where they are (without it they are moved
    /// into the storage bay).
    #[arg(long)]
    pub copy: bool,

    #[command(flatten)]
    pub bays: super::BayOptions,

    /// Storage class whose outgoing bay takes the packets (default: "default").
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// No progress line and no summary lines, only warnings and errors
    /// (on standard error). The progress line of -fship's deliveries is
    /// shown only when standard error is a terminal, once a delivery has
    /// run for a second.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Replicas to deliver to (default: the packet's targets).
    #[arg(value_name = "DESTINATION")]
    pub destinations: Vec<String>,
}

use crate::ship::{self, Shipping};

/// Runs the command.
pub fn run_ref(args: &Args) -> anyhow::Result<()> {
    check_destinations(&args.destinations)?;
    let shipping = Shipping::load(args.bays.shipconf.as_deref())?;
    let class = shipping.class_name(args.sclass.as_deref())?;
    let now = chrono::Utc::now();
    let expires = match &args.bays.pexpire {
        Some(text) => Some(ship::parse_expiry(text, now)?),
        None => None,
    };
    check_data(&args.data)?;
    let submitted = ship::submit_files(
        &shipping,
        &class,
        &args.data,
        &args.destinations,
        expires,
        args.copy,
        now,
    )?;
    for item in &submitted {
        outln!(
            "Submitted {} for {} in storage class {class} (order {}/{}; expires {}).",
            item.order.packet,
            item.order.destinations.join(", "),
            item.bay,
            shipping::order::order_name(&item.order.packet),
            shipping::order::format_time(&item.order.expires)
        );
    }
    if args.fship {
        let names: Vec<String> = submitted.iter().map(|s| s.order.packet.clone()).collect();
        let report = shipping.forward_now(&class, &names, &|line| outln!("  {line}"))?;
        if !report.is_clean() {
            anyhow::bail!(
                "{}; the packets stay queued and shipping_server -poll retries them",
                report.summary()
            );
        }
    }
    Ok(())
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::cli::report::set_quiet(args.quiet);
    crate::cli::show_progress(args.quiet);
    run_ref(&args)
}

/// `-data` names packet files, each once: a directory or a file named twice
/// is a usage mistake (exit 2), said before anything is submitted.
fn check_data(data: &[std::path::PathBuf]) -> Result<(), crate::error::Error> {
    let mut seen = std::collections::HashSet::new();
    for path in data {
        if path.is_dir() {
            return Err(crate::error::Error::BadArgument {
                option: "-data",
                path: path.clone(),
                why: "is a directory; -data names packet files (DIR/sync_*.zip names those in it)",
            });
        }
        // Two spellings of one file (./a.zip and a.zip) are one file.
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !seen.insert(key) {
            return Err(crate::error::Error::BadArgument {
                option: "-data",
                path: path.clone(),
                why: "is named twice; name each packet file once",
            });
        }
    }
    Ok(())
}

/// A DESTINATION that is a file or a path (`mkorder -data A.zip B.zip`,
/// where B.zip was meant as a second packet) is a usage mistake (exit 2):
/// replica names hold no `/` and rarely end in `.zip`.
fn check_destinations(destinations: &[String]) -> Result<(), crate::error::Error> {
    for destination in destinations {
        let path = std::path::Path::new(destination);
        if destination.contains('/') || destination.ends_with(".zip") || path.is_file() {
            return Err(crate::error::Error::BadArgument {
                option: "DESTINATION",
                path: path.to_path_buf(),
                why: "is a file, not a replica name; name each packet with its own -data \
                      (mkorder -data A.zip -data B.zip)",
            });
        }
    }
    Ok(())
}
