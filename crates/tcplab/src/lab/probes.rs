//! The kernel observers of one lab run, both filtered on the run's server port:
//! packet capture on the run's loopback (AF_PACKET, created inside the run's namespace)
//! and the kernel's state events (tracefs from the root namespace, which sees every
//! namespace, plus sock_diag polls from inside the run's namespace for what the
//! tracepoint never reports: TIME_WAIT and the half-open request socket).
//!
//! Each runs on its own thread from before the client connects until the run has
//! settled; what cannot be started is named, with the privilege it needs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use tcplab_core::event::StateChange;
use tcplab_core::timeline::{self, Segment};

use super::recipes::{wait_until, wait_until_every};
use super::run::{Host, Place};
use crate::clock;
use crate::probe::capture::Capture;
use crate::probe::sockdiag::{self, SockDiag};
use crate::probe::tracefs::{self, Instance};
use crate::watch::correlate::{Correlator, PollSpan};

/// How long the probes keep reading after the run ended, at least: the correlator holds
/// changes a few ms for lines that complete them, and sock_diag confirms TIME_WAIT.
const SETTLE: Duration = Duration::from_millis(40);
/// And at most.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);
/// How long [`Probes::finish`] waits, at most, for the closing handshakes in flight
/// (FIN_WAIT1, CLOSING, LAST_ACK: each one ACK from its end) before it stops the probes.
const CLOSING_LIMIT: Duration = Duration::from_secs(1);
/// FIN_WAIT1, LAST_ACK and CLOSING (`1 << TCP_*`).
const CLOSING_STATES: u32 = (1 << 4) | (1 << 9) | (1 << 11);
/// TIME_WAIT (`1 << TCP_TIME_WAIT`).
const TIME_WAIT_STATE: u32 = 1 << 6;
/// How long [`Probes::finish`] waits for TIME_WAIT to end when asked: Linux's 2MSL is
/// a fixed 60 s (`TCP_TIMEWAIT_LEN`), its timer wheel a little coarser.
const TIME_WAIT_LIMIT: Duration = Duration::from_secs(65);

/// What a capture thread brings back: the frames as captured.
#[derive(Debug, Clone)]
pub struct Captured {
    /// pcap link type of the frames.
    pub linktype: u32,
    /// (CLOCK_REALTIME ns as the kernel stamped it, frame bytes)
    pub frames: Vec<(u64, Vec<u8>)>,
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC during the capture.
    pub offset_ns: i128,
    /// Packets the kernel dropped.
    pub dropped: u64,
    /// When the capture started (CLOCK_REALTIME ns), for the statistics block.
    pub start_ns: u64,
}

impl Captured {
    /// The TCP segments of the frames, on the monotonic clock.
    pub fn segments(&self) -> Vec<Segment> {
        timeline::segments_from_frames(
            self.linktype,
            self.frames
                .iter()
                .map(|(ts, f)| (self.mono(*ts), f.as_slice())),
        )
    }

    /// A frame's realtime stamp on the monotonic clock.
    pub fn mono(&self, realtime_ns: u64) -> u64 {
        (i128::from(realtime_ns) - self.offset_ns).max(0) as u64
    }
}

/// What the probes saw of one run.
#[derive(Debug, Default)]
pub struct Seen {
    /// The capture, when one ran.
    pub capture: Option<Captured>,
    /// Segments of the capture, monotonic clock.
    pub segments: Vec<Segment>,
    /// Kernel state changes.
    pub changes: Vec<StateChange>,
    /// One line per thing that could not be seen.
    pub missing: Vec<String>,
    /// States come from sock_diag polls, not from tracepoints.
    pub polled: bool,
}

/// What a tracing thread brings back.
#[derive(Debug)]
struct Traced {
    changes: Vec<StateChange>,
    lost: u64,
}

/// Running probes of one lab run.
#[derive(Debug)]
pub struct Probes {
    stop: Arc<AtomicBool>,
    capture: Option<JoinHandle<anyhow::Result<Captured>>>,
    trace: Option<JoinHandle<anyhow::Result<Traced>>>,
    missing: Vec<String>,
    polls_states: bool,
    /// sock_diag on each host, and the port: to see closing handshakes still in flight.
    diags: Vec<SockDiag>,
    port: u16,
}

