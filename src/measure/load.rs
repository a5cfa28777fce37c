//! How busy the machine was while something was measured: the load average just before and
//! just after (Linux `/proc/loadavg`; unknown elsewhere), so every figure says whether other
//! work shared its CPUs.
//!
//! The load average counts the threads that are running or waiting to run, averaged over the
//! last 1, 5 and 15 minutes. The reading *before* a measurement is the other work on the
//! machine. The reading *after* also counts the measurement's own threads (a CPU bench or a
//! training keeps all of them busy), so the other work then is `after − threads`, roughly.
//! A machine is **busy** when that other work exceeds half its logical CPUs: a measurement
//! made then is read as taken under load.

use serde::{Deserialize, Serialize};

/// The 1-, 5- and 15-minute load averages.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

impl LoadAverage {
    /// The first three fields of `/proc/loadavg` (`0.52 0.58 0.59 1/467 12345`).
    pub fn parse(text: &str) -> Option<LoadAverage> {
        let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
        let (one, five, fifteen) = (it.next()??, it.next()??, it.next()??);
        [one, five, fifteen]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
            .then_some(LoadAverage { one, five, fifteen })
    }

    /// This machine's load average now; `None` where the system does not publish one.
    pub fn now() -> Option<LoadAverage> {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| LoadAverage::parse(&t))
    }
}

/// The load around one measurement: before, after, and what it is read against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadWindow {
    /// Just before the measurement started (`None`: unknown on this system).
    pub before: Option<LoadAverage>,
    /// Just after it ended; includes the measurement's own `threads`.
    pub after: Option<LoadAverage>,
    /// Logical CPUs the OS gives the process.
    pub logical_cpus: usize,
    /// Threads the measurement itself kept busy (the CPU backend's pool).
    pub threads: usize,
}

impl LoadWindow {
    /// Opens a window now: the load before, on a machine of `logical_cpus`, for a measurement
    /// that keeps `threads` threads busy.
    pub fn start(logical_cpus: usize, threads: usize) -> LoadWindow {
        LoadWindow {
            before: LoadAverage::now(),
            after: None,
            logical_cpus: logical_cpus.max(1),
            threads,
        }
    }

    /// [`LoadWindow::start`] for this process: its logical CPUs and rayon threads.
    pub fn start_here() -> LoadWindow {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        LoadWindow::start(cpus, rayon::current_num_threads())
    }

    /// Closes the window: the load after.
    pub fn finish(&mut self) {
        self.after = LoadAverage::now();
    }

    /// The one-minute load of other work: before, and after less the measurement's own
    /// threads. `None` when neither reading exists.
    pub fn others(&self) -> Option<f64> {
        let before = self.before.map(|l| l.one);
        let after = self.after.map(|l| (l.one - self.threads as f64).max(0.0));
        match (before, after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether other work took more than half the logical CPUs (`None`: unknown).
    pub fn busy(&self) -> Option<bool> {
        self.others().map(|o| o > busy_threshold(self.logical_cpus))
    }

    /// One line for a report: `load average 0.52 before, 2.61 after (2 logical CPUs, 2
    /// threads measuring): quiet`.
    pub fn describe(&self) -> String {
        let one =
            |l: &Option<LoadAverage>| l.map_or("unknown".to_string(), |l| format!("{:.2}", l.one));
        let verdict = match self.busy() {
            Some(true) => "busy: other work shared the CPUs, so absolute figures are low",
            Some(false) => "quiet",
            None => "load unknown",
        };
        format!(
            "load average {} before, {} after ({} logical CPUs, {} threads measuring): {verdict}",
            one(&self.before),
            one(&self.after),
            self.logical_cpus,
            self.threads
        )
    }

    /// A warning to show when the machine is busy, else `None`.
    pub fn warning(&self) -> Option<String> {
        (self.busy() == Some(true)).then(|| {
            format!(
                "warning: the machine is busy ({}); figures measured now are taken under load",
                self.describe()
            )
        })
    }
}

/// Other work above this one-minute load makes a machine of `logical_cpus` busy: half of them.
pub fn busy_threshold(logical_cpus: usize) -> f64 {
    logical_cpus.max(1) as f64 / 2.0
}

/// A warning if the machine is busy right now (before a measurement starts), else `None`.
pub fn busy_now() -> Option<String> {
    LoadWindow::start_here().warning()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avg(one: f64) -> Option<LoadAverage> {
        Some(LoadAverage {
            one,
            five: one,
            fifteen: one,
        })
    }

    #[test]
    fn proc_loadavg_parses() {
        let l = LoadAverage::parse("0.52 0.58 1.59 1/467 12345\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.52, 0.58, 1.59));
        for bad in ["", "0.5 0.5", "x 1 2", "-1 0 0", "nan 1 1"] {
            assert!(LoadAverage::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn busy_is_other_work_over_half_the_cpus() {
        let w = |before, after| LoadWindow {
            before,
            after,
            logical_cpus: 2,
            threads: 2,
        };
        // Quiet before; after, the measurement's own 2 threads do not count.
        assert_eq!(w(avg(0.4), avg(2.9)).busy(), Some(false));
        // Other work before, or left after the measurement's threads are taken off.
        assert_eq!(w(avg(1.2), avg(2.0)).busy(), Some(true));
        assert_eq!(w(avg(0.2), avg(3.5)).busy(), Some(true));
        assert_eq!(w(None, None).busy(), None);
        assert_eq!(w(avg(0.9), None).busy(), Some(false));
        assert!(w(avg(12.0), avg(13.0)).warning().unwrap().contains("busy"));
        assert!(w(avg(0.1), avg(1.0)).warning().is_none());
        assert!(w(None, None).describe().contains("load unknown"));
    }

    #[test]
    fn this_machine_reads_its_load_on_linux() {
        let w = LoadWindow::start_here();
        assert_eq!(w.before.is_some(), cfg!(target_os = "linux"));
        assert!(w.logical_cpus >= 1);
    }
}
