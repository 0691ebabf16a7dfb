//! Every fixture capture decoded and rendered by tcplab-core, compared with what
//! tshark and tcpdump produced from the same file (scripts/make-fixtures.sh wrote the
//! expectation files next to the captures; these tests need neither tool).
//!
//! Documented, justified differences (everything else must agree exactly):
//! - tcpdump prints unknown option kinds as `unknown-N`; the issue asks for `opt-N`.
//! - tshark reassembles IPv4 fragments and shows TCP on the LAST fragment; tcplab does
//!   not reassemble and decodes the TCP header in the FIRST fragment (as tcpdump does).
//!   Fragments are skipped in the tshark comparison.
//! - With `-v`, tcpdump calls the checksums of locally sent packets "incorrect";
//!   tcplab recognises the offload placeholder and says "offloaded" instead.

use std::path::{Path, PathBuf};

use tcplab_core::pcap::{PacketDirection, Reader};
use tcplab_core::render::{Dump, Frame, Renderer, ViewOptions};
use tcplab_core::wire::{self, Ip, TcpOption};

const FIXTURES: &[&str] = &[
    "handshake.pcap",
    "handshake6.pcapng",
    "rst.pcap",
    "truncated.pcap",
    "any-sll2.pcap",
    "any-sll.pcap",
    "mid-connection.pcap",
    "sack-loss.pcap",
    "tfo.pcap",
    "crafted.pcap",
    "crafted6.pcap",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected(name: &str, suffix: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    String::from_utf8(read(&format!("{stem}.{suffix}"))).unwrap()
}

fn render(name: &str, opts: ViewOptions) -> String {
    let bytes = read(name);
    let mut reader = Reader::new(&bytes).unwrap();
    let mut r = Renderer::new(opts);
    r.set_interface_name(1, "lo");
    let mut out = Vec::new();
    while let Some(rec) = reader.next_record() {
        let rec = rec.unwrap();
        let frame = Frame {
            ts_ns: rec.ts_ns,
            linktype: rec.linktype,
            data: rec.data,
            orig_len: rec.orig_len,
            direction: rec.flags.and_then(PacketDirection::from_epb_flags),
            comment: None,
        };
        r.render(&frame, &mut out);
    }
    String::from_utf8(out).unwrap()
}

#[track_caller]
fn assert_lines_eq(name: &str, ours: &str, theirs: &str) {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "{name}: line {} differs", i + 1);
    }
    assert_eq!(a.len(), b.len(), "{name}: line count");
}

#[test]
fn default_view_matches_tcpdump_nn_on_every_fixture() {
    for name in FIXTURES {
        let theirs = expected(name, "tcpdump.txt").replace("unknown-", "opt-");
        assert_lines_eq(name, &render(name, ViewOptions::default()), &theirs);
    }
}

#[test]
fn absolute_view_matches_tcpdump_nn_s() {
    for name in FIXTURES {
        let theirs = expected(name, "tcpdump-S.txt").replace("unknown-", "opt-");
        let opts = ViewOptions {
            absolute: true,
            ..ViewOptions::default()
        };
        assert_lines_eq(name, &render(name, opts), &theirs);
    }
}

fn offload_as_ours(line: &str) -> String {
    match line.find("(incorrect -> 0x") {
        Some(at) => format!(
            "{}(offloaded: not final when captured){}",
            &line[..at],
            &line[at + "(incorrect -> 0x0000)".len()..]
        ),
        None => line.to_owned(),
    }
}

#[test]
fn verbose_view_matches_tcpdump_v() {
    for name in FIXTURES {
        let theirs: String = expected(name, "tcpdump-v.txt")
            .replace("unknown-", "opt-")
            .lines()
            .map(|l| offload_as_ours(l) + "\n")
            .collect();
        let opts = ViewOptions {
            verbose: true,
            ..ViewOptions::default()
        };
        assert_lines_eq(name, &render(name, opts), &theirs);
    }
}

#[test]
fn hex_and_ascii_views_match_tcpdump_byte_for_byte() {
    for name in FIXTURES {
        for (flag, dump) in [("A", Dump::Ascii), ("X", Dump::Hex), ("XX", Dump::HexLink)] {
            let theirs = expected(name, &format!("tcpdump-{flag}.txt")).replace("unknown-", "opt-");
            let opts = ViewOptions {
                dump,
                ..ViewOptions::default()
            };
            assert_lines_eq(&format!("{name} -{flag}"), &render(name, opts), &theirs);
        }
    }
}

