//! Progress bars (indicatif) on stderr. Callers decide whether bars are shown
//! (a terminal, not CI, not `--quiet`); a hidden bar costs nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether to draw bars: stderr is a terminal, `CI` is not set to a true
/// value, and the user did not ask for quiet output.
pub fn should_show(quiet: bool) -> bool {
    use std::io::IsTerminal;
    let ci = std::env::var("CI")
        .map(|value| !matches!(value.as_str(), "" | "0" | "false"))
        .unwrap_or(false);
    !quiet && !ci && std::io::stderr().is_terminal()
}

/// A byte-counting bar, hidden when `show` is false.
pub fn bytes_bar(show: bool, total: u64, message: &'static str) -> ProgressBar {
    if !show || total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}

/// A bar counting items (files, objects), hidden when `show` is false.
pub fn count_bar(show: bool, total: u64, message: &'static str) -> ProgressBar {
    if !show || total == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} files, eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message);
    bar
}
