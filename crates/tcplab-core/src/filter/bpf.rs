//! Code generation to classic BPF, and an interpreter for the same programs.

use std::net::IpAddr;

use super::{Dir, Expr, FilterError};

// Instruction classes, sizes, modes and operations (linux/bpf_common.h).
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MSH: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JSET: u16 = 0x40;
const K: u16 = 0x00;

/// `SKF_AD_OFF`: loads at this offset and above read packet metadata.
const AD_OFF: u32 = 0xffff_f000;
const AD_PROTOCOL: u32 = AD_OFF;
const AD_PKTTYPE: u32 = AD_OFF + 4;
const AD_IFINDEX: u32 = AD_OFF + 8;

const ETH_IPV4: u32 = 0x0800;
const ETH_IPV6: u32 = 0x86dd;
const PACKET_OUTGOING: u32 = 4;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// Where the network header starts in what the program sees, and what else to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompileOptions {
    /// Offset of the IP header: 14 on an Ethernet socket, 0 on a cooked (DGRAM) one.
    pub net_offset: u32,
    /// Drop outgoing packets on this interface index (on `any`, loopback packets are
    /// seen once outgoing and once incoming; keeping one copy).
    pub drop_outgoing_on: Option<u32>,
    /// Bytes to keep of a matching packet (the snap length).
    pub snaplen: u32,
}

/// Packet metadata the ancillary loads read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ancillary {
    /// EtherType of the network layer.
    pub protocol: u16,
    /// `sll_pkttype`.
    pub pkttype: u8,
    /// Interface index.
    pub ifindex: u32,
}

/// A compiled classic BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The instructions.
    pub insns: Vec<Insn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(usize),
}

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

struct Gen {
    /// Instructions with symbolic targets, and the column of the term each is for.
    code: Vec<(u16, Target, Target, u32, Option<usize>)>,
    labels: Vec<Option<usize>>,
    n: u32,
    /// Column of the term being compiled.
    column: Option<usize>,
}

