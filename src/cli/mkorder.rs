use std::path::PathBuf;

use clap::Parser;

/// Submit packet files to the shipping system, as MultiSite's mkorder.
///
/// Puts each packet (written with -out, carried in by hand, or taken back
/// from a return bay) into the outgoing bay of the storage class with a
/// shipping order, for the DESTINATIONs named or, without any, for the
/// targets in the packet's header. The next `shipping_server -poll`
/// delivers it, or at once with -fship. Every packet is checked first: a
/// damaged one, or one already queued, submits nothing.
#[derive(Debug, Parser)]
#[command(name = "mkorder", version, after_help = super::EXIT_STATUS_HELP)]
pub struct Args {
    /// The packet file to submit; repeat for several.
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

    /// Replicas to deliver to (default: the packet's targets).
    #[arg(value_name = "DESTINATION")]
    pub destinations: Vec<String>,
}
