//! `shipping_server`'s command line, and the single-dash option handling
//! every syncreplica command shares.

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Command, CommandFactory, FromArgMatches, Parser};

use crate::config::ShippingConfig;
use crate::http::HttpServer;
use crate::order::format_time;
use crate::poll::{PassReport, Shipper};
use crate::DEFAULT_STORAGE_CLASS;

/// Uploads received at the same time; later connections wait to be
/// accepted. Each holds about 200 KiB of buffers.
pub const HTTP_WORKERS: usize = 64;

/// The formats of shipping orders, bays and `shipping.toml`, for the man page.
pub const FORMATS: &str = include_str!("../FORMAT.md");

/// Rewrites `-name` and `-name=value` into `--name` and `--name=value` when
/// `name` is a long option of `command`. Values of options are left alone,
/// and so is everything after `--`.
pub fn normalize_args(command: &Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut takes_value = std::collections::HashMap::new();
    for arg in command.get_arguments() {
        let needs_value = arg.get_action().takes_values();
        if let Some(long) = arg.get_long() {
            takes_value.insert(long.to_string(), needs_value);
        }
        for alias in arg.get_all_aliases().unwrap_or_default() {
            takes_value.insert(alias.to_string(), needs_value);
        }
    }
    takes_value.insert("help".into(), false);
    if command.get_version().is_some() {
        takes_value.insert("version".into(), false);
    }

    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut skip_value = false;
    let mut rest_positional = false;
    for arg in iter {
        if rest_positional || skip_value {
            skip_value = false;
            out.push(arg);
            continue;
        }
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            rest_positional = true;
            out.push(arg);
            continue;
        }
        let (dashes, body) = if let Some(body) = bytes.strip_prefix(b"--") {
            (2, body)
        } else if let Some(body) = bytes.strip_prefix(b"-") {
            (1, body)
        } else {
            out.push(arg);
            continue;
        };
        let name_end = body.iter().position(|&b| b == b'=').unwrap_or(body.len());
        let name = String::from_utf8_lossy(&body[..name_end]);
        match takes_value.get(name.as_ref()) {
            Some(&needs_value) if dashes == 2 || name.len() > 1 => {
                skip_value = needs_value && name_end == body.len();
                let mut rewritten = b"--".to_vec();
                rewritten.extend_from_slice(body);
                out.push(OsString::from_vec(rewritten));
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Moves packets between sites, as MultiSite's shipping_server does: works
/// through the shipping orders in the storage bays (-poll, or the ORDERs
/// named) and receives packets from other hosts over HTTP (-listen).
#[derive(Parser, Debug)]
#[command(
    name = "shipping_server",
    version,
    group = clap::ArgGroup::new("work").args(["poll", "listen", "orders"]).required(true).multiple(true),
    after_long_help = after_help(),
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
    #[arg(long, value_name = "SECS", requires = "poll", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: Option<u64>,

    /// Receive packets over HTTP (PUT /packets/NAME) on ADDR (IP:PORT;
    /// default: `listen` in shipping.toml) until SIGTERM or SIGINT. Only
    /// packets signed by a trusted key are stored. With -poll, also
    /// forwards (every -interval seconds, default 60).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    pub listen: Option<String>,

    /// Shipping orders (PACKET.order files, or their packets) to work
    /// through now, in any directory, whatever their retry backoff; nothing
    /// else is touched.
    #[arg(value_name = "ORDER", conflicts_with_all = ["poll", "listen"])]
    pub orders: Vec<PathBuf>,
}

fn after_help() -> String {
    format!(
        "The configuration (shipping.toml) has storage classes with their bays and expiry, routes, \
destinations (a URL or a directory), local replicas, trusted keys, min_free_space, max_packet_size, \
the notify program and the listen address; the formats below end with an example.\n\n\
Exit status:\n  0  success\n  1  a delivery or an order failed (it is kept and retried), or the server could not start\n  2  the command line was wrong\n\n\
Options may be written with one dash, as in MultiSite (-poll), or two (--poll).\n\n{FORMATS}"
    )
}

/// Parses the process arguments (single-dash options accepted); prints
/// clap's message as `shipping_server: …` and exits 2 on a bad command line.
pub fn parse_args<T: CommandFactory + FromArgMatches>() -> T {
    let command = T::command();
    let name = command.get_name().to_string();
    let args = normalize_args(&command, std::env::args_os().collect());
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            std::process::exit(0);
        }
        Err(err) => {
            let _ = write!(std::io::stderr(), "{name}: {}", err.render());
            std::process::exit(2);
        }
    }
}

