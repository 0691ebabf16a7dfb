//! `tcplab sysctl`: the kernel parameters that shape the scenarios, with their values in
//! this process's network namespace and one line on what each does.
//!
//! The table of names and explanations is [`tcplab_core::sysctl::PARAMS`]; this module
//! only reads /proc/sys. A scenario records the values it ran with by calling
//! [`snapshot`] on a thread inside its namespace (`netns.run(sysctl::snapshot)`).

use std::io::Write as _;
use std::process::ExitCode;

use serde::Serialize;
use tcplab_core::sysctl::{Param, Topic, PARAMS};

/// Command-line arguments of `tcplab sysctl`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Print a JSON array of {name, topic, value, about} (value null when the kernel
    /// has no such parameter).
    #[arg(long)]
    pub json: bool,
}

/// One parameter and its value where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Value {
    /// The sysctl name.
    pub name: &'static str,
    /// Which part of a connection's life it shapes.
    pub topic: Topic,
    /// The value, whitespace between fields made single spaces; `None` when this
    /// kernel has no such parameter (or it cannot be read).
    pub value: Option<String>,
    /// What it does.
    pub about: &'static str,
}

/// Reads every parameter of [`PARAMS`] in the calling thread's network namespace.
pub fn snapshot() -> Vec<Value> {
    PARAMS.iter().map(read).collect()
}

fn read(param: &'static Param) -> Value {
    let value = std::fs::read_to_string(param.proc_path())
        .ok()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
    Value {
        name: param.name,
        topic: param.topic,
        value,
        about: param.about,
    }
}

/// `tcplab sysctl`.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let values = snapshot();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&values)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let name_width = values.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let value_width = values
        .iter()
        .map(|v| v.value.as_deref().map_or(1, str::len))
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "TCP parameters of this network namespace (scenarios set their own inside theirs)"
    )?;
    let mut topic = None;
    for v in &values {
        if topic != Some(v.topic) {
            topic = Some(v.topic);
            writeln!(out, "\n{}", v.topic.title())?;
        }
        writeln!(
            out,
            "  {:<name_width$}  {:<value_width$}  {}",
            v.name,
            v.value.as_deref().unwrap_or("-"),
            v.about
        )?;
    }
    if values.iter().any(|v| v.value.is_none()) {
        writeln!(out, "\n- : this kernel has no such parameter")?;
    }
    Ok(ExitCode::SUCCESS)
}
