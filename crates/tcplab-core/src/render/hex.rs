//! tcpdump's `-X`/`-XX` (hex and ASCII) and `-A` (ASCII) layouts, byte for byte.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// tcpdump shows only graphic characters in the ASCII column (a space is a dot).
fn printable(b: u8) -> u8 {
    if b.is_ascii_graphic() {
        b
    } else {
        b'.'
    }
}

/// Appends tcpdump's hex dump: for every 16 bytes a line
/// `\n\t0xOOOO:  hhhh hhhh ... (padded to 40 columns)  ascii`.
pub fn hex_and_ascii(bytes: &[u8], out: &mut Vec<u8>) {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let offset = i * 16;
        out.extend_from_slice(b"\n\t0x");
        for shift in [12, 8, 4, 0] {
            out.push(HEX[(offset >> shift) & 0xf]);
        }
        out.extend_from_slice(b": ");
        let start = out.len();
        for pair in chunk.chunks(2) {
            out.push(b' ');
            for &b in pair {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        let width = out.len() - start;
        out.resize(out.len() + 40usize.saturating_sub(width), b' ');
        out.extend_from_slice(b"  ");
        out.extend(chunk.iter().map(|&b| printable(b)));
    }
}

/// Appends tcpdump's `-A` view: a newline, then every byte as itself if printable
/// (or tab, space, newline), else `.`; a CR right before a LF is dropped.
pub fn ascii(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'\n');
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' {
            if bytes.get(i + 1) != Some(&b'\n') {
                out.push(b'.');
            }
        } else if b.is_ascii_graphic() || b == b'\t' || b == b' ' || b == b'\n' {
            out.push(b);
        } else {
            out.push(b'.');
        }
    }
}
