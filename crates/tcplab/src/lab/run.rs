//! Running one experiment: where (a private namespace, or loopback), the in-process
//! server, the scripted client, the probes, and every socket call on one clock.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tcplab_core::event::StateChange;
use tcplab_core::timeline::{Call, Role, Segment};

use super::probes::{self, Probes};
use super::recipes::{Finding, Outcome, Stage};
use super::scenario::{EchoScript, Recipe, Scenario, Target};
use crate::client::{self, Script, Step};
use crate::clock;
use crate::exit::Failure;
use crate::log::{Collected, Log, RecordKind};
use crate::netns::Netns;
use crate::server::{self, ListenOptions};
use crate::twohost::{Link, TwoHost};
use tcplab_core::impair::{Rules, WireEvent};

/// Where the experiment ran.
#[derive(Debug)]
pub enum Place {
    /// A private network namespace (root): nothing else on its loopback.
    Namespace(Netns),
    /// Two hosts, 192.0.2.1 and 192.0.2.2, joined by the impairable wire.
    TwoHost(TwoHost),
    /// The machine's own loopback (no privileges for a namespace).
    Loopback,
}

/// Which host of a place (the same one except in two-host mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Where the client runs.
    Client,
    /// Where the server runs.
    Server,
}

impl Place {
    /// A private namespace if we may create one, else loopback with the reason.
    pub fn choose() -> (Place, Option<String>) {
        if std::env::var("TCPLAB_NO_NETNS").as_deref() == Ok("1") {
            return (
                Place::Loopback,
                Some("no private network namespace: TCPLAB_NO_NETNS=1".into()),
            );
        }
        match Netns::new() {
            Ok(ns) => (Place::Namespace(ns), None),
            Err(err) => (
                Place::Loopback,
                Some(format!(
                    "no private network namespace: {err}; it needs CAP_SYS_ADMIN and \
                     CAP_NET_ADMIN: run as root"
                )),
            ),
        }
    }

    /// The place `scenario` needs: two hosts joined by the wire when it has wire rules
    /// (root only), else as [`Place::choose`].
    pub fn for_scenario(scenario: &Scenario) -> anyhow::Result<(Place, Option<String>)> {
        match scenario.wire {
            Some(spec) => {
                let rules: Rules = spec
                    .parse()
                    .map_err(|e| anyhow::anyhow!("wire rules {spec:?}: {e}"))?;
                let hosts = TwoHost::new(Link::Wire(rules)).with_context(|| {
                    format!(
                        "experiment '{}' needs two hosts and the wire",
                        scenario.name
                    )
                })?;
                Ok((Place::TwoHost(hosts), None))
            }
            None => Ok(Place::choose()),
        }
    }

    /// The namespace of `host`, if any.
    fn netns(&self, host: Host) -> Option<&Netns> {
        match (self, host) {
            (Place::Namespace(ns), _) => Some(ns),
            (Place::TwoHost(h), Host::Client) => Some(&h.client),
            (Place::TwoHost(h), Host::Server) => Some(&h.server),
            (Place::Loopback, _) => None,
        }
    }

