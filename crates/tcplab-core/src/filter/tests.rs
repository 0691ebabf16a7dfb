use super::*;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

#[track_caller]
fn err_at(s: &str, column: usize) {
    let e = parse(&words(s)).unwrap_err();
    assert_eq!(e.column, column, "{s}: {e}");
}

#[test]
fn errors_name_the_column() {
    err_at("port", 5);
    err_at("port 99999", 6);
    err_at("tcp and (port 80", 17);
    err_at("host 1.2.3", 6);
    err_at("port 80 frob", 9);
    err_at("tcp or", 7);
    // One word holding the whole filter (quoted on the command line).
    let e = parse(&["tcp and (port".to_string(), "x)".to_string()]).unwrap_err();
    assert_eq!(e.column, 15, "{e}");
    assert!(parse(&["src port 80 or dst port 81".to_string()]).is_ok());
}

/// Ethernet + IPv4 + TCP 33882 -> 61001 (the SYN of the handshake fixture).
const SYN4: [u8; 54] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0x00, 0x00, 0x28, 0xa6, 0x02, 0x40, 0x00,
    0x40, 0x06, 0x96, 0xb7, 127, 0, 0, 1, 127, 0, 0, 2, 0x84, 0x5a, 0xee, 0x49, 0, 0, 0, 0, 0, 0,
    0, 0, 0x50, 0x02, 0xff, 0xd7, 0, 0, 0, 0,
];

fn matches(filter: &str, frame: &[u8], protocol: u16, net_offset: u32) -> bool {
    let e = parse(&words(filter)).unwrap();
    let p = Program::compile(
        e.as_ref(),
        CompileOptions {
            net_offset,
            drop_outgoing_on: None,
            snaplen: 262_144,
        },
    )
    .unwrap();
    p.run(
        frame,
        Ancillary {
            protocol,
            ..Ancillary::default()
        },
    ) != 0
}

#[test]
fn programs_select_what_the_words_say() {
    let eth = |f: &str| matches(f, &SYN4, 0x0800, 14);
    let cooked = |f: &str| matches(f, &SYN4[14..], 0x0800, 0);
    for f in [
        "",
        "tcp",
        "ip",
        "port 61001",
        "port 33882",
        "src port 33882",
        "dst port 61001",
        "tcp port 61001",
        "host 127.0.0.1",
        "src host 127.0.0.1",
        "dst host 127.0.0.2",
        "not udp",
        "ip6 or (tcp and port 61001)",
        "not (port 1 or port 2)",
    ] {
        assert!(eth(f), "ethernet: {f}");
        assert!(cooked(f), "cooked: {f}");
    }
    for f in [
        "udp",
        "ip6",
        "port 80",
        "src port 61001",
        "dst port 33882",
        "udp port 61001",
        "host 10.0.0.1",
        "dst host 127.0.0.1",
        "not tcp",
        "tcp and not port 61001",
        "host ::1",
    ] {
        assert!(!eth(f), "ethernet: {f}");
        assert!(!cooked(f), "cooked: {f}");
    }
}

#[test]
fn ipv6_hosts_and_ports() {
    let mut f = vec![0u8; 14 + 40 + 20];
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14] = 0x60;
    f[14 + 6] = 6;
    f[14 + 8 + 15] = 1; // src ::1
    f[14 + 24..14 + 40].copy_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    f[54..56].copy_from_slice(&40000u16.to_be_bytes());
    f[56..58].copy_from_slice(&61001u16.to_be_bytes());
    for yes in [
        "ip6",
        "tcp",
        "host ::1",
        "dst host 2001:db8::2",
        "src port 40000",
        "port 61001",
    ] {
        assert!(matches(yes, &f, 0x86dd, 14), "{yes}");
    }
    for no in ["ip", "src host 2001:db8::2", "host 127.0.0.1", "port 80"] {
        assert!(!matches(no, &f, 0x86dd, 14), "{no}");
    }
}

