use super::*;
use proptest::prelude::*;

fn sample_file() -> Vec<u8> {
    let mut w = PcapngWriter::new(
        Vec::new(),
        &InterfaceDesc {
            linktype: 1,
            snaplen: 262_144,
            name: "lo".into(),
        },
    )
    .unwrap();
    w.write_packet(&OutPacket {
        ts_ns: 1_700_000_000_123_456_789,
        data: &[1, 2, 3, 4, 5],
        orig_len: 60,
        direction: Some(PacketDirection::Outbound),
        comment: Some("ESTABLISHED -> FIN-WAIT-1"),
    })
    .unwrap();
    w.write_packet(&OutPacket {
        ts_ns: 1_700_000_001_000_000_000,
        data: &[9; 8],
        orig_len: 8,
        direction: None,
        comment: None,
    })
    .unwrap();
    w.write_stats(&InterfaceStats {
        ts_ns: 1_700_000_002_000_000_000,
        start_ns: 1_700_000_000_000_000_000,
        received: 2,
        dropped: 7,
    })
    .unwrap();
    w.into_inner()
}

#[test]
fn written_pcapng_reads_back_with_ns_timestamps_flags_comment_and_drops() {
    let file = sample_file();
    let mut r = Reader::new(&file).unwrap();
    assert_eq!(r.format(), Format::Pcapng);
    let a = r.next_record().unwrap().unwrap();
    assert_eq!(a.ts_ns, 1_700_000_000_123_456_789);
    assert_eq!((a.data, a.orig_len), (&[1u8, 2, 3, 4, 5][..], 60));
    assert_eq!(
        a.flags.and_then(PacketDirection::from_epb_flags),
        Some(PacketDirection::Outbound)
    );
    assert_eq!(a.comment, Some(&b"ESTABLISHED -> FIN-WAIT-1"[..]));
    let b = r.next_record().unwrap().unwrap();
    assert_eq!((b.flags, b.comment), (None, None));
    assert!(r.next_record().is_none());
    let iface = &r.interfaces()[0];
    assert_eq!(iface.name.as_deref(), Some("lo"));
    assert_eq!((iface.received, iface.dropped), (Some(2), Some(7)));
}

#[test]
fn a_cut_file_gives_every_packet_before_the_cut_then_the_offset() {
    let file = sample_file();
    let first = {
        let mut r = Reader::new(&file).unwrap();
        r.next_record().unwrap().unwrap();
        let second = r.next_record().unwrap().unwrap();
        second.offset
    };
    let cut = &file[..first + 10];
    let mut r = Reader::new(cut).unwrap();
    assert!(r.next_record().unwrap().is_ok());
    let err = r.next_record().unwrap().unwrap_err();
    assert_eq!(err.offset, first);
    assert!(err.to_string().contains(&format!("at byte offset {first}")));
    assert!(r.next_record().is_none());
}

#[test]
fn not_a_capture_file_is_an_error_at_offset_zero() {
    let err = Reader::new(b"hello world, not a pcap").unwrap_err();
    assert_eq!(err.offset, 0);
}

/// A pcapng block: type, total length, body, total length again (little-endian).
fn block(btype: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut b = btype.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A section header then an Ethernet interface with an unlimited snap length.
fn section_and_interface() -> Vec<u8> {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]); // version 1.0
    shb.extend_from_slice(&[0xff; 8]); // section length unknown
    let mut f = block(0x0a0d_0d0a, &shb);
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 0, 0]));
    f
}