    /// The server's IP address in this place.
    pub fn server_ip(&self) -> std::net::IpAddr {
        match self {
            Place::TwoHost(_) => crate::twohost::SERVER_V4.into(),
            _ => Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// The client's IP address in this place.
    pub fn client_ip(&self) -> std::net::IpAddr {
        match self {
            Place::TwoHost(_) => crate::twohost::CLIENT_V4.into(),
            _ => Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// Sets a `net.*` sysctl on every host of this place (never on the machine's own
    /// namespace: the loopback place has none to set, which is an error).
    pub fn set_sysctl(&self, name: &str, value: &str) -> anyhow::Result<()> {
        match self {
            Place::Namespace(ns) => ns.set_sysctl(name, value)?,
            Place::TwoHost(h) => h.set_sysctl(name, value)?,
            Place::Loopback => anyhow::bail!(
                "{name}={value} can only be set inside a private network namespace \
                 (needs CAP_SYS_ADMIN: run as root); tcplab never changes this machine's own"
            ),
        }
        Ok(())
    }

    /// Spawns a thread on `host`.
    pub fn spawn_on<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<T>> {
        match self.netns(host) {
            Some(ns) => {
                let inner = ns.spawn(f)?;
                // Flatten: a failure to enter the namespace becomes a panic of the join,
                // which the caller reports.
                Ok(std::thread::spawn(move || match inner.join() {
                    Ok(Ok(value)) => value,
                    Ok(Err(err)) => panic!("could not enter the namespace: {err}"),
                    Err(panic) => std::panic::resume_unwind(panic),
                }))
            }
            None => Ok(std::thread::spawn(f)),
        }
    }

    /// Runs `f` on a thread on `host` and returns its result.
    pub fn run_on<T: Send + 'static>(
        &self,
        host: Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        match self.netns(host) {
            Some(ns) => Ok(ns.run(f)?),
            None => std::thread::spawn(f)
                .join()
                .map_err(|_| anyhow::anyhow!("experiment thread panicked")),
        }
    }

    /// The hosts whose sockets the probes must poll (one, or two in two-host mode).
    pub fn hosts(&self) -> &'static [Host] {
        match self {
            Place::TwoHost(_) => &[Host::Client, Host::Server],
            _ => &[Host::Server],
        }
    }

    /// Stops the wire, if there is one, and returns what it did.
    pub fn stop_wire(&mut self) -> Vec<WireEvent> {
        match self {
            Place::TwoHost(h) => h.stop_wire().unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Everything one run observed.
#[derive(Debug)]
pub struct Observed {
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address (or the port nobody listened on).
    pub server: SocketAddr,
    /// Both endpoints' socket calls.
    pub calls: Vec<Call>,
    /// Segments, if a capture ran.
    pub segments: Vec<Segment>,
    /// Segments the wire lost: (time, seq, flags) of each.
    pub lost: Vec<(u64, u32, u16)>,
    /// Kernel state changes, if tracing ran.
    pub changes: Vec<StateChange>,
    /// The changes come from sock_diag polls (no tracepoints): with a capture, the
    /// timeline infers the states from the segments instead.
    pub polled: bool,
    /// The frames as captured, for the annotated pcapng.
    pub capture: Option<probes::Captured>,
    /// What could not be observed, and why (one line each).
    pub missing: Vec<String>,
    /// How the client's script ended: the error it saw, in TCP terms.
    pub client_error: Option<Failure>,
    /// The errno a socket call of the application returned, if any.
    pub errno: Option<String>,
    /// What the experiment measured itself.
    pub findings: Vec<Finding>,
    /// The kernel parameters the run had (name, value), read inside its namespace.
    pub kernel: std::collections::BTreeMap<String, String>,
}

/// The errno name of a script's failure.
fn failure_errno(f: &Failure) -> String {
    match f.code {
        crate::exit::REFUSED => "ECONNREFUSED",
        crate::exit::RESET => "ECONNRESET",
        crate::exit::TIMEOUT => "ETIMEDOUT",
        _ => "EIO",
    }
    .to_string()
}

/// The kernel parameters of [`tcplab_core::sysctl::PARAMS`] as the server host has
/// them, after the scenario's own settings.
fn kernel_params(
    scenario: &Scenario,
    place: &Place,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    for (name, value) in scenario.sysctls {
        place
            .set_sysctl(name, value)
            .with_context(|| format!("experiment '{}'", scenario.name))?;
    }
    let values = place.run_on(Host::Server, crate::sysctl::snapshot)?;
    Ok(values
        .into_iter()
        .filter_map(|v| Some((v.name.to_string(), v.value?)))
        .collect())
}

/// Runs `scenario` in `place`, against the in-process server, or against the server at
/// `external` (then only the client's calls are known).
pub fn run(
    scenario: &Scenario,
    place: &mut Place,
    external: Option<SocketAddr>,
    time_wait: bool,
) -> anyhow::Result<Observed> {
    let kernel = kernel_params(scenario, place)?;
    let mut observed = match scenario.recipe {
        Recipe::Echo(script) => run_echo(&script, place, external, time_wait)?,
        Recipe::Calls(recipe) => run_calls(recipe, place, time_wait)?,
    };
    observed.kernel = kernel;
    Ok(observed)
}

/// A recipe of its own calls: a free server port first, then the probes on it, then
/// the recipe; sockets it keeps are closed once the probes stopped.
fn run_calls(
    recipe: fn(&Stage<'_>) -> anyhow::Result<Outcome>,
    place: &mut Place,
    time_wait: bool,
) -> anyhow::Result<Observed> {
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let any = SocketAddr::new(place.server_ip(), 0);
    let server = place.run_on(Host::Server, move || {
        std::net::TcpListener::bind(any).and_then(|l| l.local_addr())
    })??;
    let mut probes = Probes::start(place, server.port());
    let outcome = recipe(&Stage::new(place, server, Arc::clone(&calls)));
    let seen = probes.finish(time_wait);
    let outcome = outcome?;
    let mut calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()));
    for c in calls.iter_mut() {
        c.addr = match c.role {
            Role::Client => outcome.client,
            Role::Server => outcome.server,
        };
    }
    let mut observed = settle(place, seen, calls, outcome.client, outcome.server);
    observed.errno = outcome.errno;
    observed.findings = outcome.findings;
    drop(outcome.keep);
    Ok(observed)
}

/// The run's observations once the probes stopped: the wire's segments when there is
/// a wire (it saw every one, the lost ones too), the calls in time order.
fn settle(
    place: &mut Place,
    seen: probes::Seen,
    mut calls: Vec<Call>,
    client: SocketAddr,
    server: SocketAddr,
) -> Observed {
    let probes::Seen {
        capture,
        segments,
        changes,
        missing,
        polled,
    } = seen;
    let wire = place.stop_wire();
    let (segments, lost) = if wire.is_empty() {
        (segments, Vec::new())
    } else {
        wire_segments(&wire)
    };
    calls.sort_by_key(|c| c.ts_ns);
    Observed {
        client,
        server,
        calls,
        segments,
        lost,
        changes,
        polled,
        capture,
        missing,
        client_error: None,
        errno: None,
        findings: Vec::new(),
        kernel: Default::default(),
    }
}

/// A client script against the in-process echo server (or no listener, or the server
/// at `external`).
fn run_echo(
    scenario: &EchoScript,
    place: &mut Place,
    external: Option<SocketAddr>,
    time_wait: bool,
) -> anyhow::Result<Observed> {
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let records: Collected = Arc::default();
    let any = SocketAddr::new(place.server_ip(), 0);

    // The server side: a listener (its calls on the timeline), or a free port.
    let server_calls = Arc::clone(&calls);
    let listener = match scenario.target {
        _ if external.is_some() => None,
        Target::Server => Some(place.run_on(Host::Server, move || {
            server::bind_observed(
                &ListenOptions {
                    addr: any,
                    ..ListenOptions::default()
                },
                &mut |c| {
                    server_calls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Call {
                            ts_ns: clock::mono_ns(),
                            role: Role::Server,
                            addr: any,
                            call: c,
                        })
                },
            )
        })??),
        Target::NoListener => None,
    };
    let server_addr = match (&listener, external) {
        (_, Some(addr)) => addr,
        (Some(l), None) => l.local_addr()?,
        (None, None) => place.run_on(Host::Server, move || {
            std::net::TcpListener::bind(any).and_then(|l| l.local_addr())
        })??,
    };
    for c in calls.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
        c.addr = server_addr;
    }

    let mut probes = Probes::start(place, server_addr.port());

    // The in-process server.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = listener.map(|listener| {
        let config = server::Config {
            log: Log::Collect(Arc::clone(&records)),
            ..server::Config::default()
        };
        std::thread::spawn(move || -> std::io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let stop = async {
                    let _ = stop_rx.await;
                };
                server::run(listener, config, stop).await.map(drop)
            })
        })
    });

    // The client, in the same place.
    let script = Script {
        lines: scenario.lines.iter().map(|l| l.to_string()).collect(),
        close: scenario.close,
        crlf: scenario.crlf,
        banner_lines: tcplab_core::protocol::BANNER_LINES,
        timeout: Duration::from_secs(5),
        // States polled (no tracepoints, no capture): pace the client so each lasts
        // long enough to be seen (the correlator holds what a poll finds for tens of ms).
        pace: if scenario.pace_ms > 0 {
            Duration::from_millis(scenario.pace_ms)
        } else if probes.needs_pacing() {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        },
    };
    let client_calls = Arc::clone(&calls);
    let (client_addr, client_error) = place.run_on(Host::Client, move || {
        client_side(server_addr, &script, &client_calls)
    })?;

    // The server logs a connection's end after closing it: wait for that (bounded).
    if server_thread.is_some() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !server_closed(&records) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
    let seen = probes.finish(time_wait);
    let client_addr = match client_addr.port() {
        0 => probes::client_from(&seen.segments, &seen.changes, server_addr).unwrap_or(client_addr),
        _ => client_addr,
    };
    let _ = stop_tx.send(());
    if let Some(thread) = server_thread {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the in-process server panicked"))?
            .context("in-process server")?;
    }

    let mut calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()));
    for c in calls.iter_mut().filter(|c| c.role == Role::Client) {
        c.addr = client_addr;
    }
    let records = std::mem::take(&mut *records.lock().unwrap_or_else(|e| e.into_inner()));
    calls.extend(records.into_iter().filter_map(|r| match r.kind {
        RecordKind::Call(call) if r.peer == Some(client_addr) => Some(Call {
            ts_ns: r.mono_ns,
            role: Role::Server,
            addr: server_addr,
            call,
        }),
        _ => None,
    }));
    let mut observed = settle(place, seen, calls, client_addr, server_addr);
    observed.errno = client_error.as_ref().map(failure_errno);
    observed.client_error = client_error;
    Ok(observed)
}

