//! Data: Nagle's algorithm against the delayed ACK, flow control down to a zero
//! window, and loss repaired by fast retransmit and by the retransmission timeout.

use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use tcplab_core::timeline::{Connection, Item, Role, SegmentEntry};

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

/// The send queue's two counts, read with ioctl.
#[derive(Clone, Copy)]
enum Queued {
    /// Bytes written and not yet acknowledged (SIOCOUTQ).
    Unacked,
    /// Bytes written and not yet sent (SIOCOUTQNSD).
    Unsent,
}

/// Waits until `sock` has no byte `queued` (at most 5 s).
fn drained(sock: &Sock, queued: Queued) -> std::io::Result<()> {
    let fd = sock.socket.as_raw_fd();
    let request = match queued {
        Queued::Unacked => libc::TIOCOUTQ,
        Queued::Unsent => libc::SIOCOUTQNSD,
    };
    let count = || {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ and SIOCOUTQNSD write one c_int through the pointer, which
        // is valid.
        let r = unsafe { libc::ioctl(fd, request as _, &mut n) };
        if r == 0 {
            n
        } else {
            -1
        }
    };
    if wait_until(Duration::from_secs(5), || count() == 0) {
        return Ok(());
    }
    Err(std::io::Error::other(match queued {
        Queued::Unacked => "what was written was not acknowledged within 5 s",
        Queued::Unsent => "what was written was not sent within 5 s",
    }))
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
        // Each line its own segment, as the wire's rules count them: the next write
        // comes only once the kernel has sent the previous one. Normally it has by the
        // time write() returns; on a busy machine a segment the kernel could not send at
        // once would take the next line into it, and the wire would lose other segments.
        for i in 1..=BURST {
            client.write(&line(i))?;
            drained(&client, Queued::Unsent)?;
        }
        drained(&client, Queued::Unacked)?;
        client.write(&line(BURST + 1))?;
        drained(&client, Queued::Unacked)?;
        client.close();
        Ok(())
    })?;
    joined(receiver)?;
    Ok(Outcome::of(client_addr, server))
}

