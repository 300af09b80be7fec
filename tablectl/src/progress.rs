//! A progress bar on stderr for long writes and reads, shown only on a terminal.

use batchstore_client::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Progress in rows, drawn by indicatif.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar of `total` rows (a spinner when unknown), or `None` when stderr is not a terminal.
    pub fn rows(total: Option<u64>, what: &str) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = match total {
            Some(total) => {
                let bar = ProgressBar::new(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {human_pos}/{human_len} rows ({elapsed}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {human_pos} rows ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            }
        };
        bar.set_message(what.to_owned());
        Some(Bar(bar))
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn advance(&self, rows: u64, _bytes: u64) {
        self.0.inc(rows);
    }
}

/// A spinner with a changing message, for work whose total is unknown (garbage collection),
/// shown only on a terminal.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn new(what: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message(what.to_owned());
        Spinner(Some(bar))
    }

    pub fn say(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
