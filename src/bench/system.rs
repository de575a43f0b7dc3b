//! What the bench reads off the machine: the server's processes (from its `/health`, or a
//! process given with `--server-pid` and its descendants), their resident memory, open files
//! and CPU time (from `/proc`).

use serde_json::Value;

use super::{BenchArgs, BenchError, Target};

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

/// The processes a run measures: `--server-pid` and its descendants when given (nginx's master
/// and its workers), else the ones Rohrpost's `/health` names.
pub async fn server_processes(
    args: &BenchArgs,
    http: &awc::Client,
) -> Result<Vec<u32>, BenchError> {
    match (args.server_pid, args.target) {
        (Some(pid), _) => process_tree(pid),
        (None, Target::Rohrpost) => server_pids(http, &args.url).await,
        (None, Target::Nchan) => Err(BenchError::Usage(
            "--target nchan needs --server-pid: nginx's master process (its workers are found \
             from it)"
                .into(),
        )),
    }
}

/// `pid` and every process descending from it (parents from `/proc/PID/stat`).
pub fn process_tree(pid: u32) -> Result<Vec<u32>, BenchError> {
    if parent_of(pid).is_none() {
        return Err(BenchError::Usage(format!(
            "--server-pid {pid}: no such process"
        )));
    }
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map_err(|e| BenchError::Server(format!("/proc: {e}")))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut at = 0;
    while at < tree.len() {
        let parent = tree[at];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        at += 1;
    }
    Ok(tree)
}

/// The parent of a process (field 4 of `/proc/PID/stat`), if it exists.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat).get(1)?.parse().ok()
}

/// The fields of a `/proc/PID/stat` line after the command name (field 2, which may hold
/// spaces): the first is the state (field 3).
fn stat_fields(stat: &str) -> Vec<&str> {
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().collect()
}

/// Resident memory of the processes together, in KiB (`VmRSS` of `/proc/PID/status`). Pages
/// two of them share (a forked master's and workers' common memory) count once for each.
pub fn rss_kib(pids: &[u32]) -> u64 {
    sum_kib(pids, "status", "VmRSS:")
}

/// Proportional resident memory of the processes together, in KiB (`Pss` of
/// `/proc/PID/smaps_rollup`): a shared page counts split between those sharing it, so the
/// sum is what the processes take from the machine together.
pub fn pss_kib(pids: &[u32]) -> u64 {
    sum_kib(pids, "smaps_rollup", "Pss:")
}

/// The sum over the processes of the KiB figure on the line starting `key` of `/proc/PID/file`.
fn sum_kib(pids: &[u32], file: &str, key: &str) -> u64 {
    pids.iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/{file}"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(key))
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
            let fields = stat_fields(&stat);
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
        (self.used_seconds() / wall * 1000.0).round() / 10.0
    }

    /// CPU time the processes used since the start, in seconds.
    pub fn used_seconds(&self) -> f64 {
        (cpu_seconds(&self.pids) - self.cpu).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_holds_the_process_and_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(std::process::id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], std::process::id());
        assert!(tree.contains(&child.id()), "{tree:?} lacks {}", child.id());
    }

    #[test]
    fn a_missing_server_pid_is_a_usage_error() {
        let e = process_tree(u32::MAX).unwrap_err().to_string();
        assert!(e.contains("no such process"), "{e}");
    }

    #[test]
    fn stat_fields_start_after_a_command_name_with_spaces() {
        let fields = stat_fields("42 (nginx: worker process) S 41 42 42 0");
        assert_eq!(fields[..2], ["S", "41"]);
    }
}
