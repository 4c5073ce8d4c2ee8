//! Packets over HTTP: the client side (a shipping server delivering to the
//! next hop) and the server side (`shipping_server -listen`).
//!
//! The server is a small one of its own on std sockets, with `httparse`
//! reading request heads: every connection gets read and write timeouts
//! (a peer that vanishes mid-upload frees its worker and leaves nothing
//! behind), the request head has a deadline of its own (`head_timeout`)
//! and must be complete before the connection takes one of the bounded
//! upload places, one peer address may hold only so many connections, and
//! a request is checked before `100 Continue` is sent. tiny_http, tried
//! first, offers no socket timeouts.
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
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
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
    let _sending = crate::progress::phase(
        &format!("sending {}", order.packet),
        crate::progress::Unit::Bytes,
        Some(order.size),
    );
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
    let mut response = result.map_err(|err| failed(http_failure(&err)))?;
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

/// Why a request got no answer, in words: ureq's own text prefixes the
/// kind of failure as it names it internally ("io: ", "timeout: "),
/// which means nothing to an administrator reading the log.
fn http_failure(err: &ureq::Error) -> String {
    match err {
        ureq::Error::Io(cause) => match cause.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (no shipping server listens there)".to_string()
            }
            _ => cause.to_string(),
        },
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "the connection could not be made".to_string(),
        ureq::Error::BadUri(uri) => format!("not a usable URL: {uri}"),
        ureq::Error::Protocol(what) => format!("the answer is not HTTP: {what}"),
        ureq::Error::Http(what) => format!("HTTP error: {what}"),
        ureq::Error::BodyStalled => "the connection stalled while sending".to_string(),
        other => other.to_string(),
    }
}

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Connections whose request heads are being read at a time; more wait in
/// the kernel's accept queue. A head reader holds a thread with a small
/// stack and a 64 KiB buffer, and at most `head_timeout`.
pub const HEAD_READERS: usize = 256;

/// Stack of the thread serving one connection: reading, hashing and
/// writing go through heap buffers.
const CONNECTION_STACK: usize = 256 * 1024;

/// How long connections may take, and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection that sends or takes nothing this long is dropped.
    pub idle_timeout: Duration,
    /// The whole request head must have arrived this long after the
    /// connection was accepted.
    pub head_timeout: Duration,
    /// Uploads received (request bodies read) at a time; a connection
    /// takes one of these only once its request head is complete.
    pub uploads: usize,
    /// Connections one peer address may have open at once; more are
    /// answered 429 and closed.
    pub per_peer: usize,
}

/// A bound HTTP listener.
pub struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    limits: Limits,
}

