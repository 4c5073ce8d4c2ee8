//! `shipping_server`'s command line and its run: the work itself is in
//! the shipping crate ([`shipping::poll`], [`shipping::server`]); this adds
//! the options, the log on stdout, the signals and the exit status.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use shipping::order::format_time;
use shipping::poll::{PassReport, Shipper};
use shipping::server::{run_until_stopped, ConfigWatch, Listening};
use shipping::{ShippingConfig, DEFAULT_STORAGE_CLASS};

use crate::ship_trust::ReplicaMembers;

/// Deliver queued packets to other sites and receive theirs over HTTP.
///
/// Moves packets between sites, as MultiSite's shipping_server does: works
/// through the shipping orders in the storage bays (-poll, or the ORDERs
/// named) and receives packets from other hosts over HTTP (-listen).
#[derive(Parser, Debug)]
#[command(
    name = "shipping_server",
    version,
    group = clap::ArgGroup::new("work").args(["poll", "listen", "orders"]).required(true).multiple(true),
    after_help = AFTER_HELP,
)]
pub struct Args {
    /// The shipping configuration to use, instead of looking in
    /// $SYNCREPLICA_SHIPPING_CONF, the user's config directory and
    /// /etc/syncreplica/shipping.toml (in that order).
    #[arg(long, value_name = "FILE")]
    pub shipconf: Option<PathBuf>,

    /// Storage class to work on: with -poll, only this class's orders
    /// (default: every class); with -listen, the class whose bays receive
    /// packets (default: "default").
    #[arg(long, value_name = "CLASS")]
    pub sclass: Option<String>,

    /// Work through every shipping order in the outgoing bays: deliver each
    /// packet through the next hop of each destination's route, retry
    /// failed deliveries whose backoff has passed, and move expired packets
    /// to the return bay (running the notify program). Exits 1 when a
    /// delivery failed (it stays queued and is retried at a later pass).
    #[arg(long)]
    pub poll: bool,

    /// With -poll: keep running, one pass every SECS seconds, until SIGTERM
    /// or SIGINT.
    #[arg(long, value_name = "SECS", requires = "poll", value_parser = interval_arg)]
    pub interval: Option<u64>,

    /// Receive packets over HTTP (PUT /packets/NAME) on ADDR (IP:PORT;
    /// default: `listen` in shipping.toml) until SIGTERM or SIGINT. Only
    /// packets signed by a trusted key are stored. With -poll, also
    /// forwards (every -interval seconds, default 60).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "", value_parser = listen_arg)]
    pub listen: Option<String>,

    /// Shipping orders (PACKET.order files, or their packets) to work
    /// through now, in any directory, or in a bay on S3
    /// (s3://BUCKET/PREFIX/outgoing/PACKET.order), whatever their retry
    /// backoff; nothing else is touched. All are checked first: one that is missing,
    /// unreadable or of an unknown storage class delivers none.
    #[arg(value_name = "ORDER", conflicts_with_all = ["poll", "listen"])]
    pub orders: Vec<PathBuf>,

    /// For one pass run by hand (-poll without -interval, or ORDERs): no
    /// progress line and no log lines; the exit status still says whether
    /// a delivery failed. The progress line (bytes, percentage, rate, time
    /// left) is shown only when standard error is a terminal, once a
    /// delivery has run for a second. A server
    /// (-listen, -interval) always logs.
    #[arg(long, short = 'q', conflicts_with_all = ["listen", "interval"])]
    pub quiet: bool,
}

/// The text after the options in --help: the configuration in brief
/// (its full format is a page of its own, syncreplica-shipping(5), and
/// shipping/FORMAT.md), the exit status, the option spelling.
const AFTER_HELP: &str = "\
The configuration (shipping.toml) has storage classes with their bays and expiry, routes, \
destinations (a URL or a directory), local replicas, trusted keys, min_free_space, max_packet_size, \
the notify program and the listen address. Its format and that of the shipping orders are in \
syncreplica-shipping(5) (man 5 syncreplica-shipping; shipping/FORMAT.md in the source), with an example.