#[test]
fn any_device_program_drops_outgoing_copies_on_loopback_only() {
    let p = Program::compile(
        None,
        CompileOptions {
            net_offset: 0,
            drop_outgoing_on: Some(1),
            snaplen: 100,
        },
    )
    .unwrap();
    let anc = |pkttype, ifindex| Ancillary {
        protocol: 0x0800,
        pkttype,
        ifindex,
    };
    assert_eq!(p.run(&SYN4, anc(4, 1)), 0);
    assert_eq!(p.run(&SYN4, anc(0, 1)), 100);
    assert_eq!(p.run(&SYN4, anc(4, 2)), 100);
}

/// SYN4 with its destination port (and the IP and TCP checksums left as they are:
/// the program does not look at them) set to `port`.
fn syn4_to(port: u16) -> [u8; 54] {
    let mut f = SYN4;
    f[36..38].copy_from_slice(&port.to_be_bytes());
    f
}

fn compile_words(filter: &str) -> Result<Program, FilterError> {
    let e = parse(&words(filter)).unwrap();
    Program::compile(
        e.as_ref(),
        CompileOptions {
            net_offset: 14,
            drop_outgoing_on: None,
            snaplen: 262_144,
        },
    )
}

fn ors(terms: impl Iterator<Item = String>) -> String {
    terms.collect::<Vec<_>>().join(" or ")
}

/// Regression (issue 5 audit): `port 1 or ... or port 14` failed with "a jump
/// exceeds 255 instructions"; tcpdump takes hundreds of terms. Far jumps now go
/// through `BPF_JA` trampolines.
#[test]
fn a_hundred_or_port_terms_compile_and_select_exactly_their_ports() {
    let filter = ors((1..=100).map(|n| format!("port {}", 1000 + n)));
    let p = compile_words(&filter).unwrap();
    assert!(p.insns.len() > 256, "long enough to need trampolines");
    assert!(p.insns.len() <= MAX_INSNS);
    let anc = Ancillary {
        protocol: 0x0800,
        ..Ancillary::default()
    };
    for port in 990..1110u16 {
        let selected = p.run(&syn4_to(port), anc) != 0;
        assert_eq!(selected, (1001..=1100).contains(&port), "port {port}");
    }
    // The source port (33882) is in no term.
    assert_eq!(p.run(&SYN4, anc), 0);
}

#[test]
fn long_filters_with_and_not_and_hosts_still_select_what_the_words_say() {
    // Every term far from the accept/reject returns, in both branches.
    let hosts = ors((1..=60).map(|n| format!("host 10.0.0.{n}")));
    let anc = Ancillary {
        protocol: 0x0800,
        ..Ancillary::default()
    };
    let yes = format!(
        "not ({hosts}) and (port 7 or port 61001) and not ({})",
        ors((1..=40).map(|n| format!("port {n}")))
    );
    let no = format!("({hosts}) or not port 61001");
    assert_ne!(compile_words(&yes).unwrap().run(&SYN4, anc), 0, "{yes}");
    assert_eq!(compile_words(&no).unwrap().run(&SYN4, anc), 0, "{no}");
}

#[test]
fn a_filter_past_the_kernel_limit_names_the_term_where_it_passes() {
    let terms: Vec<String> = (1..=400).map(|n| format!("port {n}")).collect();
    let filter = terms.join(" or ");
    let err = compile_words(&filter).unwrap_err();
    assert!(
        err.message.contains("more than the kernel's limit of 4096"),
        "{err}"
    );
    // The column is the start of a `port N` term, and not the first nor the last.
    let text = &filter[err.column - 1..];
    assert!(
        text.starts_with("port "),
        "column {}: {text:.20}",
        err.column
    );
    assert!(
        err.column > 1 && err.column < filter.rfind("port").unwrap(),
        "{err}"
    );
    // The terms before it compile: the user knows where to cut.
    let before = filter[..err.column - 1]
        .trim_end_matches(" or ")
        .to_string();
    let fits = compile_words(&before).unwrap();
    assert!(fits.insns.len() <= MAX_INSNS);
}
