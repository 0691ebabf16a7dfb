use super::*;

#[test]
fn time_is_hh_mm_ss_micros_with_offset() {
    let mut out = Vec::new();
    write_time(1_700_000_000_123_456_789, 0, &mut out);
    assert_eq!(out, b"22:13:20.123456");
    out.clear();
    write_time(1_700_000_000_000_000_000, 3600, &mut out);
    assert_eq!(out, b"23:13:20.000000");
    out.clear();
    write_time(0, -3600, &mut out);
    assert_eq!(out, b"23:00:00.000000");
}

#[test]
fn hex_dump_pads_short_lines_like_tcpdump() {
    let mut out = Vec::new();
    hex_and_ascii(b"hello world!!", &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "\n\t0x0000:  6865 6c6c 6f20 776f 726c 6421 21         hello.world!!"
    );
}

#[test]
fn ascii_drops_cr_before_lf_only() {
    let mut out = Vec::new();
    ascii(b"a\r\nb\rc\x01", &mut out);
    assert_eq!(out, b"\na\nb.c.");
}
