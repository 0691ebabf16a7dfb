//! Long filters (BPF trampolines, the user-space fallback) and a capture file with a
//! block too short for its fields: regressions from the issue 5 audit.

use std::process::Command;
use std::time::Duration;

use super::{connect_rst, ladder, Capture, TempDir};
use crate::support::{self, tcplab_bin, Server};

/// `port 1 or ... or port N or port SERVER`: a filter whose jumps need trampolines.
fn many_ports_filter(n: u16, port: &str) -> Vec<String> {
    let mut words = Vec::new();
    for p in 1..=n {
        words.extend(["port".to_string(), p.to_string(), "or".to_string()]);
    }
    words.extend(["port".to_string(), port.to_string()]);
    words
}

/// Regression (issue 5 audit): 14 `or port` terms failed to compile. 100 terms go to
/// the kernel; 150 are too large for its socket option memory where
/// net.core.optmem_max is 128 KiB, as here (ENOMEM), and are filtered in tcplab
/// instead. Both select exactly our packets.
#[test]
fn long_or_port_filters_capture_exactly_the_matching_packets() {
    if !support::privileged("long_or_port_filters_capture_exactly_the_matching_packets") {
        return;
    }
    for n in [100, 150] {
        let server = Server::start(&[]);
        let port = server.addr.port().to_string();
        let mut args = vec!["-i".to_string(), "lo".into(), "--json".into()];
        args.extend(many_ports_filter(n, &port));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cap = Capture::start(&args);
        connect_rst(&server);
        let got = cap.take(9, Duration::from_secs(10));
        let flags: Vec<String> = ladder(&got, server.addr.port())
            .into_iter()
            .map(|(_, f, _)| f)
            .collect();
        assert_eq!(
            flags,
            ["S", "S.", ".", "P.", ".", "P.", ".", "P.", "R."],
            "{n} terms"
        );
        cap.signal(libc::SIGINT);
        let (rest, status) = cap.finish(Duration::from_secs(5));
        assert!(status.success(), "{status}");
        assert!(rest.is_empty(), "{n} terms: extra packets: {rest:#?}");
    }
}

/// Past the kernel's 4096 instructions: the error names the term's column, once
/// (it used to be printed twice, once by the error and once as its cause).
#[test]
fn a_filter_too_long_for_the_kernel_names_its_column_once() {
    if !support::privileged("a_filter_too_long_for_the_kernel_names_its_column_once") {
        return;
    }
    let out = Command::new(tcplab_bin())
        .args(["capture", "-i", "lo"])
        .args(many_ports_filter(400, "9"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("tcplab: capturing on lo: compiling the filter: at column "),
        "{err}"
    );
    assert_eq!(err.matches("at column").count(), 1, "{err}");
    assert!(
        err.contains("more than the kernel's limit of 4096"),
        "{err}"
    );
}

/// Regression (issue 5 audit): a pcapng with a 12-byte simple packet block made
/// `capture -r` panic (exit 101).
#[test]
fn a_12_byte_simple_packet_block_is_an_error_with_its_offset() {
    let dir = TempDir::new("capture-spb12");
    let path = dir.0.join("spb12.pcapng");
    let mut file = Vec::new();
    for (btype, body) in [
        // Section header: byte-order magic, version 1.0, unknown section length.
        (
            0x0a0d_0d0au32,
            &[
                0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
        ),
        (1, &[1, 0, 0, 0, 0, 0, 0, 0][..]), // Ethernet interface
        (3, &[][..]),                       // the 12-byte simple packet block
    ] {
        let len = (12 + body.len() as u32).to_le_bytes();
        file.extend_from_slice(&btype.to_le_bytes());
        file.extend_from_slice(&len);
        file.extend_from_slice(body);
        file.extend_from_slice(&len);
    }
    std::fs::write(&path, &file).unwrap();
    for cmd in ["capture", "replay"] {
        let mut c = Command::new(tcplab_bin());
        c.arg(cmd);
        if cmd == "capture" {
            c.arg("-r");
        }
        let out = c.arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("at byte offset 48: simple packet block of 12 bytes is too short"),
            "{cmd}: {err}"
        );
    }
}
