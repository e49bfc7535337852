//! Accepting connections: admission, TLS and timeouts before a byte reaches HTTP.
//!
//! Every socket on the internet is a potential attacker holding a file descriptor. So before
//! a connection is served it must be admitted (a global cap and a per-IP cap, checked at
//! accept), its TLS handshake must finish in time, and its request head must arrive in time
//! (hyper's header timeout, which also ends idle keep-alive connections). When the process runs
//! out of file descriptors the accept loop backs off instead of spinning, and the caps keep a
//! reserve of descriptors for the store, the broker and outgoing deliveries.
//!
//! The admission guard travels inside the connection's IO, so a connection upgraded to a
//! WebSocket keeps its slot until the socket closes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use dashmap::DashMap;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::logs::Throttle;

/// Limits that apply to every connection, on every listener.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections open at once, all listeners together (WebSockets included).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// Time for a TLS handshake to finish.
    pub handshake_timeout: Duration,
    /// Time for a request's head to arrive, and for an idle keep-alive connection to send
    /// its next request.
    pub header_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed; every other peer is the client itself.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_connections_per_ip: 1_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}

/// File descriptors kept free for everything that is not a client connection: the store's
/// pool, the broker, outgoing deliveries, log files, and an operator's health check.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the process's soft descriptor limit to the hard one, and returns the connection cap
/// that leaves [`RESERVED_DESCRIPTORS`] free.
pub fn default_max_connections() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    limit.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ServerFull,
    AddressFull,
}

/// The connection counts every listener shares.
#[derive(Debug)]
pub struct Admission {
    limits: ListenerLimits,
    open: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(limits: ListenerLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: AtomicUsize::new(0),
            per_ip: DashMap::new(),
        })
    }

    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    /// Connections open now, all listeners together.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether `peer` is a proxy whose forwarding headers are believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.limits
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }

    /// The client's address: the peer itself, or the last address a trusted proxy chain
    /// appended to `X-Forwarded-For` (addresses a client wrote itself are never believed).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted_proxy(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// Counts a connection from `ip`, or says why it cannot be let in. Connections from a
    /// trusted proxy count only against the global cap here; their clients are counted by
    /// address when they open a WebSocket (see [`Admission::admit_forwarded`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<AdmissionGuard, Refusal> {
        let per_ip = !self.is_trusted_proxy(ip);
        self.admit_counted(ip, per_ip, true)
    }

    /// Counts a WebSocket from `client` behind a trusted proxy against the per-IP cap only
    /// (its TCP connection already holds a global slot).
    pub fn admit_forwarded(self: &Arc<Self>, client: IpAddr) -> Result<AdmissionGuard, Refusal> {
        self.admit_counted(client, true, false)
    }

    fn admit_counted(
        self: &Arc<Self>,
        ip: IpAddr,
        per_ip: bool,
        global: bool,
    ) -> Result<AdmissionGuard, Refusal> {
        if global {
            let before = self.open.fetch_add(1, Ordering::AcqRel);
            if before >= self.limits.max_connections {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ServerFull);
            }
        }
        if per_ip {
            let mut count = self.per_ip.entry(ip).or_insert(0);
            if *count >= self.limits.max_connections_per_ip {
                drop(count);
                if global {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                }
                return Err(Refusal::AddressFull);
            }
            *count += 1;
        }
        Ok(AdmissionGuard {
            admission: self.clone(),
            ip: per_ip.then_some(ip),
            global,
        })
    }
}

/// One admitted connection's slot; given back when dropped.
#[derive(Debug)]
pub struct AdmissionGuard {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
    global: bool,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        if self.global {
            self.admission.open.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(ip) = self.ip {
            self.admission.per_ip.remove_if_mut(&ip, |_, count| {
                *count = count.saturating_sub(1);
                *count == 0
            });
        }
    }
}

/// A connection's IO carrying its admission slot, so the slot lives exactly as long as the
/// socket (through a WebSocket upgrade too).
struct Admitted<S> {
    io: S,
    _guard: AdmissionGuard,
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Which door a request came in by. The operator's listener (`admin_addr`) is meant to be
/// reachable only from inside; there `/metrics` and the health details need no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerRole {
    Public,
    Operator,
}

/// Whether a request's connection was TLS-terminated by this server (put on every request,
/// beside [`ListenerRole`]); behind a proxy, see `http::extract::Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsTerminated(pub bool);

/// One listening socket and how to serve it.
pub struct Listener {
    pub tcp: TcpListener,
    /// TLS termination, when this listener is `https`/`wss`.
    pub tls: Option<TlsAcceptor>,
    pub role: ListenerRole,
}

