//! tcpdump's `-nn` one-line view and its `-v` variant.

use std::io::Write as _;
use std::net::IpAddr;

use super::{num, tcp_checksum_status, write_time, ChecksumStatus, Frame, Numbers, ViewOptions};
use crate::wire::link::pkttype;
use crate::wire::tcp::{self, TcpHeader, TcpOption, ACK, FIN, RST, SYN, URG};
use crate::wire::{Ip, Ipv6Header, Link, Packet, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

mod ext6;

const HEX: &[u8; 16] = b"0123456789abcdef";

fn ipv4(out: &mut Vec<u8>, a: std::net::Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        num(out, o);
    }
}

fn addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => ipv4(out, v4),
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn hex16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(b"0x");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((v >> shift) & 0xf)]);
    }
}

fn pkttype_name(p: u16) -> &'static str {
    match p {
        pkttype::HOST => "In",
        pkttype::BROADCAST => "B",
        pkttype::MULTICAST => "M",
        pkttype::OTHERHOST => "P",
        pkttype::OUTGOING => "Out",
        _ => "?",
    }
}

fn padded(out: &mut Vec<u8>, s: &[u8], width: usize) {
    out.extend_from_slice(s);
    out.resize(out.len() + width.saturating_sub(s.len()), b' ');
}

/// Appends the one-line view of `pkt` (without the trailing newline).
pub(crate) fn write(
    frame: &Frame<'_>,
    pkt: &Packet<'_>,
    numbers: Option<&Numbers>,
    opts: &ViewOptions,
    ifnames: &[(u32, String)],
    out: &mut Vec<u8>,
) {
    write_time(frame.ts_ns, opts.utc_offset_secs, out);
    out.push(b' ');
    // Cooked v2 starts with interface and direction; tcpdump 4.99 prints nothing for
    // cooked v1 without -e.
    if let Link::Sll2 {
        ifindex, pkttype, ..
    } = pkt.link
    {
        let name = ifnames
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map_or("?", |(_, n)| n.as_str());
        padded(out, name.as_bytes(), 5);
        out.push(b' ');
        padded(out, pkttype_name(u16::from(pkttype)).as_bytes(), 3);
        out.push(b' ');
    }
    let Some(ethertype) = pkt.ethertype else {
        match pkt.link {
            Link::Unsupported { linktype } if pkt.truncated.is_none() => {
                let _ = write!(out, "unsupported link type {linktype}");
            }
            Link::Ethernet { .. } => out.extend_from_slice(b"[|ether]"),
            _ => out.extend_from_slice(b"[|link]"),
        }
        return;
    };
    let Some(ip) = pkt.ip.as_ref() else {
        match ethertype {
            ETHERTYPE_IPV4 => out.extend_from_slice(b"IP  [|ip]"),
            ETHERTYPE_IPV6 => out.extend_from_slice(b"IP6  [|ip6]"),
            ETHERTYPE_ARP => {
                out.extend_from_slice(b"ARP, length ");
                num(out, frame.orig_len);
            }
            _ => {
                out.extend_from_slice(b"ethertype Unknown (");
                hex16(out, ethertype);
                out.extend_from_slice(b"), length ");
                num(out, frame.orig_len);
            }
        }
        return;
    };
    match ip {
        Ip::V4(h) => {
            out.extend_from_slice(b"IP ");
            if opts.verbose {
                ipv4_verbose(h, out);
                out.extend_from_slice(b"\n    ");
            }
        }
        Ip::V6(h) => {
            out.extend_from_slice(b"IP6 ");
            if opts.verbose {
                out.push(b'(');
                if h.traffic_class != 0 {
                    let _ = write!(out, "class 0x{:02x}, ", h.traffic_class);
                }
                if h.flow_label != 0 {
                    let _ = write!(out, "flowlabel 0x{:05x}, ", h.flow_label);
                }
                let _ = write!(
                    out,
                    "hlim {}, next-header {} ({}) payload length: {}) ",
                    h.hop_limit,
                    crate::wire::ip::protocol_name(h.next_header),
                    h.next_header,
                    h.payload_len
                );
            }
        }
    }
    let is_tcp = ip.protocol() == Some(tcp::PROTOCOL) && !ip.is_later_fragment();
    match (pkt.tcp.as_ref(), numbers) {
        (Some(t), Some(n)) => {
            if endpoints(pkt, ip, Some((t.src_port, t.dst_port)), opts.verbose, out) {
                tcp_line(pkt, t, n, opts, out);
            }
        }
        _ if is_tcp => {
            // The fixed TCP header is incomplete: tcpdump shows the ports if captured.
            let ports = pkt.tcp_offset.and_then(|o| {
                let p = pkt.frame.get(o..o + 4)?;
                Some((
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                ))
            });
            if endpoints(pkt, ip, ports, opts.verbose, out) {
                out.extend_from_slice(b" [|tcp]");
            }
        }
        _ => other_l4(pkt, ip, opts.verbose, out),
    }
}

