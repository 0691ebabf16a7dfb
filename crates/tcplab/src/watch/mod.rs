//! `tcplab watch`: every TCP state transition, exact, with TIME_WAIT and SYN_RECV.
//!
//! Tracepoints ([`crate::probe::tracefs`]) give the exact transitions of full sockets;
//! sock_diag ([`crate::probe::sockdiag`]) gives the snapshot at start, the mini-sockets
//! the tracepoints cannot see, and the owning processes. [`correlate`] merges both into
//! RFC state changes; [`render`] prints them. Without the privilege for tracefs, or with
//! `--no-trace`, sock_diag polling alone runs, and says what that loses.
//!
//! Once armed, a line `tcplab watch: armed ...` goes to stderr, so scripts and tests
//! can wait for it instead of sleeping.
//!
//! # Cost: an idle watcher is nearly free
//!
//! Round trips on established connections fire no state events, so what a watcher
//! costs them is its own CPU time. It waits in poll(2) on `trace_pipe` until something
//! is due (a held change to release, a poll), at most 100 ms. It never walks the
//! kernel's socket tables on a fast timer: a sock_diag dump walks the whole established
//! hash table whatever its filter (~1.7 ms per address family here), and dumping every
//! 20 ms took a fifth of a core. Instead the tuples that need a look are looked up
//! one by one (a hash lookup each): a CLOSE waiting to be told TIME_WAIT from CLOSED
//! (every 3 ms), FIN_WAIT2 mini-sockets (less often as they age: their TIME_WAIT is
//! dated by its timer, not by the poll), TIME_WAIT sockets due to expire, request
//! sockets, and every TIME_WAIT socket for a second after an RST. Request sockets are
//! dumped every 500 ms to find half-open connections (dated by their SYN,ACK timer),
//! only in the address families of the listeners on the watched ports (none: no
//! dump); a dump replaces the lookups only when it is the cheaper of the two.
//!
//! # A lagging reader
//!
//! Under churn the reader can be seconds behind the kernel, and a poll sees sockets as
//! they are now: the next life of a recycled tuple, say, whose lines are still unread.
//! So what a poll saw is applied only after the trace lines up to the poll's time are
//! read (the ring drained, or an event newer than the poll read).

pub mod correlate;
pub mod render;

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tcplab_core::state::TcpState;

use crate::probe::sockdiag::{self, DiagSocket, Owner, Owners, SockDiag};
use crate::probe::tracefs::{self, Instance, TraceEvent};
use correlate::{Correlator, PollSpan, Released, Tuple};
use render::{Stuck, Summary};

/// Arguments of `tcplab watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only connections with this local or remote port (repeatable).
    #[arg(long = "port", short = 'p', value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only connections with this local or remote address (repeatable).
    #[arg(long = "host", value_name = "ADDR")]
    pub hosts: Vec<IpAddr>,
    /// Only transitions from or to this state, e.g. CLOSE_WAIT (repeatable).
    #[arg(long = "state", value_name = "STATE")]
    pub states: Vec<TcpState>,
    /// Only sockets owned by this process (sockets whose owner was never seen, such as
    /// ones opened and closed between two looks at /proc, are not shown).
    #[arg(long)]
    pub pid: Option<u32>,
    /// JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::seconds::parse, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// At exit, print sockets per state, transitions seen and events lost.
    #[arg(long)]
    pub summary: bool,
    /// Report sockets in CLOSE_WAIT, FIN_WAIT2 or SYN_RECV for longer than SECS.
    #[arg(long, value_name = "SECS", value_parser = crate::seconds::parse, allow_negative_numbers = true)]
    pub stuck: Option<f64>,
    /// sock_diag poll interval in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub poll_ms: u64,
    /// Do not use tracefs: poll sock_diag only, as without privileges (for tests; also
    /// set by TCPLAB_NO_TRACE=1).
    #[arg(long, hide = true)]
    pub no_trace: bool,
}

