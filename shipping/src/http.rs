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
//!
//! An upload may be resumed (FORMAT.md, "Resuming an upload"): the sender
//! asks `HEAD /packets/NAME` with the packet's size and SHA-256
//! (`X-Syncreplica-Size`, `X-Syncreplica-Sha256`), is told the bytes held
//! (`X-Syncreplica-Held`), and sends the rest with
//! `X-Syncreplica-Offset`; the receiver keeps what a cut-off upload
//! brought, and verifies the whole before storing it.

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
/// sender checks before it lets go of its copy. In a request (`HEAD`, or
/// a `PUT` that may be resumed): the SHA-256 of the whole packet.
pub const SHA256_HEADER: &str = "X-Syncreplica-Sha256";
/// Request header of a resumable upload: the whole packet's size in bytes.
pub const SIZE_HEADER: &str = "X-Syncreplica-Size";
/// Request header of a resumed upload: the offset its body starts at.
pub const OFFSET_HEADER: &str = "X-Syncreplica-Offset";
/// Answer header to `HEAD /packets/NAME`: the bytes held of that packet
/// (of the size and SHA-256 the request names), to be sent no more.
pub const HELD_HEADER: &str = "X-Syncreplica-Held";

/// Sends packet `order.packet` from `from` to the shipping server at
/// `url` for `destinations`; returns the server's answer. The packet is
/// checked against the order while it is sent: a packet that no longer
/// matches is broken off, and the server stores nothing. See
/// [`upload_limited`].
pub fn upload(
    url: &str,
    from: &dyn BayStore,
    order: &ShippingOrder,
    destinations: &[&str],
) -> Result<String> {
    upload_limited(url, from, order, destinations, &Limit::default())
}

/// How an upload is held to what its link allows.
#[derive(Debug, Clone, Default)]
pub struct Limit {
    /// Bytes a second sent at most.
    pub max_rate: Option<u64>,
    /// The upload is cut off at this time (the end of the link's hours
    /// window, named by the string), to be resumed later.
    pub until: Option<(DateTime<Utc>, String)>,
}

/// [`upload`], resuming from what the server already holds of the packet
/// (asked with `HEAD`; see FORMAT.md, "Resuming an upload") and held to
/// `limit`: only the bytes the server lacks cross the link. The whole
/// packet is still read here and checked against the order.
pub fn upload_limited(
    url: &str,
    from: &dyn BayStore,
    order: &ShippingOrder,
    destinations: &[&str],
    limit: &Limit,
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
        // The PUT asks `Expect: 100-continue`: a receiver that refuses at
        // once (409: another upload of the packet is running there) says
        // so before the body leaves, instead of closing on it (which reads
        // here as a broken pipe). A receiver that never answers 100 gets
        // the body after this wait.
        .timeout_await_100(Some(Duration::from_secs(10)))
        .build();
    let agent: ureq::Agent = config.into();
    let deadline = limit.until.as_ref().map(|(end, why)| {
        let left = (*end - Utc::now()).to_std().unwrap_or_default();
        (Instant::now() + left, why.clone())
    });
    // A resumed upload may meet the end of the cut-off one still being
    // written down there (409, 416): it asks again, a few times.
    let mut tries = 0;
    loop {
        tries += 1;
        let held = match ask_held(&agent, &target, order, destinations) {
            Held::Whole(text) => {
                return Ok(format!(
                    "{text}; its body was not sent again (SHA-256 confirmed)"
                ))
            }
            Held::Part(held) => held,
        };
        match send_rest(
            &agent,
            &target,
            from,
            order,
            destinations,
            held,
            limit,
            &deadline,
        ) {
            Err(Sent::Busy(_)) if tries < 4 => {
                std::thread::sleep(Duration::from_millis(500 * tries));
            }
            Err(Sent::Busy(message)) => {
                return Err(Error::Busy {
                    hop: url.to_string(),
                    message: format!("{message} (asked {tries} times)"),
                })
            }
            Err(Sent::Failed(message)) => return Err(failed(message)),
            Err(Sent::Error(err)) => return Err(err),
            Ok(text) if held > 0 => {
                return Ok(format!(
                    "{text} (resumed: {} of {} bytes sent, {held} were there)",
                    order.size - held,
                    order.size
                ))
            }
            Ok(text) => return Ok(text),
        }
    }
}

/// How a try at sending went wrong.
enum Sent {
    /// Worth asking again at once (another upload of it is ending).
    Busy(String),
    Failed(String),
    Error(Error),
}

