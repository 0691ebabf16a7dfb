//! The echo test server (`tcplab serve`): the protocol of [`tcplab_core::protocol`] over
//! real sockets.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests (and `tcplab lab`)
//! bind `127.0.0.1:0` and stop it with their own signal, as mini-redis does. Shutdown is
//! graceful and ordered: stop listening, then tell every client, close each with FIN, wait
//! for every connection task to finish.
//!
//! Robustness rules: a client's reset, EOF, half-close, garbage or overlong line never
//! disturbs another client or the server; on EOF the server answers the complete lines it
//! has and closes at once, so no socket of ours is ever left in CLOSE_WAIT.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tcplab_core::protocol::{self, Event, Session, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::log::{self, Log};

/// The default listen address: loopback only, the classic example's port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 54321);

/// How much one read takes from the socket.
const READ_SIZE: usize = 16 * 1024;

/// Command-line arguments of `tcplab serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address and port to listen on (port 0 picks a free one; IPv6 as [::1]:PORT).
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Length of the kernel's accept queue, as passed to listen(2).
    #[arg(long, default_value_t = 5)]
    pub backlog: i32,
    /// Do not set SO_REUSEADDR (then a TIME_WAIT socket on the port blocks a restart).
    #[arg(long)]
    pub no_reuseaddr: bool,
    /// Set SO_REUSEPORT, so several servers can share the port.
    #[arg(long)]
    pub reuseport: bool,
    /// Serve one client at a time, like the classic example; others wait in the kernel's
    /// accept queue.
    #[arg(long)]
    pub sequential: bool,
    /// Most connections served at once; above it a client is told the server is busy.
    #[arg(long, default_value_t = 10_000)]
    pub max_conns: usize,
    /// Close a connection idle this many seconds (0 = never).
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Longest line in bytes; a longer one gets an error reply and is discarded.
    #[arg(long, default_value_t = protocol::DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Honour `shutdown` from any peer, not only from this machine.
    #[arg(long)]
    pub allow_remote_shutdown: bool,
    /// Do not log connection events to stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// How the listening socket is set up.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Address to bind.
    pub addr: SocketAddr,
    /// listen(2) backlog.
    pub backlog: i32,
    /// SO_REUSEADDR.
    pub reuseaddr: bool,
    /// SO_REUSEPORT.
    pub reuseport: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            addr: DEFAULT_LISTEN,
            backlog: 5,
            reuseaddr: true,
            reuseport: false,
        }
    }
}

/// Behaviour of the server once it listens.
#[derive(Debug, Clone)]
pub struct Config {
    /// One client at a time.
    pub sequential: bool,
    /// Most connections served at once.
    pub max_conns: usize,
    /// Close connections idle this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Longest accepted line.
    pub max_line: usize,
    /// Honour `shutdown` from non-loopback peers.
    pub allow_remote_shutdown: bool,
    /// Where connection events go.
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sequential: false,
            max_conns: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            max_line: protocol::DEFAULT_MAX_LINE,
            allow_remote_shutdown: false,
            log: Log::Quiet,
        }
    }
}

/// Why the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A client sent `shutdown`.
    ClientShutdown,
    /// The caller's shutdown future completed (SIGINT/SIGTERM for the binary).
    Signal,
}

/// Creates the listening socket: socket(), setsockopt(), bind(), listen().
pub fn bind(options: &ListenOptions) -> io::Result<std::net::TcpListener> {
    bind_observed(options, &mut |_| {})
}

