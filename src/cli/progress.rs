//! Progress on stderr: indicatif bars (epochs of the current run, batches of the current
//! epoch, with loss and images/s) when stderr is a terminal, and one line per finished epoch
//! either way. `--quiet` hides everything; `--json` hides the bars.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use distill::train::{EpochRecord, Observer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing at all.
    Quiet,
    /// One line per epoch and messages, no bars.
    Lines,
    /// Bars and lines.
    Bars,
}

impl Mode {
    pub fn choose(quiet: bool, json: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if json || !std::io::stderr().is_terminal() {
            Mode::Lines
        } else {
            Mode::Bars
        }
    }
}

pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    /// The run whose epochs the epoch bar counts.
    run_bar: Option<(String, ProgressBar)>,
    batch_bar: Option<ProgressBar>,
    epochs: usize,
    last_loss: Option<f64>,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            run_bar: None,
            batch_bar: None,
            epochs: 0,
            last_loss: None,
        }
    }

    /// A line on stderr that does not tear the bars.
    pub fn line(&self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{text}"),
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
        }
    }

    /// A spinner for a long step without its own progress (evaluation, timing), cleared when
    /// dropped; drawn only with bars.
    pub fn spinner(&self, text: &str) -> Spinner {
        if self.mode != Mode::Bars {
            return Spinner(None);
        }
        let pb = self.multi.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message(text.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(pb))
    }

    /// Removes every bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.batch_bar.take() {
            b.finish_and_clear();
        }
        if let Some((_, b)) = self.run_bar.take() {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }

    fn style(template: &str) -> ProgressStyle {
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }
}

/// A spinner of [`Progress::spinner`]; dropping it clears it.
pub struct Spinner(Option<ProgressBar>);

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `teacher epoch 3/5  loss 0.312  train 88.9%  test 90.1%  12.3s  4870 img/s`.
pub fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    format!(
        "{} epoch {}/{}  loss {:.4}  train {:.1}%  test {:.1}%  {:.1}s  {:.0} img/s",
        r.run,
        r.epoch,
        epochs.max(r.epoch),
        r.train_loss,
        100.0 * r.train_accuracy,
        100.0 * r.test_accuracy,
        r.seconds,
        r.images_per_second
    )
}

impl Observer for Progress {
    fn epoch_start(&mut self, run: &str, epoch: usize, epochs: usize, batches: usize) {
        self.epochs = epochs;
        self.last_loss = None;
        if self.mode != Mode::Bars {
            return;
        }
        if self.run_bar.as_ref().is_none_or(|(r, _)| r != run) {
            if let Some((_, old)) = self.run_bar.take() {
                old.finish_and_clear();
            }
            let bar = self.multi.add(ProgressBar::new(epochs as u64));
            bar.set_style(Self::style(
                "{prefix:>12} [{bar:24}] epoch {pos}/{len}  {msg}",
            ));
            bar.set_prefix(run.to_string());
            self.run_bar = Some((run.to_string(), bar));
        }
        if let Some((_, bar)) = &self.run_bar {
            bar.set_length(epochs as u64);
            bar.set_position(epoch.saturating_sub(1) as u64);
        }
        if let Some(b) = self.batch_bar.take() {
            b.finish_and_clear();
        }
        let bar = self.multi.add(ProgressBar::new(batches as u64));
        bar.set_style(Self::style(
            "{prefix:>12} [{bar:24}] batch {pos}/{len}  {msg}  {elapsed_precise} eta {eta}",
        ));
        bar.set_prefix(format!("epoch {epoch}"));
        self.batch_bar = Some(bar);
    }

    fn batch(&mut self, done: usize, loss: Option<f64>, images_per_second: f64) {
        if loss.is_some() {
            self.last_loss = loss;
        }
        if let Some(bar) = &self.batch_bar {
            bar.set_position(done as u64);
            let loss = self
                .last_loss
                .map_or_else(|| "-".to_string(), |l| format!("{l:.4}"));
            bar.set_message(format!("loss {loss}  {images_per_second:.0} img/s"));
        }
    }

    fn epoch_end(&mut self, record: &EpochRecord) {
        if let Some(b) = self.batch_bar.take() {
            b.finish_and_clear();
        }
        if let Some((_, bar)) = &self.run_bar {
            bar.set_position(record.epoch as u64);
            bar.set_message(format!(
                "test {:.1}%  loss {:.4}",
                100.0 * record.test_accuracy,
                record.train_loss
            ));
        }
        self.line(&epoch_line(record, self.epochs));
    }

    fn message(&mut self, text: &str) {
        self.line(text);
    }
}
