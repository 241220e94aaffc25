//! The `pullprobe` binary: parse flags, set up logging, run `--check` or the agent.

use std::process::ExitCode;

use pullprobe::agent::{self, AgentError, AgentOptions};
use pullprobe::cli::{Cli, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
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
        runtime.block_on(run_agent(&cli))
    };
    ExitCode::from(code)
}

/// The agent until SIGTERM/SIGINT: 0 after a clean shutdown, 2 for a bad config or address.
async fn run_agent(cli: &Cli) -> u8 {
    let mut bound = None;
    let mut last_error = None;
    for candidate in cli.web_listen_address.candidates() {
        match tokio::net::TcpListener::bind(candidate.as_str()).await {
            Ok(l) => {
                bound = Some(l);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(listener) = bound else {
        let why = last_error.map_or_else(String::new, |e| {
            format!(": {}", pullprobe::probe::os_text(&e))
        });
        eprintln!(
            "pullprobe: cannot listen on --web.listen-address {}{why}",
            cli.web_listen_address
        );
        return EXIT_USAGE;
    };
    match agent::run(
        AgentOptions::from_cli(cli),
        listener,
        agent::shutdown_signal(),
    )
    .await
    {
        Ok(()) => 0,
        Err(e @ (AgentError::Config(_) | AgentError::WebConfig(_))) => {
            eprintln!("pullprobe: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("pullprobe: {e}");
            1
        }
    }
}
