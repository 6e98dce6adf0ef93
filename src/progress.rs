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
    /// `None`: input of unknown length (a pipe), shown as bytes read, a line every
    /// [`UNKNOWN_TOTAL_STEP`] bytes and no percentage.
    total: Option<u64>,
    done: u64,
    /// Records handled so far, shown beside a byte count.
    records: u64,
    next_line: u64,
    started: Instant,
}

/// Bytes between two progress lines when the input's length is unknown.
const UNKNOWN_TOTAL_STEP: u64 = 256 << 20;

impl Progress {
    /// Progress over `total` items (e.g. records generated).
    pub fn new(total: u64, what: &str) -> Progress {
        Progress::make(
            Some(total),
            what,
            false,
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})",
        )
    }

    /// Progress through `total` bytes of input, with the records they held; `None` for input
    /// of unknown length (a pipe: `import /dev/stdin`), shown as bytes read so far.
    pub fn bytes(total: Option<u64>, what: &str) -> Progress {
        let template = match total {
            Some(_) => "{msg} [{bar:40}] {percent}% ({binary_bytes_per_sec}, ETA {eta})",
            None => "{msg} {spinner} {binary_bytes} ({binary_bytes_per_sec})",
        };
        Progress::make(total, what, true, template)
    }

    fn make(total: Option<u64>, what: &str, bytes: bool, template: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
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
            next_line: Progress::step(total),
            started: Instant::now(),
        }
    }

    /// Units between two plain progress lines: a tenth of the way, or a fixed number of bytes.
    fn step(total: Option<u64>) -> u64 {
        total.map_or(UNKNOWN_TOTAL_STEP, |t| t.div_ceil(10).max(1))
    }

    pub fn inc(&mut self, n: u64) {
        self.advance(n, n);
    }

    /// `n` more units (bytes or items) done, holding `records` records.
    pub fn advance(&mut self, n: u64, records: u64) {
        self.done += n;
        self.records += records;
        let rate = self.records as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.inc(n);
            if self.bytes {
                bar.set_message(format!(
                    "{} {} records ({rate:.0}/s)",
                    self.what, self.records
                ));
            }
            return;
        }
        if self.done < self.next_line && Some(self.done) != self.total {
            return;
        }
        match self.total {
            None => eprintln!(
                "{}: {} MiB read ({} records, {rate:.0}/s)",
                self.what,
                self.done >> 20,
                self.records
            ),
            Some(total) if self.bytes => eprintln!(
                "{}: {}% ({} records, {rate:.0}/s)",
                self.what,
                self.done * 100 / total.max(1),
                self.records
            ),
            Some(total) => eprintln!("{}: {}/{total} ({rate:.0}/s)", self.what, self.done),
        }
        self.next_line += Progress::step(self.total);
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}
