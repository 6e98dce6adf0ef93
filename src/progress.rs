//! Progress for long commands: a bar (rate, ETA) when stderr is a terminal, otherwise a plain
//! line at every tenth of the way, so logs and CI output stay readable.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    /// Bytes of input (a file being read), or items.
    bytes: bool,
    total: u64,
    done: u64,
    /// Records handled so far, shown beside a byte count.
    records: u64,
    next_line: u64,
    /// Input of unknown length: a line every [`UNKNOWN_TOTAL_STEP`] bytes, no percentage.
    unknown_total: bool,
    started: Instant,
}

/// Bytes between two progress lines when the input's length is unknown.
const UNKNOWN_TOTAL_STEP: u64 = 256 << 20;

impl Progress {
    /// Progress over `total` items (e.g. records generated).
    pub fn new(total: u64, what: &str) -> Progress {
        Progress::make(
            total,
            what,
            false,
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})",
        )
    }

    /// Progress through `total` bytes of input, with the records they held; `None` for input
    /// of unknown length (a pipe: `import /dev/stdin`), shown as bytes read so far.
    pub fn bytes(total: Option<u64>, what: &str) -> Progress {
        match total {
            Some(total) => Progress::make(
                total,
                what,
                true,
                "{msg} [{bar:40}] {percent}% ({binary_bytes_per_sec}, ETA {eta})",
            ),
            None => {
                let mut p = Progress::make(
                    0,
                    what,
                    true,
                    "{msg} {spinner} {binary_bytes} ({binary_bytes_per_sec})",
                );
                p.unknown_total = true;
                p.next_line = UNKNOWN_TOTAL_STEP;
                p
            }
        }
    }

    fn make(total: u64, what: &str, bytes: bool, template: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if total == 0 {
                ProgressBar::new_spinner()
            } else {
                ProgressBar::new(total)
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_message(what.to_string());
            bar
        });
        Progress {
            bar,
            what: what.to_string(),
            bytes,
            total,
            done: 0,
            records: 0,
            next_line: total.div_ceil(10).max(1),
            unknown_total: false,
            started: Instant::now(),
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.advance(n, n);
    }

    /// `n` more units (bytes or items) done, holding `records` records.
    pub fn advance(&mut self, n: u64, records: u64) {
        self.done += n;
        self.records += records;
        let rate = self.records as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        match &self.bar {
            Some(bar) => {
                bar.inc(n);
                if self.bytes {
                    bar.set_message(format!(
                        "{} {} records ({rate:.0}/s)",
                        self.what, self.records
                    ));
                }
            }
            None if self.unknown_total && self.done >= self.next_line => {
                eprintln!(
                    "{}: {} MiB read ({} records, {rate:.0}/s)",
                    self.what,
                    self.done >> 20,
                    self.records
                );
                self.next_line = (self.done / UNKNOWN_TOTAL_STEP + 1) * UNKNOWN_TOTAL_STEP;
            }
            None if self.unknown_total => {}
            None if self.done >= self.next_line || self.done == self.total => {
                if self.bytes {
                    let percent = self.done * 100 / self.total.max(1);
                    eprintln!(
                        "{}: {percent}% ({} records, {rate:.0}/s)",
                        self.what, self.records
                    );
                } else {
                    eprintln!("{}: {}/{} ({rate:.0}/s)", self.what, self.done, self.total);
                }
                self.next_line += self.total.div_ceil(10).max(1);
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}
