//! The open-file limit: every session is a socket, so the default soft limit (often 1,024) would
//! cap a worker at about a thousand sessions. The server raises its soft limit to the hard one
//! at start; the bench raises both as far as it is allowed to.

/// Raises this process's open-file limit so that `wanted` descriptors fit: the soft limit up to
/// the hard one, and the hard one too when allowed (root). Returns the soft limit now in force.
pub fn raise_to(wanted: u64) -> u64 {
    let Some(limit) = current() else { return 0 };
    if limit.rlim_cur >= wanted {
        return limit.rlim_cur;
    }
    if set(wanted, limit.rlim_max.max(wanted)) {
        return wanted;
    }
    if set(limit.rlim_max, limit.rlim_max) {
        return limit.rlim_max;
    }
    limit.rlim_cur
}

/// Raises the soft limit to the hard one (never lowers it). Returns the soft limit in force.
pub fn raise_to_hard() -> u64 {
    match current() {
        Some(limit) if limit.rlim_cur < limit.rlim_max => {
            if set(limit.rlim_max, limit.rlim_max) {
                limit.rlim_max
            } else {
                limit.rlim_cur
            }
        }
        Some(limit) => limit.rlim_cur,
        None => 0,
    }
}

fn current() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is handed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

fn set(soft: u64, hard: u64) -> bool {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads only the struct it is handed.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_never_goes_down() {
        let before = super::current().expect("getrlimit").rlim_cur;
        assert!(super::raise_to_hard() >= before);
        assert!(super::raise_to(16) >= before);
    }
}
