//! `tcplab lab`: each experiment runs end to end; its timeline has the socket calls of
//! both sides in causal order.

use std::process::Command;

use serde_json::Value;

use crate::support;

fn lab(args: &[&str]) -> std::process::Output {
    support::tcplab("lab", args)
}

/// The calls of `role` on the timeline, in order.
fn calls(conn: &Value, role: &str) -> Vec<String> {
    conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "call" && e["role"] == role)
        .map(|e| e["call"].as_str().unwrap().to_string())
        .collect()
}

/// Position of the first entry that is call `name` of `role`.
#[track_caller]
fn position(conn: &Value, role: &str, name: &str) -> usize {
    conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["type"] == "call" && e["role"] == role && e["call"] == name)
        .unwrap_or_else(|| panic!("no {role} call {name}"))
}

#[track_caller]
fn timeline(scenario: &str) -> Value {
    let out = lab(&[scenario, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON timeline");
    assert_eq!(doc["version"], 1);
    doc["connections"][0].clone()
}

#[test]
fn the_default_experiment_prints_a_ladder_and_exits_zero() {
    let out = lab(&[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("tcplab lab echo: "), "{text}");
    for expected in [
        "connect()",
        "accept()",
        "write(6)",
        "read() = 0 (EOF)",
        "listen(5)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Segments and exact states need the capture and the tracepoints.
    if !support::privileged("the_default_experiment_prints_a_ladder_and_exits_zero") {
        return;
    }
    for expected in [
        // The handshake, the banner, `hello` and its echo, `quit`, the FIN/ACK exchange.
        "│── SYN seq 0 ",
        "│◀─ SYN,ACK seq 0 ack 1 ",
        "│── ACK seq 1 ack 1 ",
        " len 99 \"\\nWelcome to the",
        " len 6 \"hello\\n\"",
        " len 18 \"You said 'hello'",
        " len 5 \"quit\\n\"",
        "│◀─ FIN,ACK seq 118 ack 12 ",
        "│── FIN,ACK seq 12 ack 119 ",
        "│◀─ ACK seq 119 ack 13 ",
        // Both endpoints' paths, as the kernel lived them.
        "\nclient: CLOSED → SYN_SENT → ESTABLISHED → CLOSE_WAIT → LAST_ACK → CLOSED\n",
        "\nserver: LISTEN → SYN_RECV → ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn echo_calls_are_in_causal_order() {
    let conn = timeline("echo");
    assert_eq!(
        calls(&conn, "client"),
        [
            "socket()",
            "connect()",
            "read() = 99",
            "write(6)",
            "read() = 18",
            "write(5)",
            "read() = 0 (EOF)",
            "close()"
        ]
    );
    let server = calls(&conn, "server");
    assert_eq!(
        &server[..4],
        [
            "socket()",
            "setsockopt(SO_REUSEADDR)",
            "bind(127.0.0.1:0)",
            "listen(5)"
        ]
    );
    assert_eq!(server.last().map(String::as_str), Some("close()"));
    assert!(position(&conn, "server", "listen(5)") < position(&conn, "client", "connect()"));
    assert!(position(&conn, "client", "connect()") < position(&conn, "server", "accept()"));
    // The server closes first: its close() precedes the client's EOF.
    assert!(position(&conn, "server", "close()") < position(&conn, "client", "read() = 0 (EOF)"));
}

/// Every experiment, as `--list` prints them (grouped).
const EXPERIMENTS: [&str; 20] = [
    "handshake",
    "refused",
    "syn-loss",
    "simultaneous-open",
    "self-connect",
    "backlog-overflow",
    "syn-recv-stuck",
    "echo",
    "nagle-delayed-ack",
    "retransmission",
    "zero-window",
    "client-close",
    "client-close-piggyback",
    "server-close",
    "half-close",
    "simultaneous-close",
    "time-wait-rebind",
    "abortive-close",
    "unread-data-reset",
    "keepalive-timeout",
];

/// Those that need two hosts and the wire (root only).
const ON_THE_WIRE: [&str; 6] = [
    "syn-loss",
    "simultaneous-open",
    "syn-recv-stuck",
    "retransmission",
    "simultaneous-close",
    "keepalive-timeout",
];

#[test]
fn every_experiment_runs() {
    let out = lab(&["--list"]);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    // Group headings end with ':'; experiments are indented under them.
    assert!(list.starts_with("Opening:\n"), "{list}");
    let names: Vec<&str> = list
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, EXPERIMENTS);
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    for name in names {
        let described = lab(&[name, "--describe"]);
        let text = String::from_utf8_lossy(&described.stdout);
        assert!(
            text.starts_with(&format!("{name} (")) && text.contains("\n  client path: "),
            "{text}"
        );
        if ON_THE_WIRE.contains(&name) && !root {
            continue;
        }
        let conn = timeline(name);
        assert!(!calls(&conn, "client").is_empty(), "{name}");
    }
}

#[test]
fn every_experiment_repeats_exactly_five_times_in_a_row() {
    if !support::privileged("every_experiment_repeats_exactly_five_times_in_a_row") {
        return;
    }
    for name in EXPERIMENTS {
        let mut first: Option<(Vec<String>, Vec<String>)> = None;
        for run in 0..5 {
            let out = lab(&[name, "--json", "--check"]);
            let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{name} run {run}:\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                brief(&doc["connections"][0])
            );
            let conn = &doc["connections"][0];
            // The segments fit the experiment's pattern (--check passed); the paths
            // are the same every time.
            let seen = (path(conn, "client"), path(conn, "server"));
            match &first {
                None => first = Some(seen),
                Some(f) => assert_eq!(&seen, f, "{name} run {run} differs from run 0"),
            }
        }
    }
}

#[test]
fn nothing_of_tcplab_is_left_behind_after_experiments() {
    if !support::privileged("nothing_of_tcplab_is_left_behind_after_experiments") {
        return;
    }
    for name in ["echo", "simultaneous-close"] {
        assert_eq!(lab(&[name, "--json"]).status.code(), Some(0), "{name}");
    }
    // No link of the two hosts in this namespace, no named namespace of ours.
    for dev in std::fs::read_dir("/sys/class/net").unwrap() {
        let dev = dev.unwrap().file_name().to_string_lossy().to_string();
        assert!(!dev.starts_with("tcplab"), "link {dev} left behind");
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for ns in dir {
            let ns = ns.unwrap().file_name().to_string_lossy().to_string();
            assert!(!ns.contains("tcplab"), "namespace {ns} left behind");
        }
    }
    // Every tracefs instance of tcplab belongs to a process that is still running
    // (another test's watcher); none of a finished run is left.
    for root in [
        "/sys/kernel/tracing/instances",
        "/sys/kernel/debug/tracing/instances",
    ] {
        let Ok(dir) = std::fs::read_dir(root) else {
            continue;
        };
        for inst in dir {
            let name = inst.unwrap().file_name().to_string_lossy().to_string();
            if let Some(pid) = name
                .strip_prefix("tcplab-")
                .and_then(|rest| rest.split('-').next())
            {
                assert!(
                    std::path::Path::new(&format!("/proc/{pid}")).exists(),
                    "tracefs instance {name} of a finished process left behind"
                );
            }
        }
    }
}

#[test]
fn half_close_shuts_down_then_still_reads_the_reply_and_eof() {
    let conn = timeline("half-close");
    assert_eq!(
        &calls(&conn, "client")[3..],
        [
            "write(6)",
            "shutdown(SHUT_WR)",
            "read() = 18",
            "read() = 0 (EOF)",
            "close()"
        ]
    );
}

#[test]
fn an_unknown_experiment_is_a_clear_error() {
    let out = lab(&["no-such-thing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("unknown experiment 'no-such-thing' (tcplab lab --list shows them)"));
}

use crate::support::timeline_path as path;

/// tcpdump-style flags of the segments that carry SYN, FIN, RST or data: the pure
/// ACKs in between depend on the delayed-ACK timer, these do not.
fn significant_flags(conn: &Value) -> Vec<String> {
    segments(conn)
        .into_iter()
        .filter(|s| {
            let f = s["segment"]["flags"].as_u64().unwrap();
            f & 0x7 != 0 || s["segment"]["len"].as_u64().unwrap() > 0
        })
        .map(|s| tcpdump_flags(s["segment"]["flags"].as_u64().unwrap()))
        .collect()
}

/// The timeline in a line per entry (ms from the first), to see what a failed run did.
fn brief(conn: &Value) -> String {
    let entries = conn["entries"].as_array().cloned().unwrap_or_default();
    let t0 = entries
        .first()
        .and_then(|e| e["ts_ns"].as_u64())
        .unwrap_or(0);
    let mut out = String::new();
    for e in &entries {
        let ms = e["ts_ns"].as_u64().unwrap_or(0).saturating_sub(t0) as f64 / 1e6;
        let what = match e["type"].as_str() {
            Some("segment") => {
                let s = &e["segment"];
                format!(
                    "{} {} seq {} ack {} len {}{}{}",
                    e["from"].as_str().unwrap_or("?"),
                    tcpdump_flags(s["flags"].as_u64().unwrap_or(0)),
                    e["rel_seq"],
                    e["rel_ack"],
                    s["len"],
                    if e["lost"] == true { " LOST" } else { "" },
                    if e["retransmission"] == true {
                        " RETRANSMISSION"
                    } else {
                        ""
                    },
                )
            }
            Some("state") => format!(
                "{} {} -> {}{}",
                e["role"].as_str().unwrap_or("?"),
                e["from"].as_str().unwrap_or("?"),
                e["to"].as_str().unwrap_or("?"),
                if e["poll_resolution"] == true {
                    " (poll)"
                } else {
                    ""
                },
            ),
            _ => format!(
                "{} {}",
                e["role"].as_str().unwrap_or("?"),
                e["call"].as_str().unwrap_or("?")
            ),
        };
        out.push_str(&format!("{ms:10.3} ms  {what}\n"));
    }
    out
}

fn segments(conn: &Value) -> Vec<&Value> {
    conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "segment")
        .collect()
}

fn tcpdump_flags(f: u64) -> String {
    let mut s = String::new();
    for (bit, c) in [(1, 'F'), (2, 'S'), (4, 'R'), (8, 'P')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if f & 0x10 != 0 {
        s.push('.');
    }
    s
}

/// Index (in entries) of the first segment matching `test`.
fn segment_position(conn: &Value, test: impl Fn(&Value) -> bool) -> Option<usize> {
    conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["type"] == "segment" && test(&e["segment"]))
}

#[test]
fn every_experiment_shows_the_kernels_exact_paths_segments_and_causes() {
    if !support::privileged("every_experiment_shows_the_kernels_exact_paths_segments_and_causes") {
        return;
    }
    check_paths_segments_and_causes(timeline, false);
}

#[test]
fn without_tracepoints_the_states_are_inferred_from_the_capture() {
    if !support::privileged("without_tracepoints_the_states_are_inferred_from_the_capture") {
        return;
    }
    let inferred = |scenario: &str| {
        let out = Command::new(support::tcplab_bin())
            .args(["lab", scenario, "--json"])
            .env("TCPLAB_NO_TRACE", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON timeline");
        doc["connections"][0].clone()
    };
    check_paths_segments_and_causes(inferred, true);
}

/// The six classic experiments: each endpoint's exact path, the significant segments,
/// a cause for every change (`inferred` as said), the calls in their place.
fn check_paths_segments_and_causes(timeline: impl Fn(&str) -> Value, inferred: bool) {
    const SERVER_ACTIVE: &[&str] = &support::ACTIVE_SERVER;
    const SERVER_PASSIVE: &[&str] = &support::PASSIVE_SERVER;
    const CLIENT_ACTIVE: &[&str] = &support::ACTIVE_CLIENT;
    const CLIENT_PASSIVE: &[&str] = &[
        "CLOSED",
        "SYN_SENT",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "LAST_ACK",
        "CLOSED",
    ];
    const ABORTED_CLIENT: &[&str] = &["CLOSED", "SYN_SENT", "ESTABLISHED", "CLOSED"];
    const ABORTED_SERVER: &[&str] = &["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"];
    // (experiment, client path, server path, significant segments)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "echo",
            CLIENT_PASSIVE,
            SERVER_ACTIVE,
            &["S", "S.", "P.", "P.", "P.", "P.", "F.", "F."],
        ),
        (
            "client-close",
            CLIENT_ACTIVE,
            SERVER_PASSIVE,
            &["S", "S.", "P.", "P.", "F.", "F."],
        ),
        (
            "half-close",
            CLIENT_ACTIVE,
            SERVER_PASSIVE,
            &["S", "S.", "P.", "FP.", "P.", "F."],
        ),
        (
            "abortive-close",
            ABORTED_CLIENT,
            ABORTED_SERVER,
            &["S", "S.", "P.", "P.", "P.", "R."],
        ),
        (
            "refused",
            &["CLOSED", "SYN_SENT", "CLOSED"],
            &[],
            &["S", "R."],
        ),
        (
            "unread-data-reset",
            ABORTED_CLIENT,
            ABORTED_SERVER,
            &["S", "S.", "P.", "P.", "P.", "R."],
        ),
    ];
    for &(name, client, server, flags) in cases {
        let conn = timeline(name);
        assert_eq!(path(&conn, "client"), client, "{name}: client path");
        assert_eq!(path(&conn, "server"), server, "{name}: server path");
        assert_eq!(significant_flags(&conn), flags, "{name}: segments");
        // Every change has a cause on the timeline; none is unexplained. Inferred ones
        // come from segments only.
        let kinds: &[&str] = if inferred {
            &["received", "sent"]
        } else {
            &["received", "sent", "call", "timer"]
        };
        for e in conn["entries"].as_array().unwrap() {
            if e["type"] == "state" {
                let kind = e["cause"]["kind"].as_str().unwrap();
                assert!(kinds.contains(&kind), "{name}: {e}");
                assert_eq!(
                    e["inferred"], inferred,
                    "{name}: inferred is {inferred}: {e}"
                );
            }
        }
        // The socket calls in their place.
        let syn = segment_position(&conn, |s| s["flags"] == 2).expect("a SYN");
        if !server.is_empty() {
            assert!(
                position(&conn, "server", "listen(5)") < syn,
                "{name}: listen before SYN"
            );
            let third = segments(&conn)[2]["segment"]["flags"].as_u64();
            assert_eq!(
                third,
                Some(0x10),
                "{name}: the third segment is the handshake's ACK"
            );
            let third_at = segment_position(&conn, |s| s["flags"] == 0x10).unwrap();
            assert!(
                position(&conn, "server", "accept()") > third_at,
                "{name}: accept after ACK"
            );
        }
        assert!(
            position(&conn, "client", "connect()") < syn,
            "{name}: connect before SYN"
        );
        // The closer's close() (or shutdown()) comes before the FIN or RST it causes.
        let end = segment_position(&conn, |s| s["flags"].as_u64().unwrap() & 0x5 != 0).unwrap();
        let closer = match conn["entries"][end]["from"].as_str().unwrap() {
            "client" => "client",
            _ => "server",
        };
        let call = if name == "half-close" {
            "shutdown(SHUT_WR)"
        } else {
            "close()"
        };
        if name != "refused" {
            assert!(
                position(&conn, closer, call) < end,
                "{name}: {closer} {call} before its FIN/RST"
            );
        }
    }
}

#[test]
fn waiting_shows_the_end_of_time_wait_a_minute_later() {
    if !support::privileged("waiting_shows_the_end_of_time_wait_a_minute_later") {
        return;
    }
    let out = lab(&["--wait-time-wait", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON timeline");
    let conn = &doc["connections"][0];
    let mut ends_closed = support::ACTIVE_SERVER.to_vec();
    ends_closed.push("CLOSED");
    assert_eq!(path(conn, "server"), ends_closed);
    let states: Vec<&Value> = conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "state" && e["role"] == "server")
        .collect();
    let [.., tw, end] = states[..] else {
        panic!("server states: {states:?}")
    };
    assert_eq!(end["cause"]["kind"], "timer", "{end}");
    assert!(
        end["cause"]["explain"]
            .as_str()
            .unwrap()
            .starts_with("2MSL timeout"),
        "{end}"
    );
    // Linux's 2MSL is a fixed minute (TCP_TIMEWAIT_LEN); the poll that saw the end
    // dates it within its span.
    let lasted = end["ts_ns"].as_u64().unwrap() - tw["ts_ns"].as_u64().unwrap();
    assert!(
        (55_000_000_000..66_000_000_000).contains(&lasted),
        "TIME_WAIT lasted {lasted} ns"
    );
}

#[test]
fn ctrl_c_ends_the_wait_for_time_wait_shows_the_run_and_leaves_nothing() {
    use std::io::{BufRead, BufReader};
    if !support::privileged("ctrl_c_ends_the_wait_for_time_wait_shows_the_run_and_leaves_nothing") {
        return;
    }
    let mut child = Command::new(support::tcplab_bin())
        .args(["lab", "--wait-time-wait"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The run says when it starts the minute's wait: interrupt it there.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("waiting for TIME_WAIT to end") {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "the lab ended without waiting for TIME_WAIT");
    }
    // SAFETY: kill() on the pid of our own child, which has not been waited for.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not shown: the end of TIME_WAIT (interrupted before it)"),
        "{text}"
    );
    assert!(
        text.contains(
            "\nserver: LISTEN → SYN_RECV → ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT\n"
        ),
        "{text}"
    );
    // Its tracefs instance is gone (its namespace went with its process).
    let prefix = format!("tcplab-{pid}-");
    for root in [
        "/sys/kernel/tracing/instances",
        "/sys/kernel/debug/tracing/instances",
    ] {
        for inst in std::fs::read_dir(root).into_iter().flatten() {
            let name = inst.unwrap().file_name().to_string_lossy().to_string();
            assert!(!name.starts_with(&prefix), "{name} left behind");
        }
    }
}

#[test]
fn the_html_page_and_svg_are_written() {
    let dir = std::env::temp_dir().join(format!("tcplab-lab-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = support::RemoveDir(dir.clone());
    let html = dir.join("echo.html");
    let svg = dir.join("echo.svg");
    let out = lab(&[
        "--html",
        html.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("class=\"states\""));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

/// `tcplab lab ARGS` as without privileges: no namespace, no capture, no tracepoints.
fn unprivileged_lab(args: &[&str]) -> std::process::Output {
    Command::new(support::tcplab_bin())
        .arg("lab")
        .args(args)
        .env("TCPLAB_NO_NETNS", "1")
        .env("TCPLAB_NO_CAPTURE", "1")
        .env("TCPLAB_NO_TRACE", "1")
        .output()
        .unwrap()
}

#[test]
fn without_privileges_the_lab_falls_back_and_says_what_is_lost() {
    let out = unprivileged_lab(&["--width", "100"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\nran in this machine's loopback (no private network namespace"),
        "{text}"
    );
    // What is lost: one line (wrapped to the width, its continuations indented).
    assert_eq!(
        text.lines().filter(|l| l.starts_with("not shown:")).count(),
        1,
        "{text}"
    );
    let lost: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("not shown:"))
        .take_while(|l| l.starts_with("not shown:") || l.starts_with("    "))
        .map(str::trim)
        .collect();
    let lost = [lost.join(" ")];
    for said in [
        "segments (no packet capture",
        "it needs CAP_NET_RAW",
        "exact kernel states (no tracepoints",
        "CAP_SYS_ADMIN",
        "states are polled from sock_diag instead",
    ] {
        assert!(lost[0].contains(said), "{said:?} in {text}");
    }
    // States still come, from sock_diag polls, marked approximate.
    assert!(text.contains("ESTABLISHED≈"), "{text}");
    assert!(text.contains("≈ seen by polling sock_diag"), "{text}");
    // A check needs exact observation: without it, no verdict on the kernel.
    let out = unprivileged_lab(&["refused", "--check"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("check refused: cannot check without exact observation"),
        "{err}"
    );
}

#[test]
fn check_passes_when_the_kernel_does_what_the_rfc_says() {
    if !support::privileged("check_passes_when_the_kernel_does_what_the_rfc_says") {
        return;
    }
    let out = lab(&["--check-all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.ends_with("20 passed, 0 failed\n"), "{text}");
}

#[test]
fn check_can_fail_and_shows_the_difference() {
    if !support::privileged("check_can_fail_and_shows_the_difference") {
        return;
    }
    let out = lab(&[
        "echo",
        "--check",
        "--expect-client",
        "CLOSED,SYN_SENT,ESTABLISHED,FIN_WAIT1,FIN_WAIT2,TIME_WAIT",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("check echo: FAIL: the kernel did something else\n"),
        "{err}"
    );
    assert!(err.contains(
        "client path:\n  - expected: CLOSED → SYN_SENT → ESTABLISHED → FIN_WAIT1 → FIN_WAIT2 → TIME_WAIT\n  \
         + seen:     CLOSED → SYN_SENT → ESTABLISHED → CLOSE_WAIT → LAST_ACK → CLOSED\n"
    ), "{err}");
    let ok = lab(&["refused", "--check"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stderr).contains("check refused: pass"));
}

#[test]
fn target_studies_another_server_on_this_machine() {
    if !support::privileged("target_studies_another_server_on_this_machine") {
        return;
    }
    let server = support::Server::start(&[]);
    let out = lab(&[
        "echo",
        "--json",
        "--check",
        "--target",
        &server.addr.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let conn = &doc["connections"][0];
    assert_eq!(conn["server"], server.addr.to_string());
    assert_eq!(path(conn, "server"), support::ACTIVE_SERVER);
    // Only the client's calls are known for a server tcplab does not run.
    assert!(calls(conn, "server").is_empty());
    let remote = lab(&["--target", "192.0.2.9:80"]);
    assert_eq!(remote.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&remote.stderr).contains("only servers on this machine's loopback")
    );
}
