//! `tcplab lab`: runs an experiment end to end and shows what happened.
//!
//! This first version runs the classic experiment (banner, `hello`, its echo, `quit`, the
//! server closes first) against the in-process server on an ephemeral loopback port and
//! prints the dialogue of both sides with relative timestamps. Packets and kernel states
//! join this timeline once `watch` and `capture` are in (see the README's status).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::client::{self, CloseStyle, Script, Step};
use crate::log::{self, Collected, Log};
use crate::server::{self, ListenOptions};

/// Command-line arguments of `tcplab lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The experiment to run (see --list).
    #[arg(default_value = "echo")]
    pub scenario: String,
    /// List the experiments and exit.
    #[arg(long)]
    pub list: bool,
}

/// An experiment this version can run.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    about: &'static str,
    lines: &'static [&'static str],
    close: CloseStyle,
}

const SCENARIOS: &[Scenario] = &[Scenario {
    name: "echo",
    about: "the classic experiment: banner, 'hello', its echo, 'quit'; the server closes first",
    lines: &["hello", "quit"],
    close: CloseStyle::Wait,
}];

/// Who did something on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// One line of the dialogue.
#[derive(Debug, Clone)]
struct Entry {
    at: Instant,
    side: Side,
    text: String,
}

/// What one run produced.
#[derive(Debug)]
struct Run {
    server: SocketAddr,
    started: Instant,
    entries: Vec<Entry>,
}

/// `tcplab lab`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    if args.list {
        for s in SCENARIOS {
            writeln!(stdout, "{:<12} {}", s.name, s.about)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == args.scenario)
        .with_context(|| {
            format!(
                "unknown experiment '{}' (tcplab lab --list shows them)",
                args.scenario
            )
        })?;
    let run = run(scenario)?;
    stdout.write_all(render(scenario, &run).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `scenario` against an in-process server on 127.0.0.1:0.
fn run(scenario: &Scenario) -> anyhow::Result<Run> {
    let events: Collected = Arc::new(Mutex::new(Vec::new()));
    let listener = server::bind(&ListenOptions {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        ..ListenOptions::default()
    })
    .context("listen on 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let config = server::Config {
        log: Log::Collect(Arc::clone(&events)),
        ..server::Config::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let server_thread = std::thread::spawn(move || -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            server::run(listener, config, async {
                let _ = stop_rx.await;
            })
            .await
            .map(drop)
        })
    });

    let mut entries = Vec::new();
    let script = Script {
        lines: scenario.lines.iter().map(|l| l.to_string()).collect(),
        close: scenario.close,
        crlf: false,
        banner_lines: tcplab_core::protocol::BANNER_LINES,
        timeout: Duration::from_secs(5),
    };
    let outcome = client::open(addr, script.timeout, false).and_then(|stream| {
        script.run(stream, &mut |step| {
            entries.push(Entry {
                at: Instant::now(),
                side: Side::Client,
                text: client_text(&step),
            });
        })
    });

    // The server logs a connection's end after closing it; wait for that (bounded), then
    // stop it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !server_closed(&events) {
        std::thread::yield_now();
    }
    let _ = stop_tx.send(());
    server_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the in-process server panicked"))?
        .context("in-process server")?;
    outcome?;

    let collected = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
    entries.extend(
        collected
            .into_iter()
            .filter_map(|(at, peer, text)| peer.map(|_| (at, text)))
            .map(|(at, text)| Entry {
                at,
                side: Side::Server,
                text,
            }),
    );
    entries.sort_by_key(|e| e.at);
    Ok(Run {
        server: addr,
        started,
        entries,
    })
}

fn server_closed(events: &Collected) -> bool {
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    events
        .iter()
        .any(|(_, peer, text)| peer.is_some() && text.starts_with("closed"))
}

fn client_text(step: &Step) -> String {
    match step {
        Step::Connected { local, remote } => {
            format!("connect() {local} -> {remote}: handshake complete")
        }
        Step::Sent(b) => format!("write() {:>3} bytes  \"{}\"", b.len(), log::escape(b)),
        Step::Received(b) => format!("read()  {:>3} bytes  \"{}\"", b.len(), log::escape(b)),
        other => client::describe(other),
    }
}

fn render(scenario: &Scenario, run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tcplab lab {}: {}", scenario.name, scenario.about);
    let _ = writeln!(
        out,
        "server: tcplab serve, in-process, listening on {}\n",
        run.server
    );
    let _ = writeln!(out, "{:>10}  {:<6}  what", "time", "who");
    for e in &run.entries {
        let ms = e.at.saturating_duration_since(run.started).as_secs_f64() * 1000.0;
        let who = match e.side {
            Side::Client => "client",
            Side::Server => "server",
        };
        let _ = writeln!(out, "{ms:>7.3} ms  {who:<6}  {}", e.text);
    }
    let first = run.entries.iter().find_map(|e| match e.side {
        Side::Client if e.text.starts_with("close()") || e.text.starts_with("shutdown") => {
            Some("the client (active close: its FIN went first)")
        }
        Side::Client if e.text.starts_with("read() = 0") => {
            Some("the server (active close: its FIN went first; the client read EOF)")
        }
        _ => None,
    });
    if let Some(first) = first {
        let _ = writeln!(out, "\nwho closed first: {first}");
    }
    let _ = writeln!(
        out,
        "(this view shows the sockets' calls; segments and kernel states are not on it yet)"
    );
    out
}