Exit status:
  0  success
  1  a delivery or an order failed (it is kept and retried), or the server could not start
  2  the command line was wrong

Options are written with one dash, as in MultiSite (-poll); two dashes work as well.";

/// One log line, stamped, on stdout (lines of a daemon's log). Its control
/// characters are escaped, newlines included: packet and upload names
/// in it come from elsewhere, and can neither drive a terminal showing
/// the log nor forge a line of it.
fn log_line(line: &str) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let now = format_time(&chrono::Utc::now());
    let line = crate::error::neutralized(line, false);
    crate::cli::above_progress(|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{now} shipping_server: {line}");
        let _ = out.flush();
    });
}

/// `-quiet`: [`log_line`] writes nothing.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs `shipping_server`; returns the exit status.
pub fn run(args: Args) -> i32 {
    QUIET.store(args.quiet, std::sync::atomic::Ordering::Relaxed);
    crate::cli::show_progress(args.quiet);
    match execute(&args) {
        Ok(report) if report.is_clean() => 0,
        Ok(_) => 1,
        Err(err) => {
            // `{:#}` is the message with its causes, joined by ": ".
            errln!(
                "shipping_server: error: {}",
                crate::error::plain_os_errors(&format!("{err:#}"))
            );
            if let Some(hint) = hint(&err) {
                errln!("shipping_server: hint: {hint}");
            }
            // The library's exit rule (2 for a value that names nothing
            // there is), as the other commands apply it.
            match err.chain().find_map(|e| e.downcast_ref::<crate::Error>()) {
                Some(library) => crate::cli::report::exit_code(library),
                None => 1,
            }
        }
    }
}

fn hint(err: &anyhow::Error) -> Option<String> {
    let library = err.chain().find_map(|e| {
        e.downcast_ref::<shipping::Error>()
            .or_else(|| match e.downcast_ref() {
                Some(crate::Error::ShippingConfig { cause, .. }) => Some(cause),
                _ => None,
            })
    })?;
    match library {
        shipping::Error::UnknownClass { .. } => {
            Some("storage classes are the [classes.NAME] tables of shipping.toml".into())
        }
        // A hint only where the cause is known: a wrong hint sends the
        // administrator looking for a server that is not there.
        shipping::Error::Listen { kind, .. } => match kind {
            std::io::ErrorKind::AddrInUse => Some(
                "another program (another shipping_server?) listens on that address: stop it, or choose another port"
                    .into(),
            ),
            std::io::ErrorKind::PermissionDenied => Some(
                "ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a port of 1024 or above"
                    .into(),
            ),
            std::io::ErrorKind::AddrNotAvailable => Some(
                "that IP is not an address of this host: use 0.0.0.0 to listen on every address"
                    .into(),
            ),
            _ => None,
        },
        shipping::Error::S3Access { hint, .. } => Some(hint.clone()),
        _ => None,
    }
}