/// How long the accept loop waits after the process ran out of file descriptors.
const EMFILE_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `stop_accepting` turns true, then drops the listening socket at
/// once (so a restarting deployment's clients go elsewhere) and returns. Connections already
/// accepted finish their current HTTP request; WebSockets are closed by the hub.
pub async fn serve(
    listener: Listener,
    router: Router,
    admission: Arc<Admission>,
    mut stop_accepting: watch::Receiver<bool>,
) {
    let Listener { tcp, tls, role } = listener;
    let protocols = Protocols::new(admission.limits());
    let refused_log = Throttle::new(Duration::from_secs(10));
    let error_log = Throttle::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if let Some(suppressed) = error_log.ready() {
                        tracing::warn!(error = %e, suppressed, "accept failed");
                    }
                    if is_out_of_descriptors(&e) {
                        tokio::time::sleep(EMFILE_BACKOFF).await;
                    }
                    continue;
                }
            },
            _ = until_true(&mut stop_accepting) => break,
        };
        let guard = match admission.admit(peer.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
                if let Some(suppressed) = refused_log.ready() {
                    tracing::warn!(?refusal, peer = %peer.ip(), suppressed, "connection refused");
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&tcp_keepalive());
        let connection = Connection {
            protocols: protocols.clone(),
            router: router.clone(),
            peer,
            role,
            tls: TlsTerminated(tls.is_some()),
            stop: stop_accepting.clone(),
        };
        match &tls {
            None => {
                let io = Admitted {
                    io: stream,
                    _guard: guard,
                };
                tokio::spawn(connection.serve(io, false));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let timeout = admission.limits().handshake_timeout;
                tokio::spawn(async move {
                    if let Some(stream) = handshake(acceptor, stream, timeout, peer).await {
                        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let io = Admitted {
                            io: stream,
                            _guard: guard,
                        };
                        connection.serve(io, http2).await;
                    }
                });
            }
        }
    }
    tracing::debug!(addr = ?tcp.local_addr().ok(), "listener closed");
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, peer = %peer.ip(), "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %peer.ip(), "TLS handshake timed out");
            None
        }
    }
}

/// TCP keep-alive on every accepted socket: a peer that vanished (a phone that lost its
/// network, a crashed machine) is noticed by the kernel within about 90 s even on a socket
/// that exchanges no WebSocket pings (Pushi-dialect clients, which cannot take them).
fn tcp_keepalive() -> socket2::TcpKeepalive {
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3)
}

/// Resolves once the flag is true (or its sender is gone), holding no borrow of it after.
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        || e.kind() == io::ErrorKind::OutOfMemory
}

/// HTTP/1.1 for plain connections and for TLS clients that did not ask for HTTP/2: the head
/// of each request (and the next request on a kept-alive connection) must arrive within
/// `header_timeout`, counted from the connection's first moment. HTTP/2 only where TLS
/// negotiated it (ALPN), with pings so a dead peer is noticed. (Sniffing the protocol on a
/// plain connection would wait for a first byte without any deadline.)
#[derive(Clone)]
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &ListenerLimits) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(100);
        Self { http1, http2 }
    }
}

/// One accepted connection, served by hyper with the router.
struct Connection {
    protocols: Protocols,
    router: Router,
    peer: SocketAddr,
    role: ListenerRole,
    tls: TlsTerminated,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn serve<S>(self, io: S, http2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router;
        let peer = self.peer;
        let role = self.role;
        let tls = self.tls;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(role);
            request.extensions_mut().insert(tls);
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let io = TokioIo::new(io);
        if http2 {
            let conn = self.protocols.http2.serve_connection(io, service);
            drive(conn, self.stop, |c| c.graceful_shutdown()).await;
        } else {
            let conn = self
                .protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, self.stop, |c| c.graceful_shutdown()).await;
        }
    }
}

/// Runs a hyper connection to its end; when `stop` turns true, asks it to finish the request
/// in flight and close.
async fn drive<C>(conn: C, mut stop: watch::Receiver<bool>, shutdown: impl FnOnce(Pin<&mut C>))
where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = until_true(&mut stop) => shutdown(conn.as_mut()),
    }
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_ip: usize, total: usize, proxies: &[&str]) -> Arc<Admission> {
        Admission::new(ListenerLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            ..ListenerLimits::default()
        })
    }

    #[test]
    fn caps_per_address_and_in_total_and_gives_slots_back() {
        let a = admission(2, 3, &[]);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = a.admit(one).unwrap();
        let _g2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), Refusal::AddressFull);
        let _g3 = a.admit(two).unwrap();
        assert_eq!(a.admit(two).unwrap_err(), Refusal::ServerFull);
        drop(g1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(one).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let a = admission(10, 10, &["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            a.client_ip(stranger, Some("1.2.3.4")),
            stranger,
            "a client cannot pick its own address"
        );
        assert_eq!(
            a.client_ip(proxy, Some("1.2.3.4, 198.51.100.7")),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the address the trusted proxy saw, not what the client claimed before it"
        );
        assert_eq!(
            a.client_ip(proxy, Some("198.51.100.7, 10.9.9.9")),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "a chain of trusted proxies is walked back"
        );
        assert_eq!(a.client_ip(proxy, Some("garbage")), proxy);
        // the proxy's own TCP connections do not use up one address's quota
        for _ in 0..5 {
            std::mem::forget(a.admit(proxy).unwrap());
        }
        assert!(a.admit_forwarded("1.2.3.4".parse().unwrap()).is_ok());
    }
}
