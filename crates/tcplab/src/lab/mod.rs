//! `tcplab lab`: runs an experiment end to end and shows the connection's whole life on
//! one timeline — segments, both endpoints' kernel states, and their socket calls.
//!
//! As root each run happens in a private network namespace (see [`crate::netns`]);
//! without root, on this machine's loopback, with one line per thing that is lost.

mod probes;
mod run;
mod scenario;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use tcplab_core::render::{self, ladder};
use tcplab_core::timeline::{self, Connection};

pub use run::{Observed, Place};
pub use scenario::{Scenario, Target, SCENARIOS};

/// Command-line arguments of `tcplab lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The experiment to run (see --list).
    #[arg(default_value = "echo")]
    pub scenario: String,
    /// List the experiments and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the timeline as JSON (schema in README.md) instead of the ladder.
    #[arg(long)]
    pub json: bool,
    /// Print a Mermaid sequence diagram instead of the ladder.
    #[arg(long)]
    pub mermaid: bool,
    /// Also write the ladder as an SVG picture to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Also write one self-contained HTML page (ladder, RFC state diagram with the paths
    /// taken) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    /// Width of the ladder [default: the terminal's, or 100].
    #[arg(long)]
    pub width: Option<usize>,
}

/// `tcplab lab`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    if args.list {
        for s in SCENARIOS {
            writeln!(stdout, "{:<18} {}", s.name, s.about)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let scenario = scenario::find(&args.scenario).with_context(|| {
        format!(
            "unknown experiment '{}' (tcplab lab --list shows them)",
            args.scenario
        )
    })?;
    let (place, place_note) = Place::choose();
    let observed = run::run(scenario, &place)?;
    let conn = connection(&observed);
    let title = format!("tcplab lab {}: {}", scenario.name, scenario.about);
    if let Some(path) = &args.svg {
        write_file(path, &render::svg::ladder(&conn))?;
    }
    if let Some(path) = &args.html {
        write_file(path, &render::html::render(&title, &conn))?;
    }

    if args.json {
        writeln!(stdout, "{}", render::json(std::slice::from_ref(&conn)))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.mermaid {
        write!(stdout, "{}", render::mermaid::render(&conn))?;
        return Ok(ExitCode::SUCCESS);
    }
    let terminal = std::io::stdout().is_terminal();
    let style = ladder::Style {
        width: args
            .width
            .unwrap_or_else(|| terminal_width().unwrap_or(100)),
        color: terminal && std::env::var_os("NO_COLOR").is_none(),
        ..ladder::Style::default()
    };
    writeln!(stdout, "{title}")?;
    let place_text = match &place {
        Place::Namespace(_) => "a private network namespace (deleted afterwards)",
        Place::Loopback => "this machine's loopback",
    };
    writeln!(stdout, "ran in {place_text}")?;
    for note in place_note.iter().chain(&observed.missing) {
        writeln!(stdout, "not shown: {note}")?;
    }
    writeln!(stdout)?;
    write!(stdout, "{}", ladder::render(&conn, style))?;
    if let Some(err) = &observed.client_error {
        writeln!(stdout, "client saw: {err}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a whole file, naming it in the error.
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The run's connection on one timeline.
pub fn connection(observed: &Observed) -> Connection {
    timeline::build_connection(
        observed.client,
        observed.server,
        &observed.segments,
        &observed.changes,
        &observed.calls,
    )
}

/// Columns of the terminal on stdout, if it is one.
fn terminal_width() -> Option<usize> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: winsize is plain old data; TIOCGWINSZ fills the one we pass.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