fn execute(args: &Args) -> anyhow::Result<PassReport> {
    let (config, source) = ShippingConfig::load(args.shipconf.as_deref())?;
    let classes: Vec<String> = match &args.sclass {
        Some(class) => {
            config
                .class(class)
                .map_err(|cause| crate::Error::ShippingConfig {
                    config: crate::ship::config_name(&source),
                    cause,
                })?;
            vec![class.clone()]
        }
        None => config.classes.keys().cloned().collect(),
    };
    let shipper = Shipper {
        config: &config,
        log: &log_line,
    };
    let now = chrono::Utc::now;

    if !args.orders.is_empty() {
        // An ORDER that names nothing there is is a usage mistake (exit 2),
        // said before any order is worked; s3:// names are checked by the
        // store.
        for order in &args.orders {
            if !order.to_string_lossy().starts_with("s3://")
                && std::fs::symlink_metadata(order).is_err()
            {
                return Err(crate::error::Error::no_such_file(order, None).into());
            }
        }
        let report = shipper.process_paths(&args.orders, now())?;
        log_line(&report.summary());
        return Ok(report);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let daemon = args.listen.is_some() || args.interval.is_some();
    if daemon {
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("cannot install the signal handler")?;
        }
    }

    let listening = match &args.listen {
        None => None,
        Some(text) => {
            let addr: SocketAddr = if text.is_empty() {
                config.listen.ok_or_else(|| {
                    anyhow!(
                        "no address to listen on: give -listen IP:PORT or set `listen` in {}",
                        where_to_configure(&source)
                    )
                })?
            } else {
                text.parse().map_err(|_| {
                    anyhow!(
                        "-listen {text:?}: not an address; expected IP:PORT, such as 0.0.0.0:7421"
                    )
                })?
            };
            let class = args.sclass.as_deref().unwrap_or(DEFAULT_STORAGE_CLASS);
            let listening = Listening::open(&config, class, addr, &log_line)?;
            // Before the listening line, which tells a waiting script it is up.
            if config.trusted_keys.is_empty() && config.trusted_replicas.is_empty() {
                log_line(&format!(
                    "WARNING: no trusted key: every upload is refused (403) until {} sets \
                     trusted_replicas (a replica root here) or trusted_keys",
                    where_to_configure(&source)
                ));
            }
            log_line(&format!(
                "listening on {} (storage class {class}, configuration: {source})",
                listening.server.addr()
            ));
            Some(listening)
        }
    };

    if !daemon {
        let report = shipper.poll(&classes, now())?;
        log_line(&report.summary());
        return Ok(report);
    }

    let poll_every = args
        .poll
        .then(|| Duration::from_secs(args.interval.unwrap_or(60)));
    // Destinations and routes are added while the server runs: each pass
    // re-reads the file when it changed.
    let watch = poll_every.and(source.path()).map(|path| {
        ConfigWatch::new(
            path,
            shipping::config::Lookup::from_environment(None)
                .data_dir
                .as_deref(),
            &classes,
            args.sclass.is_none(),
        )
    });
    run_until_stopped(
        &shipper,
        &classes,
        listening.as_ref(),
        poll_every,
        &ReplicaMembers,
        &stop,
        watch,
    )?;
    log_line("stopped");
    Ok(PassReport::default())
}

/// The shipping.toml to edit, for a message: the file read, or where to
/// create one when the built-in default applies.
pub(crate) fn where_to_configure(source: &shipping::config::ConfigSource) -> String {
    match source.path() {
        Some(path) => path.display().to_string(),
        None => match shipping::config::Lookup::from_environment(None).user_config_dir {
            Some(dir) => format!(
                "a shipping.toml (none was found; the built-in default applies; create {} \
                 or /etc/syncreplica/shipping.toml)",
                dir.join("shipping.toml").display()
            ),
            None => "a shipping.toml (none was found; the built-in default applies; create \
                     /etc/syncreplica/shipping.toml or name one with -shipconf)"
                .to_string(),
        },
    }
}

/// clap's check of `-listen ADDR`: empty (the configured address) or
/// IP:PORT.
fn listen_arg(value: &str) -> Result<String, String> {
    if value.is_empty() || value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(value.to_string());
    }
    // Say what is wrong with a port that is a number but not a port.
    if let Some((_, port)) = value.rsplit_once(':') {
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "port {port} is out of range: a port is a number from 0 to 65535 (e.g. 0.0.0.0:7421)"
            ));
        }
    }
    Err("expected IP:PORT, e.g. 0.0.0.0:7421 or [::]:7421".into())
}

/// clap's check of `-interval SECS`: a whole number of seconds, at least 1.
fn interval_arg(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err("the interval is at least 1 second".into()),
        Ok(secs) => Ok(secs),
        Err(_) => Err(format!(
            "not a whole number of seconds (from 1 to {}; e.g. 60)",
            u64::MAX
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