/// Shortest interval between two polls asked for by pending CLOSEs.
const MIN_POLL_NS: u64 = 3_000_000;
/// How often request sockets are dumped with tracepoints on, to find half-open
/// connections (dated by their SYN,ACK timer, not by this poll). A half-open whose
/// SYN,ACK cannot be retransmitted (no route back) dies at its first timer, after 1 s:
/// half that catches every one. A dump walks the whole established hash table whatever
/// its filter: 2 to 16 ms of kernel time per address family here, depending on load
/// (dumping every 20 ms took a fifth of a core), so only the families of watched
/// listeners are dumped. Known mini-sockets are looked up.
const FULL_DUMP_NS: u64 = 500_000_000;
/// Request sockets (SYN_RECV and NEW_SYN_RECV).
const REQUEST_STATES: u32 = (1 << 3) | (1 << 12);
/// Tuples are looked up one by one (a hash lookup, ~3 µs each) unless there are more
/// than this plus a third of the mini-sockets a dump would return (~3.4 ms for the two
/// walks plus ~1 µs per socket returned): then one dump is cheaper.
const LOOKUP_MAX: usize = 1000;
/// Shortest interval between two dumps made to find the owners of many new sockets.
const OWNER_DUMP_NS: u64 = 1_000_000_000;
/// Longest wait for trace lines when nothing is held or due sooner.
const IDLE_WAIT_MS: u64 = 100;

/// CLOCK_MONOTONIC in ns: the clock of the tracefs `mono` trace clock.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Which connections the user asked for.
#[derive(Debug, Clone)]
struct Filter {
    ports: Vec<u16>,
    hosts: Vec<IpAddr>,
}

impl Filter {
    fn addr(&self, a: SocketAddr) -> (bool, bool) {
        let ip = a.ip().to_canonical();
        (
            self.ports.contains(&a.port()),
            self.hosts.iter().any(|h| h.to_canonical() == ip),
        )
    }

    fn tuple(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        let (lp, lh) = self.addr(local);
        let (rp, rh) = self.addr(remote);
        (self.ports.is_empty() || lp || rp) && (self.hosts.is_empty() || lh || rh)
    }

    fn trace(&self, ev: &TraceEvent) -> bool {
        match ev {
            TraceEvent::SetState { local, remote, .. }
            | TraceEvent::ReceiveReset { local, remote, .. }
            | TraceEvent::Retransmit { local, remote, .. } => self.tuple(*local, *remote),
            TraceEvent::SendReset { local, remote, .. } => match (local, remote) {
                (Some(l), Some(r)) => self.tuple(*l, *r),
                _ => false,
            },
            TraceEvent::Lost { .. } => true,
        }
    }

    fn sockets(&self, all: Vec<DiagSocket>) -> Vec<DiagSocket> {
        all.into_iter()
            .filter(|s| self.tuple(s.local, s.remote))
            .collect()
    }
}

/// What a sock_diag poll saw, applied once the trace lines up to it are read.
enum Seen {
    /// Exact lookups (or a dump standing for them) of the tuples in `scope`.
    Lookups {
        scope: HashSet<Tuple>,
        found: Vec<DiagSocket>,
    },
    /// A dump of every mini-socket.
    Minis(Vec<DiagSocket>),
}

/// Everything the loop carries between iterations.
struct Watch<'a> {
    args: &'a Args,
    filter: Filter,
    diag: SockDiag,
    owners: Owners,
    owner_of: HashMap<Tuple, Owner>,
    corr: Correlator,
    wall_offset_ns: i128,
    out: io::BufWriter<io::StdoutLock<'static>>,
    summary: Summary,
    stuck_reported: HashSet<Tuple>,
    /// Whether the last round read any trace line.
    last_round_read: bool,
    /// When the last mini-socket poll (lookups or dump) ran.
    last_mini_poll: u64,
    /// When the last poll of every target (not only the urgent ones) ran.
    last_target_poll: u64,
    /// When the next dump of every mini-socket is due.
    next_full_dump: u64,
    /// When the next full poll is due (without tracepoints).
    next_poll: u64,
    /// When a dump may next be made to find owners (see [`Watch::resolve_owners`]).
    next_owner_dump: u64,
}