/// `src > dst: ` then the IPv6 extension headers, as tcpdump writes them before the
/// transport header. False where tcpdump stops decoding (see [`ext6::extensions`]).
fn addresses_and_extensions(
    pkt: &Packet<'_>,
    ip: &Ip<'_>,
    h: &Ipv6Header,
    verbose: bool,
    out: &mut Vec<u8>,
) -> bool {
    addr(out, ip.src());
    out.extend_from_slice(b" > ");
    addr(out, ip.dst());
    out.extend_from_slice(b": ");
    ext6::extensions(pkt, h, verbose, out)
}

/// `src.port > dst.port: ` (with IPv6 extension headers between, as tcpdump).
/// Returns false where tcpdump stops decoding the packet (see [`ext6::extensions`]).
fn endpoints(
    pkt: &Packet<'_>,
    ip: &Ip<'_>,
    ports: Option<(u16, u16)>,
    verbose: bool,
    out: &mut Vec<u8>,
) -> bool {
    if let (Ip::V6(h), Some((sp, dp))) = (ip, ports) {
        if h.ext_count > 0 {
            if !addresses_and_extensions(pkt, ip, h, verbose, out) {
                return false;
            }
            num(out, sp);
            out.extend_from_slice(b" > ");
            num(out, dp);
            out.extend_from_slice(b": ");
            return true;
        }
    }
    addr(out, ip.src());
    if let Some((sp, _)) = ports {
        out.push(b'.');
        num(out, sp);
    }
    out.extend_from_slice(b" > ");
    addr(out, ip.dst());
    if let Some((_, dp)) = ports {
        out.push(b'.');
        num(out, dp);
    }
    out.extend_from_slice(b": ");
    true
}

