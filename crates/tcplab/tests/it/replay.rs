//! `tcplab replay`: states inferred from captures, equal to the kernel's where the
//! capture is complete; and the annotated pcapng of `lab`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tcplab-core/tests/fixtures")
        .join(name)
}

fn tcplab(args: &[&str]) -> std::process::Output {
    Command::new(support::tcplab_bin())
        .args(args)
        .output()
        .expect("run tcplab")
}

/// Paths per role of the first connection of a JSON timeline, and whether every state
/// in it is marked inferred.
fn paths(json: &[u8]) -> (Vec<String>, Vec<String>, bool) {
    let doc: Value = serde_json::from_slice(json).expect("JSON timeline");
    let conn = &doc["connections"][0];
    let all_inferred = conn["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "state")
        .all(|e| e["inferred"] == true);
    (
        support::timeline_path(conn, "client"),
        support::timeline_path(conn, "server"),
        all_inferred,
    )
}

#[test]
fn replay_infers_the_textbook_paths_from_fixture_captures() {
    let active = support::ACTIVE_CLIENT;
    let passive = support::PASSIVE_SERVER;
    for file in [
        "handshake.pcap",
        "handshake6.pcapng",
        "sack-loss.pcap",
        "any-sll2.pcap",
    ] {
        let out = tcplab(&["replay", fixture(file).to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "{file}: {out:?}");
        let (client, server, inferred) = paths(&out.stdout);
        assert_eq!(client, active, "{file}");
        assert_eq!(server, passive, "{file}");
        assert!(inferred, "{file}: every state is marked inferred");
    }
}

#[test]
fn a_capture_that_starts_mid_connection_begins_established() {
    let out = tcplab(&[
        "replay",
        fixture("mid-connection.pcap").to_str().unwrap(),
        "--json",
    ]);
    let (client, server, _) = paths(&out.stdout);
    assert_eq!(
        client,
        ["ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"]
    );
    assert_eq!(server, ["ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]);
}

#[test]
fn several_connections_are_listed_and_chosen_by_number() {
    let file = fixture("rst.pcap");
    let out = tcplab(&["replay", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("2 connections in "), "{text}");
    assert!(
        text.contains("client CLOSED→SYN_SENT→CLOSED  server -"),
        "{text}"
    );

    let out = tcplab(&["replay", file.to_str().unwrap(), "--conn", "2", "--json"]);
    let (client, server, _) = paths(&out.stdout);
    assert_eq!(
        client,
        ["CLOSED", "SYN_SENT", "CLOSED"],
        "a refused connect"
    );
    assert!(server.is_empty(), "no listener, no server states");

    let out = tcplab(&["replay", file.to_str().unwrap(), "--conn", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected a number from 1 to 2"));
}

#[test]
fn a_file_that_is_no_capture_is_a_clear_error() {
    let out = tcplab(&["replay", fixture("README.md").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("tcplab: reading "));
}

#[test]
fn replay_of_the_labs_capture_infers_the_paths_the_kernel_reported() {
    if !support::privileged("replay_of_the_labs_capture_infers_the_paths_the_kernel_reported") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tcplab-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = support::RemoveDir(dir.clone());
    for scenario in ["echo", "client-close", "half-close", "abortive-close"] {
        let file = dir.join(format!("{scenario}.pcapng"));
        let traced = tcplab(&[
            "lab",
            scenario,
            "--json",
            "--pcapng",
            file.to_str().unwrap(),
        ]);
        assert_eq!(traced.status.code(), Some(0), "{traced:?}");
        let (tc, ts, traced_inferred) = paths(&traced.stdout);
        assert!(!traced_inferred, "the lab's states come from the kernel");
        let replayed = tcplab(&["replay", file.to_str().unwrap(), "--json"]);
        assert_eq!(replayed.status.code(), Some(0), "{replayed:?}");
        let (rc, rs, inferred) = paths(&replayed.stdout);
        assert_eq!(rc, tc, "{scenario}: client path");
        assert_eq!(rs, ts, "{scenario}: server path");
        assert!(inferred, "{scenario}: replayed states are marked inferred");
    }

    // The annotated pcapng's comments come back through `tcplab capture -r`.
    let file = dir.join("echo.pcapng");
    let out = tcplab(&["capture", "-r", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "    comment: server ESTABLISHED → FIN_WAIT1 (CLOSE / snd FIN); \
             client ESTABLISHED → CLOSE_WAIT (rcv FIN / snd ACK)"
        ),
        "{text}"
    );
    let out = tcplab(&["capture", "-r", file.to_str().unwrap(), "--json"]);
    let first: Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        first["comment"],
        "client CLOSED → SYN_SENT (active OPEN / snd SYN); server LISTEN → SYN_RECV (rcv SYN / snd SYN,ACK)"
    );
}
