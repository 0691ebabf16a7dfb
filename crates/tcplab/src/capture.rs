//! `tcplab capture`: live capture (AF_PACKET, see [`crate::probe::capture`]) or a
//! capture file (`-r`), shown like `tcpdump -nn` or written as pcapng (`-w`).
//!
//! Output goes through one buffer and a locked stdout; a closed pipe ends the command
//! cleanly. With `-w`, the file is flushed at least once a second, so a SIGKILL loses
//! at most the last second; SIGINT and SIGTERM end the capture and finish the file
//! with an interface statistics block (the kernel's drop count).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tcplab_core::filter::{self, Ancillary, CompileOptions, Program};
use tcplab_core::pcap::{
    InterfaceDesc, InterfaceStats, OutPacket, PacketDirection, PcapngWriter, Reader,
};
use tcplab_core::render::{Dump, Frame, Renderer, ViewOptions};
use tcplab_core::wire;

use crate::exit::{self, Failure};
use crate::probe::capture::{self as probe, Capture, OpenError};

/// Arguments of `tcplab capture`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "FILTER: tcp | udp | ip | ip6 | [tcp|udp] [src|dst] port N | \
    [src|dst] host ADDR, combined with and, or, not and parentheses.\n\
    Example: tcplab capture -i lo -w hs.pcapng port 54321"
)]
pub struct Args {
    /// Interface to capture on (`any` for all).
    #[arg(short = 'i', long = "interface", default_value = "lo")]
    pub interface: String,
    /// Write packets to this pcapng file instead of printing them.
    #[arg(short = 'w', value_name = "FILE", conflicts_with = "read")]
    pub write: Option<PathBuf>,
    /// Read packets from a pcap or pcapng file (`-` for stdin) instead of capturing.
    #[arg(short = 'r', value_name = "FILE")]
    pub read: Option<PathBuf>,
    /// Absolute sequence numbers.
    #[arg(short = 'S')]
    pub absolute: bool,
    /// IP header details and TCP checksums.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Print each packet in ASCII (from the IP header on).
    #[arg(short = 'A')]
    pub ascii: bool,
    /// Hex and ASCII dump; `-XX` includes the link header.
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    pub hex: u8,
    /// One JSON object per packet (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = crate::seconds::parse, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Filter words, e.g. `tcp and port 54321`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = false,
        value_name = "FILTER"
    )]
    pub filter: Vec<String>,
}

fn utc_offset() -> i32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: localtime_r writes into our `tm` only.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff as i32
    }
}

fn view(args: &Args) -> ViewOptions {
    ViewOptions {
        absolute: args.absolute,
        verbose: args.verbose,
        dump: match (args.hex, args.ascii) {
            (0, false) => Dump::None,
            (0, true) => Dump::Ascii,
            (1, _) => Dump::Hex,
            _ => Dump::HexLink,
        },
        json: args.json,
        utc_offset_secs: utc_offset(),
    }
}

fn renderer(args: &Args) -> Renderer {
    let mut r = Renderer::new(view(args));
    for (index, name) in probe::interfaces() {
        r.set_interface_name(index, &name);
    }
    r
}

/// Bytes buffered before a write to stdout.
const FLUSH_AT: usize = 1 << 16;

/// Runs the command.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let expr = filter::parse(&args.filter)
        .map_err(|e| anyhow::anyhow!("filter `{}`: {e}", args.filter.join(" ")))?;
    match &args.read {
        Some(path) => read_file(&args, path, expr.as_ref()),
        None => live(&args, expr.as_ref()),
    }
}