/// The retransmission scenario's own checks: each lost data segment, how long until
/// its retransmission, and whether SACK blocks came in between.
///
/// The segments' times are the wire's: it reads each segment after the kernel sent it,
/// milliseconds later on a busy machine. The retransmission timer starts when the kernel
/// sends, inside the write() that carried the segment, so the timeout is measured from
/// that write() (recorded before the call: never too short), not from the wire's copy.
pub fn verify_retransmission(conn: &Connection) -> Vec<Finding> {
    let segments: Vec<&SegmentEntry> = conn
        .entries
        .iter()
        .filter_map(|e| match &e.item {
            Item::Segment(s) => Some(s),
            _ => None,
        })
        .collect();
    let lost: Vec<&SegmentEntry> = segments
        .iter()
        .copied()
        .filter(|s| s.lost && s.segment.len > 0)
        .collect();
    let repair = |l: &SegmentEntry| {
        segments
            .iter()
            .copied()
            .find(|s| s.retransmission && !s.lost && s.segment.seq == l.segment.seq)
    };
    let ms = |ns: u64| format!("{:.1} ms", ns as f64 / 1e6);
    let mut out = vec![Finding::equal(
        "data segments lost on the wire",
        "2",
        lost.len().to_string(),
    )];
    if let Some(first) = lost.first() {
        let seen = match repair(first) {
            Some(r) => {
                let ns = r.segment.ts_ns.saturating_sub(first.segment.ts_ns);
                let sacks = segments.iter().any(|a| {
                    a.from == Role::Server
                        && a.segment.ts_ns > first.segment.ts_ns
                        && a.segment.ts_ns < r.segment.ts_ns
                        && a.segment.options.iter().any(|o| o.starts_with("sack "))
                });
                if sacks && ns < 200_000_000 {
                    format!("fast retransmit after SACKs, {}", ms(ns))
                } else {
                    format!("retransmitted after {} (SACK seen: {sacks})", ms(ns))
                }
            }
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
        let written = conn
            .entries
            .iter()
            .rev()
            .filter(|e| e.ts_ns <= last.segment.ts_ns)
            .find_map(|e| match &e.item {
                Item::Call(c) if c.role == Role::Client && c.call.starts_with("write(") => {
                    Some(e.ts_ns)
                }
                _ => None,
            })
            .unwrap_or(last.segment.ts_ns);
        let (seen, ok) = match repair(last) {
            Some(r) => {
                let ns = r.segment.ts_ns.saturating_sub(written);
                (
                    format!("retransmitted {} after the write() that sent it", ms(ns)),
                    ns >= 200_000_000,
                )
            }
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tcplab_core::timeline::{CallEntry, Entry, Segment};

    use super::*;

    const MS: u64 = 1_000_000;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn segment(ts_ns: u64, from: Role, seq: u32, len: u32, options: &[&str]) -> SegmentEntry {
        let (src, dst) = match from {
            Role::Client => (addr(40000), addr(54321)),
            Role::Server => (addr(54321), addr(40000)),
        };
        SegmentEntry {
            from,
            rel_seq: seq,
            rel_ack: 1,
            segment: Segment {
                ts_ns,
                src,
                dst,
                flags: 0x10,
                seq,
                ack: 1,
                window: 64,
                len,
                payload: vec![b'x'; len as usize],
                options: options.iter().map(|o| o.to_string()).collect(),
            },
            retransmission: false,
            lost: false,
            analysis: None,
        }
    }

    /// The run of `retransmission` as the wire sees it: the burst's second segment lost
    /// and repaired after SACKs, then the lone segment written at 10 ms, read by the wire
    /// at `wire_ms` and lost, and retransmitted at `retransmit_ms`.
    fn run(wire_ms: u64, retransmit_ms: u64) -> Connection {
        let mut entries = Vec::new();
        let mut seg = |ts_ns, s: SegmentEntry| entries.push((ts_ns, Item::Segment(s)));
        seg(MS, segment(MS, Role::Client, 1, 7, &[]));
        let mut lost = segment(MS, Role::Client, 8, 7, &[]);
        lost.lost = true;
        seg(MS, lost);
        seg(MS, segment(MS, Role::Client, 15, 7, &[]));
        seg(2 * MS, segment(2 * MS, Role::Server, 1, 0, &["sack 15:22"]));
        let mut repaired = segment(2 * MS + 100_000, Role::Client, 8, 7, &[]);
        repaired.retransmission = true;
        seg(2 * MS + 100_000, repaired);
        let mut lone = segment(wire_ms * MS, Role::Client, 22, 7, &[]);
        lone.lost = true;
        let mut again = segment(retransmit_ms * MS, Role::Client, 22, 7, &[]);
        again.retransmission = true;
        entries.push((
            10 * MS,
            Item::Call(CallEntry {
                role: Role::Client,
                addr: addr(40000),
                call: "write(7)".into(),
            }),
        ));
        entries.push((wire_ms * MS, Item::Segment(lone)));
        entries.push((retransmit_ms * MS, Item::Segment(again)));
        entries.sort_by_key(|(ts, _)| *ts);
        Connection {
            client: addr(40000),
            server: addr(54321),
            entries: entries
                .into_iter()
                .map(|(ts_ns, item)| Entry { ts_ns, item })
                .collect(),
            kernel: Default::default(),
        }
    }

    #[test]
    fn the_timeout_counts_from_the_write_not_from_the_wires_late_copy() {
        // The wire read the lone segment 8 ms late: its two copies are 197 ms apart on the
        // wire, but the kernel's timer ran 205 ms from the write().
        let findings = verify_retransmission(&run(18, 215));
        assert!(findings.iter().all(|f| f.ok), "{findings:#?}");
        assert_eq!(
            findings[2].seen,
            "retransmitted 205.0 ms after the write() that sent it"
        );
        assert_eq!(findings[1].seen, "fast retransmit after SACKs, 1.1 ms");
    }

    #[test]
    fn a_retransmission_before_the_timeout_fails() {
        let findings = verify_retransmission(&run(11, 150));
        assert!(!findings[2].ok, "{findings:#?}");
        assert!(findings[..2].iter().all(|f| f.ok), "{findings:#?}");
    }
}
