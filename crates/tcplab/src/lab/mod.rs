//! `tcplab lab`: runs an experiment end to end and shows the connection's whole life on
//! one timeline — segments, both endpoints' kernel states, and their socket calls.
//!
//! As root each run happens in a private network namespace (see [`crate::netns`]);
//! without root, on this machine's loopback, with one line per thing that is lost.

mod annotate;
mod probes;
mod recipes;
mod run;
mod scenario;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use tcplab_core::expect;
use tcplab_core::render::ladder;
use tcplab_core::timeline::{self, Connection};

use crate::view::ViewArgs;

pub use run::{Observed, Place};
pub use scenario::{Scenario, Target, SCENARIOS};

/// Command-line arguments of `tcplab lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The experiment to run (see --list).
    #[arg(default_value = "echo")]
    pub scenario: String,
    /// List the experiments and exit.
    #[arg(long)]
    pub list: bool,
    /// Describe the experiment (what it does, where it runs, the kernel parameters it
    /// sets, what --check expects) and exit without running it.
    #[arg(long)]
    pub describe: bool,
    /// How to show the timeline.
    #[command(flatten)]
    pub view: ViewArgs,
    /// Also write the captured packets to FILE (pcapng), each with a comment naming the
    /// state changes it caused (Wireshark shows it as the packet comment).
    #[arg(long, value_name = "FILE")]
    pub pcapng: Option<std::path::PathBuf>,
    /// Keep watching until TIME_WAIT ends (60 s on Linux, the 2MSL timer) to show its
    /// end on the timeline. Without it the run ends first, and deleting its namespace
    /// removes the TIME_WAIT socket.
    #[arg(long)]
    pub wait_time_wait: bool,
    /// Check the run against the experiment's expectations (state paths, segments,
    /// errno); print a diff and exit 1 when the kernel did something else.
    #[arg(long)]
    pub check: bool,
    /// Study another server on this machine instead of the in-process one (e.g. the
    /// classic PHP example server): the client script runs against HOST:PORT, on this
    /// machine's loopback, with capture and tracing on that port.
    #[arg(long, value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Run every experiment with --check and print a pass/fail table.
    #[arg(long)]
    pub check_all: bool,
    /// With --check: expect this client path instead (e.g. your own prediction:
    /// `CLOSED,SYN_SENT,ESTABLISHED,...`).
    #[arg(long, value_name = "PATH", requires = "check")]
    pub expect_client: Option<String>,
    /// With --check: expect this server path instead.
    #[arg(long, value_name = "PATH", requires = "check")]
    pub expect_server: Option<String>,
}

