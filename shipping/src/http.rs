//! Packets over HTTP: the client side (a shipping server delivering to the
//! next hop) and the server side (`shipping_server -listen`).
//!
//! The server is a small one of its own on std sockets, with `httparse`
//! reading request heads: every connection gets read and write timeouts
//! (a peer that vanishes mid-upload frees its worker and leaves nothing
//! behind), a request is checked before `100 Continue` is sent, and the
//! number of uploads at a time is bounded. tiny_http, tried first, offers
//! no socket timeouts.
//!
//! The protocol is one request: `PUT /packets/<file name>` (or
//! `PUT /<file name>`, which is what `curl -T FILE http://host:port/`
//! sends) with the packet's bytes as the body. Optional headers:
//! `X-Syncreplica-Expires` (the sender's order expiry, RFC 3339) and
//! `X-Syncreplica-Destinations` (comma-separated replica names the packet
//! is for; without it, the targets in the packet's signed header). The
//! answer is `201` (stored), `200` (already here) or an error status with
//! the reason as plain text; the sender keeps its copy unless it gets 2xx.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::bay::BayStore;
use crate::config::ShippingConfig;
use crate::error::{Error, Result};
use crate::order::{format_time, ShippingOrder};
use crate::receive::{Receiver, Rejection};
use crate::transport::CheckingReader;
use crate::trust::MemberKeys;

pub const EXPIRES_HEADER: &str = "X-Syncreplica-Expires";
pub const DESTINATIONS_HEADER: &str = "X-Syncreplica-Destinations";
/// Answer header: the SHA-256 of the packet the receiver stored, which the
/// sender checks before it lets go of its copy.
pub const SHA256_HEADER: &str = "X-Syncreplica-Sha256";

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
        // A redirect turns the PUT into a GET whose 200 proves nothing.
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled connection, not a slow one, is what to give up on: no
        // limit on the whole upload, but on each write and read. The answer
        // comes after the receiver has verified the whole packet.
        .timeout_per_write(Some(Duration::from_secs(300)))
        .timeout_per_read(Some(Duration::from_secs(600)))
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
    let confirmed = response
        .headers()
        .get(SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let text = text.trim().to_string();
    if status != 200 && status != 201 {
        return Err(failed(format!("refused with HTTP {status}: {text}")));
    }
    // Only a shipping server that stored this very packet says so.
    match confirmed {
        Some(sha256) if sha256.eq_ignore_ascii_case(&order.sha256) => Ok(text),
        Some(sha256) => Err(failed(format!(
            "answered {status} but confirmed SHA-256 {sha256}, not {}",
            order.sha256
        ))),
        None => Err(failed(format!(
            "answered {status} without {SHA256_HEADER}: not a syncreplica shipping server? ({text})"
        ))),
    }
}

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A bound HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    idle_timeout: Duration,
}

impl HttpServer {
    /// Listens on `addr` (port 0 picks a free port; see [`Self::addr`]).
    /// A connection that sends or takes nothing for `idle_timeout` is
    /// dropped, so peers that vanish mid-upload (a satellite link going
    /// down without closing the connection) cannot tie up the workers.
    pub fn bind(addr: SocketAddr, idle_timeout: Duration) -> Result<HttpServer> {
        let failed = |err: io::Error| Error::Listen {
            addr: addr.to_string(),
            message: err.to_string(),
        };
        let listener = TcpListener::bind(addr).map_err(failed)?;
        // Non-blocking accepts let the loop notice a shutdown request.
        listener.set_nonblocking(true).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        Ok(HttpServer {
            listener,
            addr,
            idle_timeout,
        })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers connections, at most `workers` at a time (more wait to be
    /// accepted), until `shutdown` is set; uploads in progress then are
    /// finished first. `members` reads the families of `trusted_replicas`
    /// (afresh for each packet). `log` gets one line per request.
    pub fn serve(
        &self,
        config: &ShippingConfig,
        class_name: &str,
        shutdown: &AtomicBool,
        workers: usize,
        members: &dyn MemberKeys,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let class = config.class(class_name)?.clone();
        let active = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            while !shutdown.load(Ordering::SeqCst) {
                // At capacity, later connections wait in the kernel's
                // accept queue until a worker is free.
                if active.load(Ordering::SeqCst) >= workers.max(1) {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let (stream, peer) = match self.listener.accept() {
                    Ok(accepted) => accepted,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    Err(err) => {
                        log(&format!("error: accepting a connection: {err}"));
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                };
                if let Err(err) = self.prepare(&stream) {
                    log(&format!("error: {peer}: {err}"));
                    continue;
                }
                let slot = Slot::take(&active);
                let class = &class;
                scope.spawn(move || {
                    let _slot = slot;
                    let mut connection = Connection::new(stream, peer, self.idle_timeout);
                    connection.handle(config, class_name, class, members, log);
                });
            }
        });
        Ok(())
    }

    fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(self.idle_timeout))?;
        stream.set_write_timeout(Some(self.idle_timeout))?;
        stream.set_nodelay(true)
    }
}

