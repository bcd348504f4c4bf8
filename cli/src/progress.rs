//! Progress indicators on stderr, hidden when stderr is not a terminal so
//! scripts and tests see clean output.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner with `message`; call `finish_and_clear` when done.
pub fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(crate::timeouts::PROGRESS_TICK);
    bar
}

/// A byte-count progress bar for reading `total` bytes (e.g. `produce --file`).
pub fn bytes(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A bar counting `total` `unit` (e.g. acknowledged records), with the rate
/// and the time left.
pub fn counter(total: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(&counter_template(unit)) {
        bar.set_style(style);
    }
    bar
}

fn counter_template(unit: &str) -> String {
    format!(
        "{{spinner}} [{{elapsed_precise}}] [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}})"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_counter_template_is_valid() {
        let template = super::counter_template("records acknowledged");
        assert!(
            indicatif::ProgressStyle::with_template(&template).is_ok(),
            "{template}"
        );
    }
}
