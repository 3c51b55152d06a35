//! What the bench reads about another process: CPU time, resident memory and read/write system
//! call counts, from /proc.

use std::time::Duration;

use crate::sys::clock_ticks;

/// utime + stime of `pid`, all threads.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the state field.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let hz = clock_ticks();
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// VmRSS of `pid` in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// syscr + syscw of `pid` from /proc/PID/io: the read- and write-family calls (read, readv,
/// write, writev, sendfile...). The kernel does not count recv, recvfrom, send or sendto here,
/// so a process that moves its bytes with those shows (almost) none.
pub fn read_write_calls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some(field("syscr:")? + field("syscw:")?)
}

/// The CPU model from /proc/cpuinfo and the number of CPUs this process may use.
pub fn machine() -> (String, usize) {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (model, cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_some());
        assert!(resident_bytes(pid).unwrap() > 0);
        let before = read_write_calls(pid).unwrap();
        let _ = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(read_write_calls(pid).unwrap() > before);
    }
}
