//! pullguardd: parses arguments, sets up logging, and runs the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser as _;

/// Node-side enforcement of signed images for containerd.
#[derive(clap::Parser)]
#[command(
    name = "pullguardd",
    version,
    after_help = "Exit codes: 0 stopped cleanly; 64 bad configuration (every problem is printed \
with file, line and column); 1 any other failure to start.\n\n\
Examples:\n  pullguardd --config /etc/pullguard/pullguard.toml --log-format json\n  \
pullguardd --config new.toml --check-config\n\n\
Signals: SIGHUP reloads the policy (it is also reloaded on every change of the file); \
SIGTERM stops after open connections finish (3 s at most).\n\n\
Environment: PULLGUARD_LOG sets the log filter (e.g. warn, debug)."
)]
struct Args {
    /// Policy and daemon settings.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/pullguard/pullguard.toml"
    )]
    config: PathBuf,
    /// Check the configuration and exit: 0 if good, 64 if not.
    #[arg(long)]
    check_config: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Replace the socket of a pullguardd already running (a rolling upgrade: the old
    /// one keeps its open connections, then stops without removing the new socket).
    /// Without it, a running pullguardd on the socket stops this one from starting.
    #[arg(long)]
    take_over: bool,
    /// Print the man page (roff) and exit; used by packaging.
    #[arg(long, hide = true)]
    print_man: bool,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

/// EX_USAGE: the configuration is wrong.
const EX_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_man {
        let page = clap_mangen::Man::new(<Args as clap::CommandFactory>::command());
        return match page.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pullguardd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("PULLGUARD_LOG")
        .unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if args.check_config {
        return match daemon::check_config(&args.config) {
            Ok(l) => {
                // Valid, and still maybe not what was meant: said, not refused.
                for w in l.policy.lint() {
                    eprintln!(
                        "pullguardd: warning: {}:{}:{}: {}",
                        args.config.display(),
                        w.line,
                        w.column,
                        w.message
                    );
                }
                if let Some(gone) = l.unusable_summary() {
                    eprintln!("pullguardd: warning: {}: {gone}", args.config.display());
                }
                let n = l.policy.rules.len();
                println!(
                    "{}: ok ({n} rule{})",
                    args.config.display(),
                    if n == 1 { "" } else { "s" }
                );
                ExitCode::SUCCESS
            }
            Err(daemon::StartError::Config(problems)) => {
                for p in &problems {
                    eprintln!("pullguardd: {p}");
                }
                ExitCode::from(EX_CONFIG)
            }
            Err(e) => {
                eprintln!("pullguardd: {e}");
                ExitCode::from(EX_CONFIG)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pullguardd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = async {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            tracing::info!("shutting down");
        };
        let options = daemon::RunOptions {
            take_over: args.take_over,
        };
        daemon::run(&args.config, options, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(daemon::StartError::Config(problems)) => {
            for p in &problems {
                eprintln!("pullguardd: bad configuration: {p}");
            }
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => {
            eprintln!("pullguardd: {}", daemon::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
