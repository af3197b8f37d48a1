//! The CLI's exit codes, one meaning each across every command (docs/cli.md lists them).

use std::process::ExitCode;

use serde_json::json;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done; for verdicts, allowed.
    Ok,
    /// 1: refused: an image, tag or trust data that does not pass.
    Refused,
    /// 2: the command cannot run as given: arguments, files, policy, keys.
    Usage,
    /// 3: a service did not answer: pullguardd, the trust server or the registry.
    Unreachable,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Ok => 0,
            Exit::Refused => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
        })
    }
}

/// Says what failed (a JSON object on stdout with `--json`; a line on stderr always) and
/// ends with `code`.
pub fn fail(code: Exit, json_out: bool, error: &str, message: &str) -> ExitCode {
    if json_out {
        println!("{}", json!({"error": error, "message": message}));
    }
    eprintln!("pullguard: {message}");
    code.into()
}
