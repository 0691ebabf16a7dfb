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

proptest! {
    #[test]
    fn arbitrary_bytes_as_a_file_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(mut r) = Reader::new(&bytes) {
            while let Some(rec) = r.next_record() {
                if rec.is_err() { break; }
            }
        }
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
        if let Ok(mut r) = Reader::new(&file) {
            while let Some(rec) = r.next_record() {
                if rec.is_err() { break; }
            }
        }
    }
}
