//! The `snapnest` CLI for the end-to-end tests: built once, run as a user runs it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::moto::repo_root;

/// The `snapnest` binary of this workspace, built on first use.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let status = crate::without_test_env(&mut Command::new(env!("CARGO")))
                .args(["build", "--quiet", "-p", "snapnest-cli", "--bin", "snapnest"])
                .current_dir(repo_root())
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build -p snapnest-cli failed");
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
            target.join("debug/snapnest")
        })
        .clone()
}

/// What one command line did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its standard output as JSON (`--output json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }
}

/// Runs `snapnest <args>` against `endpoint` (off a terminal: JSON output, line progress).
pub fn run(endpoint: &str, args: &[&str]) -> Ran {
    let output = Command::new(binary())
        .args(args)
        .env("SNAPNEST_ENDPOINT", endpoint)
        .env_remove("SNAPNEST_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run snapnest");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `snapnest` command left running (`schedules`, `console`), stopped when dropped.
pub struct Running(Child);

impl Running {
    pub fn start(endpoint: &str, args: &[&str], log: &std::path::Path) -> Running {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(binary())
            .args(args)
            .env("SNAPNEST_ENDPOINT", endpoint)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start snapnest");
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
