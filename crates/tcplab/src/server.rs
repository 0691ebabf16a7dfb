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

mod accept;
mod balance;
mod conn;
mod lane;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tcplab_core::protocol;
use tokio::net::TcpListener;
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
    // Accepted sockets inherit these (set before listen(), so that no client escapes
    // them): replies are whole lines, written at once (no Nagle), and the timeouts bound
    // every wait of a lane thread (see `lane`). Not reported to `on_call`: they tune the
    // server and change nothing a lab experiment shows (its lines go one at a time).
    socket.set_tcp_nodelay(true)?;
    socket.set_read_timeout(Some(lane::QUIET))?;
    socket.set_write_timeout(Some(lane::QUIET))?;
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

/// State shared by the accept loops, the lane threads and every connection.
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
    /// `halt`, for the lane threads.
    halted: AtomicBool,
    /// Set once nothing listens any more: tells clients to go.
    closing: watch::Sender<bool>,
    /// `closing`, for the lane threads.
    closing_now: AtomicBool,
    /// Lane threads serving a client now (see [`lane`]).
    lane_busy: AtomicUsize,
    /// Bumped when a lane calls for help (see `lane::call_for_help`): wakes the async
    /// accept loops.
    lane_full: watch::Sender<u64>,
    /// Number of lane threads.
    lane_size: usize,
    /// Async accept loops taking clients now. While there are, the lanes hand their
    /// clients over after each answer: with many clients, the async side serves several
    /// per wakeup, a lane one per context switch.
    armed: AtomicUsize,
    /// Armed accept loops that need the listening socket non-blocking (see
    /// `accept::Armed`).
    nonblocking_users: std::sync::Mutex<usize>,
    /// Signalled (with `nonblocking_users`) when the last accept loop disarms: the lanes,
    /// idle while the async side takes the clients, take them again.
    disarmed: std::sync::Condvar,
    /// Accepted sockets may lack the listener's timeouts: lanes set them.
    set_timeouts: bool,
    /// The async threads, slot 0 being `run`'s (none with `--sequential`).
    slots: Vec<balance::Slot>,
}