impl HttpServer {
    /// Listens on `addr` (port 0 picks a free port; see [`Self::addr`]).
    /// A connection that sends or takes nothing for `limits.idle_timeout`
    /// is dropped, so peers that vanish mid-upload (a satellite link going
    /// down without closing the connection) cannot tie up the server; one
    /// that has not sent its request head within `limits.head_timeout` is
    /// answered 408.
    pub fn bind(addr: SocketAddr, limits: Limits) -> Result<HttpServer> {
        let failed = |err: io::Error| Error::Listen {
            addr: addr.to_string(),
            message: err.to_string(),
            kind: err.kind(),
        };
        let listener = TcpListener::bind(addr).map_err(failed)?;
        // Non-blocking accepts let the loop notice a shutdown request.
        listener.set_nonblocking(true).map_err(failed)?;
        let addr = listener.local_addr().map_err(failed)?;
        Ok(HttpServer {
            listener,
            addr,
            limits,
        })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers connections until `shutdown` is set; uploads in progress
    /// then are finished first. Request heads are read by up to
    /// [`HEAD_READERS`] connections at a time, each within the head
    /// timeout; an upload slot (`limits.uploads` of them) is taken only
    /// once a head is complete, so clients that never finish their heads
    /// cannot keep uploads out. `members` reads the families of
    /// `trusted_replicas` (afresh for each packet). `log` gets one line
    /// per request.
    pub fn serve(
        &self,
        config: &ShippingConfig,
        class_name: &str,
        shutdown: &AtomicBool,
        members: &dyn MemberKeys,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<()> {
        let class = config.class(class_name)?.clone();
        let gate = Gate::default();
        let limits = self.limits;
        std::thread::scope(|scope| {
            while !shutdown.load(Ordering::SeqCst) {
                // With every head reader busy, later connections wait in
                // the kernel's accept queue.
                if gate.heads() >= HEAD_READERS {
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
                let Some(ticket) = gate.admit(peer.ip(), limits.per_peer.max(1)) else {
                    let reason = format!(
                        "{} already has {} connections open here (max_connections_per_peer); try again when one has finished",
                        peer.ip(),
                        limits.per_peer.max(1)
                    );
                    log(&format!("refused connection from {peer}: 429 {reason}"));
                    // The answer is given by a thread of its own, which
                    // reads off the request for a moment so the client is
                    // not reset before it reads why; with too many of
                    // those already, it is given without waiting.
                    match gate.start_refusal() {
                        Some(refusal) => {
                            let spawned = std::thread::Builder::new()
                                .name("http-refusal".into())
                                .stack_size(CONNECTION_STACK)
                                .spawn_scoped(scope, move || {
                                    let _refusal = refusal;
                                    refuse(stream, 429, &reason, Duration::from_secs(1));
                                });
                            if let Err(err) = spawned {
                                log(&format!("error: {peer}: no thread for the answer: {err}"));
                            }
                        }
                        None => refuse(stream, 429, &reason, Duration::ZERO),
                    }
                    continue;
                };
                if let Err(err) = self.prepare(&stream) {
                    log(&format!("error: {peer}: {err}"));
                    continue;
                }
                let class = &class;
                let spawned = std::thread::Builder::new()
                    .name("http-connection".into())
                    .stack_size(CONNECTION_STACK)
                    .spawn_scoped(scope, move || {
                        let mut ticket = ticket;
                        let mut connection = Connection::new(stream, peer, limits);
                        connection.handle(
                            config,
                            class_name,
                            class,
                            members,
                            log,
                            &mut ticket,
                            shutdown,
                        );
                    });
                if let Err(err) = spawned {
                    log(&format!(
                        "error: {peer}: no thread for the connection: {err}"
                    ));
                }
            }
            gate.wake_all();
        });
        Ok(())
    }

    fn prepare(&self, stream: &TcpStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(self.limits.idle_timeout))?;
        stream.set_write_timeout(Some(self.limits.idle_timeout))?;
        stream.set_nodelay(true)
    }
}

/// Refused connections being answered at a time by threads of their own;
/// past this, they are answered without waiting on the client.
const REFUSERS: usize = 32;

/// Answers a connection that is not served (`status`, `reason`) and closes
/// it. What the client sends is read off for up to `linger` (only what has
/// already arrived when zero), so that it gets the answer rather than a
/// reset.
fn refuse(stream: TcpStream, status: u16, reason: &str, linger: Duration) {
    let mut stream = stream;
    let deadline = Instant::now() + linger;
    let drain = |stream: &mut TcpStream| {
        let mut sink = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = if left.is_zero() {
                stream.set_nonblocking(true)
            } else {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(left)))
            };
            if ready.is_err() {
                return;
            }
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    };
    let body = format!("{reason}\n");
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 10\r\nConnection: close\r\n\r\n{body}",
        reason_phrase(status),
        body.len()
    );
    // Small enough for the socket's send buffer: the write does not wait.
    if stream.set_nonblocking(true).is_err() || stream.write_all(response.as_bytes()).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    drain(&mut stream);
}

/// The server's count of connections: those reading their heads, those
/// receiving uploads, and how many each peer address has open.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Default)]
struct GateState {
    heads: usize,
    refusals: usize,
    uploads: usize,
    per_peer: HashMap<IpAddr, usize>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // The counts stay right even if a holder panicked: each change is
        // one statement.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn heads(&self) -> usize {
        self.lock().heads
    }

    /// Counts a new connection from `ip`, reading its head; `None` when
    /// `ip` already has `per_peer` connections open.
    fn admit(&self, ip: IpAddr, per_peer: usize) -> Option<Ticket<'_>> {
        let ip = ip.to_canonical();
        let mut state = self.lock();
        let open = state.per_peer.entry(ip).or_insert(0);
        if *open >= per_peer {
            return None;
        }
        *open += 1;
        state.heads += 1;
        Some(Ticket {
            gate: self,
            ip,
            reading_head: true,
            uploading: false,
        })
    }

    /// Counts a refused connection being answered by a thread of its own;
    /// `None` when [`REFUSERS`] are already.
    fn start_refusal(&self) -> Option<Refusal<'_>> {
        let mut state = self.lock();
        if state.refusals >= REFUSERS {
            return None;
        }
        state.refusals += 1;
        Some(Refusal(self))
    }

    fn wake_all(&self) {
        self.freed.notify_all();
    }
}

/// A refused connection being answered, given back when dropped.
struct Refusal<'a>(&'a Gate);

impl Drop for Refusal<'_> {
    fn drop(&mut self) {
        self.0.lock().refusals -= 1;
    }
}

/// One admitted connection's place in the [`Gate`], given back when
/// dropped (also when its thread panics).
struct Ticket<'a> {
    gate: &'a Gate,
    ip: IpAddr,
    reading_head: bool,
    uploading: bool,
}

