//! The `keel` binary: argument parsing, logging set-up, exit codes. Thin glue
//! over the library crates; every command lives in `commands/`.

mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    commands::init_tracing(cli.quiet);
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
