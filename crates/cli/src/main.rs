//! `pullguard`: the operators' command line.

use std::process::ExitCode;

use clap::Parser as _;

mod daemon_client;
mod events_cmd;
mod keys;
mod offline;
mod policy_cmd;
mod trust_verify;

/// Operators' command line for pullguard, the node-side enforcer of signed images.
#[derive(clap::Parser)]
#[command(name = "pullguard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Inspect and verify trust data.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Ask the running pullguardd for a verdict, without enforcing anything (dry run).
    Verify(daemon_client::VerifyArgs),
    /// The running pullguardd: policy generation, last reload, figures, recent errors.
    Status(daemon_client::StatusArgs),
    /// The node's events: rejections, removals, reloads; filtered, or followed.
    #[command(after_help = events_cmd::EXAMPLES)]
    Events(events_cmd::Args),
    /// Check a policy file, explain which rule applies, compare two policies.
    #[command(subcommand, after_help = policy_cmd::EXAMPLES)]
    Policy(policy_cmd::Command),
    /// Pinned roots, trusted state and signing keys.
    #[command(after_help = keys::EXAMPLES)]
    Keys {
        #[command(flatten)]
        dirs: keys::Dirs,
        #[command(subcommand)]
        command: keys::Command,
    },
}

#[derive(clap::Subcommand)]
enum TrustCommand {
    /// Verify a repository's Notary trust data offline, from files as the server serves them.
    #[command(after_help = trust_verify::EXAMPLES)]
    Verify(trust_verify::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Trust(TrustCommand::Verify(args)) => trust_verify::run(&args),
        Command::Keys { dirs, command } => keys::run(&dirs, &command),
        Command::Verify(args) => daemon_client::verify(&args),
        Command::Status(args) => daemon_client::status(&args),
        Command::Policy(command) => policy_cmd::run(&command),
        Command::Events(args) => events_cmd::run(&args),
    }
}
