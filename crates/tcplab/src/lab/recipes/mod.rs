//! Experiments written as socket calls of their own on both sides, for what a client
//! script against the echo server cannot show (see [`super::scenario::Recipe::Calls`]).
//!
//! Every call goes on the timeline as the application made it (`socket()`, `bind(..)`,
//! `listen(1)`, `setsockopt(TCP_NODELAY)`, `read() = 6`, ...), including those that fail
//! (`bind(127.0.0.1:P) = EADDRINUSE`). Each blocking call has a timeout, so a kernel
//! that does something unexpected makes the run fail with a message, never hang.

mod close;
mod data;
mod open;
mod timers;

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use tcplab_core::timeline::{Call, Role};

use super::run::{Host, Place};
use crate::clock;

pub use close::{client_close, client_close_piggyback, server_close, time_wait_rebind};
pub use data::{nagle_delayed_ack, retransmission, verify_retransmission, zero_window};
pub use open::{
    backlog_overflow, handshake, self_connect, simultaneous_open, syn_recv_stuck,
    verify_syn_every_second,
};
pub use timers::keepalive_timeout;

/// How long any one blocking call may take before the run fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The stage a recipe plays on: the place, the server's address, and the timeline's
/// call log.
#[derive(Debug)]
pub struct Stage<'a> {
    place: &'a Place,
    /// The server's address: the place's server IP and a port that was free on it.
    pub server: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl<'a> Stage<'a> {
    /// A stage in `place` for a server at `server`, logging calls into `calls`.
    pub fn new(place: &'a Place, server: SocketAddr, calls: Arc<Mutex<Vec<Call>>>) -> Self {
        Stage {
            place,
            server,
            calls,
        }
    }

    /// The client host's IP address.
    pub fn client_ip(&self) -> IpAddr {
        self.place.client_ip()
    }

    /// Records the calls of `role`.
    pub fn recorder(&self, role: Role) -> Recorder {
        Recorder {
            role,
            calls: Arc::clone(&self.calls),
        }
    }

    /// Runs `f` on `host` and returns what it returned (its I/O error as context).
    pub fn on<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        Ok(self.place.run_on(host, f)??)
    }

    /// Starts `f` on `host`; join it with [`joined`].
    pub fn spawn<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<io::Result<T>>> {
        Ok(self.place.spawn_on(host, f)?)
    }
}

impl Stage<'_> {
    /// Starts `f`, which begins with a blocking call (a read), on `host` and returns
    /// once its thread sleeps in that call, so that what the call waits for finds it
    /// waiting: a thread that is still starting, or that reads an EOF already there,
    /// makes the kernel send the ACK of a FIN alone where a waiting reader's close()
    /// would carry it. Waits at most a second for the thread to sleep.
    pub fn spawn_waiting<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<io::Result<T>>> {
        let (tid_tx, tid) = std::sync::mpsc::channel();
        let handle = self.spawn(host, move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            f()
        })?;
        let tid = tid
            .recv_timeout(CALL_TIMEOUT)
            .map_err(|_| anyhow::anyhow!("an experiment thread did not start"))?;
        let stat = format!("/proc/self/task/{tid}/stat");
        wait_until(Duration::from_secs(1), || {
            // The state is the field after the command name, which is in parentheses.
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('S'))
            })
        });
        Ok(handle)
    }
}

impl Stage<'_> {
    /// A listener at the server's address, on the server host: `socket()`,
    /// `setsockopt(SO_REUSEADDR)`, `bind()`, `listen(backlog)`.
    pub fn listen(&self, backlog: i32) -> anyhow::Result<Sock> {
        let (rec, server) = (self.recorder(Role::Server), self.server);
        self.on(Host::Server, move || listener(&rec, server, backlog))
    }

    /// A client socket connected to the server, on the client host; `then` runs on it
    /// right after, on the same thread (options, a first write).
    pub fn connect(
        &self,
        then: impl FnOnce(&Sock) -> io::Result<()> + Send + 'static,
    ) -> anyhow::Result<Sock> {
        let (rec, server) = (self.recorder(Role::Client), self.server);
        self.on(Host::Client, move || {
            let sock = connected(&rec, server)?;
            then(&sock)?;
            Ok(sock)
        })
    }

    /// `accept()` on `listening`, on the server host; `then` runs on the accepted
    /// socket right after. Returns (accepted, listening).
    pub fn accept(
        &self,
        listening: Sock,
        then: impl FnOnce(&Sock) -> io::Result<()> + Send + 'static,
    ) -> anyhow::Result<(Sock, Sock)> {
        self.on(Host::Server, move || {
            let accepted = listening.accept()?;
            then(&accepted)?;
            Ok((accepted, listening))
        })
    }
}