/// Wireshark's relative numbers of segment `t` in `ip`, as tshark shows them.
fn relative(
    rel: &mut tcplab_core::flow::WiresharkSeq,
    ip: &Ip<'_>,
    t: &wire::TcpHeader<'_>,
) -> tcplab_core::flow::Relative {
    use tcplab_core::flow::{Endpoint, FlowKey, SegmentNumbers};
    let (key, d) = FlowKey::new(
        Endpoint {
            addr: ip.src(),
            port: t.src_port,
        },
        Endpoint {
            addr: ip.dst(),
            port: t.dst_port,
        },
    );
    rel.observe(
        key,
        d,
        SegmentNumbers {
            flags: t.flags,
            seq: t.seq,
            ack: t.ack,
        },
    )
}

fn col<'a>(header: &[&str], row: &[&'a str], name: &str) -> &'a str {
    let i = header.iter().position(|h| *h == name).unwrap();
    row.get(i).copied().unwrap_or("")
}

fn list<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn every_packet_agrees_with_tshark_fields() {
    use tcplab_core::flow::WiresharkSeq;
    let mut checked = 0;
    for name in FIXTURES {
        let tsv = expected(name, "tshark.tsv");
        let mut lines = tsv.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        let bytes = read(name);
        let mut reader = Reader::new(&bytes).unwrap();
        let mut rel = WiresharkSeq::default();
        for line in lines {
            let row: Vec<&str> = line.split('\t').collect();
            let c = |n: &str| col(&header, &row, n);
            let rec = reader.next_record().unwrap().unwrap();
            let at = format!("{name} frame {}", c("frame.number"));
            assert_eq!(rec.orig_len.to_string(), c("frame.len"), "{at}: len");
            assert_eq!(
                rec.data.len().to_string(),
                c("frame.cap_len"),
                "{at}: caplen"
            );
            let pkt = wire::decode(rec.linktype, rec.data);
            let (v4, v6) = match &pkt.ip {
                Some(Ip::V4(h)) => (h.src.to_string(), String::new()),
                Some(Ip::V6(h)) => (String::new(), h.src.to_string()),
                None => (String::new(), String::new()),
            };
            assert_eq!(v4, c("ip.src"), "{at}: ip.src");
            assert_eq!(v6, c("ipv6.src"), "{at}: ipv6.src");
            if pkt.ip.as_ref().is_some_and(|ip| ip.is_fragment()) {
                continue; // tshark reassembles, we do not (see the module doc).
            }
            let Some(t) = pkt.tcp.as_ref() else {
                assert_eq!(c("tcp.flags"), "", "{at}: tshark decoded TCP, we did not");
                continue;
            };
            let ip = pkt.ip.as_ref().unwrap();
            let r = relative(&mut rel, ip, t);
            let ack_raw = if t.has(wire::tcp::ACK) { t.ack } else { 0 };
            let opts: Vec<TcpOption<'_>> = t
                .options()
                .filter(|o| !matches!(o, TcpOption::Truncated { .. }))
                .collect();
            let kinds = list(opts.iter().map(|o| o.kind()));
            let mut mss = vec![];
            let mut ws = vec![];
            let (mut le, mut re) = (vec![], vec![]);
            let (mut tsval, mut tsecr) = (vec![], vec![]);
            let mut tfo = vec![];
            for o in &opts {
                match o {
                    TcpOption::Mss(v) => mss.push(*v),
                    TcpOption::WindowScale(v) => ws.push(*v),
                    TcpOption::Sack(b) => {
                        for (l, r2) in b.iter() {
                            le.push(l.wrapping_sub(r.sack_base));
                            re.push(r2.wrapping_sub(r.sack_base));
                        }
                    }
                    TcpOption::Timestamps { val, ecr } => {
                        tsval.push(*val);
                        tsecr.push(*ecr);
                    }
                    TcpOption::FastOpen(cookie) if !cookie.is_empty() => tfo.push(
                        cookie
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>(),
                    ),
                    _ => {}
                }
            }
            let ours = [
                ("tcp.srcport", t.src_port.to_string()),
                ("tcp.dstport", t.dst_port.to_string()),
                ("tcp.flags", format!("0x{:04x}", t.flags)),
                ("tcp.seq", r.seq.to_string()),
                ("tcp.seq_raw", t.seq.to_string()),
                ("tcp.ack", r.ack.to_string()),
                ("tcp.ack_raw", ack_raw.to_string()),
                ("tcp.len", pkt.payload_len.to_string()),
                ("tcp.window_size_value", t.window.to_string()),
                ("tcp.option_kind", kinds),
                ("tcp.options.mss_val", list(mss)),
                ("tcp.options.wscale.shift", list(ws)),
                ("tcp.options.sack_le", list(le)),
                ("tcp.options.sack_re", list(re)),
                ("tcp.options.timestamp.tsval", list(tsval)),
                ("tcp.options.timestamp.tsecr", list(tsecr)),
                ("tcp.options.tfo.cookie", list(tfo)),
            ];
            for (field, value) in ours {
                assert_eq!(value, c(field), "{at}: {field}");
            }
            checked += 1;
        }
        assert!(
            reader.next_record().is_none(),
            "{name}: more packets than tshark saw"
        );
    }
    assert!(checked > 100, "only {checked} TCP packets compared");
}

