//! Progress for long commands: a bar (rate, ETA) when stderr is a terminal, otherwise a plain
//! line at every tenth of the way, so logs and CI output stay readable.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    next_line: u64,
    started: Instant,
}

impl Progress {
    pub fn new(total: u64, what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_message(what);
            bar
        });
        Progress {
            bar,
            what,
            total,
            done: 0,
            next_line: total.div_ceil(10).max(1),
            started: Instant::now(),
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.done >= self.next_line || self.done == self.total => {
                let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("{}: {}/{} ({rate:.0}/s)", self.what, self.done, self.total);
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
