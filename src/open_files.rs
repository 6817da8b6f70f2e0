//! The process's limit on open files, raised at start-up from its soft value to its hard
//! one.
//!
//! Every client connection, upstream connection and body kept in a file of its own
//! ([`crate::mapped`]) holds a file descriptor. Service managers and shells commonly start
//! programs with a soft limit of 1,024 and a hard limit far above it; the soft limit is
//! only a default the program may raise up to the hard one, as nginx does with
//! `worker_rlimit_nofile`. usher raises it before serving, so a gateway is not refused its
//! 1,025th connection on a machine that allows a million.

/// Below this many open files after raising, usher warns at start-up.
pub const LOW: u64 = 8192;

/// The soft limit on open files before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now: the hard limit, or `before` when it could not be raised.
    pub after: u64,
}

/// The soft and hard limits on open files now; `None` when they cannot be read.
pub fn limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into the pointer it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft limit on open files to the hard limit; `None` when the limits cannot be
/// read.
pub fn raise() -> Option<Raised> {
    let (before, hard) = limits()?;
    let raised = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `setrlimit` reads one `rlimit` from the pointer it is given.
    let done = before < hard && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    Some(Raised {
        before,
        after: if done { hard } else { before },
    })
}

/// Raises the limit and says what became of it in the log: the change at `info`, a limit
/// below [`LOW`] as a warning.
pub fn raise_and_log() {
    match raise() {
        None => tracing::warn!("cannot read the limit on open files"),
        Some(Raised { before, after }) => {
            if after != before {
                tracing::info!(before, after, "raised the soft limit on open files");
            }
            if after < LOW {
                tracing::warn!(
                    limit = after,
                    "the limit on open files is low: every client connection, upstream \
                     connection and body kept in a file takes one; raise the hard limit \
                     (LimitNOFILE= in a systemd unit, ulimit -Hn, docker --ulimit nofile=)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let raised = raise().expect("limits are readable");
        let (soft, hard) = limits().unwrap();
        assert_eq!((raised.after, soft), (hard, hard));
        assert!(raised.after >= raised.before);
    }
}
