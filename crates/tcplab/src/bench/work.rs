//! What one load-generating worker does, and what it counts.
//!
//! A worker owns its connections and its [`Tally`]; nothing is shared on the hot path
//! except a relaxed progress counter and, with `--count`, the budget of operations.
//! Two engines drive the same operations: plain threads with blocking sockets (fewest
//! syscalls per round trip, best when connections are few) and [`super::engine_async`]
//! (many connections per thread).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The last line of the banner, which every echo server of this protocol sends.
pub const BANNER_LAST_LINE: &[u8] =
    b"To quit, type 'quit'. To shut down the server type 'shutdown'.";

/// Longest banner we accept before calling it a wrong reply.
const BANNER_MAX: usize = 4096;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection was refused (RST answering our SYN).
    Refused,
    /// The connection was reset (or a write found it gone).
    Reset,
    /// Nothing arrived within `--timeout`.
    Timeout,
    /// The server sent bytes other than the expected reply.
    WrongReply,
    /// The server closed the connection when it should not have.
    Closed,
    /// Any other I/O error.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Refused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::WrongReply,
        ErrorKind::Closed,
        ErrorKind::Other,
    ];

    /// The name used in reports and JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::WrongReply => "wrong_reply",
            ErrorKind::Closed => "closed",
            ErrorKind::Other => "other",
        }
    }

    /// Classifies an I/O error.
    pub fn of(err: &io::Error) -> ErrorKind {
        use io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused => ErrorKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => ErrorKind::Reset,
            K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
            K::UnexpectedEof => ErrorKind::Closed,
            K::InvalidData => ErrorKind::WrongReply,
            _ => ErrorKind::Other,
        }
    }
}

/// An I/O error meaning "the server sent something else".
pub fn wrong_reply() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "wrong reply")
}

/// What a worker counted.
#[derive(Debug)]
pub struct Tally {
    /// Successful operations inside the measured window.
    pub ops: u64,
    /// Successful operations during the warm-up.
    pub warmup_ops: u64,
    /// Failed operations by [`ErrorKind`] (index in [`ErrorKind::ALL`]).
    pub errors: [u64; 6],
    /// Latency of the successful measured operations, in nanoseconds.
    pub hist: Histogram<u64>,
    /// When the last operation ended.
    pub last_done: Option<Instant>,
    /// Connections held open (idle mode).
    pub held: u64,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            ops: 0,
            warmup_ops: 0,
            errors: [0; 6],
            // 1 ns to 1 hour at 3 significant digits; larger values saturate.
            hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            last_done: None,
            held: 0,
        }
    }

    /// Counts an error.
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    /// Adds `other` into this tally.
    pub fn merge(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.warmup_ops += other.warmup_ops;
        self.held += other.held;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.last_done = self.last_done.max(other.last_done);
    }
}

/// What kind of operation workers repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// One line out, one reply back, on a kept connection.
    RoundTrip,
    /// Connect, banner, `quit`, server's FIN, close.
    Cycle,
    /// Connect, banner, then hold the connection until the end.
    Idle,
}

/// Everything workers share: the plan and the few counters.
#[derive(Debug)]
pub struct Plan {
    /// The server.
    pub addr: SocketAddr,
    /// The operation.
    pub op: Op,
    /// The line sent, `\n` included.
    pub message: Vec<u8>,
    /// The reply expected for it.
    pub expected: Vec<u8>,
    /// Longest wait for any one read, write or connect.
    pub timeout: Duration,
    /// Operations starting before this are warm-up: done but not counted.
    pub measure_from: Instant,
    /// No operation starts after this (duration mode, and idle mode's hold).
    pub stop_at: Option<Instant>,
    /// Operations allowed after warm-up (count mode).
    pub count: Option<u64>,
    /// Operations claimed so far against `count`.
    pub claimed: AtomicU64,
    /// Set when the run must end (count reached, or Ctrl-C).
    pub stop: AtomicBool,
}

impl Plan {
    /// How long connecting and reading the banner may take from `now`. In rt mode the
    /// connection is not the operation, so its wait ends with the run: clients queued
    /// behind a one-at-a-time server are then abandoned, not counted as failed.
    pub fn open_timeout(&self, now: Instant) -> Duration {
        let left = match (self.op, self.stop_at) {
            (Op::RoundTrip, Some(end)) => end.saturating_duration_since(now),
            _ => self.timeout,
        };
        left.min(self.timeout).max(Duration::from_millis(1))
    }

