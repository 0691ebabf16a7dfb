//! IPv6 extension headers in the one-line view, as tcpdump prints them between the
//! addresses and the upper layer: `HBH`, `DSTOPT` (with `-v`, their options),
//! `frag (OFFSET|LENGTH)`, `RT6 (len=…, type=…, segleft=…, …)`.

use std::io::Write as _;
use std::net::Ipv6Addr;

use crate::wire::ip::Ipv6Header;
use crate::wire::Packet;

/// Writes the extension headers of `h` (each followed by a space, as the upper
/// layer comes next). Returns false where tcpdump stops decoding: after a fragment
/// that is not the first (it holds no upper-layer header), or at a routing header
/// of a type it does not know.
pub(super) fn extensions(
    pkt: &Packet<'_>,
    h: &Ipv6Header,
    verbose: bool,
    out: &mut Vec<u8>,
) -> bool {
    let base = pkt.net_offset.unwrap_or(0);
    let mut at = base + 40;
    for &kind in h.extensions.iter().take(usize::from(h.ext_count)) {
        let hdr = pkt.frame.get(at..).unwrap_or(&[]);
        let len_byte = usize::from(hdr.get(1).copied().unwrap_or(0));
        match kind {
            0 | 60 => {
                out.extend_from_slice(if kind == 0 { b"HBH " } else { b"DSTOPT " });
                if verbose {
                    super::hbh_options(hdr, out);
                }
            }
            44 => {
                let fo = be16(hdr, 2).unwrap_or(0);
                let offset = fo & 0xfff8;
                // What follows the fragment header in this packet, as tcpdump counts it
                // (from the payload length, not the captured bytes).
                let rest = (40 + usize::from(h.payload_len)).saturating_sub(at - base + 8);
                if verbose {
                    let id = be32(hdr, 4).unwrap_or(0);
                    let _ = write!(out, "frag (0x{id:08x}:{offset}|{rest})");
                } else {
                    let _ = write!(out, "frag ({offset}|{rest})");
                }
                if offset != 0 {
                    return false;
                }
                out.push(b' ');
            }
            43 => {
                if !routing(hdr, verbose, out) {
                    return false;
                }
            }
            51 => out.extend_from_slice(b"AH "),
            _ => out.extend_from_slice(b"ext "),
        }
        at += match kind {
            44 => 8,
            51 => (len_byte + 2) * 4,
            _ => (len_byte + 1) * 8,
        };
    }
    true
}

/// A routing header: types 0 and 2 (addresses) and 4 (segment routing, RFC 8754).
fn routing(hdr: &[u8], verbose: bool, out: &mut Vec<u8>) -> bool {
    let (Some(&len), Some(&kind), Some(&segleft)) = (hdr.get(1), hdr.get(2), hdr.get(3)) else {
        out.extend_from_slice(b"[|srcrt]");
        return false;
    };
    let _ = write!(out, "RT6 (len={len}, type={kind}");
    let addresses = |out: &mut Vec<u8>| {
        for i in 0..usize::from(len / 2) {
            let Some(a) = hdr.get(8 + 16 * i..24 + 16 * i) else {
                out.extend_from_slice(b"[|srcrt]");
                return false;
            };
            let mut b = [0u8; 16];
            b.copy_from_slice(a);
            let _ = write!(out, ", [{i}]{}", Ipv6Addr::from(b));
        }
        true
    };
    match kind {
        0 | 2 => {
            if kind == 0 {
                out.extend_from_slice(b" [Deprecated]");
            }
            let _ = write!(out, ", segleft={segleft}");
            let rsv = be32(hdr, 4).unwrap_or(0);
            if rsv != 0 || verbose {
                let _ = write!(out, ", rsv=0x{rsv:x}");
            }
            if !addresses(out) {
                return false;
            }
        }
        4 => {
            let last = hdr.get(4).copied().unwrap_or(0);
            let flags = hdr.get(5).copied().unwrap_or(0);
            let tag = be16(hdr, 6).unwrap_or(0);
            let _ = write!(out, ", segleft={segleft}, last-entry={last}");
            if verbose {
                let _ = write!(out, ", flags=0x{flags:x}");
            }
            let _ = write!(out, ", tag={tag:x}");
            if !addresses(out) {
                return false;
            }
        }
        _ => {
            let _ = write!(out, ", segleft={segleft} (unknown type) (invalid)");
            return false;
        }
    }
    out.extend_from_slice(b") ");
    true
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