/// The segments the wire handled: each packet at the time it left the wire (a held
/// FIN when released), a lost one at the time it was dropped; and the lost ones' keys.
fn wire_segments(events: &[WireEvent]) -> (Vec<Segment>, Vec<(u64, u32, u16)>) {
    let mut segments = Vec::new();
    let mut lost = Vec::new();
    let mut packets: Vec<u64> = events.iter().map(|e| e.packet).collect();
    packets.dedup();
    for packet in packets {
        let of: Vec<&WireEvent> = events.iter().filter(|e| e.packet == packet).collect();
        let departures: Vec<&&WireEvent> = of.iter().filter(|e| e.action.is_departure()).collect();
        if departures.is_empty() {
            if let Some(seg) = of.iter().find(|e| e.is_loss()).and_then(|e| e.segment()) {
                lost.push((seg.ts_ns, seg.seq, seg.flags));
                segments.push(seg);
            }
        }
        segments.extend(departures.iter().filter_map(|e| e.segment()));
    }
    segments.sort_by_key(|s| s.ts_ns);
    (segments, lost)
}

/// The client's part: connect, the script, the close; every call recorded. Returns the
/// client's address and the error the script ended with, if any.
fn client_side(
    server: SocketAddr,
    script: &Script,
    calls: &Mutex<Vec<Call>>,
) -> (SocketAddr, Option<Failure>) {
    let record = |call: String| {
        calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
            ts_ns: clock::mono_ns(),
            role: Role::Client,
            addr: server,
            call,
        })
    };
    // socket() and connect() happen in one std call; both are shown.
    record("socket()".into());
    record("connect()".into());
    let stream = match client::open(server, script.timeout, false) {
        Ok(stream) => stream,
        Err(err) => {
            // The client's address is not known to us, but the kernel's events say it.
            let unspecified = SocketAddr::from((server.ip(), 0));
            return (unspecified, Some(err));
        }
    };
    let local = stream.local_addr().unwrap_or(server);
    let result = script.run(stream, &mut |step| {
        let call = match step {
            Step::Connected { .. } => return,
            Step::Sent(b) => format!("write({})", b.len()),
            Step::Received(b) => format!("read() = {}", b.len()),
            Step::PeerClosed => "read() = 0 (EOF)".into(),
            Step::HalfClosed => "shutdown(SHUT_WR)".into(),
            Step::LingerZero => "setsockopt(SO_LINGER {on, 0})".into(),
            Step::Closed => "close()".into(),
        };
        record(call);
    });
    (local, result.err())
}

fn server_closed(records: &Collected) -> bool {
    records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|r| matches!(&r.kind, RecordKind::Call(c) if c == "close()"))
}
