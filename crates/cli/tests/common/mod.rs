//! Running the real `pullguard` binary in tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;

/// Runs `pullguard ARGS`: (exit code, stdout as JSON if it is JSON, stdout then stderr).
pub fn pullguard(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pullguard"))
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(text.trim()).unwrap_or_default();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), json, text)
}
