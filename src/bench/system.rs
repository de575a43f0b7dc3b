//! What the bench reads off the machine: the server's processes (from its `/health`), their
//! resident memory, open files and CPU time (from `/proc`).

use serde_json::Value;

use super::BenchError;

/// The main port's `/health`: the supervisor's and its workers' state.
pub async fn health(http: &awc::Client, main: &str) -> Result<Value, BenchError> {
    let mut res = http
        .get(format!("{main}/health"))
        .send()
        .await
        .map_err(|e| BenchError::Server(format!("/health: {e}")))?;
    res.json()
        .await
        .map_err(|e| BenchError::Server(format!("/health: {e}")))
}

/// The process ids a `/health` answer names: the workers' and the supervisor's.
pub fn pids_in(health: &Value) -> Vec<u32> {
    let mut pids: Vec<u32> = health["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["pid"].as_u64())
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    pids.extend(health["pid"].as_u64().and_then(|p| u32::try_from(p).ok()));
    pids
}

/// The supervisor's and its workers' process ids, from the main port's `/health`.
pub async fn server_pids(http: &awc::Client, main: &str) -> Result<Vec<u32>, BenchError> {
    let pids = pids_in(&health(http, main).await?);
    if pids.is_empty() {
        return Err(BenchError::Server(
            "/health names no processes (is --url the main port?)".into(),
        ));
    }
    Ok(pids)
}

/// Resident memory of the processes together, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Open file descriptors of the processes together (entries of `/proc/PID/fd`).
pub fn open_fds(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|entries| entries.count() as u64)
        .sum()
}

/// CPU time (user + system) the processes have used so far, in seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant of the system.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = pids
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The command name (field 2) may hold spaces; count fields after its `)`.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // Fields 14 and 15 of the file (utime, stime) are 12 and 13 after the name.
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            field(11).unwrap_or(0) + field(12).unwrap_or(0)
        })
        .sum();
    ticks as f64 / ticks_per_second
}

/// The server's CPU use over a phase: started by [`CpuMeter::start`], read by
/// [`CpuMeter::percent`] (100 % = one core busy for the whole phase).
pub struct CpuMeter {
    pids: Vec<u32>,
    cpu: f64,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            cpu: cpu_seconds(pids),
            wall: std::time::Instant::now(),
        }
    }

    pub fn percent(&self) -> f64 {
        let wall = self.wall.elapsed().as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        let used = cpu_seconds(&self.pids) - self.cpu;
        (used / wall * 1000.0).round() / 10.0
    }
}
