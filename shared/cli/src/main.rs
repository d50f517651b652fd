//! `snapnest`: see the crate's documentation (`src/lib.rs`) and `snapnest --help`.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    snapnest_cli::run(snapnest_cli::Cli::parse()).await
}