/// Runs `tcplab watch`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    crate::interrupt::install();
    let filter = Filter {
        ports: args.ports.clone(),
        hosts: args.hosts.clone(),
    };
    let mut diag = SockDiag::open().context("opening netlink sock_diag")?;
    // The kernel filters by port (a busy machine has tens of thousands of TIME_WAIT
    // sockets); addresses, and ports beyond what its filter takes, are filtered here.
    diag.filter_ports(&args.ports);
    let forced = args.no_trace || std::env::var("TCPLAB_NO_TRACE").as_deref() == Ok("1");
    let tracing = if forced {
        Err(anyhow::anyhow!(
            "tracing disabled by --no-trace / TCPLAB_NO_TRACE=1"
        ))
    } else {
        Instance::create(&tracefs::Filter {
            ports: args.ports.clone(),
        })
    };
    // Declared before the loop state: dropped last, after the pipe is closed.
    let mut instance = match tracing {
        Ok(inst) => Some(inst),
        Err(e) => {
            eprintln!(
                "tcplab watch: fallback: no tracepoints ({e:#}). Tracing needs CAP_SYS_ADMIN \
                 and write access to tracefs; to fix, run as root (sudo tcplab watch ...). \
                 Polling sock_diag every {} ms instead: transient states (SYN_SENT, \
                 FIN_WAIT1, CLOSING, LAST_ACK) may be missed and times are poll times.",
                args.poll_ms
            );
            None
        }
    };
    let wall_offset_ns = i128::from(clock_ns(libc::CLOCK_REALTIME)) - i128::from(mono_ns());
    let mut w = Watch {
        args: &args,
        filter,
        diag,
        owners: Owners::new(Duration::from_millis(50)),
        owner_of: HashMap::new(),
        corr: Correlator::new(5_000_000),
        wall_offset_ns,
        out: io::BufWriter::new(io::stdout().lock()),
        summary: Summary::default(),
        stuck_reported: HashSet::new(),
        last_round_read: false,
        last_mini_poll: 0,
        last_target_poll: 0,
        next_full_dump: 0,
        next_poll: 0,
        next_owner_dump: 0,
    };
    let snapshot = w.dump(sockdiag::ALL_STATES)?;
    let now = mono_ns();
    w.corr.on_snapshot(now, &snapshot);
    // The snapshot showed the request sockets there are: the next dump can wait.
    w.next_full_dump = now + FULL_DUMP_NS;
    match &instance {
        Some(inst) => {
            for stale in &inst.removed_stale {
                eprintln!("tcplab watch: removed stale tracefs instance {stale}");
            }
            eprintln!(
                "tcplab watch: armed: tracepoints (tracefs instance {})",
                inst.name()
            );
        }
        None => eprintln!(
            "tcplab watch: armed: sock_diag polling every {} ms",
            args.poll_ms
        ),
    }
    let result = w.run(&mut instance);
    // Whatever happened, report loss and print what is held.
    let kernel_lost = instance.as_ref().map_or(0, Instance::lost_events);
    let finish = w.finish(kernel_lost);
    drop(instance);
    result.and(finish)?;
    Ok(ExitCode::SUCCESS)
}

