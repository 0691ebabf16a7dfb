//! One client, from banner to close.
//!
//! Built to be cheap per line and per idle connection (numbers in BENCHMARKS.md):
//! - Reads go into a per-thread scratch buffer and are answered before the next await,
//!   so an idle connection owns no buffer at all (10,000 idle clients must fit in
//!   64 MiB), and a reply is sent with one `send(2)` straight away. Only what the kernel
//!   does not take at once is copied into a per-connection buffer and awaited.
//! - The shutdown notice and the idle timer are armed once per connection, not once per
//!   line: the timer is moved lazily (on expiry it checks the last activity).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tcplab_core::protocol::{self, Event, Session, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::balance::Seat;
use super::{until_set, Shared};
use crate::log::{self, Log};

/// How long a server waits for the `\n` of a `quit\r` (or `shutdown\r`) that ended a
/// read, before closing (see [`Session::awaits_lf`]): a `\r\n` split across segments
/// arrives within microseconds; a client that ends lines with `\r` alone pays this once.
pub(crate) const LF_WAIT: Duration = Duration::from_millis(50);

/// How much one read takes from the socket.
const READ_SIZE: usize = 16 * 1024;

/// The per-thread buffers every connection of the thread borrows between awaits.
struct Scratch {
    read: Box<[u8]>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        read: vec![0; READ_SIZE].into_boxed_slice(),
        out: Vec::with_capacity(READ_SIZE),
    });
}

/// How a connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Quit,
    Shutdown,
    ServerClosing,
    Idle,
    Eof,
    Reset,
    Error,
}

impl End {
    /// The log line for this end.
    pub(super) fn describe(self) -> &'static str {
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

/// Serves one client from banner to close, on the thread of `seat`.
pub(super) async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    seat: Seat,
) {
    shared.config.log.conn(
        peer,
        format_args!("accepted ({} open)", shared.open.load(Ordering::Relaxed)),
    );
    shared.config.log.call(peer, format_args!("accept()"));
    serve(stream, peer, shared, None, seat).await;
}

/// Serves a client that arrives from another thread as a non-blocking std socket: one
/// accepted by a busier async thread (`resumed` is `None`: it has had nothing yet), or
/// one a blocking lane handed over (its banner was sent, and `resumed` holds what it
/// said so far and the replies it has not taken yet).
pub(super) async fn adopt(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    seat: Seat,
    resumed: Option<(Session, Vec<u8>)>,
) {
    let mut stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            shared.config.log.conn(peer, format_args!("error: {err}"));
            finish(&shared, peer, End::Error);
            return;
        }
    };
    let Some((session, pending)) = resumed else {
        serve_conn(stream, peer, shared, seat).await;
        return;
    };
    if let Err(err) = stream.write_all(&pending).await {
        let end = error_end(&shared.config.log, peer, &err);
        shared.config.log.call(peer, format_args!("close()"));
        drop(stream);
        finish(&shared, peer, end);
        return;
    }
    serve(stream, peer, shared, Some(session), seat).await;
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    session: Option<Session>,
    seat: Seat,
) {
    let end = match converse(&mut stream, peer, &shared, session).await {
        Ok(end) => end,
        Err(err) => error_end(&shared.config.log, peer, &err),
    };
    shared.config.log.call(peer, format_args!("close()"));
    drop(stream);
    finish(&shared, peer, end);
    drop(seat);
}

/// How an I/O error ends a connection (logged unless it is the client's reset).
pub(super) fn error_end(log: &Log, peer: SocketAddr, err: &io::Error) -> End {
    if is_reset(err) {
        End::Reset
    } else {
        log.conn(peer, format_args!("error: {err}"));
        End::Error
    }
}