    /// Whether a failed open was abandoned because the run ended (see [`Self::open_timeout`]).
    pub fn abandoned(&self) -> bool {
        self.op == Op::RoundTrip && !self.running(Instant::now())
    }

    /// Whether the run goes on at `now` (no budget claimed).
    pub fn running(&self, now: Instant) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.stop_at.is_none_or(|end| now < end)
    }

    /// Whether a connection slot goes on at `now`: in conn mode the connection is the
    /// operation, so it claims from the count budget; otherwise the run must go on.
    pub fn may_begin(&self, now: Instant) -> bool {
        match self.op {
            Op::Cycle => self.may_start(now),
            _ => self.running(now),
        }
    }

    /// Whether an operation may start at `now`; claims it from the count budget.
    pub fn may_start(&self, now: Instant) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if self.stop_at.is_some_and(|end| now >= end) {
            return false;
        }
        match self.count {
            Some(count) if now >= self.measure_from => {
                if self.claimed.fetch_add(1, Ordering::Relaxed) < count {
                    true
                } else {
                    self.stop.store(true, Ordering::Relaxed);
                    false
                }
            }
            _ => true,
        }
    }

    /// Records a finished operation that started at `t0`.
    pub fn record(&self, tally: &mut Tally, t0: Instant, outcome: io::Result<()>) {
        let now = Instant::now();
        let measured = t0 >= self.measure_from;
        match outcome {
            Ok(()) if measured => {
                tally.ops += 1;
                tally.last_done = Some(now);
                let ns = u64::try_from((now - t0).as_nanos()).unwrap_or(u64::MAX);
                tally.hist.saturating_record(ns.max(1));
            }
            Ok(()) => tally.warmup_ops += 1,
            Err(err) => tally.error(ErrorKind::of(&err)),
        }
    }
}

/// A progress counter on its own cache line, so workers do not slow each other.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    /// Successful operations so far (warm-up included).
    pub ops: AtomicU64,
    /// Failed operations so far.
    pub errors: AtomicU64,
    /// Connections held (idle mode), set once all are open.
    pub held: AtomicU64,
    /// Idle mode: every connection of this worker was attempted.
    pub settled: AtomicBool,
}

/// Checks a reply or banner buffer. `Ok(true)` when complete and right, `Ok(false)` when
/// more bytes are needed, an error when it can no longer become right.
pub fn check_reply(buf: &[u8], expected: &[u8]) -> io::Result<bool> {
    let n = buf.len().min(expected.len());
    if buf[..n] != expected[..n] || buf.len() > expected.len() {
        return Err(wrong_reply());
    }
    Ok(buf.len() == expected.len())
}

/// Checks a banner: `Ok(true)` when three lines arrived, the first empty and the last
/// the quit instructions; `Ok(false)` when more bytes are needed.
pub fn check_banner(buf: &[u8]) -> io::Result<bool> {
    let newlines = buf.iter().filter(|&&b| b == b'\n').count();
    if newlines < 3 {
        if buf.len() > BANNER_MAX || (!buf.is_empty() && buf.trim_ascii_start().len() == buf.len())
        {
            return Err(wrong_reply());
        }
        return Ok(false);
    }
    let mut lines = buf.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default();
    let _welcome = lines.next();
    let last = lines.next().unwrap_or_default();
    let rest = lines.next().unwrap_or_default();
    if first.trim_ascii().is_empty() && last.trim_ascii() == BANNER_LAST_LINE && rest.is_empty() {
        Ok(true)
    } else {
        Err(wrong_reply())
    }
}

/// One worker thread with blocking sockets, driving one connection at a time.
pub fn blocking_worker(plan: Arc<Plan>, progress: Arc<Progress>) -> Tally {
    let mut tally = Tally::new();
    let mut buf = vec![0u8; plan.expected.len().max(BANNER_MAX) + 1];
    loop {
        let t0 = Instant::now();
        if !plan.may_begin(t0) {
            break;
        }
        let mut stream = match open(&plan, &mut buf) {
            Ok(stream) => stream,
            Err(_) if plan.abandoned() => break,
            Err(err) => {
                failed(&plan, &mut tally, &progress, t0, err);
                continue;
            }
        };
        if plan.op == Op::Cycle {
            let outcome = quit(stream, &mut buf);
            done(&plan, &mut tally, &progress, t0, outcome);
            continue;
        }
        let mut t0 = Instant::now();
        while plan.may_start(t0) {
            let outcome = round_trip(&mut stream, &plan, &mut buf);
            let ok = outcome.is_ok();
            done(&plan, &mut tally, &progress, t0, outcome);
            if !ok {
                break;
            }
            t0 = Instant::now();
        }
    }
    tally
}