fn ipv4_verbose(h: &crate::wire::Ipv4Header<'_>, out: &mut Vec<u8>) {
    let _ = write!(out, "(tos 0x{:x}", h.tos);
    match h.tos & 3 {
        1 => out.extend_from_slice(b",ECT(1)"),
        2 => out.extend_from_slice(b",ECT(0)"),
        3 => out.extend_from_slice(b",CE"),
        _ => {}
    }
    let _ = write!(
        out,
        ", ttl {}, id {}, offset {}, flags [",
        h.ttl,
        h.id,
        u32::from(h.frag_offset) * 8
    );
    // tcpdump's order and separator for the fragment flags.
    let start = out.len();
    for (set, name) in [
        (h.more_fragments, &b"+"[..]),
        (h.dont_fragment, b"DF"),
        (h.reserved_flag, b"rsvd"),
    ] {
        if set {
            if out.len() > start {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(name);
        }
    }
    if out.len() == start {
        out.extend_from_slice(b"none");
    }
    let _ = write!(
        out,
        "], proto {} ({}), length {}",
        crate::wire::ip::protocol_name(h.protocol),
        h.protocol,
        h.total_len
    );
    if !h.options.is_empty() {
        out.extend_from_slice(b", options (");
        ipv4_options(h.options, out);
        out.push(b')');
    }
    out.push(b')');
}

/// IPv4 option names as tcpdump prints them (values of RR, TS and source routes are
/// not decoded: only their names).
fn ipv4_options(opts: &[u8], out: &mut Vec<u8>) {
    let mut at = 0;
    let mut first = true;
    while let Some(&kind) = opts.get(at) {
        if !first {
            out.push(b',');
        }
        first = false;
        let name: &[u8] = match kind {
            0 => b"EOL",
            1 => b"NOP",
            7 => b"RR",
            68 => b"timestamp",
            130 => b"security",
            131 => b"LSRR",
            137 => b"SSRR",
            148 => b"RA",
            _ => b"",
        };
        if name.is_empty() {
            let _ = write!(out, "unknown {kind}");
        } else {
            out.extend_from_slice(name);
        }
        if kind == 0 {
            break;
        }
        at += match (kind, opts.get(at + 1)) {
            (1, _) => 1,
            (_, Some(&len)) if len >= 2 => usize::from(len),
            _ => break,
        };
    }
}

fn other_l4(pkt: &Packet<'_>, ip: &Ip<'_>, verbose: bool, out: &mut Vec<u8>) {
    let proto = ip.protocol().unwrap_or(59);
    if let Ip::V6(h) = ip {
        // A later fragment, or a chain tcpdump cannot follow, ends after the headers.
        if h.ext_count > 0 {
            if !addresses_and_extensions(pkt, ip, h, verbose, out) {
                return;
            }
            out.extend_from_slice(b"ip-proto-");
            num(out, proto);
            out.push(b' ');
            num(out, pkt.payload_len);
            return;
        }
    }
    if proto == 17 && !ip.is_later_fragment() && pkt.payload.len() >= 8 {
        let p = pkt.payload;
        addr(out, ip.src());
        out.push(b'.');
        num(out, u16::from_be_bytes([p[0], p[1]]));
        out.extend_from_slice(b" > ");
        addr(out, ip.dst());
        out.push(b'.');
        num(out, u16::from_be_bytes([p[2], p[3]]));
        out.extend_from_slice(b": UDP, length ");
        num(out, u16::from_be_bytes([p[4], p[5]]).saturating_sub(8));
        return;
    }
    addr(out, ip.src());
    out.extend_from_slice(b" > ");
    addr(out, ip.dst());
    out.extend_from_slice(b": ip-proto-");
    num(out, proto);
    if !ip.is_fragment() {
        out.push(b' ');
        num(out, pkt.payload_len);
    }
}

fn tcp_line(
    pkt: &Packet<'_>,
    t: &TcpHeader<'_>,
    n: &Numbers,
    opts: &ViewOptions,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"Flags [");
    tcp::tcpdump_flags(t.flags, out);
    out.push(b']');
    if opts.verbose {
        match tcp_checksum_status(pkt) {
            ChecksumStatus::Correct => {
                out.extend_from_slice(b", cksum ");
                hex16(out, t.checksum);
                out.extend_from_slice(b" (correct)");
            }
            ChecksumStatus::Offloaded => {
                out.extend_from_slice(b", cksum ");
                hex16(out, t.checksum);
                out.extend_from_slice(b" (offloaded: not final when captured)");
            }
            ChecksumStatus::Incorrect { expected } => {
                out.extend_from_slice(b", cksum ");
                hex16(out, t.checksum);
                out.extend_from_slice(b" (incorrect -> ");
                hex16(out, expected);
                out.push(b')');
            }
            ChecksumStatus::Unverifiable => {}
        }
    }
    let rel = n.tcpdump;
    let len = pkt.payload_len as u32;
    if len > 0 || t.flags & (SYN | FIN | RST) != 0 {
        out.extend_from_slice(b", seq ");
        num(out, rel.seq);
        if len > 0 {
            out.push(b':');
            num(out, rel.seq.wrapping_add(len));
        }
    }
    if t.flags & ACK != 0 {
        out.extend_from_slice(b", ack ");
        num(out, rel.ack);
    }
    out.extend_from_slice(b", win ");
    num(out, t.window);
    if t.flags & URG != 0 {
        out.extend_from_slice(b", urg ");
        num(out, t.urgent);
    }
    if !t.options_raw.is_empty() {
        out.extend_from_slice(b", options [");
        for (i, opt) in t.options().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !option(opt, rel.sack_base, out) {
                return;
            }
        }
        out.push(b']');
    }
    out.extend_from_slice(b", length ");
    num(out, pkt.payload_len);
}

