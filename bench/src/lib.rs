//! What the bench binaries share.

/// Peak resident set of process `pid` (`self` for this one) since it started or its last
/// reset, in KiB (`VmHWM` in `/proc/<pid>/status`; 0 where there is no such file).
pub fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
