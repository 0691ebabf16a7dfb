//! The blocking lane: the classic design's strength, kept.
//!
//! A blocking server answers a round trip with two syscalls (read, write) and serves a
//! whole connection with four (accept, write, read, close); an epoll server needs a third
//! per round trip and about a dozen per connection (epoll_wait, registration and
//! deregistration, the accept that drains the queue, ...). Measured here: 40 µs against
//! 80 µs of server CPU per connection cycle. So `tcplab serve` runs one lane thread per
//! core that accepts and serves one client at a time with blocking I/O, and hands a
//! client to the async side (`conn::adopt`) once it has been quiet for [`QUIET`]: the
//! lane is free again for the next client and idle clients cost no thread.
//!
//! A lane serving the only client polls it for up to [`SPIN`] before it sleeps in
//! read(2) (see [`Spin`]): with the client on the other core the next request is usually
//! there by then, and a reader that never sleeps is woken by nobody, which is the one
//! thing that can make a round trip cheaper than the classic server's.
//!
//! When every lane is busy and a lane's client is not ready (or a lane has served a
//! long client for [`QUIET`]), the lane calls the async accept loops for help
//! (`call_for_help`): many clients, where the async side, serving several per wakeup,
//! is the cheaper one. While they take clients, the lanes hand their clients over after
//! each answer and take no new ones (they wait on `Shared::disarmed`); the loops disarm
//! after 100 ms without a new client.
//!
//! `--sequential` is one lane thread that never hands over: the classic example's design,
//! with correct framing, shutdown and idle timeout.
//!
//! Lane threads wait for clients in accept(2) itself: the listening socket is blocking
//! while no async loop is armed (`accept::Armed`), and its receive timeout bounds the
//! wait. Should it be non-blocking (an accept loop armed meanwhile), they wait on an
//! epoll of their own with `EPOLLEXCLUSIVE`, so that a new client wakes one lane, not
//! all. Accepted sockets are
//! blocking and inherit the listener's `SO_RCVTIMEO`/`SO_SNDTIMEO`, which bound every
//! wait of a lane thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcplab_core::protocol::{self, Session, Status};

use super::conn::{self, End};
use super::Shared;
use super::{accept, balance};

/// A client quiet this long is handed to the async side; a client served this long
/// makes the lane call the async side for help if every lane is busy.
pub(super) const QUIET: Duration = Duration::from_millis(5);

/// A client quiet this long is handed over even while another lane is free: short
/// pauses of a busy client (a preempted client process) keep it on its lane.
const HAND_OVER_AFTER: Duration = Duration::from_millis(50);

/// How often an idle lane thread checks whether the server halted (the shutdown of the
/// listening socket wakes it at once; this is a safety net).
const HALT_CHECK: Duration = Duration::from_millis(100);

/// Round trips between two looks at the clock for [`QUIET`]; the first look starts the
/// clock, so a busy client calls for help after [`QUIET`] plus this many round trips.
const CLOCK_EVERY: u32 = 64;

/// Bytes taken by one read.
const READ_SIZE: usize = 16 * 1024;

/// Starts a lane thread on `listener` (a duplicate of the listening socket). With
/// `hand_off`, quiet clients move to the async threads; without, the thread keeps each
/// client to the end.
pub(super) fn spawn(
    i: usize,
    listener: TcpListener,
    shared: Arc<Shared>,
    hand_off: bool,
) -> io::Result<std::thread::JoinHandle<()>> {
    let epoll = Epoll::exclusive(&listener)?;
    std::thread::Builder::new()
        .name(format!("serve-lane-{i}"))
        .spawn(move || run(&listener, &epoll, &shared, hand_off))
}

