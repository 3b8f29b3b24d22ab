//! CPU time from `/proc`: a process with its direct children (nginx's master and worker),
//! this process, and the whole machine's busy time, in clock ticks.

use std::fs;

/// Clock ticks a second of `/proc` times (USER_HZ, 100 on Linux everywhere in practice).
pub const TICKS_PER_S: f64 = 100.0;

/// utime + stime of one process from its stat line (fields after "(comm) ").
fn ticks_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 14 (utime) and 15 (stime) of stat are indices 11 and 12 after comm.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of `pid` and its direct children.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let mut total = ticks_of(pid)?;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                total += ticks_of(child).unwrap_or(0);
            }
        }
    }
    Some(total)
}

pub fn self_ticks() -> u64 {
    process_ticks(std::process::id()).unwrap_or(0)
}

/// Busy ticks of all CPUs together (user nice system irq softirq steal).
pub fn machine_busy_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum()
}

/// A sample of every watched process, this one and the machine.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub processes: Vec<u64>,
    pub me: u64,
    pub machine: u64,
}

pub fn sample(pids: &[(String, u32)]) -> Sample {
    Sample {
        processes: pids
            .iter()
            .map(|(_, pid)| process_ticks(*pid).unwrap_or(0))
            .collect(),
        me: self_ticks(),
        machine: machine_busy_ticks(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_stat_line() {
        assert!(process_ticks(std::process::id()).is_some());
        assert!(process_ticks(u32::MAX).is_none());
    }
}