impl Gen {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code
            .push((code, Target::Next, Target::Next, k, self.column));
    }
    fn jump(&mut self, op: u16, k: u32, t: Target, f: Target) {
        self.code.push((JMP | op | K, t, f, k, self.column));
    }
    fn ld_proto(&mut self) {
        self.op(LD | W | ABS, AD_PROTOCOL);
    }

    /// A true when the packet is IPv4 (`v4`) or IPv6 (`v6`) with protocol `proto` (or
    /// TCP/UDP when `None`); jumps to `v4`/`v6` with nothing loaded, else to `f`.
    fn ip_with_proto(&mut self, proto: Option<u8>, v4: usize, v6: usize, f: usize) {
        let (l4, l6chk, l6) = (self.label(), self.label(), self.label());
        self.ld_proto();
        self.jump(JEQ, ETH_IPV4, Target::Label(l4), Target::Label(l6chk));
        self.bind(l4);
        self.op(LD | B | ABS, self.n + 9);
        self.proto_test(proto, v4, f);
        self.bind(l6chk);
        self.ld_proto();
        self.jump(JEQ, ETH_IPV6, Target::Label(l6), Target::Label(f));
        self.bind(l6);
        self.op(LD | B | ABS, self.n + 6);
        self.proto_test(proto, v6, f);
    }

    fn proto_test(&mut self, proto: Option<u8>, t: usize, f: usize) {
        match proto {
            Some(p) => self.jump(JEQ, u32::from(p), Target::Label(t), Target::Label(f)),
            None => {
                self.jump(JEQ, 6, Target::Label(t), Target::Next);
                self.jump(JEQ, 17, Target::Label(t), Target::Label(f));
            }
        }
    }

    fn compile(&mut self, e: &Expr, t: usize, f: usize) {
        let (tl, fl) = (Target::Label(t), Target::Label(f));
        match e {
            Expr::And(a, b) => {
                let mid = self.label();
                self.compile(a, mid, f);
                self.bind(mid);
                self.compile(b, t, f);
            }
            Expr::Or(a, b) => {
                let mid = self.label();
                self.compile(a, t, mid);
                self.bind(mid);
                self.compile(b, t, f);
            }
            Expr::Not(a) => self.compile(a, f, t),
            Expr::At(column, a) => {
                self.column = Some(*column);
                self.compile(a, t, f);
            }
            Expr::Ip4 => {
                self.ld_proto();
                self.jump(JEQ, ETH_IPV4, tl, fl);
            }
            Expr::Ip6 => {
                self.ld_proto();
                self.jump(JEQ, ETH_IPV6, tl, fl);
            }
            Expr::Proto(p) => self.ip_with_proto(Some(*p), t, t, f),
            Expr::Port { dir, port, proto } => {
                let (v4, v6) = (self.label(), self.label());
                self.ip_with_proto(*proto, v4, v6, f);
                let port = u32::from(*port);
                // IPv4: not a later fragment, then ports after the variable header.
                self.bind(v4);
                self.op(LD | H | ABS, self.n + 6);
                self.jump(JSET, 0x1fff, fl, Target::Next);
                self.op(LDX | B | MSH, self.n);
                self.ports(*dir, port, IND, self.n, t, f);
                self.bind(v6);
                self.ports(*dir, port, ABS, self.n + 40, t, f);
            }
            Expr::Host { dir, addr } => {
                let (words, proto, src_at, dst_at): (Vec<u32>, u32, u32, u32) = match addr {
                    IpAddr::V4(a) => (vec![u32::from(*a)], ETH_IPV4, 12, 16),
                    IpAddr::V6(a) => {
                        let o = a.octets();
                        let w = o
                            .chunks_exact(4)
                            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                        (w, ETH_IPV6, 8, 24)
                    }
                };
                self.ld_proto();
                self.jump(JEQ, proto, Target::Next, fl);
                let places: &[u32] = match dir {
                    Dir::Src => &[src_at],
                    Dir::Dst => &[dst_at],
                    Dir::Any => &[src_at, dst_at],
                };
                for (i, &at) in places.iter().enumerate() {
                    let miss = if i + 1 == places.len() {
                        f
                    } else {
                        self.label()
                    };
                    for (j, &w) in words.iter().enumerate() {
                        self.op(LD | W | ABS, self.n + at + 4 * j as u32);
                        let hit = if j + 1 == words.len() {
                            tl
                        } else {
                            Target::Next
                        };
                        self.jump(JEQ, w, hit, Target::Label(miss));
                    }
                    if miss != f {
                        self.bind(miss);
                    }
                }
            }
        }
    }

    fn ports(&mut self, dir: Dir, port: u32, mode: u16, base: u32, t: usize, f: usize) {
        let (tl, fl) = (Target::Label(t), Target::Label(f));
        match dir {
            Dir::Src => {
                self.op(LD | H | mode, base);
                self.jump(JEQ, port, tl, fl);
            }
            Dir::Dst => {
                self.op(LD | H | mode, base + 2);
                self.jump(JEQ, port, tl, fl);
            }
            Dir::Any => {
                self.op(LD | H | mode, base);
                self.jump(JEQ, port, tl, Target::Next);
                self.op(LD | H | mode, base + 2);
                self.jump(JEQ, port, tl, fl);
            }
        }
    }
}

/// One instruction placed in the program: an instruction of [`Gen`] (id = its
/// index there) or a trampoline (`BPF_JA`) added so that a conditional jump, whose
/// offsets are 8 bits, reaches a target more than 255 instructions ahead.
#[derive(Debug, Clone, Copy)]
struct Placed {
    id: usize,
    /// Ids of the targets (for a trampoline: `jt` is where it jumps).
    jt: usize,
    jf: usize,
}

