//! Resident memory and CPU time of a process, read from /proc (Linux only).

/// Resident set size in KiB (`VmRSS`), `None` if the process is gone or /proc is missing.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// This process's resident set size in KiB.
pub fn self_rss_kib() -> Option<u64> {
    status_field("/proc/self/status", "VmRSS:")
}

fn status_field(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds used so far by `pid` (`None` = this process).
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // /proc reports in USER_HZ, which is 100 on Linux for every architecture we run on.
    Some((utime + stime) as f64 / 100.0)
}

/// CPU used by the server and by this tool between two points in time.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuMark {
    pub fn now(server_pid: Option<u32>) -> Self {
        CpuMark {
            server: server_pid.and_then(|p| cpu_secs(Some(p))),
            client: cpu_secs(None),
        }
    }

    /// (server CPU seconds, client CPU seconds) since `self`.
    pub fn since(&self, server_pid: Option<u32>) -> (Option<f64>, Option<f64>) {
        let now = CpuMark::now(server_pid);
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        (diff(self.server, now.server), diff(self.client, now.client))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        assert!(super::self_rss_kib().unwrap() > 0);
        assert!(super::cpu_secs(None).is_some());
        assert!(super::rss_kib(std::process::id()).is_some());
    }
}
