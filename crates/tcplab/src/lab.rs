//! Placeholder while the foundation lands.

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub fn main(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