/// A worker slot, given back when dropped (also when a worker panics).
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(active: &'a AtomicUsize) -> Slot<'a> {
        active.fetch_add(1, Ordering::SeqCst);
        Slot(active)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One client connection: one request, one answer, then closed.
struct Connection {
    reader: BufReader<TcpStream>,
    peer: SocketAddr,
    /// The whole request head must have arrived by then: a client
    /// trickling header bytes cannot hold a worker past the idle timeout.
    head_deadline: Instant,
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: HashMap<String, String>,
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, head_within: Duration) -> Connection {
        Connection {
            reader: BufReader::with_capacity(64 * 1024, stream),
            peer,
            head_deadline: Instant::now() + head_within,
        }
    }

    fn handle(
        &mut self,
        config: &ShippingConfig,
        class_name: &str,
        class: &crate::config::StorageClass,
        members: &dyn MemberKeys,
        log: &(dyn Fn(&str) + Sync),
    ) {
        let head = match self.read_head() {
            Ok(Some(head)) => head,
            Ok(None) => return, // closed before sending anything
            Err(rejection) => {
                log(&format!("refused request from {}: {rejection}", self.peer));
                self.answer(rejection.status, &rejection.reason);
                return;
            }
        };
        let answer = match head.method.as_str() {
            "PUT" => self.receive(&head, config, class_name, class, members),
            "GET" | "HEAD" if head.path == "/" => Ok((
                200,
                "syncreplica shipping_server: PUT /packets/NAME to ship a packet".to_string(),
                None,
            )),
            _ => Err(Rejection {
                status: 405,
                reason: format!(
                    "{} {}: only PUT /packets/NAME is served",
                    head.method, head.path
                ),
            }),
        };
        let (status, text, sha256) = match answer {
            Ok((status, text, sha256)) => (status, text, sha256),
            Err(rejection) => (rejection.status, rejection.reason, None),
        };
        let verdict = if (200..300).contains(&status) {
            "accepted"
        } else {
            "refused"
        };
        log(&format!(
            "{verdict} {} {} from {}: {status} {text}",
            head.method, head.path, self.peer
        ));
        let extra = sha256.map(|sha| format!("{SHA256_HEADER}: {sha}\r\n"));
        self.answer_with(
            status,
            &text,
            extra.as_deref().unwrap_or(""),
            head.method == "HEAD",
        );
    }

    /// Reads and parses the request head; `None` when the peer closed the
    /// connection without sending one.
    fn read_head(&mut self) -> Result<Option<Head>, Rejection> {
        let broken = |err: io::Error| Rejection {
            status: 400,
            reason: format!("request head not received: {err}"),
        };
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let available = self.reader.fill_buf().map_err(broken)?;
            if available.is_empty() {
                if buffer.is_empty() {
                    return Ok(None);
                }
                return Err(broken(io::ErrorKind::UnexpectedEof.into()));
            }
            // Take bytes up to the end of the head only; the rest is body.
            let mut taken = 0;
            for &byte in available {
                buffer.push(byte);
                taken += 1;
                if buffer.ends_with(b"\r\n\r\n") {
                    break;
                }
            }
            self.reader.consume(taken);
            if buffer.ends_with(b"\r\n\r\n") {
                break;
            }
            if Instant::now() > self.head_deadline {
                return Err(Rejection {
                    status: 408,
                    reason: "request head not complete in time".into(),
                });
            }
            if buffer.len() > MAX_HEAD {
                return Err(Rejection {
                    status: 431,
                    reason: format!("request head larger than {MAX_HEAD} bytes"),
                });
            }
        }
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut slots);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) | Err(_) => {
                return Err(Rejection {
                    status: 400,
                    reason: "malformed HTTP request".into(),
                })
            }
        }
        let mut headers: HashMap<String, String> = HashMap::new();
        for header in request.headers.iter() {
            let name = header.name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(header.value).trim().to_string();
            // Two lengths or two encodings could be read two ways.
            if headers.insert(name.clone(), value).is_some()
                && (name == "content-length" || name == "transfer-encoding")
            {
                return Err(Rejection {
                    status: 400,
                    reason: format!("{name} given twice"),
                });
            }
        }
        Ok(Some(Head {
            method: request.method.unwrap_or_default().to_string(),
            path: request
                .path
                .unwrap_or_default()
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
            headers,
        }))
    }

    fn receive(
        &mut self,
        head: &Head,
        config: &ShippingConfig,
        class_name: &str,
        class: &crate::config::StorageClass,
        members: &dyn MemberKeys,
    ) -> Result<(u16, String, Option<String>), Rejection> {
        let path = head.path.as_str();
        let name = path
            .strip_prefix("/packets/")
            .or_else(|| path.strip_prefix('/'))
            .unwrap_or(path);
        let header = |wanted: &str| head.headers.get(&wanted.to_ascii_lowercase()).cloned();
        let bad = |reason: String| Rejection {
            status: 400,
            reason,
        };
        let chunked = header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let declared = match header("content-length") {
            _ if chunked => None,
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| bad(format!("Content-Length {text:?} is not a number")))?,
            ),
            None => {
                return Err(Rejection {
                    status: 411,
                    reason: "a PUT needs Content-Length or chunked transfer encoding".into(),
                })
            }
        };
        let expires = match header(EXPIRES_HEADER) {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| bad(format!("{EXPIRES_HEADER}: bad time {text:?}: {e}")))?,
            ),
        };
        let destinations: Option<Vec<String>> = header(DESTINATIONS_HEADER)
            .filter(|text| !text.is_empty())
            .map(|text| text.split(',').map(|d| d.trim().to_string()).collect());
        let trusted_keys =
            crate::trust::trusted_keys(config, members).map_err(|err| Rejection {
                status: 500,
                reason: err.to_string(),
            })?;
        let receiver = Receiver {
            config,
            class_name: class_name.to_string(),
            class: class.clone(),
            trusted_keys,
        };
        // Refuse what can be refused before the client sends the body.
        receiver.precheck(name, declared)?;
        if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            let stream = self.reader.get_mut();
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .and_then(|()| stream.flush())
                .map_err(|e| bad(format!("{name}: {e}")))?;
        }
        let receipt = if chunked {
            let mut body = ChunkedBody::new(&mut self.reader);
            receiver.receive(
                name,
                None,
                &mut body,
                expires,
                destinations.as_deref(),
                Utc::now(),
            )?
        } else {
            let length = declared.expect("a length when not chunked");
            let mut body = (&mut self.reader).take(length);
            receiver.receive(
                name,
                declared,
                &mut body,
                expires,
                destinations.as_deref(),
                Utc::now(),
            )?
        };
        let status = if receipt.duplicate { 200 } else { 201 };
        Ok((status, receipt.describe(), Some(receipt.sha256.clone())))
    }

    /// Sends the answer and closes the connection. A body the request
    /// still had on the way is read off for a moment first, so the client
    /// is not reset before it can read why it was refused.
    fn answer(&mut self, status: u16, text: &str) {
        self.answer_with(status, text, "", false);
    }

    /// [`Self::answer`] with extra header lines (each ending in CRLF);
    /// `head_only` leaves the body out (a HEAD request).
    fn answer_with(&mut self, status: u16, text: &str, extra: &str, head_only: bool) {
        let body = format!("{text}\n");
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{}",
            reason_phrase(status),
            body.len(),
            if head_only { "" } else { body.as_str() }
        );
        let stream = self.reader.get_mut();
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut sink = [0u8; 64 * 1024];
        while Instant::now() < deadline {
            match self.reader.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// A chunked request body (RFC 9112 §7.1), decoded as it is read; chunk
/// extensions and trailers are skipped.
struct ChunkedBody<'a, R> {
    inner: &'a mut R,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl<'a, R: BufRead> ChunkedBody<'a, R> {
    fn new(inner: &'a mut R) -> ChunkedBody<'a, R> {
        ChunkedBody {
            inner,
            left: 0,
            done: false,
        }
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        (&mut *self.inner).take(4096).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunked body: line too long or cut short",
            ));
        }
        Ok(line)
    }
}

impl<R: BufRead> Read for ChunkedBody<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = self.line()?;
            if line == b"\r\n" || line == b"\n" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunked body: empty chunk size",
                ));
            }
            let size = match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunked body: bad chunk size",
                    ))
                }
            };
            if size == 0 {
                // Trailers, up to the empty line.
                while self.line()? != b"\r\n" {}
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        if self.left == 0 && self.line()? != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunked body: chunk not followed by CRLF",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded_and_bad_ones_refused() {
        let mut wire: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut body = String::new();
        ChunkedBody::new(&mut wire)
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "hello, world");
        for bad in [
            &b"zz\r\nhello\r\n"[..],
            b"5\r\nhelloXX",
            b"5\r\nhel",
            b"\r\nhello",
        ] {
            let mut wire = bad;
            let mut out = Vec::new();
            assert!(
                ChunkedBody::new(&mut wire).read_to_end(&mut out).is_err(),
                "{bad:?}"
            );
        }
    }
}
