//! Data: Nagle's algorithm against the delayed ACK, flow control down to a zero
//! window, and loss repaired by fast retransmit and by the retransmission timeout.

use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use tcplab_core::timeline::{Connection, Item, Role};

use super::{joined, nothing, wait_until, Finding, Outcome, Sock, Stage};
use crate::lab::run::Host;

/// What separates a stall from none: the delayed ACK waits at least 40 ms.
const STALL: Duration = Duration::from_millis(30);

/// Serves lines on `sock`: each complete line back as it is, until EOF, then closes.
fn serve_lines(sock: Sock) -> std::io::Result<()> {
    let mut pending = Vec::new();
    loop {
        let bytes = sock.read()?;
        if bytes.is_empty() {
            sock.close();
            return Ok(());
        }
        pending.extend(bytes);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            sock.write(&line)?;
        }
    }
}

/// A line written in two parts, then its echo read: how long that took.
fn split_round_trip(sock: &Sock) -> std::io::Result<Duration> {
    let start = Instant::now();
    sock.write(b"hel")?;
    sock.write(b"lo\n")?;
    sock.read_exact(6)?;
    Ok(start.elapsed())
}

/// write("hel"), write("lo\n"), read(): Nagle holds the second part until the first
/// is ACKed, and the server delays that ACK (it has nothing to send yet) by ~40 ms.
/// Then the same with TCP_NODELAY: no stall. A whole line goes first: a fresh
/// connection ACKs at once (quick-ACK mode) until the server has answered quickly once
/// and counts as interactive (pingpong mode), where ACKs are delayed.
pub fn nagle_delayed_ack(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let listening = stage.listen(5)?;
    let client = stage.connect(nothing)?;
    let client_addr = client.local()?;
    let serving = stage.spawn(Host::Server, move || {
        serve_lines(listening.accept()?)?;
        listening.close();
        Ok(())
    })?;
    let (nagle, nodelay) = stage.on(Host::Client, move || {
        client.write(b"hello\n")?;
        client.read_exact(6)?;
        let nagle = split_round_trip(&client)?;
        client.set("TCP_NODELAY", |s| s.set_tcp_nodelay(true))?;
        let nodelay = split_round_trip(&client)?;
        client.close();
        Ok((nagle, nodelay))
    })?;
    joined(serving)?;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mut outcome = Outcome::of(client_addr, stage.server);
    outcome.findings = vec![
        Finding {
            what: "write, write, read with Nagle".into(),
            expected: format!("a stall of at least {} (the delayed ACK)", ms(STALL)),
            seen: ms(nagle),
            ok: nagle >= STALL,
        },
        Finding {
            what: "write, write, read with TCP_NODELAY".into(),
            expected: format!("no stall (under {})", ms(STALL)),
            seen: ms(nodelay),
            ok: nodelay < STALL,
        },
    ];
    Ok(outcome)
}

/// Bytes the client writes before the receiver reads: far more than its small buffer.
const ZERO_WINDOW_BYTES: usize = 256 * 1024;
/// The receiver's buffer (the kernel doubles it).
const ZERO_WINDOW_RCVBUF: usize = 4096;
/// How long the receiver does not read: the persist timer's first probe comes one RTO
/// (~0.2 s) after the zero window, the second ~0.4 s later, the third ~0.8 s after
/// that; stop between the second and the third.
const ZERO_WINDOW_PAUSE: Duration = Duration::from_millis(1000);

/// The receiver (small buffer) does not read for a second: its window falls to zero,
/// the sender's persist timer probes it, and when it reads, a window update lets the
/// rest flow.
pub fn zero_window(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let srv = stage.recorder(Role::Server);
    let server = stage.server;
    let listening = stage.on(Host::Server, move || {
        let sock = Sock::new(&srv, server)?;
        sock.set("SO_REUSEADDR", |s| s.set_reuse_address(true))?;
        // Set on the listener, inherited by the accepted socket from its SYN on, so
        // the window scale fits the small buffer.
        sock.set(&format!("SO_RCVBUF {ZERO_WINDOW_RCVBUF}"), |s| {
            s.set_recv_buffer_size(ZERO_WINDOW_RCVBUF)
        })?;
        sock.bind(server)?;
        sock.listen(5)?;
        Ok(sock)
    })?;
    let client = stage.connect(nothing)?;
    let client_addr = client.local()?;
    let receiver = stage.spawn(Host::Server, move || {
        let accepted = listening.accept()?;
        accepted.sleep(ZERO_WINDOW_PAUSE);
        let mut got = 0;
        while got < ZERO_WINDOW_BYTES {
            let bytes = accepted.read()?;
            if bytes.is_empty() {
                break;
            }
            got += bytes.len();
        }
        accepted.close();
        listening.close();
        Ok(got)
    })?;
    stage.on(Host::Client, move || {
        client.write(&vec![b'x'; ZERO_WINDOW_BYTES])?;
        client.close();
        Ok(())
    })?;
    let got = joined(receiver)?;
    let mut outcome = Outcome::of(client_addr, server);
    outcome.findings = vec![Finding::equal(
        "bytes the receiver read",
        &ZERO_WINDOW_BYTES.to_string(),
        got.to_string(),
    )];
    Ok(outcome)
}