fn run(listener: &TcpListener, epoll: &Epoll, shared: &Arc<Shared>, hand_off: bool) {
    let mut buf = vec![0u8; READ_SIZE];
    let mut out = Vec::with_capacity(READ_SIZE);
    // The lane's, not a client's: what it learns holds across short clients.
    let mut spin = Spin::default();
    while !shared.halted.load(Ordering::Acquire) {
        if hand_off && shared.armed.load(Ordering::Acquire) > 0 {
            // The async side takes the clients now (there are many): a lane that took
            // some too would only hand them over after one answer, which costs more than
            // it saves (a wakeup of another thread and an ioctl per client).
            let users = accept::lock(&shared.nonblocking_users);
            if *users > 0 {
                let _ = shared.disarmed.wait_timeout(users, HALT_CHECK);
            }
            continue;
        }
        // Blocks until a client comes or the listener's receive timeout ([`QUIET`]), or
        // returns at once while the socket is non-blocking (async loops armed); then the
        // lane waits on its epoll: woken by a new client, by the shutdown of the
        // listening socket, or to check whether the server halted.
        let (stream, peer) = match listener.accept() {
            Ok(pair) => pair,
            Err(err) if is_timeout(&err) => {
                let _ready = epoll.wait(HALT_CHECK);
                continue;
            }
            Err(_) if shared.halted.load(Ordering::Acquire) => break,
            Err(err) => {
                shared
                    .config
                    .log
                    .server(format_args!("accept failed: {err}"));
                if matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        };
        serve(
            stream, peer, shared, hand_off, &mut spin, &mut buf, &mut out,
        );
    }
}

/// How a lane's dialogue stopped.
enum Outcome {
    /// The connection is over.
    Ended(End),
    /// The client went quiet (or the server is busy): the async side takes it, with the
    /// session and the reply bytes not yet written.
    Quiet(Session, Vec<u8>),
}

fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    hand_off: bool,
    spin: &mut Spin,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) {
    let log = &shared.config.log;
    if shared.open.load(Ordering::Relaxed) >= shared.config.max_conns {
        log.conn(peer, format_args!("refused: server busy"));
        let _ = (&stream).write_all(protocol::BUSY_NOTICE);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        return;
    }
    if shared.set_timeouts {
        let timeouts = stream
            .set_read_timeout(Some(QUIET))
            .and_then(|()| stream.set_write_timeout(Some(QUIET)));
        if let Err(err) = timeouts {
            log.conn(peer, format_args!("error: {err}"));
            return;
        }
    }
    let open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    log.conn(peer, format_args!("accepted ({open} open)"));
    log.call(peer, format_args!("accept()"));
    shared.lane_busy.fetch_add(1, Ordering::AcqRel);
    let outcome = converse(&stream, peer, shared, hand_off, spin, buf, out);
    shared.lane_busy.fetch_sub(1, Ordering::AcqRel);
    let end = match outcome {
        Ok(Outcome::Quiet(session, pending)) if hand_off => match stream.set_nonblocking(true) {
            Ok(()) => {
                let seat = balance::seat(shared, None);
                if let Some(slot) = shared.slots.get(seat.slot()) {
                    let resumed = Some((session, pending));
                    let client = conn::adopt(stream, peer, Arc::clone(shared), seat, resumed);
                    slot.handle.spawn(client);
                    return;
                }
                End::Error
            }
            Err(err) => conn::error_end(log, peer, &err),
        },
        Ok(Outcome::Quiet(..)) => End::Error,
        Ok(Outcome::Ended(end)) => end,
        Err(err) => conn::error_end(log, peer, &err),
    };
    log.call(peer, format_args!("close()"));
    drop(stream);
    conn::finish(shared, peer, end);
}

