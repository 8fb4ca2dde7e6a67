//! Memory as the kernel reports it: this process from `/proc/self/status`, the machine from
//! `/proc/meminfo`. Reads only; 0 / None where /proc is unavailable.

/// What the process's allocator says of itself (the binary reads it: the control plane does not
/// know which allocator is linked in).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AllocatorStats {
    /// "mimalloc", …
    pub allocator: &'static str,
    pub version: String,
    /// Memory the allocator has committed from the OS now, and at most so far.
    pub committed_bytes: u64,
    pub committed_peak_bytes: u64,
    /// Address space the allocator reserved (committed or not), when it reports it.
    pub reserved_bytes: Option<u64>,
    pub page_faults: u64,
}

/// Reads the allocator's statistics (None when it cannot say).
pub type AllocatorStatsFn = fn() -> Option<AllocatorStats>;

/// This process's memory (`VmRSS`, `VmHWM`, `VmSize`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    pub rss_bytes: u64,
    pub rss_peak_bytes: u64,
    pub virtual_bytes: u64,
}

/// The machine's memory (`MemTotal`, `MemAvailable`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemMemory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl SystemMemory {
    /// 100 × (1 − available / total); 0 when unknown.
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        100.0 * (1.0 - self.available_bytes as f64 / self.total_bytes as f64)
    }
}

pub fn process_memory() -> ProcessMemory {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    ProcessMemory {
        rss_bytes: kib_field(&text, "VmRSS:"),
        rss_peak_bytes: kib_field(&text, "VmHWM:"),
        virtual_bytes: kib_field(&text, "VmSize:"),
    }
}

pub fn system_memory() -> SystemMemory {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    SystemMemory {
        total_bytes: kib_field(&text, "MemTotal:"),
        available_bytes: kib_field(&text, "MemAvailable:"),
    }
}

/// `Key:   1234 kB` → bytes (0 if absent or malformed).
fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields() {
        let text = "Name:\ttickflow\nVmRSS:\t   2048 kB\nVmHWM: 4096 kB\nVmSize: x kB\n";
        assert_eq!(kib_field(text, "VmRSS:"), 2048 * 1024);
        assert_eq!(kib_field(text, "VmHWM:"), 4096 * 1024);
        assert_eq!(kib_field(text, "VmSize:"), 0);
        assert_eq!(kib_field(text, "Missing:"), 0);
    }

    #[test]
    fn used_percent_of_unknown_system_is_zero() {
        assert_eq!(SystemMemory::default().used_percent(), 0.0);
        let half = SystemMemory {
            total_bytes: 100,
            available_bytes: 50,
        };
        assert_eq!(half.used_percent(), 50.0);
    }
}