/// Nothing more to do (for [`Stage::connect`] and [`Stage::accept`]).
pub fn nothing(_: &Sock) -> io::Result<()> {
    Ok(())
}

/// The result of a thread started with [`Stage::spawn`].
pub fn joined<T>(handle: std::thread::JoinHandle<io::Result<T>>) -> anyhow::Result<T> {
    Ok(handle
        .join()
        .map_err(|_| anyhow::anyhow!("an experiment thread panicked"))??)
}

/// What a recipe brings back.
#[derive(Debug)]
pub struct Outcome {
    /// The client's address (the connection the timeline shows).
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// The error a socket call of the application returned, if the point is one.
    pub errno: Option<String>,
    /// Sockets to close only after the probes stopped (the lab stops watching while
    /// they are still open, e.g. both ESTABLISHED after a handshake).
    pub keep: Vec<Socket>,
    /// What the recipe measured itself (a stall, a bind's result).
    pub findings: Vec<Finding>,
}

impl Outcome {
    /// An outcome for the connection from `client` to `server`, nothing else.
    pub fn of(client: SocketAddr, server: SocketAddr) -> Outcome {
        Outcome {
            client,
            server,
            errno: None,
            keep: Vec::new(),
            findings: Vec::new(),
        }
    }
}

/// One thing an experiment checks beyond paths and segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was measured.
    pub what: String,
    /// What the textbook predicts.
    pub expected: String,
    /// What happened.
    pub seen: String,
    /// Whether it fits.
    pub ok: bool,
}

impl Finding {
    /// A finding that holds when `seen` is `expected`.
    pub fn equal(what: &str, expected: &str, seen: String) -> Finding {
        Finding {
            what: what.into(),
            expected: expected.into(),
            ok: seen == expected,
            seen,
        }
    }
}

/// Logs one side's socket calls on the timeline.
#[derive(Debug, Clone)]
pub struct Recorder {
    role: Role,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    /// Records `call` now. Its address is filled in when the run's addresses are known.
    pub fn call(&self, call: impl Into<String>) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Call {
                ts_ns: clock::mono_ns(),
                role: self.role,
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                call: call.into(),
            });
    }

    /// Records `call` with its result: `name` alone when it worked, `name = ERRNO`
    /// when it failed; passes the result on.
    pub fn result<T>(&self, name: &str, result: io::Result<T>) -> io::Result<T> {
        match &result {
            Ok(_) => self.call(name),
            Err(e) => self.call(format!("{name} = {}", errno_name(e))),
        }
        result
    }
}

/// A socket with the recorder of the side that owns it: each call is logged.
#[derive(Debug)]
pub struct Sock {
    /// The socket.
    pub socket: Socket,
    rec: Recorder,
}

impl Sock {
    /// `socket()`: a TCP socket for `addr`'s family, with timeouts on every wait.
    pub fn new(rec: &Recorder, addr: SocketAddr) -> io::Result<Sock> {
        let socket = rec.result(
            "socket()",
            Socket::new(Domain::for_address(addr), Type::STREAM, None),
        )?;
        socket.set_read_timeout(Some(CALL_TIMEOUT))?;
        socket.set_write_timeout(Some(CALL_TIMEOUT))?;
        Ok(Sock {
            socket,
            rec: rec.clone(),
        })
    }