/// Opens `n` connections one after the other, reads their banners, and holds them
/// until the end of the run.
pub fn idle_worker(plan: Arc<Plan>, progress: Arc<Progress>, n: usize) -> Tally {
    let mut tally = Tally::new();
    let mut buf = vec![0u8; BANNER_MAX + 1];
    let mut held = Vec::with_capacity(n);
    // One attempt per connection: a server that refuses some is reported, not retried.
    for _ in 0..n {
        let t0 = Instant::now();
        if plan.stop.load(Ordering::Relaxed) {
            break;
        }
        match open(&plan, &mut buf) {
            Ok(stream) => {
                held.push(stream);
                tally.held += 1;
                done(&plan, &mut tally, &progress, t0, Ok(()));
            }
            Err(err) => failed(&plan, &mut tally, &progress, t0, err),
        }
    }
    progress.held.store(held.len() as u64, Ordering::Relaxed);
    progress.settled.store(true, Ordering::Release);
    hold(&plan);
    tally
}

/// Waits until the run is stopped (idle mode: the main thread decides when).
pub fn hold(plan: &Plan) {
    while !plan.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn done(plan: &Plan, tally: &mut Tally, progress: &Progress, t0: Instant, r: io::Result<()>) {
    match r {
        Ok(()) => {
            plan.record(tally, t0, Ok(()));
            progress.ops.fetch_add(1, Ordering::Relaxed);
        }
        Err(err) => failed(plan, tally, progress, t0, err),
    }
}

fn failed(plan: &Plan, tally: &mut Tally, progress: &Progress, t0: Instant, err: io::Error) {
    let refused = err.kind() == io::ErrorKind::ConnectionRefused;
    plan.record(tally, t0, Err(err));
    progress.errors.fetch_add(1, Ordering::Relaxed);
    if refused {
        // Do not spin on a server that is gone; a short pause keeps the count honest.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects and reads the banner.
fn open(plan: &Plan, buf: &mut [u8]) -> io::Result<TcpStream> {
    let deadline = Instant::now() + plan.open_timeout(Instant::now());
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut stream = TcpStream::connect_timeout(&plan.addr, left())?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(plan.timeout))?;
    let mut len = 0;
    loop {
        stream.set_read_timeout(Some(left()))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if check_banner(&buf[..len])? {
            stream.set_read_timeout(Some(plan.timeout))?;
            return Ok(stream);
        }
    }
}

/// Sends `quit` and waits for the server's FIN: any byte before it is a wrong reply.
fn quit(mut stream: TcpStream, buf: &mut [u8]) -> io::Result<()> {
    stream.write_all(b"quit\n")?;
    match stream.read(buf)? {
        0 => Ok(()),
        _ => Err(wrong_reply()),
    }
}

/// Sends the line and reads exactly the expected reply.
fn round_trip(stream: &mut TcpStream, plan: &Plan, buf: &mut [u8]) -> io::Result<()> {
    stream.write_all(&plan.message)?;
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if check_reply(&buf[..len], &plan.expected)? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_is_checked_line_by_line() {
        let banner =
            b"\nWelcome.\nTo quit, type 'quit'. To shut down the server type 'shutdown'.\n";
        assert!(check_banner(banner).unwrap());
        assert!(!check_banner(&banner[..5]).unwrap());
        assert!(!check_banner(b"").unwrap());
        assert!(check_banner(b"Hello\n").is_err());
        assert!(check_banner(b"\nWelcome.\nSomething else\n").is_err());
        let mut extra = banner.to_vec();
        extra.extend_from_slice(b"more");
        assert!(check_banner(&extra).is_err());
    }

    #[test]
    fn reply_must_match_exactly() {
        let want = b"You said 'x'.\n";
        assert!(check_reply(want, want).unwrap());
        assert!(!check_reply(b"You said", want).unwrap());
        assert!(check_reply(b"You said 'y'.\n", want).is_err());
        assert!(check_reply(b"You said 'x'.\nextra", want).is_err());
    }
}
