//! How `lab` and `replay` show a timeline: the terminal ladder by default, or JSON or
//! Mermaid on stdout, plus SVG and HTML files on request. One set of options, one
//! place that writes them.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tcplab_core::render::{self, ladder};
use tcplab_core::timeline::Connection;

/// The output options both commands share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ViewArgs {
    /// Print the timeline as JSON (schema in README.md) instead of the ladder.
    #[arg(long)]
    pub json: bool,
    /// Print a Mermaid sequence diagram (renders on GitHub) instead of the ladder.
    #[arg(long)]
    pub mermaid: bool,
    /// Also write the ladder and the RFC 9293 state diagram with the paths taken as one
    /// SVG picture to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write one self-contained HTML page (ladder, and the RFC 9293 state diagram
    /// with the paths taken) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Width of the ladder in columns, at least 60: every line fits [default: the
    /// terminal's, or 100].
    #[arg(long)]
    pub width: Option<usize>,
}

impl ViewArgs {
    /// True when stdout gets the ladder (and room for notes around it).
    pub fn ladder(&self) -> bool {
        !self.json && !self.mermaid
    }

    /// Writes the files asked for (SVG, HTML) of `conn`, titled `title`.
    pub fn write_files(&self, title: &str, conn: &Connection) -> anyhow::Result<()> {
        if let Some(path) = &self.svg {
            write_file(path, &render::svg::ladder_and_states(conn))?;
        }
        if let Some(path) = &self.html {
            write_file(path, &render::html::render(title, conn))?;
        }
        Ok(())
    }

    /// Prints `conns` on `out` in the chosen form.
    pub fn print(&self, out: &mut impl Write, conns: &[Connection]) -> anyhow::Result<()> {
        if self.json {
            writeln!(out, "{}", render::json(conns))?;
            return Ok(());
        }
        for conn in conns {
            if self.mermaid {
                write!(out, "{}", render::mermaid::render(conn))?;
            } else {
                write!(out, "{}", ladder::render(conn, self.style()))?;
            }
        }
        Ok(())
    }

    /// The width the ladder is drawn at (`--width`, else the terminal's, else 100),
    /// for lines printed around it.
    pub fn width(&self) -> usize {
        self.style().width
    }

    fn style(&self) -> ladder::Style {
        let terminal = std::io::stdout().is_terminal();
        ladder::Style {
            width: self
                .width
                .unwrap_or_else(|| terminal_width().unwrap_or(100)),
            color: terminal && std::env::var_os("NO_COLOR").is_none(),
            ..ladder::Style::default()
        }
    }
}

/// Writes a whole file, naming it in the error.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// Columns of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: winsize is plain old data; all-zero is valid.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize we pass, on a descriptor we hold.
    let rc = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