/// [`bind`], reporting each socket call as it is made (for `tcplab lab`'s timeline).
pub fn bind_observed(
    options: &ListenOptions,
    on_call: &mut dyn FnMut(String),
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(options.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    on_call("socket()".into());
    socket.set_reuse_address(options.reuseaddr)?;
    if options.reuseaddr {
        on_call("setsockopt(SO_REUSEADDR)".into());
    }
    if options.reuseport {
        socket.set_reuse_port(true)?;
        on_call("setsockopt(SO_REUSEPORT)".into());
    }
    on_call(format!("bind({})", options.addr));
    socket.bind(&options.addr.into())?;
    on_call(format!("listen({})", options.backlog));
    socket.listen(options.backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// State shared by the accept loop and every connection task.
#[derive(Debug)]
struct Shared {
    config: Config,
    /// Connections being served now.
    open: AtomicUsize,
    /// Set by a client's `shutdown`: asks the accept loop to stop.
    stop: watch::Sender<bool>,
    /// Set by the accept loop once it stopped listening: tells clients to go.
    closing: watch::Sender<bool>,
}

/// Serves `listener` until a client sends `shutdown` or `shutdown_signal` completes, then
/// shuts down gracefully and returns why it stopped.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown_signal: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    let shared = Arc::new(Shared {
        config,
        open: AtomicUsize::new(0),
        stop: watch::Sender::new(false),
        closing: watch::Sender::new(false),
    });
    let mut stop = shared.stop.subscribe();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown_signal);

    let stopped = loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE, ECONNABORTED and the like concern one connection or a
                    // moment; the server goes on.
                    shared.config.log.server(format_args!("accept failed: {err}"));
                    if is_fd_exhaustion(&err) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    continue;
                }
            },
            () = until_set(&mut stop) => break Stopped::ClientShutdown,
            () = &mut shutdown_signal => break Stopped::Signal,
        };
        while tasks.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        if shared.open.load(Ordering::Relaxed) >= shared.config.max_conns {
            shared
                .config
                .log
                .conn(peer, format_args!("refused: server busy"));
            tasks.spawn(send_busy(stream));
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let conn = serve_conn(stream, peer, Arc::clone(&shared));
        if shared.config.sequential {
            // One at a time: the next client waits in the kernel's accept queue.
            tokio::pin!(conn);
            let signalled = tokio::select! {
                () = &mut conn => false,
                () = &mut shutdown_signal => true,
            };
            if signalled {
                // Let the client being served hear the notice and get a FIN.
                shared.closing.send_replace(true);
                conn.await;
                break Stopped::Signal;
            }
            if *shared.stop.borrow() {
                break Stopped::ClientShutdown;
            }
        } else {
            tasks.spawn(conn);
        }
    };

    // Stop listening first, so no new client slips in, then tell the others.
    drop(listener);
    let why = match stopped {
        Stopped::ClientShutdown => "a client sent 'shutdown'",
        Stopped::Signal => "signal",
    };
    shared
        .config
        .log
        .server(format_args!("shutting down ({why}): stopped listening"));
    shared.closing.send_replace(true);
    while tasks.join_next().await.is_some() {}
    shared.config.log.server(format_args!("shut down"));
    Ok(stopped)
}

fn is_fd_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Tells a client over the limit that the server is busy, then closes with FIN.
async fn send_busy(mut stream: TcpStream) {
    let _ = stream.write_all(protocol::BUSY_NOTICE).await;
    let _ = stream.shutdown().await;
}

/// How a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Quit,
    Shutdown,
    ServerClosing,
    Idle,
    Eof,
    Reset,
    Error,
}

impl End {
    fn describe(self) -> &'static str {
        match self {
            End::Quit => "closed: server closed first (client sent 'quit')",
            End::Shutdown => "closed: server closed first (client sent 'shutdown')",
            End::ServerClosing => "closed: server closed first (server shutting down)",
            End::Idle => "closed: server closed first (idle timeout)",
            End::Eof => "closed: client closed first (EOF), server closed at once",
            End::Reset => "closed: client reset the connection (RST)",
            End::Error => "closed: socket error",
        }
    }
}