/// `tcplab lab`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    // Ctrl-C ends a wait (for TIME_WAIT, between experiments), and the run returns
    // normally: its namespaces and tracefs instance are removed, what it saw shown.
    crate::interrupt::install();
    let mut stdout = std::io::stdout().lock();
    if args.list {
        for group in scenario::Group::ALL {
            writeln!(stdout, "{}:", group.title())?;
            for s in SCENARIOS.iter().filter(|s| s.group == group) {
                let needs = if s.wire.is_some() {
                    " [two hosts, root]"
                } else {
                    ""
                };
                writeln!(stdout, "  {:<22} {}{needs}", s.name, s.about)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.check_all {
        return check_all(&mut stdout);
    }
    let scenario = scenario::find(&args.scenario).with_context(|| {
        format!(
            "unknown experiment '{}' (tcplab lab --list shows them)",
            args.scenario
        )
    })?;
    if args.describe {
        describe(&mut stdout, scenario)?;
        return Ok(ExitCode::SUCCESS);
    }
    let external = match &args.target {
        Some(target) => {
            let addr = crate::client::resolve(target)?;
            if !addr.ip().to_canonical().is_loopback() {
                anyhow::bail!(
                    "--target {target}: only servers on this machine's loopback can be \
                     studied (capture and tracing watch lo)"
                );
            }
            Some(addr)
        }
        None => None,
    };
    let (mut place, place_note) = match external {
        // The server lives in this machine's own namespace: so must the client.
        Some(_) => (Place::Loopback, None),
        None => Place::for_scenario(scenario)?,
    };
    let observed = run::run(scenario, &mut place, external, args.wait_time_wait)?;
    let conn = connection(&observed);
    let title = format!("tcplab lab {}: {}", scenario.name, scenario.about);
    args.view.write_files(&title, &conn)?;
    if let Some(path) = &args.pcapng {
        match &observed.capture {
            Some(capture) => annotate::write_pcapng(path, capture, &conn)?,
            None => anyhow::bail!(
                "--pcapng {}: nothing was captured (capture needs CAP_NET_RAW: run as root)",
                path.display()
            ),
        }
    }
    // Lines around the ladder wrap to its width, as its footnotes do.
    let width = args.view.width();
    let mut say = |text: &str| -> std::io::Result<()> {
        write!(stdout, "{}", ladder::paragraph(text, width, 4))
    };
    if args.view.ladder() {
        say(&title)?;
        let place_text = match &place {
            Place::Namespace(_) => "a private network namespace (deleted afterwards)",
            Place::TwoHost(_) => {
                "two hosts, 192.0.2.1 and 192.0.2.2, joined by tcplab's wire (deleted afterwards)"
            }
            Place::Loopback => "this machine's loopback",
        };
        match &place_note {
            Some(why) => say(&format!("ran in {place_text} ({why})"))?,
            None => say(&format!("ran in {place_text}"))?,
        }
        // What was lost, in one line.
        if !observed.missing.is_empty() {
            say(&format!("not shown: {}", observed.missing.join("; ")))?;
        }
        let value = |name: &str| {
            let v = observed.kernel.get(name).map_or("?", String::as_str);
            format!("{name}={v}")
        };
        if !scenario.params.is_empty() {
            let shown: Vec<String> = scenario.params.iter().map(|n| value(n)).collect();
            say(&format!("kernel: {}", shown.join(" ")))?;
        }
        if !scenario.sysctls.is_empty() {
            let set: Vec<String> = scenario.sysctls.iter().map(|(n, _)| value(n)).collect();
            say(&format!(
                "kernel, set inside the run's namespace: {}",
                set.join(" ")
            ))?;
        }
        say("")?;
    }
    args.view
        .print(&mut std::io::stdout().lock(), std::slice::from_ref(&conn))?;
    if args.view.ladder() {
        if let Some(err) = &observed.client_error {
            say(&format!("client saw: {err}"))?;
        }
        for f in findings(scenario, &observed, &conn) {
            let mark = if f.ok {
                ""
            } else {
                "  (not as the textbook says)"
            };
            say(&format!("{}: {}{mark}", f.what, f.seen))?;
        }
        for role in [timeline::Role::Client, timeline::Role::Server] {
            if args.wait_time_wait
                || conn.path(role).last() != Some(&tcplab_core::state::TcpState::TimeWait)
            {
                continue;
            }
            say(&format!(
                "{} TIME_WAIT lasts 60 s (2MSL on Linux): --wait-time-wait shows its end",
                role.name()
            ))?;
        }
    }
    if args.check {
        let mut expected = scenario.expected();
        if let Some(path) = &args.expect_client {
            expected.client = expect::parse_path(path).context("--expect-client")?;
        }
        if let Some(path) = &args.expect_server {
            expected.server = expect::parse_path(path).context("--expect-server")?;
        }
        // The verdict goes to stderr, so --json stays one document on stdout.
        if let Some(why) = uncheckable(&observed) {
            eprintln!(
                "check {}: cannot check without exact observation: {why}",
                scenario.name
            );
            return Ok(ExitCode::from(crate::exit::PRIVILEGE));
        }
        let diffs = differences(scenario, &expected, &observed, &conn);
        if diffs.is_empty() {
            eprintln!("check {}: pass", scenario.name);
        } else {
            eprint!(
                "check {}: FAIL: the kernel did something else\n{}",
                scenario.name,
                expect::render_diff(&diffs)
            );
            return Ok(ExitCode::from(crate::exit::FAILURE));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--describe`: the experiment and what `--check` expects of it.
fn describe(out: &mut impl Write, s: &Scenario) -> anyhow::Result<()> {
    let e = s.expected();
    let path = |p: &[tcplab_core::state::TcpState]| {
        if p.is_empty() {
            "(no socket)".to_string()
        } else {
            p.iter().map(|s| s.name()).collect::<Vec<_>>().join(" → ")
        }
    };
    writeln!(out, "{} ({})", s.name, s.group.title().to_lowercase())?;
    writeln!(out, "  {}", s.about)?;
    let place = match s.wire {
        Some(rules) => format!(
            "two hosts, 192.0.2.1 and 192.0.2.2, joined by the wire with rules \"{rules}\" (root)"
        ),
        None => "a private network namespace (root), else this machine's loopback".into(),
    };
    writeln!(out, "  runs in:     {place}")?;
    let how = match s.recipe {
        scenario::Recipe::Echo(script) if script.target == scenario::Target::NoListener => {
            "a client connects to a port where nothing listens".to_string()
        }
        scenario::Recipe::Echo(script) => {
            use crate::client::CloseStyle;
            let close = match script.close {
                CloseStyle::Fin => "close() at once",
                CloseStyle::Half => "shutdown(SHUT_WR) after the last line, then reads to EOF",
                CloseStyle::Rst => "SO_LINGER {on, 0} and close()",
                CloseStyle::Wait => "reads until the server closes, then close()",
                CloseStyle::Unread => "close() with the last reply unread",
            };
            format!(
                "a client against the echo server sends {}; then {close}",
                script.lines.join(", ")
            )
        }
        scenario::Recipe::Calls(_) => {
            "its own socket calls on both sides, as described above".into()
        }
    };
    writeln!(out, "  recipe:      {how}")?;
    for (name, value) in s.sysctls {
        writeln!(out, "  sets:        {name}={value} (inside its namespace)")?;
    }
    if !s.params.is_empty() {
        writeln!(out, "  shaped by:   {}", s.params.join(" "))?;
    }
    writeln!(out, "  client path: {}", path(&e.client))?;
    writeln!(out, "  server path: {}", path(&e.server))?;
    writeln!(out, "  segments:    {}", e.segments.join(" "))?;
    writeln!(
        out,
        "  errno:       {}",
        e.errno.as_deref().unwrap_or("(none)")
    )?;
    Ok(())
}

/// `--check-all`: every experiment, one line each, then the count.
fn check_all(out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let (mut failed, mut unchecked, mut ran) = (0, 0, 0);
    for scenario in SCENARIOS {
        if crate::interrupt::requested() {
            writeln!(out, "interrupted: the other experiments did not run")?;
            break;
        }
        ran += 1;
        let run = Place::for_scenario(scenario).and_then(|(mut place, note)| {
            if let Some(note) = note {
                writeln!(out, "note: {note}")?;
            }
            run::run(scenario, &mut place, None, false)
        });
        let verdict = match run {
            Ok(observed) if uncheckable(&observed).is_some() => {
                unchecked += 1;
                "NOT CHECKED (no capture or no tracepoints: run as root)".to_string()
            }
            Ok(observed) => {
                let conn = connection(&observed);
                let diffs = differences(scenario, &scenario.expected(), &observed, &conn);
                if diffs.is_empty() {
                    "pass".to_string()
                } else {
                    failed += 1;
                    let what: Vec<&str> = diffs.iter().map(|d| d.what.as_str()).collect();
                    format!("FAIL ({})", what.join(", "))
                }
            }
            Err(err) => {
                failed += 1;
                format!("ERROR ({err:#})")
            }
        };
        writeln!(out, "{:<22} {verdict}", scenario.name)?;
    }
    let passed = ran - failed - unchecked;
    if unchecked == 0 {
        writeln!(out, "{passed} passed, {failed} failed")?;
    } else {
        writeln!(
            out,
            "{passed} passed, {failed} failed, {unchecked} not checked"
        )?;
    }
    Ok(match (failed, unchecked) {
        _ if ran < SCENARIOS.len() => ExitCode::from(crate::exit::FAILURE),
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(crate::exit::PRIVILEGE),
        _ => ExitCode::from(crate::exit::FAILURE),
    })
}

/// Why a run cannot be checked, if it cannot: without the capture or the tracepoints,
/// segments or short-lived states are missing, and a diff would blame the kernel for
/// what tcplab did not see.
fn uncheckable(observed: &Observed) -> Option<&str> {
    observed
        .missing
        .iter()
        .find(|m| {
            ["segments", "exact kernel states", "kernel states"]
                .iter()
                .any(|p| m.starts_with(p))
        })
        .map(String::as_str)
}

/// What the experiment found beyond paths and segments: the recipe's own measurements
/// and the scenario's checks of the timeline.
fn findings(scenario: &Scenario, observed: &Observed, conn: &Connection) -> Vec<recipes::Finding> {
    let mut all = observed.findings.clone();
    if let Some(verify) = scenario.verify {
        all.extend(verify(conn));
    }
    all
}

/// Everything that differs from `expected`, findings that do not hold included.
fn differences(
    scenario: &Scenario,
    expected: &expect::Expected,
    observed: &Observed,
    conn: &Connection,
) -> Vec<expect::Difference> {
    let mut diffs = expect::compare(expected, &expect::seen(conn, observed.errno.as_deref()));
    diffs.extend(
        findings(scenario, observed, conn)
            .into_iter()
            .filter(|f| !f.ok)
            .map(|f| expect::Difference {
                what: f.what,
                expected: f.expected,
                seen: f.seen,
            }),
    );
    diffs
}

/// The run's connection on one timeline, with the wire's losses marked.
pub fn connection(observed: &Observed) -> Connection {
    // Polls see states late or not at all; a capture shows every segment, from which
    // the RFC rules give every state (marked inferred).
    let states = if observed.polled && !observed.segments.is_empty() {
        timeline::States::Inferred
    } else {
        timeline::States::Kernel(&observed.changes)
    };
    let mut conn = timeline::build_connection(
        observed.client,
        observed.server,
        &observed.segments,
        states,
        &observed.calls,
    );
    conn.kernel = observed.kernel.clone();
    for e in &mut conn.entries {
        if let timeline::Item::Segment(s) = &mut e.item {
            let key = (s.segment.ts_ns, s.segment.seq, s.segment.flags);
            s.lost = observed.lost.contains(&key);
        }
    }
    conn
}
