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

mod conn;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tcplab_core::protocol;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::log::Log;

/// The default listen address: loopback only, the classic example's port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 54321);

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
    let socket = Socket::new(
        Domain::for_address(options.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(options.reuseaddr)?;
    if options.reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&options.addr.into())?;
    socket.listen(options.backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// State shared by the accept loops and every connection task.
#[derive(Debug)]
struct Shared {
    config: Config,
    /// Connections being served now.
    open: AtomicUsize,
    /// Set by a client's `shutdown`: asks the server to stop.
    stop: watch::Sender<bool>,
    /// Set by [`run`] when the server stops, for whatever reason: every accept loop
    /// stops and drops its handle on the listening socket.
    halt: watch::Sender<bool>,
    /// Set once nothing listens any more: tells clients to go.
    closing: watch::Sender<bool>,
}

/// Serves `listener` until a client sends `shutdown` or `shutdown_signal` completes, then
/// shuts down gracefully and returns why it stopped.
///
/// Unless sequential, the server runs one accept loop per core: this task's, plus one
/// thread with a current-thread runtime per further core, each accepting on the same
/// listening socket and serving the clients it accepted itself. A connection then lives
/// on one thread from accept to close, so a round trip never wakes another thread (the
/// cost that makes a plain multi-thread tokio server slow at low concurrency).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown_signal: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    let extra_threads = if config.sequential {
        0
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
    };
    let shared = Arc::new(Shared {
        config,
        open: AtomicUsize::new(0),
        stop: watch::Sender::new(false),
        halt: watch::Sender::new(false),
        closing: watch::Sender::new(false),
    });
    // Accepted sockets inherit TCP_NODELAY from the listener: one setsockopt per server
    // instead of one per connection. Replies are whole lines, written at once.
    let _ = SockRef::from(&listener).set_tcp_nodelay(true);
    let mut workers = Vec::with_capacity(extra_threads);
    for i in 0..extra_threads {
        let clone: std::net::TcpListener = SockRef::from(&listener).try_clone()?.into();
        workers.push(Worker::spawn(i + 1, clone, Arc::clone(&shared))?);
    }

    let mut tasks = JoinSet::new();
    let mut stop = shared.stop.subscribe();
    let halt = async {
        tokio::select! {
            () = until_set(&mut stop) => Stopped::ClientShutdown,
            () = shutdown_signal => Stopped::Signal,
        }
    };
    let stopped = accept_loop(&listener, &shared, &mut tasks, halt).await;

    // Stop listening first, so no new client slips in, then tell the others.
    shared.halt.send_replace(true);
    drop(listener);
    for worker in &mut workers {
        let _ = (&mut worker.stopped_listening).await;
    }
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
    for worker in workers {
        let _ = worker.done.await;
        let _ = worker.thread.join();
    }
    shared.config.log.server(format_args!("shut down"));
    Ok(stopped)
}

/// An accept loop on a thread of its own.
#[derive(Debug)]
struct Worker {
    /// Fires once the worker dropped its handle on the listening socket.
    stopped_listening: oneshot::Receiver<()>,
    /// Fires once every connection of the worker is closed.
    done: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn spawn(i: usize, listener: std::net::TcpListener, shared: Arc<Shared>) -> io::Result<Worker> {
        let (listening_tx, stopped_listening) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = JoinSet::new();
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        let mut halt = shared.halt.subscribe();
                        let halt = async {
                            until_set(&mut halt).await;
                            Stopped::Signal
                        };
                        accept_loop(&listener, &shared, &mut tasks, halt).await;
                    }
                    let _ = listening_tx.send(());
                    while tasks.join_next().await.is_some() {}
                    let _ = done_tx.send(());
                });
            })?;
        Ok(Worker {
            stopped_listening,
            done,
            thread,
        })
    }
}

/// Accepts clients until `halt` completes and returns its value. Clients are served by
/// tasks in `tasks` on this thread, or, sequential, one at a time right here.
async fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    halt: impl Future<Output = Stopped>,
) -> Stopped {
    let mut halt = pin!(halt);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            stopped = &mut halt => return stopped,
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
        };
        while tasks.try_join_next().is_some() {}
        if shared.open.load(Ordering::Relaxed) >= shared.config.max_conns {
            shared
                .config
                .log
                .conn(peer, format_args!("refused: server busy"));
            tasks.spawn(send_busy(stream));
            continue;
        }
        shared.open.fetch_add(1, Ordering::Relaxed);
        let conn = conn::serve_conn(stream, peer, Arc::clone(shared));
        if shared.config.sequential {
            // One at a time: the next client waits in the kernel's accept queue.
            let mut conn = pin!(conn);
            tokio::select! {
                () = &mut conn => {}
                stopped = &mut halt => {
                    // Let the client being served hear the notice and get a FIN.
                    shared.closing.send_replace(true);
                    conn.await;
                    return stopped;
                }
            }
        } else {
            tasks.spawn(conn);
        }
    }
}

fn is_fd_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Tells a client over the limit that the server is busy, then closes with FIN.
async fn send_busy(mut stream: TcpStream) {
    let _ = stream.write_all(protocol::BUSY_NOTICE).await;
    let _ = stream.shutdown().await;
}

/// Completes once the flag behind `rx` is set (or its sender is gone).
async fn until_set(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&set| set).await;
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
    // One thread here; `run` adds one per further core (see there why).
    let runtime = tokio::runtime::Builder::new_current_thread()
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
