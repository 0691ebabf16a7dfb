//! The capture filter language, compiled to a classic BPF program the kernel runs
//! (`SO_ATTACH_FILTER`) and that [`Program::run`] runs on frames read from files.
//!
//! Grammar (tcpdump's words, a small subset):
//!
//! ```text
//! expr    := and ( ("or" | "||") and )*
//! and     := unary ( ("and" | "&&") unary )*
//! unary   := ("not" | "!") unary | "(" expr ")" | prim
//! prim    := ["tcp" | "udp"] [ "src" | "dst" ] "port" N
//!          | [ "src" | "dst" ] "host" ADDR          (IPv4 or IPv6)
//!          | "tcp" | "udp" | "ip" | "ip6"
//! ```
//!
//! The program reads the network protocol with the `SKF_AD_PROTOCOL` ancillary load
//! rather than from a link header, so one program works on Ethernet frames (`lo`) and
//! on cooked captures (`any`, where the socket delivers packets from the IP header).
//! Like libpcap, IPv6 ports are looked for right after the fixed header only.

use std::fmt;
use std::net::IpAddr;

/// A filter that does not parse or compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// 1-based character column in the filter text (words joined by one space).
    pub column: usize,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// Direction qualifier of `port` and `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `src`: the source must match.
    Src,
    /// `dst`: the destination must match.
    Dst,
    /// Neither word: either may match.
    Any,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// IPv4 or IPv6 carrying this protocol (6 = TCP, 17 = UDP).
    Proto(u8),
    /// Any IPv4 packet.
    Ip4,
    /// Any IPv6 packet.
    Ip6,
    /// A TCP or UDP (or only `proto`) port.
    Port {
        /// Source, destination, or either.
        dir: Dir,
        /// The port.
        port: u16,
        /// Restrict to this protocol.
        proto: Option<u8>,
    },
    /// An address.
    Host {
        /// Source, destination, or either.
        dir: Dir,
        /// The address.
        addr: IpAddr,
    },
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Not.
    Not(Box<Expr>),
    /// A term as written, with the 1-based column it starts at: an error found
    /// while compiling (a program too long for the kernel) names it.
    At(usize, Box<Expr>),
}

struct Token {
    text: String,
    column: usize,
}

fn tokenize(words: &[String]) -> (Vec<Token>, usize) {
    // Words may themselves hold spaces (a quoted filter); columns count in the text
    // the words make when joined by single spaces.
    let text = words.join(" ");
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    let mut end = 1;
    for (i, ch) in text.chars().enumerate() {
        let column = i + 1;
        end = column + 1;
        if ch.is_whitespace() || ch == '(' || ch == ')' {
            if !cur.is_empty() {
                tokens.push(Token {
                    text: std::mem::take(&mut cur),
                    column: start,
                });
            }
            if !ch.is_whitespace() {
                tokens.push(Token {
                    text: ch.to_string(),
                    column,
                });
            }
        } else {
            if cur.is_empty() {
                start = column;
            }
            cur.push(ch);
        }
    }
    if !cur.is_empty() {
        tokens.push(Token {
            text: cur,
            column: start,
        });
    }
    // The end is the column right after the last character.
    (tokens, end)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|t| t.text.as_str())
    }
    fn column(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.end_column, |t| t.column)
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, FilterError> {
        Err(FilterError {
            column: self.column(),
            message: message.into(),
        })
    }
    fn next(&mut self) -> Option<String> {
        let t = self.tokens.get(self.pos)?.text.clone();
        self.pos += 1;
        Some(t)
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek() {
            Some("not" | "!") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek() != Some(")") {
                    return self.err("expected `)` to close the `(`");
                }
                self.pos += 1;
                Ok(e)
            }
            Some(_) => {
                let column = self.column();
                Ok(Expr::At(column, Box::new(self.prim()?)))
            }
            None => self.err("expected a filter term (tcp, port N, host ADDR, ...)"),
        }
    }

    fn prim(&mut self) -> Result<Expr, FilterError> {
        let mut proto = None;
        match self.peek() {
            Some("tcp") => proto = Some(6),
            Some("udp") => proto = Some(17),
            Some("ip") => {
                self.pos += 1;
                return Ok(Expr::Ip4);
            }
            Some("ip6") => {
                self.pos += 1;
                return Ok(Expr::Ip6);
            }
            _ => {}
        }
        if let Some(p) = proto {
            self.pos += 1;
            if !matches!(self.peek(), Some("port" | "src" | "dst")) {
                return Ok(Expr::Proto(p));
            }
        }
        let dir = match self.peek() {
            Some("src") => {
                self.pos += 1;
                Dir::Src
            }
            Some("dst") => {
                self.pos += 1;
                Dir::Dst
            }
            _ => Dir::Any,
        };
        let col = self.column();
        match self.next().as_deref() {
            Some("port") => {
                let col = self.column();
                let word = self.next();
                match word.as_deref().map(str::parse::<u16>) {
                    Some(Ok(port)) => Ok(Expr::Port { dir, port, proto }),
                    _ => Err(FilterError {
                        column: col,
                        message: format!(
                            "expected a port number 0-65535 after `port`, found {}",
                            word.map_or("the end".into(), |w| format!("`{w}`"))
                        ),
                    }),
                }
            }
            Some("host") if proto.is_none() => {
                let col = self.column();
                let word = self.next();
                match word.as_deref().map(str::parse::<IpAddr>) {
                    Some(Ok(addr)) => Ok(Expr::Host { dir, addr }),
                    _ => Err(FilterError {
                        column: col,
                        message: format!(
                            "expected an IPv4 or IPv6 address after `host`, found {}",
                            word.map_or("the end".into(), |w| format!("`{w}`"))
                        ),
                    }),
                }
            }
            Some(other) => Err(FilterError {
                column: col,
                message: format!(
                    "unknown word `{other}` (expected tcp, udp, ip, ip6, port, host, src, dst, \
                     and, or, not, parentheses)"
                ),
            }),
            None => Err(FilterError {
                column: col,
                message: "expected `port` or `host`".into(),
            }),
        }
    }
}

/// Parses filter words (as given on the command line). No words: `None` (match all).
pub fn parse(words: &[String]) -> Result<Option<Expr>, FilterError> {
    let (tokens, end_column) = tokenize(words);
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        end_column,
    };
    let e = p.expr()?;
    if p.pos < p.tokens.len() {
        return p.err(format!(
            "unexpected `{}` (join terms with `and` / `or`)",
            p.peek().unwrap_or("")
        ));
    }
    Ok(Some(e))
}

mod bpf;
pub use bpf::{Ancillary, CompileOptions, Insn, Program, MAX_INSNS};

#[cfg(test)]
mod tests;