/// One block of every kind the reader knows, and some it does not: the file the
/// mutation tests start from (the writer never writes SPB, NRB or DSB).
fn every_block_file() -> Vec<u8> {
    let mut f = section_and_interface();
    // EPB: interface 0, timestamp, 4 captured of 60, data, epb_flags, end of options.
    let mut epb = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 60, 0, 0, 0];
    epb.extend_from_slice(&[1, 2, 3, 4, 2, 0, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    f.extend(block(6, &epb));
    f.extend(block(3, &[6, 0, 0, 0, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0, 0]));
    f.extend(block(
        4,
        &[1, 0, 4, 0, 192, 0, 2, 1, b'h', 0, 0, 0, 0, 0, 0, 0],
    ));
    f.extend(block(
        5,
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0, 8, 0, 7, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    f.extend(block(0xa, &[0, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]));
    f.extend(block(0xbad, &[0, 0, 0, 0, 1, 2, 3, 4]));
    f.extend(block(0x4000_0bad, &[0x1f, 0x27, 0, 0, 1, 2, 3, 4]));
    f
}

/// Offsets of the blocks of a well-formed little-endian pcapng file.
fn block_offsets(file: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut offsets = Vec::new();
    while let Some(len) = file.get(at + 4..at + 8) {
        offsets.push(at);
        at += u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    }
    offsets
}

/// Reads a file to its end or first error; returns the packets read and the error.
/// Checks on the way that each packet's bytes lie inside its own block or record:
/// in a release build an unchecked subtraction wraps instead of panicking, and the
/// slice it gives may still be in the file, past the block.
fn read_all(file: &[u8]) -> (usize, Option<PcapError>) {
    let mut r = match Reader::new(file) {
        Ok(r) => r,
        Err(e) => return (0, Some(e)),
    };
    let mut n = 0;
    while let Some(rec) = r.next_record() {
        match rec {
            Ok(rec) => {
                let start = rec.data.as_ptr() as usize - file.as_ptr() as usize;
                let end = start + rec.data.len();
                assert!(
                    rec.offset < start && end <= r.position(),
                    "packet bytes {start}..{end} outside its block {}..{}",
                    rec.offset,
                    r.position()
                );
                n += 1;
            }
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

#[test]
fn every_block_file_reads_its_two_packets() {
    let file = every_block_file();
    let mut r = Reader::new(&file).unwrap();
    let epb = r.next_record().unwrap().unwrap();
    assert_eq!(
        (epb.data, epb.orig_len, epb.flags),
        (&[1u8, 2, 3, 4][..], 60, Some(2))
    );
    let spb = r.next_record().unwrap().unwrap();
    assert_eq!(
        (spb.data, spb.orig_len),
        (&[0xau8, 0xb, 0xc, 0xd, 0xe, 0xf][..], 6)
    );
    assert!(r.next_record().is_none());
    assert_eq!(r.interfaces()[0].dropped, Some(7));
}

/// Regression (issue 5 audit): a 12-byte simple packet block, whose body cannot hold
/// its original-length field, made the reader subtract past zero and panic.
#[test]
fn a_12_byte_simple_packet_block_is_an_error_at_its_offset() {
    let mut file = section_and_interface();
    file.extend(block(6, &[0; 20]));
    let spb_at = file.len();
    file.extend(block(3, &[]));
    let (packets, err) = read_all(&file);
    assert_eq!(packets, 1, "the packet before the bad block is still read");
    let err = err.expect("an error");
    assert_eq!(err.offset, spb_at);
    assert_eq!(
        err.to_string(),
        format!(
            "at byte offset {spb_at}: simple packet block of 12 bytes is too short (at least 16)"
        )
    );
}

/// Every block kind at every short length: fixed fields that the body does not
/// hold are an error (packet blocks) or ignored (the others), never read from the
/// trailing length or the next block.
#[test]
fn every_block_kind_at_every_short_length_never_panics_nor_reads_past_its_body() {
    for btype in [1u32, 2, 3, 4, 5, 6, 0xa, 0xbad, 0x4000_0bad] {
        for body_len in (0..=28).step_by(4) {
            let mut file = section_and_interface();
            let at = file.len();
            // 0xff bytes: a field read from the body would be huge; reading past it
            // would give the trailing length instead.
            file.extend(block(btype, &vec![0xff; body_len]));
            let (_, err) = read_all(&file);
            if let Some(err) = err {
                assert_eq!(err.offset, at, "block type {btype}, body {body_len}: {err}");
            }
        }
    }
}

proptest! {
    // More cases than the default 256: a bad block is found only when every block
    // before it reads cleanly.
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_as_a_file_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_all(&bytes);
    }

    #[test]
    fn mutated_files_never_panic(
        flips in prop::collection::vec((0usize..200, any::<u8>()), 1..10),
        cut in 0usize..400,
        classic in any::<bool>(),
    ) {
        let mut file = if classic {
            let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0];
            for i in 0..4u8 {
                f.extend_from_slice(&[i, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
            }
            f
        } else {
            sample_file()
        };
        for (at, v) in flips {
            if at < file.len() { file[at] = v; }
        }
        file.truncate(cut.min(file.len()));
        let _ = read_all(&file);
    }

    /// Structurally valid blocks (matching leading and trailing lengths) of every
    /// type the reader knows and some it does not, with short, odd and arbitrary
    /// bodies: random bytes alone almost never get past the section header.
    #[test]
    fn structurally_valid_blocks_with_arbitrary_bodies_never_panic(
        blocks in prop::collection::vec(
            (
                prop::sample::select(vec![0x0a0d_0d0au32, 1, 2, 3, 4, 5, 6, 0xa, 0xbad, 0x4000_0bad, 0]),
                // Empty or short bodies (shorter than the fixed fields) often.
                prop_oneof![Just(0usize), 1usize..=8, 0usize..48].prop_flat_map(|n| {
                    prop::collection::vec(
                        prop_oneof![Just(0u8), Just(0xff), Just(4), Just(8), any::<u8>()],
                        n,
                    )
                }),
                // Mostly padded: a length not a multiple of 4 ends the file at once.
                prop::bool::weighted(0.9),
            ),
            0..8,
        ),
        big_endian_section in any::<bool>(),
    ) {
        let mut file = section_and_interface();
        if big_endian_section {
            // Byte-swap the section's fixed words: same structure, other byte order.
            for w in file.chunks_exact_mut(4) { w.reverse(); }
        }
        for (btype, mut body, align) in blocks {
            if align { body.resize(body.len().div_ceil(4) * 4, 0); }
            let mut b = block(btype, &body);
            if big_endian_section {
                let len = b.len();
                b[..8].chunks_exact_mut(4).for_each(|w| w.reverse());
                b[len - 4..].reverse();
            }
            file.extend(b);
        }
        let _ = read_all(&file);
    }

    /// Fixture files and a file with every block kind, with a block's length set to
    /// a short value (both copies, so the block still looks valid) and bytes flipped.
    #[test]
    fn fixture_files_with_shortened_blocks_and_flipped_bytes_never_panic(
        which in 0usize..3,
        shorten in prop::option::of((any::<prop::sample::Index>(), 0u32..10)),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut file = match which {
            0 => every_block_file(),
            1 => include_bytes!("../../tests/fixtures/handshake6.pcapng").to_vec(),
            _ => sample_file(),
        };
        if let Some((block, words)) = shorten {
            let offsets = block_offsets(&file);
            let at = offsets[block.index(offsets.len())];
            let len = 12 + 4 * words;
            if at + len as usize <= file.len() {
                file[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
                let end = at + len as usize;
                file[end - 4..end].copy_from_slice(&len.to_le_bytes());
            }
        }
        for (at, v) in flips {
            let at = at.index(file.len());
            file[at] = v;
        }
        file.truncate(cut.index(file.len() + 1));
        let _ = read_all(&file);
    }
}
