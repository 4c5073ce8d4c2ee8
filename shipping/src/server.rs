//! A shipping server's long run: receiving packets over HTTP and working
//! through the orders every so often, until told to stop. The command
//! line and the signals that set the stop flag belong to the caller
//! (syncreplica's `shipping_server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

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
///
/// With `watch`, each pass first re-reads the configuration file when it
/// changed (see [`ConfigWatch`]); the pass then works with the new one
/// (its routes, destinations and, when `watch` says so, its classes).
/// The listener keeps the configuration it started with.
pub fn run_until_stopped(
    shipper: &Shipper<'_>,
    classes: &[String],
    listening: Option<&Listening>,
    poll_every: Option<Duration>,
    members: &dyn MemberKeys,
    stop: &AtomicBool,
    mut watch: Option<ConfigWatch>,
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
            let mut reloaded: Option<(ShippingConfig, Vec<String>)> = None;
            // The last pass's report: a pass that changes nothing is not
            // logged again (orders waiting for their hours or backoff).
            let mut last_report: Option<PassReport> = None;
            while !stop.load(Ordering::SeqCst) {
                if let Some(config) = watch.as_mut().and_then(|w| w.changed(shipper.log)) {
                    let all = watch.as_ref().is_some_and(|w| w.all_classes);
                    let classes = match all {
                        true => config.classes.keys().cloned().collect(),
                        false => classes.to_vec(),
                    };
                    reloaded = Some((config, classes));
                }
                let (config, classes) = match &reloaded {
                    Some((config, classes)) => (config, classes.as_slice()),
                    None => (shipper.config, classes),
                };
                let shipper = Shipper {
                    config,
                    log: shipper.log,
                };
                match shipper.poll(classes, Utc::now()) {
                    Ok(report) => {
                        if report.worth_saying(last_report.as_ref()) {
                            (shipper.log)(&report.summary());
                        }
                        last_report = Some(report);
                    }
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

/// The configuration file a polling server watches: re-read at the start
/// of a pass when its modification time or size changed since it was
/// last read. A new file that does not parse (or names no class the
/// server polls) is not used: the one in effect stays, and the error is
/// logged once per change of the file.
pub struct ConfigWatch {
    path: PathBuf,
    data_dir: Option<PathBuf>,
    /// (modification time, size) of the file as last looked at; None when
    /// it could not be looked at.
    stamp: Option<(SystemTime, u64)>,
    /// Classes the server polls when not all of them (`-sclass`).
    named_classes: Vec<String>,
    /// True when the server polls every class of the configuration: a
    /// reloaded file's classes replace the old ones.
    pub all_classes: bool,
}

impl ConfigWatch {
    /// Watches `path`, read just now; `data_dir` is what
    /// [`ShippingConfig::load`] used (for the built-in default class).
    /// `classes` are the classes polled, `all_classes` whether they are
    /// every class of the file.
    pub fn new(
        path: &Path,
        data_dir: Option<&Path>,
        classes: &[String],
        all_classes: bool,
    ) -> ConfigWatch {
        ConfigWatch {
            path: path.to_path_buf(),
            data_dir: data_dir.map(Path::to_path_buf),
            stamp: stamp_of(path),
            named_classes: classes.to_vec(),
            all_classes,
        }
    }

    /// The configuration read anew when the file changed and the new one
    /// is good (logged as "PATH changed; reloaded"); None otherwise.
    pub fn changed(&mut self, log: &dyn Fn(&str)) -> Option<ShippingConfig> {
        let now = stamp_of(&self.path);
        if now == self.stamp {
            return None;
        }
        // Taken before reading, so that a write during the read shows as
        // a change at the next pass.
        self.stamp = now;
        let shown = self.path.display();
        let read = std::fs::read_to_string(&self.path)
            .map_err(|err| Error::io(&self.path, err))
            .and_then(|text| ShippingConfig::parse(&text, &self.path, self.data_dir.as_deref()));
        let config = read.and_then(|config| {
            if !self.all_classes {
                for class in &self.named_classes {
                    config.class(class)?;
                }
            }
            Ok(config)
        });
        match config {
            Ok(config) => {
                log(&format!("{shown} changed; reloaded"));
                Some(config)
            }
            Err(err) => {
                log(&format!(
                    "error: {shown} changed but is not used, the configuration read before stays in effect: {err}"
                ));
                None
            }
        }
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
