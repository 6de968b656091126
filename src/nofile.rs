//! The open-file limit: a fleet command holds one socket per host until its last phase, so the
//! shell's soft `RLIMIT_NOFILE` (often 1024) would stop it near a thousand hosts while the hard
//! limit (often 524288) allows far more. Raised once at start-up, as far as the hard limit.

/// Raise the soft open-file limit to the hard one. Never fails the run: a limit that cannot be
/// read or raised is left as it is (logged), and the first host past it fails with "Too many
/// open files" as before.
pub(crate) fn raise_to_hard_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        tracing::debug!(
            "open-file limit: getrlimit failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        tracing::debug!(
            "open-file limit: {} (already the hard limit)",
            shown(limit.rlim_cur)
        );
        return;
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct we pass; raising the soft limit up to the hard one
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } == 0 {
        tracing::info!(
            "open-file limit raised from {} to {} (the hard limit): one socket per host",
            shown(before),
            shown(limit.rlim_max)
        );
    } else {
        tracing::info!(
            "open-file limit left at {}: raising it to {} failed: {}",
            shown(before),
            shown(limit.rlim_max),
            std::io::Error::last_os_error()
        );
    }
}

fn shown(value: libc::rlim_t) -> String {
    if value == libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}