/// What the server at the other end holds of a packet.
enum Held {
    /// Bytes of a cut-off upload (0: none).
    Part(u64),
    /// The packet whole, stored for the destinations asked about: the
    /// server's answer text.
    Whole(String),
}

/// What the server at `target` holds of the packet for `destinations`:
/// [`Held::Whole`] only when it confirms the order's SHA-256; else the
/// bytes held, 0 when it holds none, cannot tell or does not answer (an
/// older server: it gets the whole).
fn ask_held(
    agent: &ureq::Agent,
    target: &str,
    order: &ShippingOrder,
    destinations: &[&str],
) -> Held {
    let Ok(response) = agent
        .head(target)
        .header(SIZE_HEADER, order.size.to_string())
        .header(SHA256_HEADER, &order.sha256)
        .header(DESTINATIONS_HEADER, destinations.join(","))
        .call()
    else {
        return Held::Part(0);
    };
    if response.status().as_u16() != 200 {
        return Held::Part(0);
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let whole = header(SHA256_HEADER).is_some_and(|sha| sha.eq_ignore_ascii_case(&order.sha256));
    let held = header(HELD_HEADER)
        .as_deref()
        .and_then(decimal)
        .filter(|held| *held <= order.size)
        .unwrap_or(0);
    if whole {
        return Held::Whole(format!("{}: already stored there whole", order.packet));
    }
    Held::Part(held)
}

/// Sends the packet from byte `held` on; the server's answer text.
#[allow(clippy::too_many_arguments)]
fn send_rest(
    agent: &ureq::Agent,
    target: &str,
    from: &dyn BayStore,
    order: &ShippingOrder,
    destinations: &[&str],
    held: u64,
    limit: &Limit,
    deadline: &Option<(Instant, String)>,
) -> std::result::Result<String, Sent> {
    let mismatch = AtomicBool::new(false);
    let mismatched = || {
        Sent::Error(Error::PacketMismatch {
            bay: from.describe(),
            packet: order.packet.clone(),
            why: "its size or SHA-256 differs from the order's".to_string(),
        })
    };
    let _sending = crate::progress::phase(
        &format!("sending {}", order.packet),
        crate::progress::Unit::Bytes,
        Some(order.size),
    );
    let mut reader = CheckingReader::new(
        from.open(&order.packet).map_err(Sent::Error)?,
        order,
        &mismatch,
    );
    // What the server holds is read here all the same: the whole packet
    // is checked against the order before its last byte is sent.
    if let Err(err) = io::copy(&mut (&mut reader).take(held), &mut io::sink()) {
        if mismatch.load(Ordering::Relaxed) {
            return Err(mismatched());
        }
        return Err(Sent::Error(from.error(&order.packet, err)));
    }
    let mut body = crate::link::Throttle::new(&mut reader, limit.max_rate, deadline.clone());
    let result = agent
        .put(target)
        .header("Content-Length", (order.size - held).to_string())
        .header("Content-Type", "application/zip")
        .header(EXPIRES_HEADER, format_time(&order.expires))
        .header(DESTINATIONS_HEADER, destinations.join(","))
        .header(SHA256_HEADER, &order.sha256)
        .header(SIZE_HEADER, order.size.to_string())
        .header(OFFSET_HEADER, held.to_string())
        .header("Expect", "100-continue")
        .send(ureq::SendBody::from_reader(&mut body));
    if mismatch.load(Ordering::Relaxed) {
        return Err(mismatched());
    }
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            if let Some((at, why)) = deadline {
                if Instant::now() >= *at {
                    return Err(Sent::Failed(format!(
                        "{why}: the upload was cut off, to resume where it stopped in the next window"
                    )));
                }
            }
            return Err(Sent::Failed(http_failure(&err)));
        }
    };
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
    if status == 409 || status == 416 {
        return Err(Sent::Busy(format!("refused with HTTP {status}: {text}")));
    }
    if status != 200 && status != 201 {
        return Err(Sent::Failed(format!("refused with HTTP {status}: {text}")));
    }
    // Only a shipping server that stored this very packet says so.
    match confirmed {
        Some(sha256) if sha256.eq_ignore_ascii_case(&order.sha256) => Ok(text),
        Some(sha256) => Err(Sent::Failed(format!(
            "answered {status} but confirmed SHA-256 {sha256}, not {}",
            order.sha256
        ))),
        None => Err(Sent::Failed(format!(
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
        let mut extra = String::new();
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
            "HEAD" => self
                .held(&head, config, class_name, class)
                .map(|(held, text, whole)| {
                    extra = format!("{HELD_HEADER}: {held}\r\n");
                    (200, text, whole)
                }),
            _ => Err(Rejection {
                status: 405,
                reason: format!(
                    "{} {}: only PUT /packets/NAME (and HEAD, to ask how much of it is held) is served",
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
        if let Some(sha) = sha256 {
            extra.push_str(&format!("{SHA256_HEADER}: {sha}\r\n"));
        }
        self.answer_with(status, &text, &extra, head.method == "HEAD");
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

    /// `HEAD /packets/NAME` with the packet's size and SHA-256: how many
    /// of its bytes this server holds from an earlier, cut-off upload,
    /// and, with the SHA-256 to answer in [`SHA256_HEADER`], whether it
    /// holds the packet whole already for the destinations the request
    /// names ([`DESTINATIONS_HEADER`]; see [`Receiver::held_whole`]).
    fn held(
        &self,
        head: &Head,
        config: &ShippingConfig,
        class_name: &str,
        class: &crate::config::StorageClass,
    ) -> Result<(u64, String, Option<String>), Rejection> {
        let name = packet_name(&head.path);
        let header = |wanted: &str| head.headers.get(&wanted.to_ascii_lowercase()).cloned();
        let bad = |reason: String| Rejection {
            status: 400,
            reason,
        };
        let size = header(SIZE_HEADER)
            .ok_or_else(|| bad(format!("HEAD {}: {SIZE_HEADER} missing", head.path)))?;
        let size = decimal(&size)
            .ok_or_else(|| bad(format!("{SIZE_HEADER} {size:?} is not a number of bytes")))?;
        let sha256 = header(SHA256_HEADER)
            .ok_or_else(|| bad(format!("HEAD {}: {SHA256_HEADER} missing", head.path)))?;
        let receiver = Receiver {
            config,
            class_name: class_name.to_string(),
            class: class.clone(),
            trusted_keys: Vec::new(),
            trust: Default::default(),
        };
        let destinations: Vec<String> = header(DESTINATIONS_HEADER)
            .filter(|text| !text.is_empty())
            .map(|text| text.split(',').map(|d| d.trim().to_string()).collect())
            .unwrap_or_default();
        if receiver.held_whole(name, size, &sha256, &destinations)? {
            return Ok((
                0,
                format!(
                    "{name}: already stored here whole for {}",
                    destinations.join(", ")
                ),
                Some(sha256.to_ascii_lowercase()),
            ));
        }
        let held = receiver.held(name, size, &sha256)?;
        Ok((held, format!("{name}: {held} of {size} bytes held"), None))
    }

    fn receive(
        &mut self,
        head: &Head,
        config: &ShippingConfig,
        class_name: &str,
        class: &crate::config::StorageClass,
        members: &dyn MemberKeys,
    ) -> Result<(u16, String, Option<String>), Rejection> {
        let name = packet_name(&head.path);
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
        let trust = crate::trust::trust(config, members).map_err(|err| Rejection {
            status: 500,
            reason: err.to_string(),
        })?;
        let receiver = Receiver {
            config,
            class_name: class_name.to_string(),
            class: class.clone(),
            trusted_keys: trust.keys.clone(),
            trust,
        };
        // A resumable upload names the whole packet (size, SHA-256) and
        // where its body starts.
        let resume = match (header(SHA256_HEADER), declared) {
            (Some(sha256), Some(length)) => {
                let number = |key: &str| -> Result<Option<u64>, Rejection> {
                    header(key)
                        .map(|text| {
                            decimal(&text).ok_or_else(|| {
                                bad(format!("{key} {text:?} is not a number of bytes"))
                            })
                        })
                        .transpose()
                };
                let start = number(OFFSET_HEADER)?.unwrap_or(0);
                let size = number(SIZE_HEADER)?.unwrap_or(start.saturating_add(length));
                if start.checked_add(length) != Some(size) {
                    return Err(bad(format!(
                        "{OFFSET_HEADER} {start} plus Content-Length {length} is not {SIZE_HEADER} {size}"
                    )));
                }
                Some((sha256, size, start))
            }
            _ => None,
        };
        // Refuse what can be refused before the client sends the body.
        receiver.precheck(name, resume.as_ref().map(|r| r.1).or(declared))?;
        // The 100 goes out when the body is first read: what is refused
        // before that (another upload of the packet running here, 409)
        // is answered while the client still waits with its body.
        let mut continued = Continue {
            inner: &mut self.reader,
            pending: header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")),
        };
        let receipt = if let Some((sha256, size, start)) = &resume {
            let length = declared.expect("a length when resumable");
            let mut body = (&mut continued).take(length);
            receiver.receive_resumable(
                name,
                crate::receive::Resume {
                    size: *size,
                    sha256,
                    start: *start,
                },
                &mut body,
                expires,
                destinations.as_deref(),
                Utc::now(),
            )?
        } else if chunked {
            let mut body = ChunkedBody::new(&mut continued);
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
            let mut body = (&mut continued).take(length);
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

/// A request body that sends `100 Continue` to the client before it is
/// first read, when the client asked for it (`pending`).
struct Continue<'a> {
    inner: &'a mut BufReader<TcpStream>,
    pending: bool,
}

impl Continue<'_> {
    fn go_on(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.pending) {
            let stream = self.inner.get_mut();
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            stream.flush()?;
        }
        Ok(())
    }
}

impl Read for Continue<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.go_on()?;
        self.inner.read(buf)
    }
}

impl BufRead for Continue<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.go_on()?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount)
    }
}

/// The packet name in a request path: `/packets/NAME` or `/NAME`.
fn packet_name(path: &str) -> &str {
    path.strip_prefix("/packets/")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path)
}

