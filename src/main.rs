//! The `pullprobe` binary: parse flags, set up logging, run `--check` or the agent.

use std::process::ExitCode;

use clap::Parser;
use pullprobe::cli::{Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = pullprobe::telemetry::init(&cli.log_level, cli.log_format) {
        eprintln!("pullprobe: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    pullprobe::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pullprobe: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = if cli.check {
        runtime.block_on(pullprobe::check::run(&cli))
    } else {
        eprintln!("pullprobe: agent mode is not wired yet; use --check");
        EXIT_USAGE
    };
    ExitCode::from(code)
}
