//! The `tcplab` binary: parse arguments, hand over to the module that does the work.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tcplab::{bench, capture, client, exit, lab, replay, server, sysctl, watch};

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
    /// Capture packets (or read a capture file) and show them like tcpdump -nn.
    Capture(capture::Args),
    /// Live TCP state transitions, exact, with TIME_WAIT and SYN_RECV.
    Watch(watch::Args),
    /// Timeline and ladder diagram of a pcap/pcapng file, states inferred.
    Replay(replay::Args),
    /// List the kernel's TCP parameters that shape the scenarios, with what each does.
    Sysctl(sysctl::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server::main(args),
        Command::Connect(args) => client::main(args),
        Command::Lab(args) => lab::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Capture(args) => capture::main(args),
        Command::Watch(args) => watch::main(args),
        Command::Replay(args) => replay::main(args),
        Command::Sysctl(args) => sysctl::main(args),
    };
    exit::report(result)
}
