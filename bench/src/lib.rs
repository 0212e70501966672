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

/// `switchboard dev`'s stack on a fresh emulator, as the template configures its queues, over
/// the definitions in `dir` and the secrets file `secrets`, its resources named after `stack`.
pub async fn local_stack(
    dir: &std::path::Path,
    secrets: std::path::PathBuf,
    stack: String,
) -> anyhow::Result<switchboard_cli::dev::DevStack> {
    switchboard_cli::dev::DevStack::start(switchboard_cli::dev::DevOptions {
        port: 0,
        integrations: dir.to_path_buf(),
        secrets: Some(secrets),
        emulator_port: switchboard_cli::emulator::free_port()?,
        sink_port: None,
        stack,
        queues: switchboard_cli::resources::TEMPLATE_SETTINGS,
        ..switchboard_cli::dev::DevOptions::default()
    })
    .await
}
