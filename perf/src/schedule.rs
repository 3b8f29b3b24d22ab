//! The open-loop clock: requests ("slots") are due at fixed times set by the offered
//! rate of each stage, whatever the server does. A connection that is free takes the
//! next slot and waits for its time; a slot whose time has passed when a connection
//! takes it waited for one, and its latency counts from its due time (coordinated
//! omission corrected, as wrk2 and k6's constant-arrival-rate do).

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// One stage of a run: `rate` requests (or buyers) a second for `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub rate: f64,
    pub duration: Duration,
    /// Warm-up stages are run but left out of the totals.
    pub measured: bool,
}

/// A slot handed to a connection.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub due: Instant,
    pub stage: usize,
    /// Index over the whole run (of this thread), for deterministic request mixes.
    pub index: u64,
}

/// One thread's schedule: its share of every stage's rate, phase-shifted by the thread's
/// number so threads do not fire together.
pub struct Clock {
    start: Instant,
    /// Stage ends, in ns from `start`.
    ends_ns: Vec<f64>,
    /// ns between slots, per stage.
    gaps_ns: Vec<f64>,
    next_ns: Cell<f64>,
    stage: Cell<usize>,
    index: Cell<u64>,
}

impl Clock {
    pub fn new(start: Instant, stages: &[Stage], thread: usize, threads: usize) -> Clock {
        let mut end = 0.0;
        let ends_ns = stages
            .iter()
            .map(|s| {
                end += s.duration.as_nanos() as f64;
                end
            })
            .collect();
        let gaps_ns: Vec<f64> = stages
            .iter()
            .map(|s| {
                let rate = (s.rate / threads as f64).max(1e-9);
                1e9 / rate
            })
            .collect();
        let phase = gaps_ns.first().copied().unwrap_or(0.0) * thread as f64 / threads as f64;
        Clock {
            start,
            ends_ns,
            gaps_ns,
            next_ns: Cell::new(phase),
            stage: Cell::new(0),
            index: Cell::new(0),
        }
    }

    /// The next slot, or `None` once the last stage is over.
    pub fn take(&self) -> Option<Slot> {
        let mut stage = self.stage.get();
        let mut at = self.next_ns.get();
        while stage < self.ends_ns.len() && at >= self.ends_ns[stage] {
            // A new stage starts its own spacing at its start.
            let start = self.ends_ns[stage];
            stage += 1;
            at = at.max(start);
        }
        if stage >= self.ends_ns.len() {
            self.stage.set(stage);
            return None;
        }
        self.stage.set(stage);
        self.next_ns.set(at + self.gaps_ns[stage]);
        let index = self.index.get();
        self.index.set(index + 1);
        Some(Slot {
            due: self.start + Duration::from_nanos(at as u64),
            stage,
            index,
        })
    }

    /// When the stage starts and ends.
    pub fn stage_window(&self, stage: usize) -> (Instant, Instant) {
        let begin = if stage == 0 {
            0.0
        } else {
            self.ends_ns[stage - 1]
        };
        (
            self.start + Duration::from_nanos(begin as u64),
            self.start + Duration::from_nanos(self.ends_ns[stage] as u64),
        )
    }

    pub fn end(&self) -> Instant {
        self.start + Duration::from_nanos(self.ends_ns.last().copied().unwrap_or(0.0) as u64)
    }
}

/// `stepup` stages: `from` to `to` requests/s in `steps` equal steps, each `hold` long.
pub fn stepup(from: f64, to: f64, steps: usize, hold: Duration) -> Vec<Stage> {
    let steps = steps.max(1);
    (0..steps)
        .map(|i| {
            let rate = if steps == 1 {
                to
            } else {
                from + (to - from) * i as f64 / (steps - 1) as f64
            };
            Stage {
                name: format!("step {} ({:.0}/s)", i + 1, rate),
                rate,
                duration: hold,
                measured: true,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(rate: f64, ms: u64) -> Stage {
        Stage {
            name: String::new(),
            rate,
            duration: Duration::from_millis(ms),
            measured: true,
        }
    }

    #[test]
    fn slots_follow_each_stage_rate_and_stop_at_the_end() {
        let start = Instant::now();
        let clock = Clock::new(start, &[stage(1000.0, 100), stage(100.0, 100)], 0, 1);
        let slots: Vec<Slot> = std::iter::from_fn(|| clock.take()).collect();
        let first = slots.iter().filter(|s| s.stage == 0).count();
        let second = slots.iter().filter(|s| s.stage == 1).count();
        assert_eq!((first, second), (100, 10));
        assert!(slots.windows(2).all(|w| w[0].due <= w[1].due));
        assert_eq!(slots[100].due, start + Duration::from_millis(100));
        assert!(clock.take().is_none());
    }

    #[test]
    fn threads_share_the_rate() {
        let start = Instant::now();
        let stages = [stage(1000.0, 1000)];
        let a = Clock::new(start, &stages, 0, 2);
        let b = Clock::new(start, &stages, 1, 2);
        let count = |c: &Clock| std::iter::from_fn(|| c.take()).count();
        assert_eq!(count(&a) + count(&b), 1000);
    }

    #[test]
    fn stepup_rises_evenly() {
        let rates: Vec<f64> = stepup(100.0, 400.0, 4, Duration::from_secs(1))
            .iter()
            .map(|s| s.rate)
            .collect();
        assert_eq!(rates, [100.0, 200.0, 300.0, 400.0]);
    }
}
