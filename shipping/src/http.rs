//! Packets over HTTP: the client side (a shipping server delivering to the
//! next hop) and the server side (`shipping_server -listen`).
//!
//! The protocol is one request: `PUT /packets/<file name>` (or
//! `PUT /<file name>`, which is what `curl -T FILE http://host:port/`
//! sends) with the packet's bytes as the body. Optional headers:
//! `X-Syncreplica-Expires` (the sender's order expiry, RFC 3339) and
//! `X-Syncreplica-Destinations` (comma-separated replica names the packet
//! is for; without it, the targets in the packet's signed header). The
//! answer is `201` (stored), `200` (already here) or an error status with
//! the reason as plain text; the sender keeps its copy unless it gets 2xx.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::bay::BayStore;
use crate::config::ShippingConfig;
use crate::error::{Error, Result};
use crate::order::{format_time, ShippingOrder};
use crate::receive::{Receiver, Rejection};
use crate::transport::CheckingReader;

pub const EXPIRES_HEADER: &str = "X-Syncreplica-Expires";
pub const DESTINATIONS_HEADER: &str = "X-Syncreplica-Destinations";

/// Sends packet `order.packet` from `from` to the shipping server at
/// `url` for `destinations`; returns the server's answer. The packet is
/// checked against the order while it is sent: a packet that no longer
/// matches is broken off, and the server stores nothing.
pub fn upload(
    url: &str,
    from: &dyn BayStore,
    order: &ShippingOrder,
    destinations: &[&str],
) -> Result<String> {
    let target = format!("{}/packets/{}", url.trim_end_matches('/'), order.packet);
    let failed = |message: String| Error::Delivery {
        hop: url.to_string(),
        message,
    };
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled connection, not a slow one, is what to give up on.
        .timeout_recv_response(Some(Duration::from_secs(600)))
        .build();
    let agent: ureq::Agent = config.into();
    let mismatch = AtomicBool::new(false);
    let mut reader = CheckingReader::new(from.open(&order.packet)?, order, &mismatch);
    let result = agent
        .put(&target)
        .header("Content-Length", order.size.to_string())
        .header("Content-Type", "application/zip")
        .header(EXPIRES_HEADER, format_time(&order.expires))
        .header(DESTINATIONS_HEADER, destinations.join(","))
        .send(ureq::SendBody::from_reader(&mut reader));
    if mismatch.load(Ordering::Relaxed) {
        return Err(Error::PacketMismatch {
            bay: from.describe(),
            packet: order.packet.clone(),
            why: "its size or SHA-256 differs from the order's".to_string(),
        });
    }
    let mut response = result.map_err(|err| failed(err.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let text = text.trim().to_string();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(failed(format!("refused with HTTP {status}: {text}")))
    }
}

/// A bound HTTP listener.
pub struct HttpServer {
    server: tiny_http::Server,
    addr: SocketAddr,
}

impl HttpServer {
    /// Listens on `addr` (port 0 picks a free port; see [`Self::addr`]).
    pub fn bind(addr: SocketAddr) -> Result<HttpServer> {
        let server = tiny_http::Server::http(addr).map_err(|err| Error::Listen {
            addr: addr.to_string(),
            message: err.to_string(),
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .expect("an IP listener has an IP address");
        Ok(HttpServer { server, addr })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers requests on `workers` threads until `shutdown` is set; a
    /// request being received when it is set is finished first. `log`
    /// gets one line per request.
    pub fn serve(
        &self,
        config: &ShippingConfig,
        class_name: &str,
        shutdown: &AtomicBool,
        workers: usize,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let class = config.class(class_name)?.clone();
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    while !shutdown.load(Ordering::SeqCst) {
                        match self.server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(request)) => {
                                handle(request, config, class_name, &class, log);
                            }
                            Ok(None) => {}
                            Err(err) => {
                                log(&format!("error: accepting a connection: {err}"));
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                    }
                });
            }
        });
        Ok(())
    }
}

fn handle(
    mut request: tiny_http::Request,
    config: &ShippingConfig,
    class_name: &str,
    class: &crate::config::StorageClass,
    log: &(dyn Fn(&str) + Sync),
) {
    let peer = request
        .remote_addr()
        .map_or_else(|| "unknown peer".to_string(), ToString::to_string);
    let method = request.method().clone();
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let answer = match method {
        tiny_http::Method::Put => receive(&mut request, &path, config, class_name, class),
        tiny_http::Method::Get | tiny_http::Method::Head if path == "/" => Ok((
            200,
            "syncreplica shipping_server: PUT /packets/NAME to ship a packet".into(),
        )),
        _ => Err(Rejection {
            status: 405,
            reason: format!("{method} {path}: only PUT /packets/NAME is served"),
        }),
    };
    let (status, text) = match answer {
        Ok(ok) => ok,
        Err(rejection) => (rejection.status, rejection.reason),
    };
    let verdict = if (200..300).contains(&status) {
        "accepted"
    } else {
        "refused"
    };
    log(&format!(
        "{verdict} {method} {path} from {peer}: {status} {text}"
    ));
    let response = tiny_http::Response::from_string(format!("{text}\n"))
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", "text/plain; charset=utf-8")
                .expect("a valid header"),
        );
    if let Err(err) = request.respond(response) {
        log(&format!("error: answering {peer}: {err}"));
    }
}

fn receive(
    request: &mut tiny_http::Request,
    path: &str,
    config: &ShippingConfig,
    class_name: &str,
    class: &crate::config::StorageClass,
) -> Result<(u16, String), Rejection> {
    let name = path
        .strip_prefix("/packets/")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path);
    let header = |wanted: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(wanted))
            .map(|h| h.value.as_str().trim().to_string())
    };
    let expires = match header(EXPIRES_HEADER) {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| Rejection {
                    status: 400,
                    reason: format!("{EXPIRES_HEADER}: bad time {text:?}: {e}"),
                })?,
        ),
    };
    let destinations: Option<Vec<String>> = header(DESTINATIONS_HEADER)
        .filter(|text| !text.is_empty())
        .map(|text| text.split(',').map(|d| d.trim().to_string()).collect());
    let trusted_keys = crate::trust::trusted_keys(config).map_err(|err| Rejection {
        status: 500,
        reason: err.to_string(),
    })?;
    let receiver = Receiver {
        config,
        class_name: class_name.to_string(),
        class: class.clone(),
        trusted_keys,
    };
    let declared = request.body_length().map(|n| n as u64);
    let receipt = receiver.receive(
        name,
        declared,
        request.as_reader() as &mut dyn Read,
        expires,
        destinations.as_deref(),
        Utc::now(),
    )?;
    let status = if receipt.duplicate { 200 } else { 201 };
    Ok((status, receipt.describe()))
}