/// One log line, stamped, on stdout (lines of a daemon's log).
fn log_line(line: &str) {
    let now = format_time(&chrono::Utc::now());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{now} shipping_server: {line}");
    let _ = out.flush();
}

/// Runs `shipping_server`; returns the exit status.
pub fn run(args: Args) -> i32 {
    match execute(&args) {
        Ok(report) if report.is_clean() => 0,
        Ok(_) => 1,
        Err(err) => {
            // `{:#}` is the message with its causes, joined by ": ".
            eprintln!("shipping_server: error: {err:#}");
            if let Some(hint) = hint(&err) {
                eprintln!("shipping_server: hint: {hint}");
            }
            1
        }
    }
}

fn hint(err: &anyhow::Error) -> Option<String> {
    let library = err.chain().find_map(|e| e.downcast_ref::<crate::Error>())?;
    match library {
        crate::Error::UnknownClass { .. } => {
            Some("storage classes are the [classes.NAME] tables of shipping.toml".into())
        }
        crate::Error::Listen { .. } => {
            Some("is another shipping_server running on that address?".into())
        }
        _ => None,
    }
}

fn execute(args: &Args) -> anyhow::Result<PassReport> {
    let (config, source) = ShippingConfig::load(args.shipconf.as_deref())?;
    let classes: Vec<String> = match &args.sclass {
        Some(class) => {
            config.class(class)?;
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

    let listener = match &args.listen {
        None => None,
        Some(text) => {
            let addr: SocketAddr = if text.is_empty() {
                config.listen.ok_or_else(|| {
                    anyhow!(
                        "no address to listen on: give -listen IP:PORT or set `listen` in {source}"
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
            let storage = config.class(class)?;
            let idle = config
                .idle_timeout
                .unwrap_or(crate::config::DEFAULT_IDLE_TIMEOUT);
            let server = HttpServer::bind(addr, Duration::from_secs(idle))?;
            // The bays exist from the start, so a bad path or permission
            // shows now rather than at the first upload.
            crate::bay::Bays::open(storage)?;
            let abandoned = crate::receive::remove_abandoned_uploads(storage)
                .with_context(|| format!("cleaning {}", storage.incoming_dir().display()))?;
            if abandoned > 0 {
                log_line(&format!(
                    "removed {abandoned} upload(s) cut off when the server last stopped"
                ));
            }
            log_line(&format!(
                "listening on {} (storage class {class}, configuration: {source})",
                server.addr()
            ));
            Some((server, class.to_string()))
        }
    };

    if !daemon {
        let report = shipper.poll(&classes, now())?;
        log_line(&report.summary());
        return Ok(report);
    }

    let interval = Duration::from_secs(args.interval.unwrap_or(60));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let serving = listener.as_ref().map(|(server, class)| {
            let config = &config;
            let stop = &stop;
            scope.spawn(move || server.serve(config, class, stop, HTTP_WORKERS, &log_line))
        });
        if args.poll {
            while !stop.load(Ordering::SeqCst) {
                match shipper.poll(&classes, now()) {
                    Ok(report) if report == PassReport::default() => {}
                    Ok(report) => log_line(&report.summary()),
                    Err(err) => log_line(&format!("error: {err}")),
                }
                let next = Instant::now() + interval;
                while !stop.load(Ordering::SeqCst) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if let Some(handle) = serving {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("the HTTP server thread panicked"),
            }
        }
        Ok(())
    })?;
    log_line("stopped");
    Ok(PassReport::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(args: &[&str]) -> Vec<String> {
        let command = Args::command();
        normalize_args(&command, args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_options_become_double_dash() {
        assert_eq!(
            normalized(&["shipping_server", "-poll", "-sclass", "-poll"]),
            ["shipping_server", "--poll", "--sclass", "-poll"]
        );
        assert_eq!(
            normalized(&["shipping_server", "-sclass=x", "--poll"]),
            ["shipping_server", "--sclass=x", "--poll"]
        );
    }

    #[test]
    fn unknown_words_and_positionals_after_double_dash_are_kept() {
        assert_eq!(
            normalized(&["shipping_server", "-bogus", "--", "-poll"]),
            ["shipping_server", "-bogus", "--", "-poll"]
        );
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
