//! Every system call another process makes, counted by `perf stat` on the raw_syscalls:sys_enter
//! tracepoint while attached. Needs perf installed and tracepoints allowed (root, or
//! perf_event_paranoid ≤ -1); where they are not, the bench says so and shows no count.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// perf is given this long to attach before the load starts, and to print once interrupted.
const ATTACH: Duration = Duration::from_millis(300);
const FINISH: Duration = Duration::from_secs(5);

/// A running `perf stat -p PID`; `stop` interrupts it and reads the count.
pub struct SyscallCount {
    child: Child,
}

impl SyscallCount {
    pub fn start(pid: u32) -> Result<SyscallCount, String> {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        std::thread::sleep(ATTACH);
        Ok(SyscallCount { child })
    }

    /// Interrupts perf as Ctrl-C would and returns the system calls it counted.
    pub fn stop(mut self) -> Result<u64, String> {
        use std::io::Read;
        // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + FINISH;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        // CSV: count,unit,event,... ; "<not counted>" or "<not supported>" when refused.
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|count| count.trim().parse().ok())
            .ok_or_else(|| format!("perf counted nothing: {}", text.trim()))
    }
}

impl Drop for SyscallCount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