/// Places the instructions, adding trampolines until every conditional jump reaches
/// its targets, and resolves targets to offsets.
///
/// Each jump too far gets a trampoline right after it (a conditional jump never
/// falls through, so nothing else lands there), unless a trampoline to the same
/// target already sits within its reach. Adding some moves what follows and can push
/// other jumps out of reach, so passes repeat until none is too far (a jump given a
/// trampoline right after it stays in reach, so this ends). Jumps only go forward,
/// so trampolines do too.
fn layout(g: &Gen) -> Result<Program, FilterError> {
    let n = g.code.len();
    let resolve = |i: usize, t: Target| match t {
        Target::Next => i + 1,
        Target::Label(l) => g.labels[l].unwrap_or(i + 1),
    };
    let is_cond = |code: u16| code & 0x07 == JMP && code & 0xf0 != JA;
    let mut placed: Vec<Placed> = g
        .code
        .iter()
        .enumerate()
        .map(|(i, &(_, t, f, _, _))| Placed {
            id: i,
            jt: resolve(i, t),
            jf: resolve(i, f),
        })
        .collect();
    // Id n is the program's end (a jump past the last instruction). Trampoline ids
    // start at n + 1: `tramp_to[id - n - 1]` is the id the trampoline jumps to and
    // `tramp_col` the column of the term whose jump needed it.
    let mut tramp_to: Vec<usize> = Vec::new();
    let mut tramp_col: Vec<Option<usize>> = Vec::new();
    let is_tramp = |id: usize| id > n;
    // Position by id.
    let mut pos = Vec::new();
    loop {
        pos.resize(n + 1 + tramp_to.len(), 0);
        for (p, item) in placed.iter().enumerate() {
            pos[item.id] = p;
        }
        pos[n] = placed.len();
        // One pass: every jump out of reach at the current positions gets its
        // trampoline; the next pass sees what the insertions pushed out of reach.
        let mut out = Vec::with_capacity(placed.len() + 16);
        for (p, &item) in placed.iter().enumerate() {
            let mut item = item;
            let mut added = Vec::new();
            if !is_tramp(item.id) && is_cond(g.code[item.id].0) {
                for branch in [&mut item.jt, &mut item.jf] {
                    if pos[*branch].saturating_sub(p + 1) <= 255 {
                        continue;
                    }
                    // The final target (a trampoline never jumps to a trampoline).
                    let dest = if is_tramp(*branch) {
                        tramp_to[*branch - n - 1]
                    } else {
                        *branch
                    };
                    let near = placed[p + 1..placed.len().min(p + 257 - added.len())]
                        .iter()
                        .chain(added.iter())
                        .find(|q| is_tramp(q.id) && tramp_to[q.id - n - 1] == dest)
                        .map(|q| q.id);
                    *branch = near.unwrap_or_else(|| {
                        let id = n + 1 + tramp_to.len();
                        tramp_to.push(dest);
                        tramp_col.push(g.code[item.id].4);
                        added.push(Placed {
                            id,
                            jt: dest,
                            jf: dest,
                        });
                        id
                    });
                }
            }
            out.push(item);
            out.extend(added);
        }
        let changed = out.len() != placed.len()
            || out
                .iter()
                .zip(&placed)
                .any(|(a, b)| (a.jt, a.jf) != (b.jt, b.jf));
        placed = out;
        if !changed {
            break;
        }
    }
    if placed.len() > MAX_INSNS {
        // The term whose code crosses the limit (trampolines count for the term whose
        // jump needed them); the closing returns belong to the last term.
        let column_of = |item: &Placed| {
            if is_tramp(item.id) {
                tramp_col[item.id - n - 1]
            } else {
                g.code[item.id].4
            }
        };
        let column = placed[MAX_INSNS..]
            .iter()
            .find_map(column_of)
            .or_else(|| placed.iter().rev().find_map(column_of))
            .unwrap_or(1);
        return Err(FilterError {
            column,
            message: format!(
                "filter too long: its program needs {} instructions, more than the \
                 kernel's limit of {MAX_INSNS}; it passes the limit in this term",
                placed.len()
            ),
        });
    }
    let insns = placed
        .iter()
        .enumerate()
        .map(|(p, item)| {
            let offset = |id: usize| pos[id].saturating_sub(p + 1) as u32;
            if is_tramp(item.id) {
                return Insn {
                    code: JMP | JA,
                    jt: 0,
                    jf: 0,
                    k: offset(item.jt),
                };
            }
            let (code, _, _, k, _) = g.code[item.id];
            if !is_cond(code) && code & 0x07 == JMP {
                // An unconditional jump: 32-bit offset in k.
                return Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k: offset(item.jt),
                };
            }
            if !is_cond(code) {
                return Insn {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                };
            }
            // The loop above left no conditional jump out of reach.
            Insn {
                code,
                jt: offset(item.jt) as u8,
                jf: offset(item.jf) as u8,
                k,
            }
        })
        .collect();
    Ok(Program { insns })
}