impl Probes {
    /// Starts what can be started for traffic on `port` in `place`; returns once every
    /// started probe is armed.
    pub fn start(place: &Place, port: u16) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let mut missing = Vec::new();
        // Two hosts: the wire sees every segment (lost ones too), no capture needed.
        let capture = match (!matches!(place, Place::TwoHost(_)))
            .then(|| start_capture(place, port, Arc::clone(&stop)))
        {
            None => None,
            Some(Ok(handle)) => Some(handle),
            Some(Err(err)) => {
                let err = format!("{err:#}");
                // The capture's own error may already name the capability.
                let needs = if err.contains("CAP_NET_RAW") {
                    ""
                } else {
                    "it needs CAP_NET_RAW: "
                };
                missing.push(format!(
                    "segments (no packet capture: {err}; {needs}run as root or \
                     `setcap cap_net_raw+ep` the binary)"
                ));
                None
            }
        };
        let instance = if std::env::var("TCPLAB_NO_TRACE").as_deref() == Ok("1") {
            Err(anyhow::anyhow!("tracing disabled by TCPLAB_NO_TRACE=1"))
        } else {
            Instance::create(&tracefs::Filter { ports: vec![port] })
        };
        // Without tracepoints, states come from the captured segments (RFC 9293 rules),
        // or, without a capture too, from sock_diag polls.
        let polls_states = instance.is_err();
        if let Err(err) = &instance {
            let instead = if capture.is_some() {
                "states are inferred from the captured segments instead (marked *)"
            } else {
                "states are polled from sock_diag instead: short-lived ones (SYN_SENT, \
                 FIN_WAIT1, LAST_ACK, CLOSING) may be missed, times are poll times (≈), and \
                 the client pauses 100 ms between steps so that polls see each state"
            };
            missing.push(format!(
                "exact kernel states (no tracepoints: {err:#}; they need CAP_SYS_ADMIN for \
                 tracefs: run as root); {instead}"
            ));
        }
        let trace = match start_trace(place, instance.ok(), port, Arc::clone(&stop)) {
            Ok(handle) => Some(handle),
            Err(err) => {
                missing.push(format!("kernel states (sock_diag failed too: {err:#})"));
                None
            }
        };
        let diags = place
            .hosts()
            .iter()
            .filter_map(|&host| {
                let mut diag = place.run_on(host, SockDiag::open).ok()?.ok()?;
                diag.filter_ports(&[port]);
                Some(diag)
            })
            .collect();
        Probes {
            stop,
            capture,
            trace,
            missing,
            polls_states,
            diags,
            port,
        }
    }

    /// Whether a socket on the port is one ACK from the end of a close (FIN_WAIT1,
    /// CLOSING, LAST_ACK). On a loaded machine that ACK can take tens of ms (softirq work
    /// deferred to ksoftirqd): stopping the probes before it would cut the run short.
    fn closing_in_flight(&mut self) -> bool {
        self.any_in(CLOSING_STATES)
    }

    /// Whether a socket on the port is in one of `states` (`1 << TCP_*`).
    fn any_in(&mut self, states: u32) -> bool {
        let port = self.port;
        let ours = |s: &sockdiag::DiagSocket| s.local.port() == port || s.remote.port() == port;
        dump_all(&mut self.diags, states, &ours).is_ok_and(|s| !s.is_empty())
    }

    /// True when the timeline's states will come from sock_diag polls (no tracepoints,
    /// no capture to infer them from): the client must pace itself for polls to see
    /// each state.
    pub fn needs_pacing(&self) -> bool {
        self.polls_states && self.capture.is_none()
    }

    /// Stops the probes once the run has settled (and, with `time_wait`, once TIME_WAIT
    /// ended: about a minute); returns the segments and state changes they saw, and one
    /// line for everything that could not be seen.
    pub fn finish(&mut self, time_wait: bool) -> Seen {
        // Bounded: a close the peer never ACKs (a wire that drops it) may stay.
        wait_until(CLOSING_LIMIT, || !self.closing_in_flight());
        if time_wait && self.any_in(TIME_WAIT_STATE) {
            // A minute with nothing on the screen needs saying why.
            eprintln!("tcplab lab: waiting for TIME_WAIT to end (60 s; Ctrl-C stops the wait)");
            let period = Duration::from_millis(50);
            let ended = wait_until_every(TIME_WAIT_LIMIT, period, || {
                crate::interrupt::requested() || !self.any_in(TIME_WAIT_STATE)
            });
            if crate::interrupt::requested() {
                self.missing
                    .push("the end of TIME_WAIT (interrupted before it)".into());
            } else if !ended {
                self.missing
                    .push("the end of TIME_WAIT (still there after 65 s)".into());
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        let mut missing = std::mem::take(&mut self.missing);
        let mut segments = Vec::new();
        let mut capture = None;
        if let Some(handle) = self.capture.take() {
            match handle.join() {
                Ok(Ok(c)) => {
                    segments = c.segments();
                    if c.dropped > 0 {
                        missing.push(format!(
                            "segments: the kernel dropped {} packets",
                            c.dropped
                        ));
                    }
                    capture = Some(c);
                }
                Ok(Err(err)) => missing.push(format!("segments: capture failed: {err:#}")),
                Err(_) => missing.push("segments: the capture thread panicked".into()),
            }
        }
        let mut changes = Vec::new();
        if let Some(handle) = self.trace.take() {
            match handle.join() {
                Ok(Ok(t)) => {
                    changes = t.changes;
                    if t.lost > 0 {
                        missing.push(format!("kernel states: {} trace events were lost", t.lost));
                    }
                }
                Ok(Err(err)) => missing.push(format!("kernel states: tracing failed: {err:#}")),
                Err(_) => missing.push("kernel states: the tracing thread panicked".into()),
            }
        }
        Seen {
            capture,
            segments,
            changes,
            missing,
            polled: self.polls_states,
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        // Never leave a thread (and its tracefs instance) running.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Opens a capture on `lo` of `place` for TCP port `port`, on its own thread.
fn start_capture(
    place: &Place,
    port: u16,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<Captured>>> {
    if std::env::var("TCPLAB_NO_CAPTURE").as_deref() == Ok("1") {
        anyhow::bail!("capture disabled by TCPLAB_NO_CAPTURE=1");
    }
    let words: Vec<String> = ["tcp", "port", &port.to_string()]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let expr = tcplab_core::filter::parse(&words)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("empty filter")?;
    let (armed_tx, armed_rx) = mpsc::channel();
    let handle = place.spawn_on(Host::Server, move || -> anyhow::Result<Captured> {
        let mut capture = match Capture::open("lo", Some(&expr)) {
            Ok(c) => {
                let _ = armed_tx.send(Ok(()));
                c
            }
            Err(err) => {
                let message = err.to_string();
                let _ = armed_tx.send(Err(message.clone()));
                anyhow::bail!(message);
            }
        };
        let offset_ns = clock::realtime_offset_ns();
        let start_ns = clock::realtime_ns();
        let mut frames = Vec::new();
        let mut block = |capture: &mut Capture| {
            capture.next_block(Duration::from_millis(5), |p| {
                frames.push((p.ts_ns, p.data.to_vec()));
                Ok(())
            })
        };
        let mut stopped_at = None;
        loop {
            let n = block(&mut capture)?;
            if stop.load(Ordering::SeqCst) {
                let since = *stopped_at.get_or_insert_with(std::time::Instant::now);
                // A V3 block is handed over on its timer: keep draining until a round
                // brings nothing and the settle time has passed.
                if n == 0 && since.elapsed() >= SETTLE || since.elapsed() >= SETTLE_LIMIT {
                    break;
                }
            }
        }
        let dropped = capture.stats().map(|s| s.dropped).unwrap_or(0);
        Ok(Captured {
            linktype: capture.linktype(),
            frames,
            offset_ns,
            dropped,
            start_ns,
        })
    })?;
    match armed_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(message)) => {
            let _ = handle.join();
            anyhow::bail!(message)
        }
        Err(_) => anyhow::bail!("the capture did not start within 5 s"),
    }
}

/// Starts tracepoints for TCP port `port` (root namespace) and sock_diag polls inside
/// `place`, on their own thread.
/// Starts the state observer for TCP port `port`: tracepoints (`instance`, root
/// namespace) with sock_diag polls inside `place` for what they miss, or, without
/// tracepoints, sock_diag polls alone (the unprivileged fallback, as `ss` sees it).
fn start_trace(
    place: &Place,
    instance: Option<Instance>,
    port: u16,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<Traced>>> {
    let mut diags = Vec::new();
    for &host in place.hosts() {
        let mut diag = place.run_on(host, SockDiag::open)??;
        diag.filter_ports(&[port]);
        diags.push(diag);
    }
    let handle = std::thread::spawn(move || trace_loop(instance, diags, port, &stop));
    Ok(handle)
}

fn trace_loop(
    mut instance: Option<Instance>,
    mut diags: Vec<SockDiag>,
    port: u16,
    stop: &AtomicBool,
) -> anyhow::Result<Traced> {
    let mut corr = Correlator::new(5_000_000);
    let mut changes = Vec::new();
    let mut stopped_at = None;
    let ours = |s: &sockdiag::DiagSocket| s.local.port() == port || s.remote.port() == port;
    loop {
        match instance.as_mut() {
            Some(instance) => {
                for line in instance
                    .read_lines(5)
                    .context("reading trace_pipe")?
                    .lines()
                {
                    if let Some(ev) = tracefs::parse_line(line) {
                        corr.on_trace(ev);
                    }
                }
                // What the poll saw, after every line up to its end: those lines led
                // there (a socket may change while the dump walks).
                let start_ns = clock::mono_ns();
                let mini = dump_all(&mut diags, sockdiag::MINI_STATES, &ours)?;
                let span = PollSpan {
                    start_ns,
                    end_ns: clock::mono_ns(),
                };
                instance
                    .catch_up(span.end_ns, |ev| corr.on_trace(ev))
                    .context("reading trace_pipe")?;
                corr.on_mini_poll(span, &mini);
            }
            None => {
                // Poll as often as a dump allows: every state that lasts longer than a
                // dump is seen.
                let all = dump_all(&mut diags, sockdiag::ALL_STATES, &ours)?;
                corr.on_full_poll(clock::mono_ns(), &all);
            }
        }
        let now = clock::mono_ns();
        changes.extend(corr.release(now).into_iter().map(|r| r.change));
        if stop.load(Ordering::SeqCst) {
            let since = *stopped_at.get_or_insert_with(std::time::Instant::now);
            let settled = !corr.needs_mini_poll() && since.elapsed() >= SETTLE;
            if settled || since.elapsed() >= SETTLE_LIMIT {
                break;
            }
        }
    }
    changes.extend(corr.release_all().into_iter().map(|r| r.change));
    let lost = corr.lost + instance.as_ref().map_or(0, Instance::lost_events);
    Ok(Traced { changes, lost })
}

/// One dump of every host's sockets in `states`, ours only.
fn dump_all(
    diags: &mut [SockDiag],
    states: u32,
    ours: &impl Fn(&sockdiag::DiagSocket) -> bool,
) -> anyhow::Result<Vec<sockdiag::DiagSocket>> {
    let mut all = Vec::new();
    for diag in diags {
        all.extend(
            diag.dump(states)
                .context("sock_diag dump")?
                .into_iter()
                .filter(ours),
        );
    }
    Ok(all)
}

/// The client's address when the run could not learn it from its socket (a refused
/// connect): the source of the SYN to `server`.
pub fn client_from(
    segments: &[Segment],
    changes: &[StateChange],
    server: SocketAddr,
) -> Option<SocketAddr> {
    segments
        .iter()
        .find(|s| s.dst == server && s.has(timeline::flags::SYN))
        .map(|s| s.src)
        .or_else(|| {
            changes
                .iter()
                .find(|c| c.remote == server && c.local.port() != 0)
                .map(|c| c.local)
        })
}
