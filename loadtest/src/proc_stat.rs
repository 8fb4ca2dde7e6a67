//! Samples a process from /proc: resident memory, threads, CPU time; and the machine's load.

/// One reading of a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    pub rss_kb: u64,
    pub threads: u64,
    /// User + system CPU time, nanoseconds.
    pub cpu_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read /proc/{pid}: {source}")]
    Read { pid: u32, source: std::io::Error },
    #[error("/proc/{pid}/{file} has no {field}")]
    Field {
        pid: u32,
        file: &'static str,
        field: &'static str,
    },
}

fn clock_ticks_per_s() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

impl ProcSample {
    pub fn read(pid: u32) -> Result<ProcSample, ProcError> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| ProcError::Read { pid, source })?;
        let field = |name: &'static str| -> Result<u64, ProcError> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .ok_or(ProcError::Field {
                    pid,
                    file: "status",
                    field: name,
                })
        };
        let rss_kb = field("VmRSS:")?;
        let threads = field("Threads:")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|source| ProcError::Read { pid, source })?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; here 0-based 11 and 12 after the name.
        let ticks = |index: usize| -> Result<u64, ProcError> {
            fields
                .get(index)
                .and_then(|value| value.parse::<u64>().ok())
                .ok_or(ProcError::Field {
                    pid,
                    file: "stat",
                    field: "utime/stime",
                })
        };
        let cpu_ticks = ticks(11)? + ticks(12)?;
        Ok(ProcSample {
            rss_kb,
            threads,
            cpu_ns: cpu_ticks * 1_000_000_000 / clock_ticks_per_s(),
        })
    }
}

/// CPU time (ns) of a process's live threads, summed by thread name with trailing digits and
/// dashes removed (`tickflow-shard-0` and `tickflow-shard-1` both count as `tickflow-shard`).
pub fn cpu_ns_by_thread_name(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|index| {
                fields
                    .get(*index)
                    .and_then(|value| value.parse::<u64>().ok())
            })
            .sum();
        let name = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        *by_name.entry(name).or_insert(0) += ticks * 1_000_000_000 / clock_ticks_per_s();
    }
    by_name
}

/// The 1-minute load average (/proc/loadavg), to tell a busy machine in a report.
pub fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let sample = ProcSample::read(std::process::id()).unwrap();
        assert!(sample.rss_kb > 0);
        assert!(sample.threads >= 1);
    }

    #[test]
    fn groups_this_process_threads_by_name_without_their_index() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rr-sampled-7".to_owned())
            // The new thread names itself before it runs this closure: once it has said so, /proc
            // shows the name. Alive until the sender is dropped, after the sample (bounded in
            // case of a bug).
            .spawn(move || {
                let _ = started.send(());
                stopped.recv_timeout(std::time::Duration::from_secs(30))
            })
            .unwrap();
        running
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        let by_name = cpu_ns_by_thread_name(std::process::id());
        drop(stop);
        let _ = thread.join();
        assert!(by_name.contains_key("rr-sampled"), "{by_name:?}");
        assert!(load_average_1m().is_some_and(f64::is_finite));
    }
}