impl Watch<'_> {
    fn dump(&mut self, states: u32) -> anyhow::Result<Vec<DiagSocket>> {
        let all = self.diag.dump(states).context("sock_diag dump")?;
        Ok(self.filter.sockets(all))
    }

    fn run(&mut self, instance: &mut Option<Instance>) -> anyhow::Result<()> {
        let start = mono_ns();
        let deadline = self
            .args
            .duration
            .map(|d| start + (d.max(0.0) * 1e9) as u64);
        let mut next_slow = start;
        let mut reported_lost = 0;
        while !crate::interrupt::requested() {
            if deadline.is_some_and(|d| mono_ns() >= d) {
                break;
            }
            let wait_ms = self.wait_ms(instance.is_some(), deadline.min(Some(next_slow)));
            let now = self.round(instance, wait_ms, false)?;
            if now >= next_slow {
                next_slow = now + 500_000_000;
                self.check_stuck(now)?;
                // `[LOST n EVENTS]` lines and the overrun counters tell of the same
                // events: the larger is the loss (the counters know it first).
                let lost = self
                    .corr
                    .lost
                    .max(instance.as_ref().map_or(0, Instance::lost_events));
                if lost > reported_lost {
                    eprintln!(
                        "tcplab watch: WARNING: the kernel lost {} trace events (ring buffer \
                         overrun): some transitions are missing",
                        lost - reported_lost
                    );
                    reported_lost = lost;
                }
            }
            self.out.flush()?;
        }
        // What happened before the end may still wait in the ring buffer (we may lag
        // behind a busy kernel): read it all, and give pending CLOSEs their polls.
        let mut extra_polls = 4;
        for _ in 0..100_000 {
            self.round(instance, 0, true)?;
            if !self.last_round_read {
                if !self.corr.needs_mini_poll() || extra_polls == 0 {
                    break;
                }
                extra_polls -= 1;
            }
        }
        Ok(())
    }

    /// How long the next round may wait for trace lines: until something held is due
    /// for release, a poll is due, or `until` (monotonic ns); at most IDLE_WAIT_MS, so
    /// an idle watcher wakes ten times a second and costs nothing measurable.
    fn wait_ms(&self, tracing: bool, until: Option<u64>) -> i32 {
        let now = mono_ns();
        let poll_ns = self.args.poll_ms.max(1) * 1_000_000;
        let mut wake = now + IDLE_WAIT_MS * 1_000_000;
        if !tracing {
            wake = wake.min(self.next_poll);
        } else {
            wake = wake.min(self.next_full_dump);
            if self.corr.needs_mini_poll() {
                wake = wake.min(self.last_mini_poll + MIN_POLL_NS);
            }
            if self.corr.tracks_minis() {
                wake = wake.min(self.last_target_poll + poll_ns);
            }
        }
        if let Some(at) = self.corr.next_release() {
            wake = wake.min(at);
        }
        if let Some(u) = until {
            wake = wake.min(u);
        }
        // Round up: a wait of 0 for a due time 0.5 ms away would spin.
        wake.saturating_sub(now).div_ceil(1_000_000) as i32
    }

    /// Polls the mini-sockets when due: exact lookups of the tuples that need a look
    /// (cheap), or a dump when there are many of them or the periodic full dump is due.
    /// `force` polls the targets whatever the time (the last rounds before exit).
    /// Returns what the polls saw at `now`, for [`Watch::round`] to apply once the
    /// trace lines up to `now` are read.
    fn poll_minis(&mut self, now: u64, force: bool) -> anyhow::Result<Vec<Seen>> {
        let mut seen = Vec::new();
        if now >= self.next_full_dump {
            self.next_full_dump = now + FULL_DUMP_NS;
            let (v4, v6) = self.request_families();
            let families: Vec<u8> = [(v4, libc::AF_INET as u8), (v6, libc::AF_INET6 as u8)]
                .into_iter()
                .filter_map(|(on, family)| on.then_some(family))
                .collect();
            // The request sockets followed in the families dumped: the others are not
            // looked at (and without a listener there, none can exist).
            let scope = self
                .corr
                .request_tuples()
                .into_iter()
                .filter(|t| if t.0.is_ipv4() { v4 } else { v6 })
                .collect();
            let found = if families.is_empty() {
                Vec::new()
            } else {
                let all = self
                    .diag
                    .dump_families(&families, REQUEST_STATES)
                    .context("sock_diag dump")?;
                self.filter.sockets(all)
            };
            seen.push(Seen::Lookups { scope, found });
        }
        let poll_ns = self.args.poll_ms.max(1) * 1_000_000;
        let urgent =
            self.corr.needs_mini_poll() && now >= self.last_mini_poll.saturating_add(MIN_POLL_NS);
        let all = force || now >= self.last_target_poll.saturating_add(poll_ns);
        if !(urgent || all) {
            return Ok(seen);
        }
        if all {
            self.last_target_poll = now;
        }
        let targets = self.corr.poll_targets(now, all);
        if targets.is_empty() {
            return Ok(seen);
        }
        self.last_mini_poll = now;
        if targets.len() > LOOKUP_MAX + self.corr.tracked_minis() / 3 {
            self.last_target_poll = now;
            seen.push(Seen::Minis(self.dump(sockdiag::MINI_STATES)?));
            return Ok(seen);
        }
        let mut found = Vec::new();
        for t in &targets {
            // Only what a dump of MINI_STATES would give: full sockets are traced.
            if let Some(s) = self.diag.lookup(t.0, t.1).context("sock_diag lookup")? {
                if sockdiag::MINI_STATES & (1 << s.state) != 0 {
                    found.push(s);
                }
            }
        }
        seen.push(Seen::Lookups {
            scope: targets,
            found,
        });
        Ok(seen)
    }

    /// Which address families (IPv4, IPv6) can hold request sockets that are watched:
    /// those of the listeners on the watched ports (on any port when none is given).
    /// An IPv6 listener also answers IPv4 SYNs (v4-mapped), with IPv4 request sockets.
    /// With `--host`, both: a listener on a wildcard address is filtered out of what
    /// the correlator knows, yet its request sockets from that host are watched.
    fn request_families(&self) -> (bool, bool) {
        if !self.filter.hosts.is_empty() {
            return (true, true);
        }
        let ports = &self.filter.ports;
        let mut families = (false, false);
        for (t, c) in self.corr.conns() {
            if c.state != TcpState::Listen || !(ports.is_empty() || ports.contains(&t.0.port())) {
                continue;
            }
            families.0 = true;
            families.1 |= t.0.is_ipv6();
        }
        families
    }

    /// Takes one traced event; `newest` becomes its time.
    fn feed(&mut self, ev: TraceEvent, newest: &mut Option<u64>) {
        self.last_round_read = true;
        *newest = ev.ts_ns().or(*newest);
        if self.filter.trace(&ev) {
            self.corr.on_trace(ev);
        }
    }

    /// One round: read what the kernel traced (waiting up to `timeout_ms`), poll
    /// sock_diag when due, release and print. Returns the clock at the round.
    fn round(
        &mut self,
        instance: &mut Option<Instance>,
        timeout_ms: i32,
        force: bool,
    ) -> anyhow::Result<u64> {
        let poll_ns = self.args.poll_ms.max(1) * 1_000_000;
        // The newest event time read in this round: when we lag behind the kernel,
        // release by it rather than by the clock, or held changes would leave before
        // the lines that complete them are read.
        let mut newest_read = None;
        self.last_round_read = false;
        let now = match instance.as_mut() {
            Some(inst) => {
                for line in inst
                    .read_lines(timeout_ms)
                    .context("reading trace_pipe")?
                    .lines()
                {
                    if let Some(ev) = tracefs::parse_line(line) {
                        self.feed(ev, &mut newest_read);
                    }
                }
                let now = mono_ns();
                let seen = self.poll_minis(now, force)?;
                if !seen.is_empty() {
                    // What a poll saw, in its place among the events: after every line
                    // up to the poll's end (a lagging reader has not read what led
                    // there, like the next life of a recycled tuple; and a socket the
                    // poll saw may have changed after the poll began).
                    let span = PollSpan {
                        start_ns: now,
                        end_ns: mono_ns(),
                    };
                    inst.catch_up(span.end_ns, |ev| self.feed(ev, &mut newest_read))
                        .context("reading trace_pipe")?;
                    for s in seen {
                        match s {
                            Seen::Lookups { scope, found } => {
                                self.corr.on_lookups(span, &scope, &found);
                            }
                            Seen::Minis(found) => self.corr.on_mini_poll(span, &found),
                        }
                    }
                }
                now
            }
            None => {
                if timeout_ms > 0 {
                    std::thread::sleep(Duration::from_millis(timeout_ms as u64));
                }
                let now = mono_ns();
                if force || now >= self.next_poll {
                    let all = self.dump(sockdiag::ALL_STATES)?;
                    self.corr.on_full_poll(now, &all);
                    self.next_poll = now + poll_ns;
                }
                now
            }
        };
        let release_at = newest_read.map_or(now, |ts| ts.min(now));
        let released = self.corr.release(release_at);
        self.emit(released)?;
        Ok(now)
    }

    /// Releases everything held, prints the summary if asked, reports loss.
    fn finish(&mut self, kernel_lost: u64) -> anyhow::Result<()> {
        let rest = self.corr.release_all();
        self.emit(rest)?;
        let lost = self.corr.lost.max(kernel_lost);
        if self.args.summary {
            for s in self.dump(sockdiag::ALL_STATES)? {
                if let Some(st) = TcpState::from_linux(u32::from(s.state)) {
                    *self.summary.now.entry(st).or_default() += 1;
                }
            }
            self.summary.lost = lost;
            let text = if self.args.json {
                self.summary.json()
            } else {
                self.summary.human()
            };
            writeln!(self.out, "{text}")?;
        }
        self.out.flush()?;
        if lost > 0 {
            eprintln!("tcplab watch: WARNING: {lost} trace events were lost in total");
        }
        Ok(())
    }

    /// Finds owners for live sockets not yet known: one dump, then /proc (cached).
    fn resolve_owners(&mut self, released: &[Released]) -> anyhow::Result<()> {
        let unknown = released.iter().any(|r| {
            let t = (r.change.local, r.change.remote);
            r.change.to != TcpState::Closed && !self.owner_of.contains_key(&t)
        });
        if !unknown {
            return Ok(());
        }
        let wanted: HashSet<Tuple> = released
            .iter()
            .filter(|r| r.change.to != TcpState::Closed)
            .map(|r| (r.change.local, r.change.remote))
            .filter(|t| !self.owner_of.contains_key(t))
            .collect();
        let sockets = if wanted.len() <= LOOKUP_MAX {
            let mut found = Vec::new();
            for t in &wanted {
                found.extend(self.diag.lookup(t.0, t.1).context("sock_diag lookup")?);
            }
            found
        } else {
            // A lagging reader under churn releases thousands at once, most of them
            // long closed: a dump (a walk of every socket) at most once a second, and
            // between dumps their owners stay unknown.
            let now = mono_ns();
            if now < self.next_owner_dump {
                return Ok(());
            }
            self.next_owner_dump = now + OWNER_DUMP_NS;
            self.dump(sockdiag::ALL_STATES & !sockdiag::MINI_STATES | (1 << 5))?
        };
        for s in sockets {
            if s.inode == 0 {
                continue;
            }
            let t = (s.local, s.remote);
            if !self.owner_of.contains_key(&t) {
                if let Some(o) = self.owners.lookup(s.inode) {
                    self.owner_of.insert(t, o);
                }
            }
        }
        Ok(())
    }

    fn emit(&mut self, released: Vec<Released>) -> anyhow::Result<()> {
        if released.is_empty() {
            return Ok(());
        }
        self.resolve_owners(&released)?;
        for r in released {
            let c = &r.change;
            let t = (c.local, c.remote);
            let owner = self.owner_of.get(&t).cloned();
            if c.to == TcpState::Closed {
                self.owner_of.remove(&t);
            }
            let states = &self.args.states;
            if !states.is_empty()
                && !states.contains(&c.to)
                && !c.from.is_some_and(|f| states.contains(&f))
            {
                continue;
            }
            if let Some(pid) = self.args.pid {
                if owner.as_ref().map(|o| o.pid) != Some(pid) {
                    continue;
                }
            }
            if c.from.is_some() {
                *self.summary.entered.entry(c.to).or_default() += 1;
            }
            let line = if self.args.json {
                render::json(&r, owner.as_ref())
            } else {
                render::human(&r, self.wall_offset_ns, owner.as_ref())
            };
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }

    fn check_stuck(&mut self, now: u64) -> anyhow::Result<()> {
        let Some(limit) = self.args.stuck else {
            return Ok(());
        };
        let limit_ns = (limit.max(0.0) * 1e9) as u64;
        let mut found = Vec::new();
        for (t, c) in self.corr.conns() {
            let watched = matches!(
                c.state,
                TcpState::CloseWait | TcpState::FinWait2 | TcpState::SynRecv
            );
            let for_ns = now.saturating_sub(c.since_ns);
            if watched && for_ns > limit_ns && !self.stuck_reported.contains(t) {
                found.push(Stuck {
                    local: t.0,
                    remote: t.1,
                    state: c.state,
                    for_ns,
                    at_least: !c.since_known,
                    owner: self.owner_of.get(t).cloned(),
                });
            }
        }
        self.stuck_reported
            .retain(|t| self.corr.conns().contains_key(t));
        for s in found {
            self.stuck_reported.insert((s.local, s.remote));
            if let Some(pid) = self.args.pid {
                if s.owner.as_ref().map(|o| o.pid) != Some(pid) {
                    continue;
                }
            }
            let line = if self.args.json {
                render::stuck_json(&s)
            } else {
                render::stuck_human(&s)
            };
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }
}
