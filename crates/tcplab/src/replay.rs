//! `tcplab replay FILE`: the timeline and ladder of any pcap or pcapng file — one from
//! tcpdump on another machine, Wireshark, or `tcplab capture -w` — with both endpoints'
//! states inferred from the segments by the RFC 9293 rules and marked as inferred.
//! `--pcapng FILE` writes the file's packets back with those states as comments.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tcplab_core::pcap::{PacketDirection, Reader};
use tcplab_core::render::ladder;
use tcplab_core::timeline::{self, Connection, Item, Role};

use crate::annotate::{self, Interface, Packet};
use crate::exit::{self, Failure};
use crate::view::ViewArgs;

/// The footnote under anything that shows inferred states.
const INFERRED: &str = "* inferred from the segments by the RFC 9293 rules (no kernel event)";

/// Command-line arguments of `tcplab replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A pcap or pcapng file.
    pub file: PathBuf,
    /// Which connection to show (numbers as listed), or `all`. A file with several
    /// connections is listed when this is not given.
    #[arg(long, value_name = "N|all")]
    pub conn: Option<String>,
    /// Also write the file's packets to FILE (pcapng), each with a comment naming the
    /// state changes inferred from it (marked inferred), as `lab --pcapng` does with the
    /// kernel's.
    #[arg(long, value_name = "FILE")]
    pub pcapng: Option<PathBuf>,
    /// How to show the timeline.
    #[command(flatten)]
    pub view: ViewArgs,
}

/// `tcplab replay`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let mut reader =
        Reader::new(&bytes).with_context(|| format!("reading {}", args.file.display()))?;
    let mut records = Vec::new();
    let mut damage = None;
    while let Some(record) = reader.next_record() {
        match record {
            Ok(r) => records.push(r),
            Err(e) => {
                damage = Some(e);
                break;
            }
        }
    }
    let segments: Vec<timeline::Segment> = records
        .iter()
        .filter_map(|r| {
            timeline::Segment::from_packet(r.ts_ns, &tcplab_core::wire::decode(r.linktype, r.data))
        })
        .collect();
    let conns = timeline::infer(&segments);

    let mut stdout = std::io::stdout().lock();
    if let Some(e) = &damage {
        // What comes before the damage is still shown.
        eprintln!(
            "tcplab: {}: {e}; showing the {} packets before it",
            args.file.display(),
            records.len()
        );
    }
    if conns.is_empty() {
        return Err(Failure::new(
            exit::FAILURE,
            format!(
                "{}: no TCP segments in {} packets",
                args.file.display(),
                records.len()
            ),
        )
        .into());
    }
    let chosen: Vec<Connection> = match args.conn.as_deref() {
        None if conns.len() == 1 => conns,
        // A program gets every connection, in one document.
        None if args.view.json => conns,
        None => {
            if let Some(path) = &args.pcapng {
                write_pcapng(path, &records, &conns)?;
            }
            writeln!(
                stdout,
                "{} connections in {} (show one with --conn N, or --conn all):",
                conns.len(),
                args.file.display()
            )?;
            for (i, c) in conns.iter().enumerate() {
                writeln!(stdout, "{:>4}  {}", i + 1, summary(c))?;
            }
            if conns.iter().any(any_inferred) {
                writeln!(stdout, "{INFERRED}")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some("all") => conns,
        Some(n) => {
            let index: usize = n
                .parse()
                .ok()
                .filter(|&i| i >= 1 && i <= conns.len())
                .ok_or_else(|| {
                    Failure::new(
                        exit::USAGE,
                        format!(
                            "--conn {n}: expected a number from 1 to {} or 'all'",
                            conns.len()
                        ),
                    )
                })?;
            vec![conns[index - 1].clone()]
        }
    };
    let title = format!("tcplab replay {}", args.file.display());
    if let [one] = chosen.as_slice() {
        args.view.write_files(&title, one)?;
    } else if args.view.svg.is_some() || args.view.html.is_some() {
        anyhow::bail!("--svg and --html draw one connection: choose it with --conn N");
    }
    if let Some(path) = &args.pcapng {
        write_pcapng(path, &records, &chosen)?;
    }
    if args.view.ladder() {
        let note =
            format!("{title}: states inferred from the segments (marked *), no kernel events");
        writeln!(stdout, "{}", ladder::paragraph(&note, args.view.width(), 4))?;
    }
    args.view.print(&mut stdout, &chosen)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the file's packets to `path` with the comments of `conns`.
fn write_pcapng(
    path: &std::path::Path,
    records: &[tcplab_core::pcap::Record<'_>],
    conns: &[Connection],
) -> anyhow::Result<()> {
    let linktype = records.first().map_or(1, |r| r.linktype);
    if records.iter().any(|r| r.linktype != linktype) {
        anyhow::bail!(
            "--pcapng {}: the packets have several link types; the annotated file has one \
             interface",
            path.display()
        );
    }
    let iface = Interface {
        linktype,
        name: "tcplab replay".into(),
        stats: None,
    };
    let packets = records.iter().map(|r| Packet {
        ts_ns: r.ts_ns,
        timeline_ns: r.ts_ns,
        data: r.data,
        orig_len: r.orig_len,
        direction: r.flags.and_then(PacketDirection::from_epb_flags),
        comment: r.comment.and_then(|c| std::str::from_utf8(c).ok()),
    });
    annotate::write_pcapng(path, &iface, packets, conns)
}

/// True when some state of `c` was inferred.
fn any_inferred(c: &Connection) -> bool {
    c.entries
        .iter()
        .any(|e| matches!(&e.item, Item::State(s) if s.inferred))
}

/// One line about a connection: endpoints, segments, each side's path, each inferred
/// state marked `*` as in the ladder.
fn summary(c: &Connection) -> String {
    let segments = c
        .entries
        .iter()
        .filter(|e| matches!(e.item, Item::Segment(_)))
        .count();
    let path = |role| {
        let mut p: Vec<String> = Vec::new();
        for e in &c.entries {
            if let Item::State(s) = &e.item {
                if s.role != role {
                    continue;
                }
                let mark = if s.inferred { "*" } else { "" };
                if p.is_empty() {
                    if let Some(from) = s.from {
                        p.push(format!("{from}{mark}"));
                    }
                }
                p.push(format!("{}{mark}", s.to));
            }
        }
        if p.is_empty() {
            "-".to_string()
        } else {
            p.join("→")
        }
    };
    format!(
        "{} → {}  {segments} segments  client {}  server {}",
        c.client,
        c.server,
        path(Role::Client),
        path(Role::Server)
    )
}