impl Ticket<'_> {
    /// The head is read (or given up on): the connection no longer
    /// counts as a head reader.
    fn head_done(&mut self) {
        if std::mem::take(&mut self.reading_head) {
            self.gate.lock().heads -= 1;
        }
    }

    /// Waits for one of `uploads` upload slots; false when `shutdown` was
    /// set first.
    fn take_upload_slot(&mut self, uploads: usize, shutdown: &AtomicBool) -> bool {
        self.head_done();
        let mut state = self.gate.lock();
        while state.uploads >= uploads.max(1) {
            if shutdown.load(Ordering::SeqCst) {
                return false;
            }
            state = self
                .gate
                .freed
                .wait_timeout(state, Duration::from_millis(200))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        state.uploads += 1;
        self.uploading = true;
        true
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        if self.reading_head {
            state.heads -= 1;
        }
        if self.uploading {
            state.uploads -= 1;
        }
        if let Some(open) = state.per_peer.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                state.per_peer.remove(&self.ip);
            }
        }
        drop(state);
        if self.uploading {
            self.gate.freed.notify_one();
        }
    }
}

/// One client connection: one request, one answer, then closed.
struct Connection {
    reader: BufReader<TcpStream>,
    peer: SocketAddr,
    limits: Limits,
    /// The whole request head must have arrived by then: a client
    /// trickling header bytes is cut off after the head timeout.
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
    fn new(stream: TcpStream, peer: SocketAddr, limits: Limits) -> Connection {
        Connection {
            reader: BufReader::with_capacity(64 * 1024, stream),
            peer,
            limits,
            head_deadline: Instant::now() + limits.head_timeout,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        config: &ShippingConfig,
        class_name: &str,
        class: &crate::config::StorageClass,
        members: &dyn MemberKeys,
        log: &(dyn Fn(&str) + Sync),
        ticket: &mut Ticket<'_>,
        shutdown: &AtomicBool,
    ) {
        let head = self.read_head();
        ticket.head_done();
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return, // closed before sending anything
            Err(rejection) => {
                log(&format!("refused request from {}: {rejection}", self.peer));
                self.answer(rejection.status, &rejection.reason);
                return;
            }
        };
        let _ = self
            .reader
            .get_ref()
            .set_read_timeout(Some(self.limits.idle_timeout));
        let answer = match head.method.as_str() {
            "PUT" => {
                if ticket.take_upload_slot(self.limits.uploads, shutdown) {
                    self.receive(&head, config, class_name, class, members)
                } else {
                    Err(Rejection {
                        status: 503,
                        reason: "the server is shutting down; try again later".into(),
                    })
                }
            }
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
        let head_timeout = self.limits.head_timeout;
        let late = || Rejection {
            status: 408,
            reason: format!(
                "request head not complete within {} s (head_timeout)",
                head_timeout.as_secs()
            ),
        };
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            // Each read waits no longer than the head has left.
            let left = self.head_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late());
            }
            let wait = left.min(self.limits.idle_timeout);
            let _ = self.reader.get_ref().set_read_timeout(Some(wait));
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) && Instant::now() >= self.head_deadline =>
                {
                    return Err(late())
                }
                Err(err) => {
                    return Err(Rejection {
                        status: 400,
                        reason: format!("request head not received: {err}"),
                    })
                }
            };
            if available.is_empty() {
                if buffer.is_empty() {
                    return Ok(None);
                }
                return Err(Rejection {
                    status: 400,
                    reason: "request head not received: the connection was closed mid-way".into(),
                });
            }
            // Take bytes up to the end of the head only; the rest is body.
            let mut taken = 0;
            let mut complete = false;
            for &byte in available {
                if byte == b'\n' && !buffer.ends_with(b"\r") {
                    return Err(Rejection {
                        status: 400,
                        reason: "a line of the request head ends in a bare LF: HTTP/1.1 lines end in CRLF".into(),
                    });
                }
                buffer.push(byte);
                taken += 1;
                // Checked byte by byte: a head that arrives in one read
                // is held to the limit too.
                if buffer.len() > MAX_HEAD {
                    return Err(Rejection {
                        status: 431,
                        reason: format!("request head larger than {MAX_HEAD} bytes"),
                    });
                }
                if buffer.ends_with(b"\r\n\r\n") {
                    complete = true;
                    break;
                }
            }
            self.reader.consume(taken);
            if complete {
                break;
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
        let chunked = match header("transfer-encoding") {
            None => false,
            Some(te) if te.eq_ignore_ascii_case("chunked") => true,
            Some(te) => {
                return Err(bad(format!(
                    "Transfer-Encoding {te:?} is not accepted: send the packet as it is, with Content-Length or with Transfer-Encoding: chunked alone"
                )))
            }
        };
        let declared = match header("content-length") {
            _ if chunked => None,
            Some(text) => Some(
                text.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| text.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| {
                        bad(format!(
                            "Content-Length {text:?} is not a number of bytes (decimal digits only, no sign)"
                        ))
                    })?,
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
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
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

#[cfg(test)]
mod failure_words {
    use super::http_failure;

    #[test]
    fn failures_read_without_ureqs_internal_prefixes() {
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            http_failure(&refused),
            "connection refused (no shipping server listens there)"
        );
        assert_eq!(http_failure(&ureq::Error::HostNotFound), "host not found");
        let other = ureq::Error::Io(std::io::Error::other("broken pipe"));
        assert!(!http_failure(&other).starts_with("io:"));
    }
}