/// `sack-loss.pcap` is there to show SACK with loss (issue 5 audit: an earlier
/// capture had neither, the veth pair carrying 64 KB offloaded segments). It must
/// keep at least one SACK block, with relative edges as tshark gives them, and at
/// least one retransmission: a data segment starting below the highest sequence
/// number its sender had already sent, that fills the hole a SACK reported.
#[test]
fn sack_loss_has_sack_blocks_agreeing_with_tshark_and_a_retransmission() {
    use std::collections::HashMap;
    use tcplab_core::flow::WiresharkSeq;
    let name = "sack-loss.pcap";
    let tsv = expected(name, "tshark.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let bytes = read(name);
    let mut reader = Reader::new(&bytes).unwrap();
    let mut rel = WiresharkSeq::default();
    // Highest relative sequence number sent so far, per sender port.
    let mut sent_up_to: HashMap<u16, u32> = HashMap::new();
    // Relative left edges of the holes SACKs reported (the ACK number below a block).
    let mut holes = Vec::new();
    let (mut sack_blocks, mut retransmissions) = (0, 0);
    for line in lines {
        let row: Vec<&str> = line.split('\t').collect();
        let rec = reader.next_record().unwrap().unwrap();
        let pkt = wire::decode(rec.linktype, rec.data);
        let (Some(ip), Some(t)) = (pkt.ip.as_ref(), pkt.tcp.as_ref()) else {
            continue;
        };
        let r = relative(&mut rel, ip, t);
        let (mut le, mut re) = (vec![], vec![]);
        for o in t.options() {
            if let TcpOption::Sack(b) = o {
                for (l, r2) in b.iter() {
                    le.push(l.wrapping_sub(r.sack_base));
                    re.push(r2.wrapping_sub(r.sack_base));
                }
            }
        }
        if !le.is_empty() {
            let c = |n: &str| col(&header, &row, n);
            assert_eq!(
                list(&le),
                c("tcp.options.sack_le"),
                "frame {}",
                c("frame.number")
            );
            assert_eq!(
                list(&re),
                c("tcp.options.sack_re"),
                "frame {}",
                c("frame.number")
            );
            sack_blocks += le.len();
            holes.push(r.ack);
        }
        let len = pkt.payload_len as u32;
        if len > 0 {
            let top = sent_up_to.entry(t.src_port).or_insert(0);
            if r.seq < *top {
                assert!(
                    holes.contains(&r.seq),
                    "retransmission at {} fills no hole a SACK reported ({holes:?})",
                    r.seq
                );
                retransmissions += 1;
            }
            *top = (*top).max(r.seq + len);
        }
    }
    assert!(sack_blocks >= 1, "{name}: no SACK block");
    assert!(retransmissions >= 1, "{name}: no retransmission");
}

/// `--json` lists the IPv6 extension headers of each packet, with the fragment and
/// routing fields tcpdump shows in its line (checked against tcpdump above).
#[test]
fn json_lists_ipv6_extension_headers() {
    let opts = ViewOptions {
        json: true,
        ..ViewOptions::default()
    };
    let out = render("crafted6.pcap", opts);
    let ext: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ipv6_extensions"].clone())
        .collect();
    assert_eq!(
        ext[0],
        serde_json::json!([
            {"header": 60, "name": "destination-options", "length": 8},
            {"header": 44, "name": "fragment", "length": 8, "offset": 0, "more": true, "id": 0x1234},
        ])
    );
    assert_eq!(
        ext[1],
        serde_json::json!([
            {"header": 44, "name": "fragment", "length": 8, "offset": 64, "more": false, "id": 0x1234},
        ])
    );
    assert_eq!(
        ext[2],
        serde_json::json!([
            {"header": 43, "name": "routing", "length": 24, "routing_type": 4, "segments_left": 0},
        ])
    );
    assert_eq!(
        ext[6],
        serde_json::json!([
            {"header": 0, "name": "hop-by-hop", "length": 8},
            {"header": 60, "name": "destination-options", "length": 8},
        ])
    );
}