    /// `setsockopt(NAME)`, logged as `text`.
    pub fn set(&self, text: &str, f: impl FnOnce(&Socket) -> io::Result<()>) -> io::Result<()> {
        self.rec
            .result(&format!("setsockopt({text})"), f(&self.socket))
    }

    /// `bind(addr)`.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.rec
            .result(&format!("bind({addr})"), self.socket.bind(&addr.into()))
    }

    /// `listen(backlog)`.
    pub fn listen(&self, backlog: i32) -> io::Result<()> {
        self.rec
            .result(&format!("listen({backlog})"), self.socket.listen(backlog))
    }

    /// `connect(addr)`, blocking until the handshake ends or fails.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.rec.call("connect()");
        let result = self
            .socket
            .connect_timeout(&SockAddr::from(addr), CALL_TIMEOUT);
        if let Err(e) = &result {
            self.rec.call(format!("connect() = {}", errno_name(e)));
        }
        result
    }

    /// `accept()`: the accepted socket, owned by the same side.
    pub fn accept(&self) -> io::Result<Sock> {
        let (socket, _) = self.rec.result("accept()", self.socket.accept())?;
        socket.set_read_timeout(Some(CALL_TIMEOUT))?;
        socket.set_write_timeout(Some(CALL_TIMEOUT))?;
        Ok(Sock {
            socket,
            rec: self.rec.clone(),
        })
    }

    /// `write(bytes)`, all of them.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.rec.call(format!("write({})", bytes.len()));
        (&self.socket).write_all(bytes)
    }

    /// One `read()`: the bytes it returned (empty at EOF).
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; 65536];
        match (&self.socket).read(&mut buf) {
            Ok(0) => {
                self.rec.call("read() = 0 (EOF)");
                Ok(Vec::new())
            }
            Ok(n) => {
                self.rec.call(format!("read() = {n}"));
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => {
                self.rec.call(format!("read() = {}", errno_name(&e)));
                Err(e)
            }
        }
    }

    /// Reads until exactly `n` bytes came (one logged read per call the kernel needed).
    pub fn read_exact(&self, n: usize) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < n {
            let more = self.read()?;
            if more.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {n} bytes", got.len()),
                ));
            }
            got.extend(more);
        }
        Ok(got)
    }

    /// `close()`.
    pub fn close(self) {
        self.rec.call("close()");
        drop(self.socket);
    }

    /// This socket's own address.
    pub fn local(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// A pause of the application, on the timeline as a call (`sleep(250 ms)`).
    pub fn sleep(&self, d: Duration) {
        self.rec.call(format!("sleep({} ms)", d.as_millis()));
        std::thread::sleep(d);
    }
}

/// A listener at `addr`: `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()`,
/// `listen(backlog)`, as servers do it.
pub fn listener(rec: &Recorder, addr: SocketAddr, backlog: i32) -> io::Result<Sock> {
    let sock = Sock::new(rec, addr)?;
    sock.set("SO_REUSEADDR", |s| s.set_reuse_address(true))?;
    sock.bind(addr)?;
    sock.listen(backlog)?;
    Ok(sock)
}

/// A connected client socket: `socket()`, `connect(to)`.
pub fn connected(rec: &Recorder, to: SocketAddr) -> io::Result<Sock> {
    let sock = Sock::new(rec, to)?;
    sock.connect(to)?;
    Ok(sock)
}

/// Waits until `done` holds, polling every millisecond, for at most `limit`.
pub fn wait_until(limit: Duration, done: impl FnMut() -> bool) -> bool {
    wait_until_every(limit, Duration::from_millis(1), done)
}

/// Waits until `done` holds, polling every `period`, for at most `limit`.
pub fn wait_until_every(limit: Duration, period: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(period);
    }
    done()
}

/// The errno name of an I/O error (`ECONNREFUSED`, ...), as the application sees it.
pub fn errno_name(err: &io::Error) -> String {
    let name = match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EADDRINUSE) => "EADDRINUSE",
        Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::EINPROGRESS) => "EINPROGRESS",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(n) => return format!("errno {n}"),
        None => return err.to_string(),
    };
    name.to_string()
}
