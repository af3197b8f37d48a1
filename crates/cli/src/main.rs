//! `pullguard`: the operators' command line.

use std::process::ExitCode;

use exit::Exit;

use clap::Parser as _;

mod daemon_client;
mod events_cmd;
mod exit;
mod import;
mod import_notation;
mod inspect;
mod keys;
mod node;
mod node_fanout;
mod policy_cmd;
mod policy_diff;
mod publish;
mod rotate;
mod sign;
mod signer;
mod sigstore_cmd;
mod trust_verify;

/// Operators' command line for pullguard, the node-side enforcer of signed images.
#[derive(clap::Parser)]
#[command(
    name = "pullguard",
    version,
    after_help = "Exit codes (every command): 0 success / allowed / trusted; 1 rejected, invalid \
or changed (see each command's help); 2 bad usage or unreadable input; 3 pullguardd or \
containerd cannot be reached.\n\nOutput has no colours; --json gives one JSON object \
(events: one per line)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Inspect and verify trust data.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// A repository's signed tags, signers, keys and role expiries (like `docker trust inspect --pretty`).
    #[command(after_help = inspect::EXAMPLES)]
    Inspect(inspect::Args),
    /// Ask the running pullguardd for a verdict, without enforcing anything (dry run).
    #[command(after_help = daemon_client::VERIFY_EXAMPLES)]
    Verify(daemon_client::VerifyArgs),
    /// The running pullguardd: policy, last reload, figures, containerd hook and watcher, recent errors.
    #[command(after_help = daemon_client::STATUS_EXAMPLES)]
    Status(daemon_client::StatusArgs),
    /// The node's events: rejections, removals, reloads; filtered, or followed.
    #[command(after_help = events_cmd::EXAMPLES)]
    Events(events_cmd::Args),
    /// Install or remove pullguard-verifier in containerd's verifier directory (used by the Kubernetes DaemonSet).
    #[command(subcommand)]
    Node(node::Command),
    /// Check a policy file, explain which rule applies, compare two policies.
    #[command(subcommand, after_help = policy_cmd::EXAMPLES)]
    Policy(policy_cmd::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  pullguard completions bash > /etc/bash_completion.d/pullguard\n\nExit codes: 0 printed, 2 an unknown shell."
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (pullguard.1 and one per subcommand) into DIR; used by packaging.
    #[command(hide = true)]
    Man {
        /// Output directory.
        dir: std::path::PathBuf,
    },
    /// Sign an image tag and publish it to the trust server (Docker Content Trust).
    #[command(after_help = sign::EXAMPLES)]
    Sign(sign::Args),
    /// Who may sign a repository's tags: add, remove, list signers (delegations).
    #[command(subcommand, after_help = signer::EXAMPLES)]
    Signer(signer::Command),
    /// A repository's keys on the trust server: rotate the root key (cross-signed).
    #[command(subcommand, after_help = rotate::EXAMPLES)]
    Key(rotate::Command),
    /// Sigstore bundles verified offline (the conformance suite's command line).
    #[command(subcommand)]
    Sigstore(sigstore_cmd::Command),
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

/// A reader that closed its end of our output (`pullguard events --follow | shipper`
/// when the shipper restarts, `| head`) ends the command quietly, as other Unix tools
/// do, instead of a panic report and exit 101. Rust's `print!` panics on EPIPE; this hook
/// recognises that one panic and exits 0; every other panic is reported as before.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Trust(TrustCommand::Verify(args)) => trust_verify::run(&args),
        Command::Keys { dirs, command } => keys::run(&dirs, &command),
        Command::Verify(args) => daemon_client::verify(&args),
        Command::Status(args) => daemon_client::status(&args),
        Command::Policy(command) => policy_cmd::run(&command),
        Command::Node(command) => node::run(&command),
        Command::Events(args) => events_cmd::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Sign(args) => sign::run(&args),
        Command::Signer(command) => signer::run(&command),
        Command::Key(command) => rotate::run(&command),
        Command::Sigstore(command) => sigstore_cmd::run(&command),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "pullguard", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(cmd, &dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "pullguard: cannot write man pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::from(Exit::Usage)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every command an operator can run says, in its own `--help`, how it is used and
    /// what its exit codes mean (the README promises it).
    #[test]
    fn every_command_has_an_example_and_its_exit_codes() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let subs: Vec<&clap::Command> =
                cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
            if subs.is_empty() {
                let help = cmd
                    .get_after_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if !(help.contains("Example") && help.contains("Exit codes")) {
                    missing.push(path.to_owned());
                }
            }
            for s in subs {
                walk(s, &format!("{path} {}", s.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<super::Cli as clap::CommandFactory>::command(),
            "pullguard",
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "no example or exit codes in --help of: {missing:?}"
        );
    }
}
