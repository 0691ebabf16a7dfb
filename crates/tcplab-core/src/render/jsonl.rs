//! JSON Lines: one object per packet, every decoded field, both absolute and
//! Wireshark-relative sequence numbers. Field names are a stable interface.

use serde_json::{json, Map, Value};

use super::{Frame, Numbers};
use crate::wire::tcp::{tcpdump_flags, TcpOption};
use crate::wire::{Ip, Packet};

fn option(opt: TcpOption<'_>, sack_base: u32) -> Value {
    match opt {
        TcpOption::Eol => json!({"kind": 0, "name": "eol"}),
        TcpOption::Nop => json!({"kind": 1, "name": "nop"}),
        TcpOption::Mss(v) => json!({"kind": 2, "name": "mss", "value": v}),
        TcpOption::WindowScale(v) => json!({"kind": 3, "name": "wscale", "value": v}),
        TcpOption::SackPermitted => json!({"kind": 4, "name": "sackOK"}),
        TcpOption::Sack(b) => json!({
            "kind": 5, "name": "sack",
            "blocks": b.iter().map(|(l, r)| [l, r]).collect::<Vec<_>>(),
            "relative_blocks": b.iter()
                .map(|(l, r)| [l.wrapping_sub(sack_base), r.wrapping_sub(sack_base)])
                .collect::<Vec<_>>(),
        }),
        TcpOption::Timestamps { val, ecr } => {
            json!({"kind": 8, "name": "TS", "val": val, "ecr": ecr})
        }
        TcpOption::FastOpen(c) => json!({"kind": 34, "name": "tfo", "cookie": hex(c)}),
        TcpOption::Unknown { kind, data } => {
            json!({"kind": kind, "name": format!("opt-{kind}"), "data": hex(data)})
        }
        TcpOption::Truncated { kind } => json!({"kind": kind, "name": "truncated"}),
        TcpOption::Malformed { kind, offset } => {
            json!({"kind": kind, "name": "malformed", "offset": offset})
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|v| format!("{v:02x}")).collect()
}

/// Appends one JSON object and a newline.
pub(crate) fn write(
    frame: &Frame<'_>,
    pkt: &Packet<'_>,
    numbers: Option<&Numbers>,
    index: u64,
    out: &mut Vec<u8>,
) {
    let mut m = Map::new();
    m.insert("n".into(), json!(index));
    m.insert("ts_ns".into(), json!(frame.ts_ns));
    m.insert("caplen".into(), json!(frame.data.len()));
    m.insert("len".into(), json!(frame.orig_len));
    if let Some(d) = frame.direction {
        m.insert("direction".into(), json!(d));
    }
    if let Some(c) = frame.comment {
        m.insert("comment".into(), json!(String::from_utf8_lossy(c)));
    }
    if let Some(e) = pkt.ethertype {
        m.insert("ethertype".into(), json!(e));
    }
    if let Some(ip) = &pkt.ip {
        m.insert(
            "ip".into(),
            json!(match ip {
                Ip::V4(_) => 4,
                Ip::V6(_) => 6,
            }),
        );
        m.insert("src".into(), json!(ip.src().to_string()));
        m.insert("dst".into(), json!(ip.dst().to_string()));
        if let Some(p) = ip.protocol() {
            m.insert("protocol".into(), json!(p));
        }
        if ip.is_fragment() {
            m.insert("fragment".into(), json!(true));
        }
        match ip {
            Ip::V4(h) => {
                m.insert("ttl".into(), json!(h.ttl));
                m.insert("ip_id".into(), json!(h.id));
            }
            Ip::V6(h) => {
                m.insert("hop_limit".into(), json!(h.hop_limit));
                m.insert("flow_label".into(), json!(h.flow_label));
                if h.ext_count > 0 {
                    let ip6 = pkt.frame.get(pkt.net_offset.unwrap_or(0)..).unwrap_or(&[]);
                    let list: Vec<Value> = crate::wire::ip::extension_headers(ip6, h)
                        .into_iter()
                        .map(|(kind, hdr)| extension(kind, hdr))
                        .collect();
                    m.insert("ipv6_extensions".into(), Value::Array(list));
                }
            }
        }
    }
    if let (Some(t), Some(n)) = (&pkt.tcp, numbers) {
        let mut flags = Vec::with_capacity(4);
        tcpdump_flags(t.flags, &mut flags);
        m.insert("sport".into(), json!(t.src_port));
        m.insert("dport".into(), json!(t.dst_port));
        m.insert("flags".into(), json!(String::from_utf8_lossy(&flags)));
        m.insert("flags_raw".into(), json!(t.flags));
        m.insert("seq".into(), json!(t.seq));
        m.insert("ack".into(), json!(t.ack));
        m.insert("relative_seq".into(), json!(n.wireshark.seq));
        m.insert("relative_ack".into(), json!(n.wireshark.ack));
        m.insert("window".into(), json!(t.window));
        m.insert("payload_len".into(), json!(pkt.payload_len));
        let opts: Vec<Value> = t
            .options()
            .map(|o| option(o, n.wireshark.sack_base))
            .collect();
        m.insert("options".into(), Value::Array(opts));
    }
    if let Some(t) = pkt.truncated {
        m.insert(
            "truncated".into(),
            json!({"layer": t.layer, "offset": t.offset, "needed": t.needed}),
        );
    }
    // Serialising a map of plain values cannot fail.
    let _ = serde_json::to_writer(&mut *out, &Value::Object(m));
    out.push(b'\n');
}

/// One IPv6 extension header: its kind and name, length, and the fields that say
/// where the packet goes (routing) or which piece of it this is (fragment).
fn extension(kind: u8, hdr: &[u8]) -> Value {
    let name = match kind {
        0 => "hop-by-hop",
        43 => "routing",
        44 => "fragment",
        51 => "ah",
        60 => "destination-options",
        135 => "mobility",
        139 => "hip",
        140 => "shim6",
        _ => "unknown",
    };
    let mut e = serde_json::Map::new();
    e.insert("header".into(), json!(kind));
    e.insert("name".into(), json!(name));
    e.insert("length".into(), json!(hdr.len()));
    let be16 = |at: usize| {
        hdr.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match kind {
        44 => {
            if let (Some(fo), Some(id)) = (be16(2), hdr.get(4..8)) {
                e.insert("offset".into(), json!(fo & 0xfff8));
                e.insert("more".into(), json!(fo & 1 != 0));
                e.insert(
                    "id".into(),
                    json!(u32::from_be_bytes([id[0], id[1], id[2], id[3]])),
                );
            }
        }
        43 => {
            if let (Some(t), Some(left)) = (hdr.get(2), hdr.get(3)) {
                e.insert("routing_type".into(), json!(t));
                e.insert("segments_left".into(), json!(left));
            }
        }
        _ => {}
    }
    Value::Object(e)
}
