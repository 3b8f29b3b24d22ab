//! The process's limit on open files. Every connection is a file descriptor, and
//! the soft `RLIMIT_NOFILE` a process starts with is often 1024, far below what one
//! edge task holds under load; the hard limit is what the operator allows (the task
//! definition's `nofile` ulimit). So the edge raises its soft limit to the hard one at
//! start, as nginx's `worker_rlimit_nofile` and Go's runtime do.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// The open-files limit after the attempt, and whether it was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub soft: u64,
    pub hard: u64,
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_nofile() -> nix::Result<NoFile> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(NoFile {
            soft,
            hard,
            raised_from: None,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    let (now, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(NoFile {
        soft: now,
        hard,
        raised_from: Some(soft),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_ends_at_the_hard_one() {
        let limit = raise_nofile().expect("raising to the hard limit needs no privilege");
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit").0,
            limit.hard
        );
    }
}