/// A decimal number of bytes: digits only, no sign.
fn decimal(text: &str) -> Option<u64> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u64>().ok())
        .flatten()
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
        416 => "Range Not Satisfiable",
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

    use crate::bay::MemStore;
    use crate::config::StorageClass;
    use crate::test_packets::*;

    /// A receiver's configuration under `dir`: local replica "ship", the
    /// test sender's key trusted.
    fn receiver_config(dir: &std::path::Path) -> ShippingConfig {
        let mut config = config(dir);
        config.local_replicas = vec!["ship".into()];
        config.trusted_keys =
            vec![
                crate::config::TrustedKey::parse(&hex::encode(public_key(&SENDER_SECRET))).unwrap(),
            ];
        config
    }

    /// A packet for "ship" of about `size` bytes of noise, written under
    /// `dir`/src, put in a sender's bay (in memory) and ordered for "ship"
    /// in `config`'s class "default": the bay, the packet's name and bytes,
    /// the class and the order.
    fn queued_for_ship(
        dir: &std::path::Path,
        config: &ShippingConfig,
        size: usize,
    ) -> (MemStore, String, Vec<u8>, StorageClass, ShippingOrder) {
        let sent = packet_with_noise(&dir.join("src"), "ship", 1, size, 16);
        let name = sent.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = std::fs::read(&sent).unwrap();
        let from = MemStore::new("sender");
        from.write(&name, &bytes).unwrap();
        let class = config.class("default").unwrap().clone();
        let order =
            ShippingOrder::create(&from, &name, "default", &class, &["ship"], Utc::now()).unwrap();
        (from, name, bytes, class, order)
    }

    /// A server on a free local port (10 s timeouts, 4 uploads, 8 per
    /// peer) and its URL.
    fn local_server() -> (HttpServer, String) {
        let limits = Limits {
            idle_timeout: Duration::from_secs(10),
            head_timeout: Duration::from_secs(10),
            uploads: 4,
            per_peer: 8,
        };
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), limits).unwrap();
        let url = format!("http://{}", server.addr());
        (server, url)
    }

    /// Member keys for a server with no local replica's family to ask.
    fn no_member_keys(
        _: &std::path::Path,
    ) -> std::result::Result<Vec<[u8; 32]>, crate::trust::MemberKeysError> {
        Ok(Vec::new())
    }

    #[test]
    fn an_upload_cut_at_the_end_of_its_window_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let config = receiver_config(dir.path());
        let (from, name, bytes, class, order) = queued_for_ship(dir.path(), &config, 1 << 20);

        let (server, url) = local_server();
        let shutdown = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| server.serve(&config, "default", &shutdown, &no_member_keys, &|_| {}));
            // 512 KiB/s and a window closing in a second: cut about half way.
            let limit = Limit {
                max_rate: Some(512 << 10),
                until: Some((
                    Utc::now() + chrono::TimeDelta::seconds(1),
                    "the window ended".into(),
                )),
            };
            let cut = upload_limited(&url, &from, &order, &["ship"], &limit).unwrap_err();
            assert!(cut.to_string().contains("the window ended"), "{cut}");
            let receiver = Receiver {
                config: &config,
                class_name: "default".into(),
                class: class.clone(),
                trusted_keys: Vec::new(),
                trust: Default::default(),
            };
            // The receiver may still be writing down the end of it.
            let mut held = 0;
            for _ in 0..50 {
                held = receiver.held(&name, order.size, &order.sha256).unwrap();
                if held > 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                held > 100 << 10 && held < order.size,
                "{held} of {}",
                order.size
            );

            let done = upload_limited(&url, &from, &order, &["ship"], &Limit::default()).unwrap();
            assert!(done.contains("(resumed: "), "{done}");
            let incoming = dir.path().join("bays/incoming");
            assert_eq!(std::fs::read(incoming.join(&name)).unwrap(), bytes);
            assert_eq!(receiver.held(&name, order.size, &order.sha256).unwrap(), 0);
            shutdown.store(true, Ordering::SeqCst);
        });
    }

    #[test]
    fn a_packet_already_stored_whole_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = receiver_config(dir.path());
        config.destinations.insert(
            "far".into(),
            crate::config::Hop::Url("http://127.0.0.1:9".into()),
        );
        let (from, _, _, _, order) = queued_for_ship(dir.path(), &config, 256 << 10);
        let (server, url) = local_server();
        let shutdown = AtomicBool::new(false);
        let lines = Mutex::new(Vec::<String>::new());
        let log = |line: &str| lines.lock().unwrap().push(line.to_string());
        let puts = || {
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with("accepted PUT"))
                .count()
        };
        std::thread::scope(|scope| {
            scope.spawn(|| server.serve(&config, "default", &shutdown, &no_member_keys, &log));
            let first = upload(&url, &from, &order, &["ship"]).unwrap();
            assert!(!first.contains("not sent again"), "{first}");
            assert_eq!(puts(), 1);
            // Stored whole for "ship": asked, confirmed, not sent.
            let again = upload(&url, &from, &order, &["ship"]).unwrap();
            assert!(again.contains("already stored there whole"), "{again}");
            assert!(again.contains("not sent again"), "{again}");
            assert_eq!(puts(), 1, "{:?}", lines.lock().unwrap());
            // Other bytes under that name (an order that no longer matches
            // the packet there) are not confirmed: sent, and refused there.
            let mut other = order.clone();
            other.sha256 = "0".repeat(64);
            let refused = upload(&url, &from, &other, &["ship"]).unwrap_err();
            assert!(
                !refused.to_string().contains("stored there whole"),
                "{refused}"
            );
            // Not yet held for a further destination: sent in full.
            let more = upload(&url, &from, &order, &["ship", "far"]).unwrap();
            assert!(!more.contains("not sent again"), "{more}");
            assert_eq!(puts(), 2);
            // Now held for both.
            let both = upload(&url, &from, &order, &["far", "ship"]).unwrap();
            assert!(both.contains("not sent again"), "{both}");
            assert_eq!(puts(), 2);
            shutdown.store(true, Ordering::SeqCst);
        });
    }

    #[test]
    fn an_upload_refused_as_busy_is_read_asked_again_and_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let config = receiver_config(dir.path());
        let (from, name, _, class, order) = queued_for_ship(dir.path(), &config, 8 << 20);
        // Another upload of the packet holds the partial.
        let partials = crate::receive::make_partial_dir(&class).unwrap();
        let (data, _) = crate::receive::partial_paths(&partials, &name);
        let held = std::fs::File::create(&data).unwrap();
        held.lock().unwrap();
        let (server, url) = local_server();
        let shutdown = AtomicBool::new(false);
        let lines = Mutex::new(Vec::<String>::new());
        let log = |line: &str| lines.lock().unwrap().push(line.to_string());
        std::thread::scope(|scope| {
            scope.spawn(|| server.serve(&config, "default", &shutdown, &no_member_keys, &log));
            // A slow link: the receiver does not wait for the whole body
            // to go by before it closes.
            let slow = Limit {
                max_rate: Some(1 << 20),
                until: None,
            };
            let busy = upload_limited(&url, &from, &order, &["ship"], &slow).unwrap_err();
            assert!(matches!(busy, Error::Busy { .. }), "{busy:?}");
            let text = busy.to_string();
            assert!(text.contains("409"), "{text}");
            assert!(
                text.contains("another upload of this packet is in progress"),
                "{text}"
            );
            assert!(text.contains("asked 4 times"), "{text}");
            assert!(!text.to_lowercase().contains("broken pipe"), "{text}");
            // Once the other upload has ended, the packet goes through.
            held.unlock().unwrap();
            upload(&url, &from, &order, &["ship"]).unwrap();
            shutdown.store(true, Ordering::SeqCst);
        });
    }

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
