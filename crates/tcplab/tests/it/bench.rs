//! `tcplab bench` reports real figures: checked against a server that counts what it
//! received, a server that answers wrongly, and a target that refuses.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use crate::support::tcplab_bin;

const BANNER: &[u8] =
    b"\nWelcome to the counting server.\nTo quit, type 'quit'. To shut down the server type 'shutdown'.\n";

/// What the counting server saw.
#[derive(Debug, Default)]
struct Counts {
    /// Lines other than `quit` (each answered).
    lines: AtomicU64,
    /// `quit` lines (each answered by closing).
    quits: AtomicU64,
}

/// An echo server, thread per connection, that counts lines and quits; `wrong` makes
/// it answer every line with a reply that is almost right.
fn counting_server(wrong: bool) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counts = shared.clone();
            thread::spawn(move || {
                if stream.write_all(BANNER).is_err() {
                    return;
                }
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let text = line.trim_ascii();
                    if text == b"quit" {
                        counts.quits.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    counts.lines.fetch_add(1, Ordering::SeqCst);
                    let mut reply = b"You said '".to_vec();
                    reply.extend_from_slice(text);
                    reply.extend_from_slice(if wrong { b"'!\n" } else { b"'.\n" });
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, counts)
}

fn bench(args: &[&str]) -> Output {
    Command::new(tcplab_bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run tcplab bench")
}

#[track_caller]
fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn bench_rt_count_matches_server_count() {
    let (addr, counts) = counting_server(false);
    let out = bench(&[
        &addr.to_string(),
        "--count",
        "500",
        "--conns",
        "4",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    assert_eq!(report["ops"], 500);
    assert_eq!(report["errors"]["total"], 0);
    assert_eq!(counts.lines.load(Ordering::SeqCst), 500);
}

#[test]
fn bench_rt_duration_count_matches_server_count() {
    let (addr, counts) = counting_server(false);
    let addr = addr.to_string();
    let args = [
        &addr,
        "--duration",
        "0.3",
        "--conns",
        "3",
        "--json",
        "--message-size",
        "100",
    ];
    let out = bench(&args);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    let ops = report["ops"].as_u64().unwrap();
    assert!(ops > 0);
    assert_eq!(ops, counts.lines.load(Ordering::SeqCst));
    assert!(report["latency_ns"]["p50"].as_u64().unwrap() > 0);
}

#[test]
fn bench_intervals_cover_the_measured_time_in_order() {
    let (addr, counts) = counting_server(false);
    let addr = addr.to_string();
    let args = [
        &addr,
        "--duration",
        "1",
        "--interval",
        "0.25",
        "--conns",
        "2",
        "--json",
    ];
    let out = bench(&args);
    assert!(out.status.success(), "{out:?}");
    let report = json(&out);
    let intervals = report["intervals"].as_array().expect("intervals array");
    // 0.25 s intervals in 1 s of measuring: the last one may be cut by the end.
    assert!(intervals.len() >= 3, "{intervals:?}");
    let mut prev_end = 0.0;
    let mut sum = 0;
    for i in intervals {
        let (start, secs) = (i["start_s"].as_f64().unwrap(), i["secs"].as_f64().unwrap());
        assert!(secs >= 0.25, "{i}");
        assert!(start >= prev_end - 1e-9, "intervals overlap: {intervals:?}");
        prev_end = start + secs;
        let ops = i["ops"].as_u64().unwrap();
        assert!(ops > 0, "{i}");
        let rate = i["ops_per_sec"].as_f64().unwrap();
        assert!((rate - ops as f64 / secs).abs() < 1.0, "{i}");
        sum += ops;
    }
    let ends: Vec<f64> = intervals
        .iter()
        .map(|i| i["end_unix_s"].as_f64().unwrap())
        .collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    // Every round trip counted in an interval reached the server.
    assert!(sum <= counts.lines.load(Ordering::SeqCst));
    // Without --interval the report has no intervals.
    let plain = json(&bench(&[&addr, "--count", "10", "--json"]));
    assert!(plain.get("intervals").is_none(), "{plain}");
}

#[test]
fn bench_rt_async_engine_count_matches_server_count() {
    let (addr, counts) = counting_server(false);
    let addr = addr.to_string();
    let args = [
        &addr, "--count", "300", "--conns", "5", "--engine", "async", "--json",
    ];
    let out = bench(&args);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["ops"], 300);
    assert_eq!(counts.lines.load(Ordering::SeqCst), 300);
}

#[test]
fn bench_conn_cycles_match_server_quits() {
    let (addr, counts) = counting_server(false);
    for engine in ["blocking", "async"] {
        let before = counts.quits.load(Ordering::SeqCst);
        let args = [
            &addr.to_string(),
            "--mode",
            "conn",
            "--count",
            "60",
            "--conns",
            "3",
            "--engine",
            engine,
            "--json",
        ];
        let out = bench(&args);
        assert!(out.status.success(), "{engine}: {out:?}");
        assert_eq!(json(&out)["ops"], 60, "{engine}");
        assert_eq!(counts.quits.load(Ordering::SeqCst) - before, 60, "{engine}");
        assert_eq!(counts.lines.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn bench_reports_wrong_replies_as_errors() {
    let (addr, counts) = counting_server(true);
    for engine in ["blocking", "async"] {
        let args = [
            &addr.to_string(),
            "--count",
            "20",
            "--engine",
            engine,
            "--json",
        ];
        let out = bench(&args);
        assert!(
            !out.status.success(),
            "{engine}: wrong replies must fail the run"
        );
        let report = json(&out);
        assert_eq!(
            report["ops"], 0,
            "{engine}: no wrong reply counts as a success"
        );
        assert_eq!(report["errors"]["wrong_reply"], 20, "{engine}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("wrong reply 20"), "{stderr}");
    }
    assert_eq!(counts.lines.load(Ordering::SeqCst), 40);
}

#[test]
fn bench_refused_target_exits_non_zero_with_clear_message() {
    // A port that was just ours and is now closed: the kernel answers SYN with RST.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = bench(&[&addr.to_string(), "--duration", "1"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("tcplab: bench: cannot connect to {addr}")),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn bench_refuses_remote_target_without_allow_remote() {
    // 192.0.2.0/24 is a documentation range; nothing is sent, the check comes first.
    let out = bench(&["192.0.2.1:54321", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[test]
fn bench_idle_holds_every_connection() {
    let (addr, counts) = counting_server(false);
    let args = [
        &addr.to_string(),
        "--mode",
        "idle",
        "--conns",
        "25",
        "--duration",
        "0",
        "--json",
    ];
    let out = bench(&args);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json(&out)["held"], 25);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("holding 25 idle connections"), "{stderr}");
    assert_eq!(counts.lines.load(Ordering::SeqCst), 0);
}