/// Serves one client from banner to close.
async fn serve_conn(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let log = &shared.config.log;
    log.conn(
        peer,
        format_args!("accepted ({} open)", shared.open.load(Ordering::Relaxed)),
    );
    log.call(peer, format_args!("accept()"));
    let end = match converse(&mut stream, peer, &shared).await {
        Ok(end) => end,
        Err(err) if is_reset(&err) => End::Reset,
        Err(err) => {
            log.conn(peer, format_args!("error: {err}"));
            End::Error
        }
    };
    log.call(peer, format_args!("close()"));
    drop(stream);
    shared.open.fetch_sub(1, Ordering::Relaxed);
    log.conn(peer, format_args!("{}", end.describe()));
    if end == End::Shutdown {
        // This client is closed; now stop the server.
        shared.stop.send_replace(true);
    }
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// The dialogue with one client; returns how it ended. The caller closes the socket.
async fn converse(stream: &mut TcpStream, peer: SocketAddr, shared: &Shared) -> io::Result<End> {
    let config = &shared.config;
    let log = &config.log;
    let mut closing = shared.closing.subscribe();
    let mut session = Session::new(protocol::Config {
        max_line: config.max_line,
        may_shutdown: protocol::shutdown_allowed(peer.ip(), config.allow_remote_shutdown),
    });
    let mut buf = vec![0u8; READ_SIZE];
    let mut out = Vec::with_capacity(READ_SIZE);
    log.call(peer, format_args!("write({})", protocol::BANNER.len()));
    stream.write_all(protocol::BANNER).await?;
    loop {
        let read = tokio::select! {
            biased;
            read = stream.read(&mut buf) => read?,
            () = until_set(&mut closing) => {
                stream.write_all(protocol::SHUTTING_DOWN_NOTICE).await?;
                return Ok(End::ServerClosing);
            }
            () = idle(config.idle_timeout) => {
                let _ = stream.write_all(b"idle timeout: closing\n").await;
                return Ok(End::Idle);
            }
        };
        log.call(peer, format_args!("read() = {read}"));
        if read == 0 {
            log.conn(peer, format_args!("eof{}", unterminated(&session)));
            return Ok(End::Eof);
        }
        out.clear();
        let status = session.feed(&buf[..read], &mut out, |event| match event {
            Event::Line(line) => log.conn(peer, format_args!("line '{}'", log::escape(line))),
            Event::TooLong => log.conn(peer, format_args!("line too long, discarded")),
            Event::Quit => log.conn(peer, format_args!("quit")),
            Event::Shutdown => log.conn(peer, format_args!("shutdown")),
            Event::ShutdownRefused => {
                log.conn(peer, format_args!("shutdown refused: not a loopback peer"))
            }
        });
        if !out.is_empty() {
            log.call(peer, format_args!("write({})", out.len()));
            stream.write_all(&out).await?;
        }
        match status {
            Status::Open => {}
            Status::Quit => return Ok(End::Quit),
            Status::Shutdown => return Ok(End::Shutdown),
        }
    }
}

fn unterminated(session: &Session) -> String {
    match session.buffered() {
        0 => String::new(),
        n => format!(" ({n} bytes without a line end discarded)"),
    }
}

/// Completes once the flag behind `rx` is set (or its sender is gone).
async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&set| set).await;
}

/// Completes after `timeout`, or never.
async fn idle(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// `tcplab serve`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let options = ListenOptions {
        addr: args.listen,
        backlog: args.backlog,
        reuseaddr: !args.no_reuseaddr,
        reuseport: args.reuseport,
    };
    let config = Config {
        sequential: args.sequential,
        max_conns: args.max_conns,
        idle_timeout: (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout)),
        max_line: args.max_line,
        allow_remote_shutdown: args.allow_remote_shutdown,
        log: if args.quiet { Log::Quiet } else { Log::Stderr },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = bind(&options).map_err(|err| bind_error(options.addr, err))?;
        let listener = TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        {
            use std::io::Write as _;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "listening on {local}")?;
            stdout.flush()?;
        }
        run(listener, config, termination_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn bind_error(addr: SocketAddr, err: io::Error) -> anyhow::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            " (another socket holds this port; `ss -tanp sport = :PORT` shows it. A TIME_WAIT \
             socket blocks the port unless both old and new sockets set SO_REUSEADDR)"
        }
        io::ErrorKind::AddrNotAvailable => " (no interface of this machine has that address)",
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need CAP_NET_BIND_SERVICE: run as root or pick a port >= 1024)"
        }
        _ => "",
    };
    anyhow::anyhow!("listen on {addr}: {err}{hint}")
}