impl Program {
    /// Compiles `expr` (`None`: accept everything). Jumps further than a conditional
    /// jump's 8-bit offset go through `BPF_JA` trampolines, so any filter whose
    /// program fits the kernel's [`MAX_INSNS`] compiles.
    pub fn compile(expr: Option<&Expr>, opts: CompileOptions) -> Result<Program, FilterError> {
        let mut g = Gen {
            code: Vec::new(),
            labels: Vec::new(),
            n: opts.net_offset,
            column: None,
        };
        let (accept, reject) = (g.label(), g.label());
        if let Some(ifindex) = opts.drop_outgoing_on {
            let keep = g.label();
            g.op(LD | W | ABS, AD_PKTTYPE);
            g.jump(JEQ, PACKET_OUTGOING, Target::Next, Target::Label(keep));
            g.op(LD | W | ABS, AD_IFINDEX);
            g.jump(JEQ, ifindex, Target::Label(reject), Target::Label(keep));
            g.bind(keep);
        }
        if let Some(e) = expr {
            g.compile(e, accept, reject);
        }
        g.bind(accept);
        g.op(RET | K, opts.snaplen);
        g.bind(reject);
        g.op(RET | K, 0);
        layout(&g)
    }

    /// Runs the program on `pkt` (what the socket would see) and returns the number of
    /// bytes to keep (0 = drop). Out-of-bounds loads drop the packet, as in the kernel.
    pub fn run(&self, pkt: &[u8], anc: Ancillary) -> u32 {
        let (mut a, mut x): (u32, u32) = (0, 0);
        let mut pc = 0usize;
        let load = |at: u32, size: u16| -> Option<u32> {
            match at {
                AD_PROTOCOL => return Some(u32::from(anc.protocol)),
                AD_PKTTYPE => return Some(u32::from(anc.pkttype)),
                AD_IFINDEX => return Some(anc.ifindex),
                _ => {}
            }
            let at = at as usize;
            match size {
                W => pkt
                    .get(at..at.checked_add(4)?)
                    .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]])),
                H => pkt
                    .get(at..at.checked_add(2)?)
                    .map(|s| u32::from(u16::from_be_bytes([s[0], s[1]]))),
                _ => pkt.get(at).map(|&b| u32::from(b)),
            }
        };
        // Forward jumps only, so at most insns.len() steps.
        while let Some(insn) = self.insns.get(pc) {
            pc += 1;
            let class = insn.code & 0x07;
            let size = insn.code & 0x18;
            let mode = insn.code & 0xe0;
            match class {
                LD => {
                    let at = if mode == IND {
                        x.wrapping_add(insn.k)
                    } else {
                        insn.k
                    };
                    match load(at, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LDX if mode == MSH => match pkt.get(insn.k as usize) {
                    Some(&b) => x = u32::from(b & 0x0f) * 4,
                    None => return 0,
                },
                JMP => {
                    let op = insn.code & 0xf0;
                    let cond = match op {
                        JA => {
                            pc = pc.saturating_add(insn.k as usize);
                            continue;
                        }
                        JEQ => a == insn.k,
                        JSET => a & insn.k != 0,
                        _ => return 0,
                    };
                    pc += usize::from(if cond { insn.jt } else { insn.jf });
                }
                RET => return insn.k,
                _ => return 0,
            }
        }
        0
    }
}