/// Bookkeeping once a connection is closed.
pub(super) fn finish(shared: &Shared, peer: SocketAddr, end: End) {
    shared.open.fetch_sub(1, Ordering::Relaxed);
    shared
        .config
        .log
        .conn(peer, format_args!("{}", end.describe()));
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

/// What one read brought.
enum Step {
    /// The client closed its side.
    Eof,
    /// Input was fed to the session and answered; the bytes the kernel did not take at
    /// once still have to be written.
    Fed(Status, Option<Vec<u8>>),
}

/// The dialogue with one client; returns how it ended. The caller closes the socket.
async fn converse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    session: Option<Session>,
) -> io::Result<End> {
    let config = &shared.config;
    let log = &config.log;
    let mut session = match session {
        Some(session) => session,
        None => {
            log.call(peer, format_args!("write({})", protocol::BANNER.len()));
            write_all(stream, protocol::BANNER).await?;
            new_session(shared, peer)
        }
    };

    let mut closing_rx = shared.closing.subscribe();
    let mut closing = pin!(until_set(&mut closing_rx));
    // Armed once; a disabled branch when there is no idle timeout.
    let idle_timeout = config.idle_timeout;
    let mut last_active = Instant::now();
    let mut idle = pin!(tokio::time::sleep(
        idle_timeout.unwrap_or(Duration::from_secs(86_400))
    ));
    loop {
        let step = tokio::select! {
            biased;
            step = std::future::poll_fn(|cx| poll_step(stream, &mut session, peer, log, cx)) => step?,
            () = &mut closing => {
                write_all(stream, protocol::SHUTTING_DOWN_NOTICE).await?;
                return Ok(End::ServerClosing);
            }
            () = &mut idle, if idle_timeout.is_some() => {
                let deadline = last_active + idle_timeout.unwrap_or_default();
                if deadline > Instant::now() {
                    // There was activity since the timer was set: move it, go on.
                    idle.as_mut().reset(deadline);
                    continue;
                }
                let _ = write_all(stream, b"idle timeout: closing\n").await;
                return Ok(End::Idle);
            }
        };
        let (status, unsent) = match step {
            Step::Eof => {
                log.conn(peer, format_args!("eof{}", unterminated(&session)));
                return Ok(End::Eof);
            }
            Step::Fed(status, unsent) => (status, unsent),
        };
        if idle_timeout.is_some() {
            last_active = Instant::now();
        }
        if let Some(unsent) = unsent {
            stream.write_all(&unsent).await?;
        }
        if status != Status::Open && session.awaits_lf() {
            // Read the `\n` of a `quit\r` still on its way: closing with it unread
            // would make the kernel send RST instead of FIN.
            let _ = tokio::time::timeout(LF_WAIT, stream.read(&mut [0; 1])).await;
        }
        match status {
            Status::Open => {}
            Status::Quit => return Ok(End::Quit),
            Status::Shutdown => return Ok(End::Shutdown),
        }
    }
}

/// Reads once into the thread's scratch buffer, feeds the session and sends the replies,
/// all without an await in between, so no buffer is held across one.
fn poll_step(
    stream: &mut TcpStream,
    session: &mut Session,
    peer: SocketAddr,
    log: &Log,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Step>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { read, out } = scratch;
        let n = {
            let mut buf = ReadBuf::new(read);
            ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
            buf.filled().len()
        };
        log.call(peer, format_args!("read() = {n}"));
        if n == 0 {
            return Poll::Ready(Ok(Step::Eof));
        }
        out.clear();
        let status = session.feed(&read[..n], out, |event| log_event(log, peer, event));
        if !out.is_empty() {
            log.call(peer, format_args!("write({})", out.len()));
        }
        let unsent = send_now(stream, out)?;
        Poll::Ready(Ok(Step::Fed(status, unsent.map(<[u8]>::to_vec))))
    })
}

/// The protocol state for a new client.
pub(super) fn new_session(shared: &Shared, peer: SocketAddr) -> Session {
    Session::new(protocol::Config {
        max_line: shared.config.max_line,
        may_shutdown: protocol::shutdown_allowed(peer.ip(), shared.config.allow_remote_shutdown),
    })
}

/// Logs what the session noticed.
pub(super) fn log_event(log: &Log, peer: SocketAddr, event: Event<'_>) {
    match event {
        Event::Line(line) => log.conn(peer, format_args!("line '{}'", log::escape(line))),
        Event::TooLong => log.conn(peer, format_args!("line too long, discarded")),
        Event::Quit => log.conn(peer, format_args!("quit")),
        Event::Shutdown => log.conn(peer, format_args!("shutdown")),
        Event::ShutdownRefused => {
            log.conn(peer, format_args!("shutdown refused: not a loopback peer"))
        }
    }
}

/// Sends what the kernel takes right now (the socket is non-blocking) and returns the
/// rest. A direct `send(2)` rather than tokio's write, which would first wait for a
/// writability event that a fresh socket has not been told about yet.
fn send_now<'a>(stream: &TcpStream, bytes: &'a [u8]) -> io::Result<Option<&'a [u8]>> {
    let socket = socket2::SockRef::from(stream);
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Some(&bytes[sent..]));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(None)
}

/// Writes all of `bytes`: at once when the kernel takes them, else waiting for room.
async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    match send_now(stream, bytes)? {
        None => Ok(()),
        Some(rest) => stream.write_all(rest).await,
    }
}

/// A note on bytes of an unterminated line, for the log.
pub(super) fn unterminated(session: &Session) -> String {
    match session.buffered() {
        0 => String::new(),
        n => format!(" ({n} bytes without a line end discarded)"),
    }
}
