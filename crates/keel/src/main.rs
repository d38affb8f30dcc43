//! The `keel` binary: argument parsing, logging set-up, exit codes. Thin glue
//! over the library crates; every command lives in `commands/`.

mod commands;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the server's hot paths (runs/search,
/// log_batch, serving) allocate many small strings per request, and glibc's
/// malloc took about a fifth of a search's samples (ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