/// Appends one option as tcpdump prints it; false for a malformed one (tcpdump stops
/// the line there with `[bad opt]`).
pub(crate) fn option(opt: TcpOption<'_>, sack_base: u32, out: &mut Vec<u8>) -> bool {
    match opt {
        TcpOption::Eol => out.extend_from_slice(b"eol"),
        TcpOption::Nop => out.extend_from_slice(b"nop"),
        TcpOption::Mss(v) => {
            out.extend_from_slice(b"mss ");
            num(out, v);
        }
        TcpOption::WindowScale(v) => {
            out.extend_from_slice(b"wscale ");
            num(out, v);
        }
        TcpOption::SackPermitted => out.extend_from_slice(b"sackOK"),
        TcpOption::Sack(blocks) => {
            out.extend_from_slice(b"sack ");
            num(out, blocks.len());
            out.push(b' ');
            for (l, r) in blocks.iter() {
                out.push(b'{');
                num(out, l.wrapping_sub(sack_base));
                out.push(b':');
                num(out, r.wrapping_sub(sack_base));
                out.push(b'}');
            }
        }
        TcpOption::Timestamps { val, ecr } => {
            out.extend_from_slice(b"TS val ");
            num(out, val);
            out.extend_from_slice(b" ecr ");
            num(out, ecr);
        }
        // tcpdump prints two spaces after "tfo"; kept so lines compare equal.
        TcpOption::FastOpen(cookie) => {
            if cookie.is_empty() {
                out.extend_from_slice(b"tfo  cookiereq");
            } else {
                out.extend_from_slice(b"tfo  cookie ");
                for &b in cookie {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
        TcpOption::Unknown { kind, data } => {
            out.extend_from_slice(b"opt-");
            num(out, kind);
            if !data.is_empty() {
                out.extend_from_slice(b" 0x");
                for &b in data {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
        }
        TcpOption::Malformed { .. } => {
            out.extend_from_slice(b"[bad opt]]");
            return false;
        }
        TcpOption::Truncated { kind } => {
            if let Some(k) = kind {
                out.extend_from_slice(option_name(k).as_bytes());
            }
            out.extend_from_slice(b" [|tcp]");
            return false;
        }
    }
    true
}

fn option_name(kind: u8) -> &'static str {
    match kind {
        0 => "eol",
        1 => "nop",
        2 => "mss",
        3 => "wscale",
        4 => "sackOK",
        5 => "sack",
        8 => "TS",
        34 => "tfo",
        _ => "opt",
    }
}

/// Hop-by-hop options after the 2-byte header, as tcpdump's `-v` prints them.
fn hbh_options(ext: &[u8], out: &mut Vec<u8>) {
    let len = ext.get(1).map_or(0, |&l| (usize::from(l) + 1) * 8);
    let opts = ext.get(2..len).unwrap_or(&[]);
    let mut at = 0;
    while let Some(&kind) = opts.get(at) {
        if kind == 0 {
            out.extend_from_slice(b"(pad1)");
            at += 1;
            continue;
        }
        let Some(&olen) = opts.get(at + 1) else { break };
        let data = opts.get(at + 2..at + 2 + usize::from(olen)).unwrap_or(&[]);
        match kind {
            1 => out.extend_from_slice(b"(padn)"),
            5 if data.len() == 2 => {
                let _ = write!(out, "(rtalert: 0x{:02x}{:02x}) ", data[0], data[1]);
            }
            _ => {
                let _ = write!(out, "(opt_type 0x{kind:02x}: len={olen})");
            }
        }
        at += 2 + usize::from(olen);
    }
    out.push(b' ');
}
