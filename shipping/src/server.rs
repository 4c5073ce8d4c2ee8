//! A shipping server's long run: receiving packets over HTTP and working
//! through the orders every so often, until told to stop. The command
//! line and the signals that set the stop flag belong to the caller
//! (syncreplica's `shipping_server`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::bay::Bays;
use crate::config::{
    ShippingConfig, DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS_PER_PEER,
};
use crate::error::{Error, Result};
use crate::http::{HttpServer, Limits};
use crate::poll::{PassReport, Shipper};
use crate::receive::remove_abandoned_uploads;
use crate::trust::MemberKeys;

/// Uploads received at the same time; a connection takes one once its
/// request head is complete, and later ones wait for one to be free. Each
/// holds about 200 KiB of buffers.
pub const HTTP_WORKERS: usize = 64;

/// An HTTP listener, bound and ready to receive into one storage class.
pub struct Listening {
    pub server: HttpServer,
    pub class: String,
}

impl Listening {
    /// Binds `addr` and opens the bays of `class` now, so that a bad path
    /// or permission shows at the start rather than at the first upload;
    /// uploads cut off when the server last stopped are removed (and
    /// reported to `log`).
    pub fn open(
        config: &ShippingConfig,
        class: &str,
        addr: SocketAddr,
        log: &dyn Fn(&str),
    ) -> Result<Listening> {
        let storage = config.class(class)?;
        let limits = Limits {
            idle_timeout: Duration::from_secs(config.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)),
            head_timeout: Duration::from_secs(config.head_timeout.unwrap_or(DEFAULT_HEAD_TIMEOUT)),
            uploads: HTTP_WORKERS,
            per_peer: usize::try_from(
                config
                    .max_connections_per_peer
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_PEER),
            )
            .unwrap_or(usize::MAX),
        };
        let server = HttpServer::bind(addr, limits)?;
        Bays::open(storage)?;
        let abandoned = remove_abandoned_uploads(storage)
            .map_err(|err| Error::io(storage.incoming_dir(), err))?;
        if abandoned > 0 {
            log(&format!(
                "removed {abandoned} upload(s) cut off when the server last stopped"
            ));
        }
        Ok(Listening {
            server,
            class: class.to_string(),
        })
    }
}

/// Runs until `stop` is set: serves `listening`, if given, and with
/// `poll_every` works through the orders of `classes` at that interval
/// (a failed pass is logged and tried again at the next). Uploads in
/// progress when `stop` is set are finished first.
pub fn run_until_stopped(
    shipper: &Shipper<'_>,
    classes: &[String],
    listening: Option<&Listening>,
    poll_every: Option<Duration>,
    members: &dyn MemberKeys,
    stop: &AtomicBool,
) -> Result<()> {
    std::thread::scope(|scope| -> Result<()> {
        let serving = listening.map(|listening| {
            scope.spawn(move || {
                listening
                    .server
                    .serve(shipper.config, &listening.class, stop, members, shipper.log)
            })
        });
        if let Some(interval) = poll_every {
            while !stop.load(Ordering::SeqCst) {
                match shipper.poll(classes, Utc::now()) {
                    Ok(report) if report == PassReport::default() => {}
                    Ok(report) => (shipper.log)(&report.summary()),
                    Err(err) => (shipper.log)(&format!("error: {err}")),
                }
                let next = Instant::now() + interval;
                while !stop.load(Ordering::SeqCst) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        match serving.map(|handle| handle.join()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            // A panic in the server thread is a bug: pass it on.
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    })
}
