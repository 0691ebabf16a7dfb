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
    // Every state in the list is inferred, and marked so, as in the ladder.
    assert!(
        text.contains(
            "client CLOSED*→SYN_SENT*→ESTABLISHED*→CLOSED*  \
             server LISTEN*→SYN_RECV*→ESTABLISHED*→CLOSED*"
        ),
        "{text}"
    );
    assert!(
        text.contains("client CLOSED*→SYN_SENT*→CLOSED*  server -"),
        "{text}"
    );
    assert!(
        text.ends_with("* inferred from the segments by the RFC 9293 rules (no kernel event)\n"),
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
fn json_of_a_file_with_several_connections_lists_them_all() {
    let out = tcplab(&["replay", fixture("rst.pcap").to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["version"], 1);
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    assert_eq!(
        support::timeline_path(&conns[0], "server"),
        ["LISTEN", "SYN_RECV", "ESTABLISHED", "CLOSED"]
    );
    assert_eq!(
        support::timeline_path(&conns[1], "client"),
        ["CLOSED", "SYN_SENT", "CLOSED"]
    );
}

#[test]
fn replay_writes_the_packets_back_with_the_inferred_states_as_comments() {
    let dir = std::env::temp_dir().join(format!("tcplab-replay-pcapng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = support::RemoveDir(dir.clone());
    let file = dir.join("rst.pcapng");
    let out = tcplab(&[
        "replay",
        fixture("rst.pcap").to_str().unwrap(),
        "--conn",
        "all",
        "--pcapng",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = tcplab(&["capture", "-r", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let packets: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(packets.len(), 8, "every packet of the file is written back");
    assert_eq!(
        packets[0]["comment"],
        "client CLOSED → SYN_SENT (active OPEN (connect) / snd SYN, inferred); \
         server LISTEN → SYN_RECV (rcv SYN / snd SYN,ACK, inferred)"
    );
    // The refused connect's RST, in the second connection.
    assert_eq!(
        packets[7]["comment"],
        "client SYN_SENT → CLOSED (rcv RST (refused), inferred)"
    );
    // The data segments changed no state: no comment.
    assert!(packets[3].get("comment").is_none_or(Value::is_null));
    // Replaying the annotated file infers the same paths as the original.
    let again = tcplab(&["replay", file.to_str().unwrap(), "--json"]);
    let original = tcplab(&["replay", fixture("rst.pcap").to_str().unwrap(), "--json"]);
    let paths = |out: &std::process::Output| -> Vec<Vec<String>> {
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["connections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| {
                [
                    support::timeline_path(c, "client"),
                    support::timeline_path(c, "server"),
                ]
            })
            .collect()
    };
    assert_eq!(paths(&again), paths(&original));
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