/// Lines the client sends in a burst (the wire loses the second).
const BURST: usize = 6;

/// Waits until every byte written on `sock` is acknowledged (SIOCOUTQ is 0).
fn all_acked(sock: &Sock) -> std::io::Result<()> {
    let fd = sock.socket.as_raw_fd();
    let unacked = || {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one c_int through the pointer, which is valid.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
        if r == 0 {
            n
        } else {
            -1
        }
    };
    if wait_until(Duration::from_secs(5), || unacked() == 0) {
        Ok(())
    } else {
        Err(std::io::Error::other(
            "the burst was not acknowledged within 5 s",
        ))
    }
}

/// A burst of six lines of which the wire loses the second: the receiver's duplicate
/// ACKs carry SACK blocks, and the sender retransmits the hole at once (fast
/// retransmit). Then one lone line, lost too: nothing follows it to trigger duplicate
/// ACKs, so only the retransmission timeout (≥ 200 ms) repairs it. Tail loss probes are
/// turned off in the client's namespace so that the timeout is what acts.
pub fn retransmission(stage: &Stage<'_>) -> anyhow::Result<Outcome> {
    let server = stage.server;
    let listening = stage.listen(5)?;
    let client = stage.connect(|c| c.set("TCP_NODELAY", |s| s.set_tcp_nodelay(true)))?;
    let client_addr = client.local()?;
    let line = |i: usize| format!("line {i}\n").into_bytes();
    let total: usize = (1..=BURST + 1).map(|i| line(i).len()).sum();
    let receiver = stage.spawn(Host::Server, move || {
        let accepted = listening.accept()?;
        accepted.read_exact(total)?;
        let eof = accepted.read()?;
        accepted.close();
        listening.close();
        Ok(eof.is_empty())
    })?;
    stage.on(Host::Client, move || {
        for i in 1..=BURST {
            client.write(&line(i))?;
        }
        all_acked(&client)?;
        client.write(&line(BURST + 1))?;
        all_acked(&client)?;
        client.close();
        Ok(())
    })?;
    joined(receiver)?;
    Ok(Outcome::of(client_addr, server))
}

/// The retransmission scenario's own checks: each lost data segment, how long until
/// its retransmission, and whether SACK blocks came in between.
pub fn verify_retransmission(conn: &Connection) -> Vec<Finding> {
    let segments: Vec<_> = conn
        .entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s) => Some(s),
            _ => None,
        })
        .collect();
    let lost: Vec<_> = segments
        .iter()
        .filter(|s| s.lost && s.segment.len > 0)
        .collect();
    let repair = |l: &&&tcplab_core::timeline::SegmentEntry| {
        segments
            .iter()
            .find(|s| s.retransmission && !s.lost && s.segment.seq == l.segment.seq)
            .map(|s| {
                let sacks = segments.iter().any(|a| {
                    a.from == Role::Server
                        && a.segment.ts_ns > l.segment.ts_ns
                        && a.segment.ts_ns < s.segment.ts_ns
                        && a.segment.options.iter().any(|o| o.starts_with("sack "))
                });
                (s.segment.ts_ns.saturating_sub(l.segment.ts_ns), sacks)
            })
    };
    let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
    let mut out = vec![Finding::equal(
        "data segments lost on the wire",
        "2",
        lost.len().to_string(),
    )];
    if let Some(first) = lost.first() {
        let seen = match repair(first) {
            Some((ns, true)) if ns < 200_000_000 => {
                format!("fast retransmit after SACKs, {}", ms(ns))
            }
            Some((ns, sacks)) => format!("retransmitted after {} (SACK seen: {sacks})", ms(ns)),
            None => "never retransmitted".into(),
        };
        out.push(Finding {
            what: "the burst's lost segment".into(),
            expected: "fast retransmit after SACKs, under 200 ms".into(),
            ok: seen.starts_with("fast retransmit"),
            seen,
        });
    }
    if let Some(last) = lost.get(1) {
        let (seen, ok) = match repair(last) {
            Some((ns, _)) => (format!("retransmitted after {}", ms(ns)), ns >= 200_000_000),
            None => ("never retransmitted".into(), false),
        };
        out.push(Finding {
            what: "the lone lost segment".into(),
            expected: "retransmission timeout, at least 200 ms".into(),
            seen,
            ok,
        });
    }
    out
}