/// Serves `listener` until a client sends `shutdown` or `shutdown_signal` completes, then
/// shuts down gracefully and returns why it stopped.
///
/// How clients are served (the numbers behind it are in BENCHMARKS.md):
/// - One lane thread per core accepts and serves a client at a time with blocking I/O,
///   the fastest way for few clients, and hands a client that went quiet to the async
///   side (see [`lane`]). `--sequential` is one lane thread that never hands over.
/// - When every lane thread is busy, async accept loops take the new clients: this
///   task's, plus a thread with a current-thread runtime per further core. A connection
///   lives on one thread from then to close, so a round trip never wakes another
///   thread (the cost that makes a plain multi-thread tokio server slow at low
///   concurrency); clients are spread evenly over these threads (see [`balance`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown_signal: impl Future<Output = ()>,
) -> io::Result<Stopped> {
    // Poll the signal once before any client is served: a future such as
    // [`termination_signal`] installs its handler when first polled, and until then a
    // SIGTERM would kill the process without a word to the clients.
    let mut shutdown_signal = pin!(shutdown_signal);
    let signalled_early =
        std::future::poll_fn(|cx| Poll::Ready(shutdown_signal.as_mut().poll(cx).is_ready())).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sequential = config.sequential;
    let listener = listener.into_std()?;
    // Blocking while no async accept loop is armed: lanes then wait in accept(2) (see
    // [`Armed`]).
    listener.set_nonblocking(false)?;
    // A listener from [`bind`] has the socket options that accepted sockets inherit.
    // Another one gets them now, and the lanes set them on each client as well, since
    // clients that connected before now did not inherit them.
    let socket = SockRef::from(&listener);
    // (The kernel keeps timeouts in jiffies: what it returns is close, not equal.)
    let near_quiet = |t: Option<Duration>| t.is_some_and(|t| t <= lane::QUIET * 2);
    let inherited = near_quiet(socket.read_timeout()?) && near_quiet(socket.write_timeout()?);
    if !inherited {
        let _ = socket.set_tcp_nodelay(true);
        socket.set_read_timeout(Some(lane::QUIET))?;
        socket.set_write_timeout(Some(lane::QUIET))?;
    }
    // The runtimes of the further async threads exist before the threads, so that every
    // thread can place a client on any of them (see [`balance`]).
    let mut runtimes = Vec::new();
    let mut slots = Vec::new();
    if !sequential {
        slots.push(balance::Slot::new(tokio::runtime::Handle::current()));
        for _ in 1..cores {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            slots.push(balance::Slot::new(runtime.handle().clone()));
            runtimes.push(runtime);
        }
    }
    balance::set_here(0);
    let shared = Arc::new(Shared {
        config,
        open: AtomicUsize::new(0),
        stop: watch::Sender::new(false),
        halt: watch::Sender::new(false),
        halted: AtomicBool::new(false),
        closing: watch::Sender::new(false),
        closing_now: AtomicBool::new(false),
        lane_busy: AtomicUsize::new(0),
        lane_full: watch::Sender::new(0),
        armed: AtomicUsize::new(0),
        nonblocking_users: std::sync::Mutex::new(0),
        disarmed: std::sync::Condvar::new(),
        lane_size: if sequential { 1 } else { cores },
        set_timeouts: !inherited,
        slots,
    });

    let mut lanes = Vec::with_capacity(shared.lane_size);
    for i in 0..shared.lane_size {
        let clone = listener.try_clone()?;
        lanes.push(lane::spawn(i, clone, Arc::clone(&shared), !sequential)?);
    }
    let mut workers = Vec::new();
    for (i, runtime) in runtimes.into_iter().enumerate() {
        let clone = listener.try_clone()?;
        workers.push(Worker::spawn(i + 1, clone, Arc::clone(&shared), runtime)?);
    }

    let mut tasks = JoinSet::new();
    let mut stop = shared.stop.subscribe();
    let halt = async {
        if signalled_early {
            return Stopped::Signal;
        }
        tokio::select! {
            () = until_set(&mut stop) => Stopped::ClientShutdown,
            () = shutdown_signal => Stopped::Signal,
        }
    };
    let stopped = if sequential {
        halt.await
    } else {
        accept::accept_loop(&listener, &shared, &mut tasks, halt).await
    };

    // Stop listening first, so no new client slips in, then tell the others. Shutting
    // the socket down (not just closing our descriptors) also wakes the lane threads.
    shared.halted.store(true, Ordering::Release);
    shared.halt.send_replace(true);
    let _ = SockRef::from(&listener).shutdown(std::net::Shutdown::Read);
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
    shared.closing_now.store(true, Ordering::Release);
    shared.closing.send_replace(true);
    while tasks.join_next().await.is_some() {}
    for worker in workers {
        let _ = worker.done.await;
        let _ = worker.thread.join();
    }
    for lane in lanes {
        while !lane.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = lane.join();
    }
    // Clients handed over by the lanes run as tasks of this runtime.
    while shared.open.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
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
    fn spawn(
        i: usize,
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
        runtime: tokio::runtime::Runtime,
    ) -> io::Result<Worker> {
        let (listening_tx, stopped_listening) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                balance::set_here(i);
                runtime.block_on(async move {
                    let mut tasks = JoinSet::new();
                    let mut halt = shared.halt.subscribe();
                    let halt = async {
                        until_set(&mut halt).await;
                        Stopped::Signal
                    };
                    accept::accept_loop(&listener, &shared, &mut tasks, halt).await;
                    drop(listener);
                    let _ = listening_tx.send(());
                    while tasks.join_next().await.is_some() {}
                    // Clients that other threads placed here are not in `tasks`.
                    while shared.slots.get(i).is_some_and(|slot| slot.open() > 0) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
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
