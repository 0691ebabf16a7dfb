//! `tcplab lab`: each experiment runs end to end; its timeline has the socket calls of
//! both sides in causal order.

use std::process::Command;

use serde_json::Value;

use crate::support;

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(support::tcplab_bin())
        .arg("lab")
        .args(args)
        .output()
        .expect("run tcplab lab")
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
}

#[test]
fn echo_calls_are_in_causal_order() {
    let conn = timeline("echo");
    assert_eq!(
        calls(&conn, "client"),
        [
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

#[test]
fn every_experiment_runs() {
    let out = lab(&["--list"]);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "echo",
            "client-close",
            "half-close",
            "abortive-close",
            "refused",
            "unread-data-reset"
        ]
    );
    for name in names {
        let conn = timeline(name);
        assert!(!calls(&conn, "client").is_empty(), "{name}");
    }
}

#[test]
fn half_close_shuts_down_then_reads_the_reply_and_eof() {
    let conn = timeline("half-close");
    assert_eq!(
        &calls(&conn, "client")[2..],
        [
            "write(6)",
            "read() = 18",
            "shutdown(SHUT_WR)",
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
