//! The `tcplab` binary: parse arguments, hand over to the module that does the work.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tcplab::{bench, client, exit, lab, server};

/// See a TCP connection's whole life, exactly as the Linux kernel lived it.
#[derive(Debug, Parser)]
#[command(name = "tcplab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the echo test server.
    Serve(server::Args),
    /// Line client: interactive like telnet, or scripted with --send.
    Connect(client::Args),
    /// Run an experiment end to end and show what happened.
    Lab(lab::Args),
    /// Load generator for the echo protocol: round trips/s, connections/s, latency.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server::main(args),
        Command::Connect(args) => client::main(args),
        Command::Lab(args) => lab::main(args),
        Command::Bench(args) => bench::main(args),
    };
    exit::report(result)
}