/// The dialogue with one client over a blocking socket whose reads and writes time out
/// after [`QUIET`]: then a sequential lane checks for shutdown and idle timeout, the
/// others hand the client over.
fn converse(
    mut stream: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    may_hand_off: bool,
    spin: &mut Spin,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> io::Result<Outcome> {
    let log = &shared.config.log;
    let mut session = conn::new_session(shared, peer);
    let idle_timeout = shared.config.idle_timeout;
    // No clock read per connection or per line (the blocking server makes none): the
    // time a client has been quiet is dated from the first read that timed out (it
    // waited [`QUIET`]), and the time it has been served from its first look at the
    // clock (see [`CLOCK_EVERY`]).
    let mut started: Option<Instant> = None;
    let mut reads = 0u32;
    let mut called_for_help = false;
    let mut quiet_since: Option<Instant> = None;
    out.clear();
    out.extend_from_slice(protocol::BANNER);
    log.call(peer, format_args!("write({})", out.len()));
    loop {
        if !out.is_empty() {
            let sent = write_some(stream, out)?;
            if sent < out.len() {
                // The client does not read: the async side waits for it, not a lane.
                if may_hand_off {
                    return Ok(Outcome::Quiet(session, out[sent..].to_vec()));
                }
                if shared.closing_now.load(Ordering::Acquire) {
                    return Ok(Outcome::Ended(End::ServerClosing));
                }
                out.drain(..sent);
                continue;
            }
            out.clear();
            if may_hand_off && shared.armed.load(Ordering::Acquire) > 0 {
                return Ok(Outcome::Quiet(session, Vec::new()));
            }
        }
        if shared.closing_now.load(Ordering::Acquire) {
            let _ = stream.write_all(protocol::SHUTTING_DOWN_NOTICE);
            return Ok(Outcome::Ended(End::ServerClosing));
        }
        // (Not before the first line: a new client takes longer to answer the banner.)
        let polled = if reads > 0 && spins_alone(shared) && spin.should_try() {
            spin.poll(stream, buf)
        } else if may_hand_off && lanes_need_help(shared) {
            // Every lane is busy and nobody takes the clients that may be queued: if
            // this client is not ready, call the async side now rather than after
            // [`QUIET`] (with many short clients, each lane would else wait on one
            // slow client at a time while the queue grows).
            let ready = try_recv(stream, buf);
            if ready.is_none() {
                call_for_help(shared);
            }
            ready
        } else {
            None
        };
        let n = match polled.unwrap_or_else(|| stream.read(buf)) {
            Ok(n) => n,
            Err(err) if is_timeout(&err) => {
                if shared.closing_now.load(Ordering::Acquire) {
                    continue;
                }
                let since = *quiet_since.get_or_insert_with(|| Instant::now() - QUIET);
                if may_hand_off {
                    // Every lane busy: clients may be waiting, free this one now.
                    let lanes_full = shared.lane_busy.load(Ordering::Acquire) >= shared.lane_size;
                    if lanes_full || since.elapsed() >= HAND_OVER_AFTER {
                        call_for_help(shared);
                        return Ok(Outcome::Quiet(session, Vec::new()));
                    }
                    continue;
                }
                if idle_timeout.is_some_and(|t| since.elapsed() >= t) {
                    let _ = stream.write_all(b"idle timeout: closing\n");
                    return Ok(Outcome::Ended(End::Idle));
                }
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        log.call(peer, format_args!("read() = {n}"));
        quiet_since = None;
        if n == 0 {
            log.conn(peer, format_args!("eof{}", conn::unterminated(&session)));
            return Ok(Outcome::Ended(End::Eof));
        }
        reads = reads.wrapping_add(1);
        if may_hand_off
            && !called_for_help
            && reads % CLOCK_EVERY == 0
            && started.get_or_insert_with(Instant::now).elapsed() >= QUIET
        {
            // A long, busy client: if every lane has one, new clients need the async side.
            call_for_help(shared);
            called_for_help = true;
        }
        let status = session.feed(&buf[..n], out, |event| conn::log_event(log, peer, event));
        if !out.is_empty() {
            log.call(peer, format_args!("write({})", out.len()));
        }
        match status {
            Status::Open => {}
            Status::Quit | Status::Shutdown => {
                // Replies before the command still go out; the command produced none.
                if !out.is_empty() {
                    stream.write_all(out)?;
                }
                if session.awaits_lf() {
                    // Read the `\n` of a `quit\r` still on its way: closing with it
                    // unread would make the kernel send RST instead of FIN.
                    let _ = stream.set_read_timeout(Some(conn::LF_WAIT));
                    let _ = stream.read(&mut [0; 1]);
                }
                let end = if status == Status::Quit {
                    End::Quit
                } else {
                    End::Shutdown
                };
                return Ok(Outcome::Ended(end));
            }
        }
    }
}

/// Whether a lane may poll its client before sleeping: only while it is the one lane
/// serving and no async loop takes clients, that is, while the rest of the machine has
/// nothing of ours to run (with more clients, a lane spinning would take a core from
/// them).
fn spins_alone(shared: &Shared) -> bool {
    shared.lane_busy.load(Ordering::Relaxed) <= 1 && shared.armed.load(Ordering::Relaxed) == 0
}

/// Longest a lane polls its client for the next request before it sleeps in read(2).
///
/// A round trip with a client on the other core takes about 25 µs here (from the reply
/// sent to the next request in), so most requests arrive within this. Why poll: a
/// sleeping reader costs a context switch on each side of every round trip, and its
/// waker (the client's send) a wakeup of the other core; a reader that is still
/// running is woken by nobody. Measured at 1 connection: 1.00 context switch and 2.0
/// syscalls per round trip sleeping, ~0.05 and ~12 polling (the extra ones are
/// receives that found nothing), for 20-40% more round trips per second.
const SPIN: Duration = Duration::from_micros(50);

/// Most reads a lane makes without polling after polls that found nothing.
const SPIN_BACKOFF_MAX: u32 = 1024;

/// When polling pays, per client: a client that answers slower than [`SPIN`] (a
/// person typing, a client sharing our core, a busy machine) makes polls fail, and each
/// failure doubles the number of reads made without polling (up to
/// [`SPIN_BACKOFF_MAX`]), so a slow client costs at most one failed poll per that many
/// reads, as an adaptive mutex spins only while spinning pays.
#[derive(Debug, Default)]
struct Spin {
    /// Polls in a row that found nothing.
    failures: u32,
    /// Polls in a row that found something.
    successes: u32,
    /// Reads still to make without polling.
    skip: u32,
}

/// Successful polls that forgive one failure.
const FORGIVE_AFTER: u32 = 32;

impl Spin {
    fn should_try(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    /// Polls `stream` for up to [`SPIN`]: `None` if nothing came (then the caller
    /// sleeps in a blocking read), else what the receive returned.
    fn poll(&mut self, stream: &TcpStream, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let start = Instant::now();
        loop {
            if let Some(received) = try_recv(stream, buf) {
                // A failure is forgiven after many successes only: a poll that fails
                // costs [`SPIN`], one that succeeds saves a few µs.
                self.successes += 1;
                if self.successes >= FORGIVE_AFTER {
                    self.successes = 0;
                    self.failures = self.failures.saturating_sub(1);
                }
                return Some(received);
            }
            if start.elapsed() >= SPIN {
                self.failures = self.failures.saturating_add(1);
                self.successes = 0;
                self.skip = 1u32
                    .checked_shl(self.failures)
                    .map_or(SPIN_BACKOFF_MAX, |n| n.min(SPIN_BACKOFF_MAX));
                return None;
            }
            std::hint::spin_loop();
        }
    }
}

/// One receive that does not wait: `None` if nothing is there yet.
fn try_recv(stream: &TcpStream, buf: &mut [u8]) -> Option<io::Result<usize>> {
    // SAFETY: the descriptor is open for the duration of the call (`stream` is
    // borrowed) and `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if let Ok(n) = usize::try_from(n) {
        return Some(Ok(n));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
        _ => Some(Err(err)),
    }
}

/// Whether every lane is busy while no async accept loop takes clients.
fn lanes_need_help(shared: &Shared) -> bool {
    shared.lane_busy.load(Ordering::Relaxed) >= shared.lane_size
        && shared.armed.load(Ordering::Relaxed) == 0
}

/// Arms the async accept loops when every lane thread is busy: clients may be waiting.
/// Only on these rare occasions, not on every accept: a wakeup of the async threads per
/// client would cost more than it saves (short clients are done before it matters).
fn call_for_help(shared: &Shared) {
    if shared.lane_busy.load(Ordering::Acquire) >= shared.lane_size
        && shared.armed.load(Ordering::Acquire) == 0
    {
        shared.lane_full.send_modify(|n| *n += 1);
    }
}

/// Writes as much of `bytes` as the socket takes before its send timeout.
fn write_some(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(err) if is_timeout(&err) => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(sent)
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An epoll instance watching one listening socket with `EPOLLEXCLUSIVE`.
#[derive(Debug)]
struct Epoll(OwnedFd);

impl Epoll {
    fn exclusive(listener: &TcpListener) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new
        // descriptor that we own from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let epoll = Epoll(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32,
            u64: 0,
        };
        // SAFETY: both descriptors are open for the duration of the call and `event` is
        // a valid epoll_event that the kernel only reads.
        let rc = unsafe {
            libc::epoll_ctl(
                epoll.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                listener.as_raw_fd(),
                &mut event,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(epoll)
    }

    /// Waits up to `timeout` for the listener to be readable (or shut down); says
    /// whether it is.
    fn wait(&self, timeout: Duration) -> bool {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the epoll descriptor is open and `event` has room for the one event
        // we ask for.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut event, 1, ms) };
        n > 0
    }
}
