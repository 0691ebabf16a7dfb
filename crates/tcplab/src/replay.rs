//! `tcplab replay FILE`: the timeline and ladder of any pcap or pcapng file — one from
//! tcpdump on another machine, Wireshark, or `tcplab capture -w` — with both endpoints'
//! states inferred from the segments by the RFC 9293 rules and marked as inferred.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use tcplab_core::pcap::Reader;
use tcplab_core::timeline::{self, Connection, Item, Role};

use crate::exit::{self, Failure};
use crate::view::ViewArgs;

/// Command-line arguments of `tcplab replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A pcap or pcapng file.
    pub file: PathBuf,
    /// Which connection to show (numbers as listed), or `all`. A file with several
    /// connections is listed when this is not given.
    #[arg(long, value_name = "N|all")]
    pub conn: Option<String>,
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
    let mut frames = Vec::new();
    let mut damage = None;
    while let Some(record) = reader.next_record() {
        match record {
            Ok(r) => frames.push((r.ts_ns, r.linktype, r.data)),
            Err(e) => {
                damage = Some(e);
                break;
            }
        }
    }
    let segments: Vec<timeline::Segment> = frames
        .iter()
        .filter_map(|&(ts, linktype, data)| {
            timeline::Segment::from_packet(ts, &tcplab_core::wire::decode(linktype, data))
        })
        .collect();
    let conns = timeline::infer(&segments);

    let mut stdout = std::io::stdout().lock();
    if let Some(e) = &damage {
        // What comes before the damage is still shown.
        eprintln!(
            "tcplab: {}: {e}; showing the {} packets before it",
            args.file.display(),
            frames.len()
        );
    }
    if conns.is_empty() {
        return Err(Failure::new(
            exit::FAILURE,
            format!(
                "{}: no TCP segments in {} packets",
                args.file.display(),
                frames.len()
            ),
        )
        .into());
    }
    let chosen: Vec<Connection> = match args.conn.as_deref() {
        None if conns.len() == 1 => conns,
        None => {
            writeln!(
                stdout,
                "{} connections in {} (show one with --conn N, or --conn all):",
                conns.len(),
                args.file.display()
            )?;
            for (i, c) in conns.iter().enumerate() {
                writeln!(stdout, "{:>4}  {}", i + 1, summary(c))?;
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
    if args.view.ladder() {
        writeln!(
            stdout,
            "{title}: states inferred from the segments (marked *), no kernel events\n"
        )?;
    }
    args.view.print(&mut stdout, &chosen)?;
    Ok(ExitCode::SUCCESS)
}

/// One line about a connection: endpoints, segments, each side's path.
fn summary(c: &Connection) -> String {
    let segments = c
        .entries
        .iter()
        .filter(|e| matches!(e.item, Item::Segment(_)))
        .count();
    let path = |role| {
        let p: Vec<&str> = c.path(role).iter().map(|s| s.name()).collect();
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
