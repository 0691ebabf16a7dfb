//! `tcplab capture`: live capture on `lo` (privileged), files written and read back,
//! and the error paths (unknown interface, no privilege, corrupt file, closed pipe).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{self, tcplab_bin, Server};

mod filters;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tcplab-core/tests/fixtures")
        .join(name)
}

/// A directory removed when dropped, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tcplab-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `tcplab capture`, its stdout lines arriving on a channel. Killed by its
/// PID when dropped.
struct Capture {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Capture {
    fn start(args: &[&str]) -> Capture {
        let mut cmd = Command::new(tcplab_bin());
        cmd.arg("capture").args(args);
        Capture::spawn(cmd)
    }

    /// Starts the capture inside network namespace `ns` (`ip netns exec`).
    fn start_in(ns: &str, args: &[&str]) -> Capture {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(tcplab_bin())
            .arg("capture")
            .args(args);
        Capture::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Capture {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcplab capture");
        // Ready when it says it is listening (the socket is bound by then).
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        assert!(first.contains("listening on"), "capture said {first:?}");
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = err.read_to_string(&mut rest);
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Capture { child, lines: rx }
    }

    /// Waits for `n` lines, with a deadline.
    fn take(&self, n: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => panic!("got {} of {n} lines: {got:#?}", got.len()),
            }
        }
        got
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling the child we started, by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for exit (deadline) and returns the remaining lines and the status.
    fn finish(mut self, limit: Duration) -> (Vec<String>, std::process::ExitStatus) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "capture did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let rest = self.lines.iter().collect();
        (rest, status)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect_rst(server: &Server) {
    let status = Command::new(tcplab_bin())
        .args(["connect", &server.addr.to_string(), "--send", "hello"])
        .args(["--close", "rst"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "tcplab connect: {status}");
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// (direction as c>s or s>c, flags, payload length) of each JSON line.
fn ladder(lines: &[String], server_port: u16) -> Vec<(String, String, u64)> {
    lines
        .iter()
        .map(|l| {
            let v = json(l);
            let dir = if v["dport"] == server_port {
                "c>s"
            } else {
                "s>c"
            };
            (
                dir.to_string(),
                v["flags"].as_str().unwrap().to_string(),
                v["payload_len"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn capture_on_lo_shows_the_exact_flag_sequence_once_per_packet() {
    if !support::privileged("capture_on_lo_shows_the_exact_flag_sequence_once_per_packet") {
        return;
    }
    let server = Server::start(&[]);
    let port = server.addr.port().to_string();
    let cap = Capture::start(&["-i", "lo", "--json", "tcp", "and", "port", &port]);
    connect_rst(&server);
    // Banner (99 bytes), "hello\n" (6), the reply (18), then the client's RST.
    let expected: Vec<(String, String, u64)> = [
        ("c>s", "S", 0),
        ("s>c", "S.", 0),
        ("c>s", ".", 0),
        ("s>c", "P.", 99),
        ("c>s", ".", 0),
        ("c>s", "P.", 6),
        ("s>c", ".", 0),
        ("s>c", "P.", 18),
        ("c>s", "R.", 0),
    ]
    .iter()
    .map(|(d, f, l)| (d.to_string(), f.to_string(), *l))
    .collect();
    let got = cap.take(expected.len(), Duration::from_secs(10));
    assert_eq!(ladder(&got, server.addr.port()), expected);
    cap.signal(libc::SIGINT);
    let (rest, status) = cap.finish(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(rest.is_empty(), "extra packets (a second copy?): {rest:#?}");
}

#[test]
fn any_device_gives_cooked_frames_and_one_copy_of_loopback_packets() {
    if !support::privileged("any_device_gives_cooked_frames_and_one_copy_of_loopback_packets") {
        return;
    }
    let server = Server::start(&[]);
    let port = server.addr.port().to_string();
    let cap = Capture::start(&["-i", "any", "--json", "port", &port]);
    connect_rst(&server);
    let got = cap.take(9, Duration::from_secs(10));
    let flags: Vec<String> = ladder(&got, server.addr.port())
        .into_iter()
        .map(|(d, f, _)| format!("{d} {f}"))
        .collect();
    assert_eq!(flags.first().map(String::as_str), Some("c>s S"));
    assert_eq!(flags.last().map(String::as_str), Some("c>s R."));
    for line in &got {
        // Linux cooked v2 header (20 bytes) + IPv4 (20) + TCP: caplen = len.
        let v = json(line);
        assert_eq!(v["caplen"], v["len"], "{line}");
        assert_eq!(v["direction"], "inbound", "{line}");
    }
    cap.signal(libc::SIGINT);
    let (rest, status) = cap.finish(Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(
        rest.is_empty(),
        "a second copy of loopback packets: {rest:#?}"
    );
}

/// Two namespaces joined by a veth pair (192.0.2.1 <-> 192.0.2.2), removed on drop.
struct VethPair {
    a: String,
    b: String,
}

impl VethPair {
    fn new() -> VethPair {
        let id = std::process::id() % 100_000;
        let (a, b) = (format!("tcplab-cap-a-{id}"), format!("tcplab-cap-b-{id}"));
        let pair = VethPair { a, b };
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?}: {st}");
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "link", "add", "tcapa", "netns", &pair.a, "type", "veth", "peer", "name", "tcapb",
            "netns", &pair.b,
        ]);
        ip(&["-n", &pair.a, "addr", "add", "192.0.2.1/24", "dev", "tcapa"]);
        ip(&["-n", &pair.b, "addr", "add", "192.0.2.2/24", "dev", "tcapb"]);
        ip(&["-n", &pair.a, "link", "set", "tcapa", "up"]);
        ip(&["-n", &pair.b, "link", "set", "tcapb", "up"]);
        pair
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn veth_capture_records_the_direction_of_each_packet() {
    if !support::privileged("veth_capture_records_the_direction_of_each_packet") {
        return;
    }
    let pair = VethPair::new();
    let bin = tcplab_bin();
    let bin = bin.to_str().unwrap();
    let dir = TempDir::new("capture-veth");
    let file = dir.0.join("veth.pcapng");
    let file_s = file.to_str().unwrap();
    // Nothing listens on 192.0.2.2:9: the SYN goes out of tcapa, the RST comes in.
    {
        let c = Capture::start_in(&pair.a, &["-i", "tcapa", "--json", "tcp", "port", "9"]);
        let w = Capture::start_in(&pair.a, &["-i", "tcapa", "-w", file_s, "tcp", "port", "9"]);
        let st = Command::new("ip")
            .args(["netns", "exec", &pair.a, bin, "connect", "192.0.2.2:9"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(3), "connect should be refused");
        let got = c.take(2, Duration::from_secs(10));
        let dirs: Vec<(String, String)> = got
            .iter()
            .map(|l| {
                let v = json(l);
                (v["flags"].to_string(), v["direction"].to_string())
            })
            .collect();
        assert_eq!(
            dirs,
            [
                ("\"S\"".to_string(), "\"outbound\"".to_string()),
                ("\"R.\"".to_string(), "\"inbound\"".to_string())
            ]
        );
        w.signal(libc::SIGINT);
        let (_, status) = w.finish(Duration::from_secs(5));
        assert!(status.success());
    } // `c` is killed here (by its PID).
      // The pcapng keeps the direction in each packet's flags.
    let bytes = std::fs::read(&file).unwrap();
    let mut r = tcplab_core::pcap::Reader::new(&bytes).unwrap();
    let mut dirs = Vec::new();
    while let Some(rec) = r.next_record() {
        dirs.push(
            rec.unwrap()
                .flags
                .and_then(tcplab_core::pcap::PacketDirection::from_epb_flags),
        );
    }
    use tcplab_core::pcap::PacketDirection::{Inbound, Outbound};
    assert_eq!(dirs, [Some(Outbound), Some(Inbound)]);
}

#[test]
fn written_file_reads_back_with_the_same_packets_after_sigint_and_sigterm() {
    if !support::privileged(
        "written_file_reads_back_with_the_same_packets_after_sigint_and_sigterm",
    ) {
        return;
    }
    let dir = TempDir::new("capture-w");
    for (sig, name) in [(libc::SIGINT, "int.pcapng"), (libc::SIGTERM, "term.pcapng")] {
        let server = Server::start(&[]);
        let port = server.addr.port().to_string();
        let file = dir.0.join(name);
        let file_s = file.to_str().unwrap();
        let live = Capture::start(&["--json", "port", &port]);
        let writer = Capture::start(&["-w", file_s, "port", &port]);
        connect_rst(&server);
        let shown = live.take(9, Duration::from_secs(10));
        writer.signal(sig);
        let (_, status) = writer.finish(Duration::from_secs(5));
        assert!(status.success(), "{name}: {status}");
        let out = Command::new(tcplab_bin())
            .args(["capture", "-r", file_s, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Each packet socket stamps its own copy, so only timestamps may differ.
        let untimed = |l: &str| {
            let mut v = json(l);
            v.as_object_mut().unwrap().remove("ts_ns");
            v
        };
        let read: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(untimed)
            .collect();
        let shown: Vec<_> = shown.iter().map(|l| untimed(l)).collect();
        assert_eq!(read, shown, "{name}");
        // The file ends with an interface statistics block (the kernel's counters).
        let bytes = std::fs::read(&file).unwrap();
        let mut r = tcplab_core::pcap::Reader::new(&bytes).unwrap();
        while let Some(rec) = r.next_record() {
            rec.unwrap();
        }
        let iface = &r.interfaces()[0];
        assert_eq!(iface.dropped, Some(0), "{name}");
        assert_eq!(iface.received, Some(9), "{name}");
    }
}

#[test]
fn sigkill_loses_at_most_the_last_second() {
    if !support::privileged("sigkill_loses_at_most_the_last_second") {
        return;
    }
    let dir = TempDir::new("capture-kill");
    let server = Server::start(&[]);
    let port = server.addr.port().to_string();
    let file = dir.0.join("killed.pcapng");
    let writer = Capture::start(&["-w", file.to_str().unwrap(), "port", &port]);
    connect_rst(&server);
    // Every packet of the exchange was sent before `connect` exited. The bound under
    // test: a packet that arrived 1 s + the ring's block timeout (10 ms) before a
    // SIGKILL is in the file. Kill 1.4 s after the last was sent (the rest is for the
    // scheduler: on a loaded 2-core CI machine the capture may wake that much later),
    // without looking at the file first: waiting for the packets to show up would
    // test nothing.
    let sent = Instant::now();
    let kill_at = sent + Duration::from_millis(1400);
    while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
        // Waiting for an instant, not for an event: the instant is what is tested.
        std::thread::sleep(left);
    }
    writer.signal(libc::SIGKILL);
    let (_, status) = writer.finish(Duration::from_secs(5));
    assert!(!status.success());
    let bytes = std::fs::read(&file).unwrap();
    let mut r = tcplab_core::pcap::Reader::new(&bytes).unwrap();
    let mut n = 0;
    while let Some(rec) = r.next_record() {
        rec.expect("a killed capture leaves whole blocks only");
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn capture_without_cap_net_raw_names_it_and_how_to_fix() {
    if !support::privileged("capture_without_cap_net_raw_names_it_and_how_to_fix") {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::process::CommandExt as _;
    // A copy nobody may run (the build directory may not be reachable for them).
    let dir = TempDir::new("capture-noroot");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.0.join("tcplab");
    std::fs::copy(tcplab_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&bin)
        .args(["capture", "-i", "lo"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(err.contains("setcap cap_net_raw+ep"), "{err}");
    assert!(err.contains("1. run as root"), "{err}");
}

#[test]
fn unknown_interface_lists_the_existing_ones() {
    let out = Command::new(tcplab_bin())
        .args(["capture", "-i", "nosuchif0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nosuchif0: no such interface"), "{err}");
    assert!(
        err.contains("interfaces here: ") && err.contains("lo"),
        "{err}"
    );
}

#[test]
fn corrupt_file_prints_every_packet_before_the_damage_then_its_offset() {
    let dir = TempDir::new("capture-corrupt");
    let bytes = std::fs::read(fixture("handshake.pcap")).unwrap();
    let cut = dir.0.join("cut.pcap");
    std::fs::write(&cut, &bytes[..700]).unwrap();
    let out = Command::new(tcplab_bin())
        .args(["capture", "-r", cut.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
    assert!(err.contains("at byte offset 639"), "{err}");
}

#[test]
fn bad_filter_names_the_column() {
    let out = Command::new(tcplab_bin())
        .args(["capture", "-r"])
        .arg(fixture("handshake.pcap"))
        .args(["port", "1", "or", "("])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at column 12"), "{err}");
}

#[test]
fn filter_applies_to_files_too() {
    let out = Command::new(tcplab_bin())
        .args(["capture", "-r"])
        .arg(fixture("rst.pcap"))
        .args(["dst", "port", "61004"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("Flags [S]"), "{stdout}");
}

#[test]
fn closed_pipe_is_a_clean_exit() {
    use tcplab_core::pcap::{InterfaceDesc, OutPacket, PcapngWriter};
    let dir = TempDir::new("capture-pipe");
    let path = dir.0.join("big.pcapng");
    let syn = std::fs::read(fixture("handshake.pcap")).unwrap()[40..40 + 74].to_vec();
    let mut w = PcapngWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&path).unwrap()),
        &InterfaceDesc {
            linktype: 1,
            snaplen: 262_144,
            name: "lo".into(),
        },
    )
    .unwrap();
    for i in 0..20_000u64 {
        w.write_packet(&OutPacket {
            ts_ns: i * 1000,
            data: &syn,
            orig_len: 74,
            direction: None,
            comment: None,
        })
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let mut child = Command::new(tcplab_bin())
        .args(["capture", "-XX", "-r", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("Flags [S]"), "{first}");
    drop(out); // `| head -1`
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.is_empty(), "{err}");
}