fn read_file(args: &Args, path: &PathBuf, expr: Option<&filter::Expr>) -> anyhow::Result<ExitCode> {
    let bytes = if path.as_os_str() == "-" {
        let mut v = Vec::new();
        io::Read::read_to_end(&mut io::stdin().lock(), &mut v).context("reading stdin")?;
        v
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    let program = Program::compile(
        expr,
        CompileOptions {
            net_offset: 0,
            drop_outgoing_on: None,
            snaplen: u32::MAX,
        },
    )
    .context("compiling the filter")?;
    let mut reader = Reader::new(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let mut r = renderer(args);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::with_capacity(FLUSH_AT * 2);
    let mut shown = 0u64;
    let limit = args.count.unwrap_or(u64::MAX);
    while shown < limit {
        let rec = match reader.next_record() {
            None => break,
            Some(Ok(rec)) => rec,
            Some(Err(e)) => {
                // Everything before the damage is printed first.
                out.write_all(&buf)?;
                out.flush()?;
                return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
            }
        };
        if expr.is_some() && !passes(&program, rec.linktype, rec.data) {
            continue;
        }
        let frame = Frame {
            ts_ns: rec.ts_ns,
            linktype: rec.linktype,
            data: rec.data,
            orig_len: rec.orig_len,
            direction: rec.flags.and_then(PacketDirection::from_epb_flags),
            comment: rec.comment,
        };
        r.render(&frame, &mut buf);
        shown += 1;
        if buf.len() >= FLUSH_AT {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the filter on a frame from a file the way the kernel runs it on a cooked
/// socket: from the network header, with the EtherType as the protocol.
fn passes(program: &Program, linktype: u32, data: &[u8]) -> bool {
    let (link, net) = wire::link::parse(linktype, data);
    let Some((offset, protocol)) = net else {
        return false;
    };
    let anc = Ancillary {
        protocol,
        pkttype: link.pkttype().map_or(0, |p| p as u8),
        ifindex: 0,
    };
    program.run(data.get(offset..).unwrap_or(&[]), anc) != 0
}

fn open_error(iface: &str, e: OpenError) -> anyhow::Error {
    match e {
        OpenError::Privilege => {
            let exe = std::env::current_exe()
                .map_or_else(|_| "tcplab".into(), |p| p.display().to_string());
            Failure::new(
                exit::PRIVILEGE,
                format!(
                    "capturing on {iface}: permission denied: opening a packet socket needs \
                     CAP_NET_RAW\nhow to fix:\n  1. run as root: sudo {exe} capture ...\n  \
                     2. or give this binary the capability once: sudo setcap cap_net_raw+ep \
                     {exe}\n  3. or read a saved capture, which needs no privilege: \
                     tcplab capture -r FILE"
                ),
            )
            .into()
        }
        OpenError::NoSuchInterface { name, available } => Failure::new(
            exit::FAILURE,
            format!(
                "capturing on {name}: no such interface\ninterfaces here: {}",
                available.join(", ")
            ),
        )
        .into(),
        other => anyhow::Error::new(other).context(format!("capturing on {iface}")),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Where live packets go: a pcapng file, or rendered lines on stdout.
struct Sink<'a> {
    writer: Option<PcapngWriter<BufWriter<File>>>,
    renderer: Renderer,
    out: io::StdoutLock<'a>,
    buf: Vec<u8>,
    linktype: u32,
    seen: u64,
    limit: u64,
    /// When the oldest packet not yet flushed to the file was read from the ring.
    unflushed_since: Option<Instant>,
}

impl Sink<'_> {
    fn packet(&mut self, p: probe::Packet<'_>) -> io::Result<()> {
        if self.seen >= self.limit {
            return Ok(());
        }
        self.seen += 1;
        match self.writer.as_mut() {
            Some(w) => {
                self.unflushed_since.get_or_insert_with(Instant::now);
                w.write_packet(&OutPacket {
                    ts_ns: p.ts_ns,
                    data: p.data,
                    orig_len: p.orig_len,
                    direction: p.direction,
                    comment: None,
                })
            }
            None => {
                let frame = Frame {
                    ts_ns: p.ts_ns,
                    linktype: self.linktype,
                    data: p.data,
                    orig_len: p.orig_len,
                    direction: p.direction,
                    comment: None,
                };
                self.renderer.render(&frame, &mut self.buf);
                if self.buf.len() >= FLUSH_AT {
                    self.out.write_all(&self.buf)?;
                    self.buf.clear();
                }
                Ok(())
            }
        }
    }

    /// A live view shows each block as it arrives; a file is flushed at the latest
    /// [`FILE_FLUSH_AFTER`] after a packet was read from the ring, so a SIGKILL loses
    /// at most the packets of the last second (see [`capture_loop`]).
    fn flush(&mut self, force: bool) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.out.flush()?;
            self.buf.clear();
        }
        let due = self.flush_due();
        if let Some(w) = self.writer.as_mut() {
            if force || due.is_some_and(|d| Instant::now() >= d) {
                w.flush()?;
                self.unflushed_since = None;
            }
        }
        Ok(())
    }

    /// When the file must next be flushed, if it holds packets not yet flushed.
    fn flush_due(&self) -> Option<Instant> {
        self.unflushed_since.map(|t| t + FILE_FLUSH_AFTER)
    }
}

/// How long a packet read from the ring may wait in memory before the file is
/// flushed.
const FILE_FLUSH_AFTER: Duration = Duration::from_secs(1);

/// Reads the ring until the count, the deadline or a signal.
///
/// SIGKILL bound: a packet reaches us when the kernel retires its ring block, at
/// most [`probe::BLOCK_TIMEOUT_MS`] after it arrived (a block is handed over when
/// full or when its timer expires, so none sits unretired longer). From then, the
/// file is flushed within [`FILE_FLUSH_AFTER`]: the wait for the next block never
/// runs past the flush due, so the flush happens on time even when no packet
/// follows. A packet that arrived more than 1 s + the block timeout (10 ms) before
/// a SIGKILL is in the file.
fn capture_loop(
    cap: &mut Capture,
    sink: &mut Sink<'_>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    while sink.seen < sink.limit && !crate::interrupt::requested() {
        let now = Instant::now();
        // 200 ms at most, to notice a stop signal that did not interrupt poll().
        let mut wait = Duration::from_millis(200);
        if let Some(d) = deadline {
            if now >= d {
                break;
            }
            wait = wait.min(d - now);
        }
        if let Some(due) = sink.flush_due() {
            wait = wait.min(due.saturating_duration_since(now));
        }
        cap.next_block(wait, |p| sink.packet(p))?;
        sink.flush(false)?;
    }
    // Stopped by a signal or the deadline: packets that arrived before still sit in
    // the ring, some in a block the kernel retires within its timer; take them.
    let drain = Duration::from_millis(u64::from(probe::BLOCK_TIMEOUT_MS) * 3);
    while sink.seen < sink.limit && cap.next_block(drain, |p| sink.packet(p))? > 0 {}
    sink.flush(true)
}

fn live(args: &Args, expr: Option<&filter::Expr>) -> anyhow::Result<ExitCode> {
    let mut cap =
        Capture::open(&args.interface, expr).map_err(|e| open_error(&args.interface, e))?;
    crate::interrupt::install();
    let start_ns = now_ns();
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let link_name = if cap.linktype() == wire::LINKTYPE_ETHERNET {
        "EN10MB (Ethernet)"
    } else {
        "LINUX_SLL2 (Linux cooked v2)"
    };
    let writer = match &args.write {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let w = PcapngWriter::new(
                BufWriter::with_capacity(1 << 20, file),
                &InterfaceDesc {
                    linktype: cap.linktype() as u16,
                    snaplen: probe::SNAPLEN,
                    name: args.interface.clone(),
                },
            )
            .with_context(|| format!("writing {}", path.display()))?;
            Some(w)
        }
        None => None,
    };
    eprintln!(
        "tcplab: listening on {}, link-type {link_name}, snapshot length {} bytes",
        args.interface,
        probe::SNAPLEN
    );
    if cap.filters_in_userland() {
        eprintln!(
            "tcplab: the filter's program is too large for the kernel's socket option \
             memory (net.core.optmem_max); filtering in tcplab instead (slower; the \
             \"received by filter\" count includes the packets it rejects)"
        );
    }
    let stdout = io::stdout();
    let mut sink = Sink {
        writer,
        renderer: renderer(args),
        out: stdout.lock(),
        buf: Vec::with_capacity(FLUSH_AT * 2),
        linktype: cap.linktype(),
        seen: 0,
        limit: args.count.unwrap_or(u64::MAX),
        unflushed_since: None,
    };
    let result = capture_loop(&mut cap, &mut sink, deadline);
    let stats = cap.stats().unwrap_or_default();
    if let Some(mut w) = sink.writer.take() {
        let path = args.write.as_deref().unwrap_or(std::path::Path::new("-"));
        let finish = || -> io::Result<()> {
            w.write_stats(&InterfaceStats {
                ts_ns: now_ns(),
                start_ns,
                received: stats.received,
                dropped: stats.dropped,
            })?;
            w.flush()?;
            w.into_inner()
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
        };
        finish().with_context(|| format!("finishing {}", path.display()))?;
    }
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("capturing on {}", args.interface)))
        }
        Ok(()) => {}
    }
    eprintln!(
        "{} packets captured\n{} packets received by filter\n{} packets dropped by kernel",
        sink.seen, stats.received, stats.dropped
    );
    Ok(ExitCode::SUCCESS)
}
