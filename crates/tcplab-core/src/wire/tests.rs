use super::*;
use proptest::prelude::*;

/// A SYN on `lo`: Ethernet (zero MACs), IPv4, TCP with MSS, SACK-permitted,
/// timestamps, NOP, window scale (captured by scripts/make-fixtures.sh).
static SYN: [u8; 74] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, // Ethernet
    0x45, 0x00, 0x00, 0x3c, 0xa6, 0x02, 0x40, 0x00, 0x40, 0x06, 0x96, 0xb7, 127, 0, 0, 1, 127, 0,
    0, 1, // IPv4
    0x84, 0x5a, 0xee, 0x49, 0x70, 0xd3, 0xee, 0xec, 0, 0, 0, 0, 0xa0, 0x02, 0xff, 0xd7, 0xfe, 0x30,
    0, 0, // TCP
    0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0xcb, 0x7c, 0x5d, 0x2c, 0, 0, 0, 0, 0x01, 0x03,
    0x03, 0x0a,
];

#[test]
fn syn_on_lo_decodes_every_field() {
    let p = decode(LINKTYPE_ETHERNET, &SYN);
    assert_eq!(p.truncated, None);
    let Some(Ip::V4(ip)) = p.ip else {
        panic!("no IPv4")
    };
    assert_eq!((ip.ttl, ip.id, ip.dont_fragment), (64, 0xa602, true));
    let t = p.tcp.unwrap();
    assert_eq!((t.src_port, t.dst_port), (33882, 61001));
    assert_eq!(t.seq, 1_892_937_452);
    assert_eq!(t.flags, tcp::SYN);
    assert_eq!(t.window, 65495);
    let opts: Vec<_> = t.options().collect();
    assert_eq!(
        opts,
        vec![
            TcpOption::Mss(65495),
            TcpOption::SackPermitted,
            TcpOption::Timestamps {
                val: 3_413_925_164,
                ecr: 0
            },
            TcpOption::Nop,
            TcpOption::WindowScale(10),
        ]
    );
    assert_eq!(p.payload_len, 0);
}

#[test]
fn unknown_option_keeps_the_ones_after_it() {
    let raw = [0xfd, 0x04, 0xab, 0xcd, 0x02, 0x04, 0x05, 0xb4];
    let mut frame = SYN[..54].to_vec();
    frame[46] = 0x70; // data offset 7 words: 20 + 8 option bytes
    frame.extend_from_slice(&raw);
    frame[16..18].copy_from_slice(&48u16.to_be_bytes());
    let p = decode(LINKTYPE_ETHERNET, &frame);
    let opts: Vec<_> = p.tcp.unwrap().options().collect();
    assert_eq!(
        opts,
        vec![
            TcpOption::Unknown {
                kind: 0xfd,
                data: &[0xab, 0xcd]
            },
            TcpOption::Mss(1460)
        ]
    );
}

#[test]
fn truncated_frames_say_which_layer_and_where() {
    for (len, layer) in [
        (10, Layer::Link),
        (20, Layer::Ipv4),
        (40, Layer::Tcp),
        (60, Layer::TcpOptions),
    ] {
        let p = decode(LINKTYPE_ETHERNET, &SYN[..len]);
        let t = p
            .truncated
            .unwrap_or_else(|| panic!("{len}: not truncated"));
        assert_eq!((t.layer, t.offset), (layer, len), "{len}");
    }
    // Options cut: the fixed header and the complete options are still there.
    let p = decode(LINKTYPE_ETHERNET, &SYN[..62]);
    let t = p.tcp.unwrap();
    assert_eq!(t.seq, 1_892_937_452);
    let opts: Vec<_> = t.options().collect();
    assert_eq!(opts[0], TcpOption::Mss(65495));
    assert!(matches!(opts.last(), Some(TcpOption::Truncated { .. })));
}

#[test]
fn malformed_option_length_ends_the_list_without_panicking() {
    let mut frame = SYN.to_vec();
    frame[55] = 0x30; // MSS claims 48 bytes
    let opts: Vec<_> = decode(LINKTYPE_ETHERNET, &frame)
        .tcp
        .unwrap()
        .options()
        .collect();
    assert_eq!(opts, vec![TcpOption::Malformed { kind: 2, offset: 0 }]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        linktype in prop::sample::select(vec![0u32, 1, 101, 113, 228, 229, 276, 9999]),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let p = decode(linktype, &bytes);
        if let Some(t) = &p.tcp {
            let _ = t.options().count();
        }
        let mut out = Vec::new();
        let mut r = crate::render::Renderer::new(crate::render::ViewOptions {
            verbose: true,
            dump: crate::render::Dump::HexLink,
            ..Default::default()
        });
        let frame = crate::render::Frame {
            ts_ns: 0, linktype, data: &bytes, orig_len: bytes.len() as u32, direction: None,
            comment: None,
        };
        r.render(&frame, &mut out);
        let mut j = crate::render::Renderer::new(crate::render::ViewOptions {
            json: true,
            ..Default::default()
        });
        j.render(&frame, &mut out);
    }

    #[test]
    fn mutated_real_frames_never_panic(
        flips in prop::collection::vec((0usize..74, any::<u8>()), 1..8),
        cut in 0usize..=74,
    ) {
        let mut frame = SYN.to_vec();
        for (at, v) in flips {
            frame[at] = v;
        }
        frame.truncate(cut);
        let p = decode(LINKTYPE_ETHERNET, &frame);
        if let Some(t) = &p.tcp {
            let _ = t.options().count();
        }
        let _ = crate::render::tcp_checksum_status(&p);
    }
}
