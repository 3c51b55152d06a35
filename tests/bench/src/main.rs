//! The driver behind `scripts/bench`: starts the fake DC, the plain relay and feint on
//! loopback, runs every measurement against each in the same run, and prints one table with
//! feint's figures as ratios to the relay's and each bar marked PASS or FAIL.
//!
//! `feint-bench [--feint PATH] [--quick] [--cell-mib N] [--idle N] [--threads N]
//! [--loopback-segments]`
//!
//! The load client and the fake DC set TCP_MAXSEG 1460 on their sockets, so every hop carries
//! internet-sized segments as on a real link; `--loopback-segments` keeps loopback's 64 KiB.
//!
//! For profiling, one throughput load against a proxy that is already running:
//! `feint-bench load ADDR [SECRET] up|down|both CONNECTIONS MIB`, or
//! `feint-bench load ADDR [SECRET] handshake CLIENTS SECONDS`, or
//! `feint-bench load ADDR [SECRET] pingpong CONNECTIONS ROUNDS` (no SECRET: raw bytes); the
//! client's segments are internet-sized there too unless `--loopback-segments` comes last.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use feint_bench::crypto::random_array;
use feint_bench::load::throughput::Direction;
use feint_bench::load::{self, crypto_speed, handshake, idle, pingpong, throughput, Target};
use feint_bench::perf::SyscallCount;
use feint_bench::procfs::{cpu_time, machine, read_write_calls, resident_bytes};
use feint_bench::report::{bytes, micros, rate, utc_now, verdict, Table};
use feint_bench::stats::Latencies;
use feint_bench::sys::{
    connect, max_segment, own_cpu_time, raise_open_file_limit, INTERNET_SEGMENT,
};

const DOMAIN: &str = "www.example.com";
const HANDSHAKE_CLIENTS: usize = 16;
const PING_SIZE: usize = 128;
const IDLE_TARGET: usize = 10_000;
/// A helper that has not printed its address by then has failed to start.
const START_LIMIT: Duration = Duration::from_secs(10);
const CELL_LIMIT: Duration = Duration::from_secs(30);
/// Each throughput cell and each half of the handshake time runs this often per subject.
const ROUNDS: usize = 3;
/// Ping-pong runs in this many short interleaved parts per subject; the p99 bar compares the
/// median of the parts' p99s, so one part disturbed by another process cannot decide it.
const PING_CHUNKS: u64 = 10;

/// direct, relay, feint on even rounds; feint, relay, direct on odd ones.
fn interleaved(round: usize) -> [usize; 3] {
    [[0, 1, 2], [2, 1, 0]][round % 2]
}

#[derive(Default)]
struct Cell {
    best: f64,
    bytes: u64,
    /// CPU seconds of the proxy (relay or feint) over all runs.
    cpu: f64,
    /// CPU seconds of the whole path: load client, fake DC and the proxy if there is one.
    path_cpu: f64,
}

/// CPU time of each process on the path at one moment.
struct PathCpu {
    proxy: Option<Duration>,
    dc: Option<Duration>,
    client: Duration,
}

/// CPU seconds each process on the path spent between two samples.
struct Spent {
    proxy: f64,
    dc: f64,
    client: f64,
}

impl PathCpu {
    fn sample(proxy: Option<u32>, dc: u32) -> PathCpu {
        PathCpu {
            proxy: proxy.and_then(cpu_time),
            dc: cpu_time(dc),
            client: own_cpu_time(),
        }
    }

    fn since(&self, before: &PathCpu) -> Spent {
        let seconds = |after: Option<Duration>, before: Option<Duration>| match (after, before) {
            (Some(a), Some(b)) => a.saturating_sub(b).as_secs_f64(),
            _ => 0.0,
        };
        Spent {
            proxy: seconds(self.proxy, before.proxy),
            dc: seconds(self.dc, before.dc),
            client: self.client.saturating_sub(before.client).as_secs_f64(),
        }
    }
}

/// System calls a proxy made during one counted run.
struct Calls {
    /// Every system call, from perf; None where perf could not count.
    all: Option<u64>,
    /// syscr + syscw from /proc/PID/io: the read and write family only (no recv or send).
    read_write: u64,
    bytes: u64,
}

impl Calls {
    fn per_mb(&self, count: u64) -> f64 {
        count as f64 / (self.bytes.max(1) as f64 / 1e6)
    }

    fn all_per_mb(&self) -> Option<f64> {
        self.all.map(|n| self.per_mb(n))
    }

    fn show(&self) -> String {
        let all = self
            .all_per_mb()
            .map_or("—".to_string(), |n| format!("{n:.0}"));
        format!("{all} ({:.0})", self.per_mb(self.read_write))
    }
}

/// One throughput run against `target` with `pid`'s system calls counted. perf is tried until it
/// fails once; after that `perf_problem` says why and only /proc/PID/io counts.
fn count_calls(
    target: &Target,
    pid: u32,
    direction: Direction,
    connections: usize,
    per_connection: u64,
    perf_problem: &mut Option<String>,
) -> Result<Calls, String> {
    let perf = match perf_problem {
        Some(_) => None,
        None => match SyscallCount::start(pid) {
            Ok(perf) => Some(perf),
            Err(e) => {
                *perf_problem = Some(e);
                None
            }
        },
    };
    let before = read_write_calls(pid).ok_or("no /proc/PID/io")?;
    let outcome = throughput::run(target, direction, connections, per_connection, CELL_LIMIT)
        .map_err(|e| e.to_string())?;
    let after = read_write_calls(pid).ok_or("no /proc/PID/io")?;
    let all = match perf.map(SyscallCount::stop) {
        Some(Ok(count)) => Some(count),
        Some(Err(e)) => {
            *perf_problem = Some(e);
            None
        }
        None => None,
    };
    Ok(Calls {
        all,
        read_write: after.saturating_sub(before),
        bytes: outcome.bytes,
    })
}

struct Options {
    feint: Option<PathBuf>,
    cell_bytes: u64,
    handshake_time: Duration,
    ping_rounds: (u64, u64),
    idle_seconds: u64,
    idle: Option<usize>,
    threads: usize,
    quick: bool,
    /// TCP_MAXSEG of the load client's and fake DC's sockets; None: loopback's own.
    segment: Option<u32>,
}

const USAGE: &str = "usage: feint-bench [--feint PATH] [--quick] [--cell-mib N] [--idle N] [--threads N] [--loopback-segments]";

fn parse() -> Result<Options, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut options = Options {
        feint: None,
        cell_bytes: 2 << 30,
        handshake_time: Duration::from_secs(3),
        ping_rounds: (20_000, 500),
        idle_seconds: 10,
        idle: None,
        threads: cores,
        quick: false,
        segment: Some(INTERNET_SEGMENT),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--feint" => options.feint = Some(PathBuf::from(value()?)),
            "--cell-mib" => {
                options.cell_bytes = value()?.parse::<u64>().map_err(|e| e.to_string())? << 20
            }
            "--idle" => options.idle = Some(value()?.parse().map_err(|e| format!("{e}"))?),
            "--threads" => options.threads = value()?.parse().map_err(|e| format!("{e}"))?,
            "--loopback-segments" => options.segment = None,
            "--quick" => {
                options.quick = true;
                options.cell_bytes = 128 << 20;
                options.handshake_time = Duration::from_millis(500);
                options.ping_rounds = (2_000, 50);
                options.idle_seconds = 2;
                options.idle.get_or_insert(1_000);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}

/// A child process whose output lines arrive on a channel; killed when dropped.
struct Helper {
    child: Child,
    lines: Receiver<String>,
}

impl Helper {
    fn spawn(mut command: Command, read_stderr: bool) -> std::io::Result<Helper> {
        // SAFETY: prctl in the forked child before exec touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        command.stdin(Stdio::null());
        if read_stderr {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        let mut child = command.spawn()?;
        let pipe: Box<dyn std::io::Read + Send> = if read_stderr {
            Box::new(child.stderr.take().expect("piped"))
        } else {
            Box::new(child.stdout.take().expect("piped"))
        };
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Helper { child, lines })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// If the child has exited: its status and the last lines it printed.
    fn exit_report(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        let lines: Vec<String> = self.lines.try_iter().collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        Some(format!("{status}; last output: {tail}"))
    }

    /// The rest of the first line starting with `prefix`, within START_LIMIT.
    fn wait_for(&self, prefix: &str, seen: &mut Vec<String>) -> Option<String> {
        let deadline = Instant::now() + START_LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = self.lines.recv_timeout(left).ok()?;
            seen.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.trim().to_string());
            }
        }
        None
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("not an address: {text:?}"))
}

struct Feint {
    helper: Helper,
    address: SocketAddr,
    memory_line: String,
}

struct Setup {
    feint_path: Option<PathBuf>,
    key16: [u8; 16],
    dc_obfs2: SocketAddr,
    front: SocketAddr,
    threads: usize,
}

impl Setup {
    fn secret(&self) -> String {
        let hex: String = self.key16.iter().map(|b| format!("{b:02x}")).collect();
        let domain: String = DOMAIN.bytes().map(|b| format!("{b:02x}")).collect();
        format!("ee{hex}{domain}")
    }

    fn start_feint(&self, max_connections: usize) -> Result<Feint, String> {
        let path = self.feint_path.as_ref().ok_or("no --feint given")?;
        let mut command = Command::new(path);
        command.args([
            "run",
            "--bind",
            "127.0.0.1:0",
            "--dc",
            &format!("2={}", self.dc_obfs2),
            "--front",
            &self.front.to_string(),
            "--max-connections",
            &max_connections.to_string(),
            "--buffers",
            "192",
            // The bench's front answers nothing, so there is nothing to learn from it.
            "--no-front-probe",
            // Every bench connection comes from 127.0.0.1.
            "--max-connections-per-ip",
            "0",
            "--threads",
            &self.threads.to_string(),
            "--idle-timeout",
            "10m",
            &self.secret(),
        ]);
        let helper =
            Helper::spawn(command, true).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut seen = Vec::new();
        let Some(listening) = helper.wait_for("listening on ", &mut seen) else {
            return Err(format!("feint did not start: {}", seen.join(" / ")));
        };
        let address = address(&listening)?;
        let memory_line = helper
            .wait_for("memory: ", &mut seen)
            .unwrap_or_else(|| "?".into());
        Ok(Feint {
            helper,
            address,
            memory_line,
        })
    }

    fn feint_target(&self, address: SocketAddr) -> Target {
        Target::FakeTls {
            address,
            key16: self.key16,
            domain: DOMAIN.as_bytes().to_vec(),
            dc: 2,
        }
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("load") {
        return load_only();
    }
    let options = match parse() {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("feint-bench: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(table) => {
            println!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("feint-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Bars from issue 9 ("Done when"), on a 2-core machine: throughput and handshakes as a share of
/// the plain relay's, CPU per GB as a multiple of the relay's plus two AES passes.
const THROUGHPUT_BAR: f64 = 0.8;
const CPU_BAR: f64 = 1.15;
const HANDSHAKE_BAR: f64 = 0.75;
const PING_P99_BAR: f64 = 1.3;
const IDLE_BYTES_BAR: f64 = 2048.0;
const IDLE_CPU_BAR: f64 = 1.0;

fn run(options: &Options) -> Result<String, String> {
    let (soft, hard) = raise_open_file_limit().map_err(|e| format!("setrlimit: {e}"))?;
    eprintln!("open-file limit raised to {soft} (hard {hard}); helpers inherit it");
    let (cpu, cores) = machine();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let bin_dir = bin_dir();
    let load_start = load_average();
    load::use_segment(options.segment);

    // The fake DC (raw and obfs2 listeners), the relay in front of its raw side, a front that
    // never answers (no connection should ever be fronted), and feint.
    let mut dc_command = Command::new(bin_dir.join("bench-dc"));
    dc_command.args(["--raw", "127.0.0.1:0", "--obfs2", "127.0.0.1:0"]);
    dc_command.args(["--segment", &options.segment.unwrap_or(0).to_string()]);
    let dc = Helper::spawn(dc_command, false).map_err(|e| format!("bench-dc: {e}"))?;
    let mut seen = Vec::new();
    let dc_raw = address(
        &dc.wait_for("raw ", &mut seen)
            .ok_or("bench-dc did not start")?,
    )?;
    let dc_obfs2 = address(
        &dc.wait_for("obfs2 ", &mut seen)
            .ok_or("bench-dc did not start")?,
    )?;
    let start_relay = |crypto: &str| -> Result<(Helper, SocketAddr), String> {
        let mut command = Command::new(bin_dir.join("bench-relay"));
        command.args([
            "--bind",
            "127.0.0.1:0",
            "--upstream",
            &dc_raw.to_string(),
            "--threads",
            &options.threads.to_string(),
            "--crypto",
            crypto,
        ]);
        let relay = Helper::spawn(command, false).map_err(|e| format!("bench-relay: {e}"))?;
        let mut seen = Vec::new();
        let address = address(
            &relay
                .wait_for("listening on ", &mut seen)
                .ok_or("bench-relay did not start")?,
        )?;
        Ok((relay, address))
    };
    // The segment size a client connection really got, read back from the socket.
    let segment_in_use = connect(dc_raw, options.segment, Duration::from_secs(5))
        .and_then(|stream| max_segment(&stream))
        .map_or_else(|e| format!("unknown ({e})"), |n| format!("{n} B"));
    let (relay, relay_address) = start_relay("none")?;
    let (relay_crypto, relay_crypto_address) = start_relay("two-passes")?;
    let front_listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let front_address = front_listener.local_addr().map_err(|e| e.to_string())?;
    let front = FrontCounter::start(front_listener);
    let setup = Setup {
        feint_path: options.feint.clone(),
        key16: random_array(),
        dc_obfs2,
        front: front_address,
        threads: options.threads,
    };
    let mut feint = match setup.start_feint(1024) {
        Ok(feint) => Some(feint),
        Err(e) => {
            eprintln!("feint: {e}; measuring the baselines only");
            None
        }
    };
    let direct = Target::Raw(dc_raw);
    let relayed = Target::Raw(relay_address);
    let relayed_crypto = Target::Raw(relay_crypto_address);
    let proxied = feint.as_ref().map(|f| setup.feint_target(f.address));

    let mut table = Table::new(&[
        "measurement",
        "direct (no proxy)",
        "plain relay",
        "relay + 2 AES passes",
        "feint",
        "feint ÷ relay",
        "bar",
    ]);

    // Crypto bounds.
    eprintln!("crypto speed ...");
    let crypto = crypto_speed::run(if options.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    });
    let row = |name: &str, value: String| {
        vec![
            name.to_string(),
            String::new(),
            String::new(),
            String::new(),
            value,
            String::new(),
            String::new(),
        ]
    };
    table.row(row(
        "AES-256-CTR, 1 core (aes 0.9 + ctr 0.10 / feint CtrState)",
        format!("{} / {}", rate(crypto.streaming), rate(crypto.feint_ctr)),
    ));
    table.row(row(
        "  both passes in one, 1 core (feint apply_two)",
        format!(
            "{} ({:.2} CPU s per GB)",
            rate(crypto.feint_two),
            1e9 / crypto.feint_two
        ),
    ));
    table.row(row(
        "  crypto bound, 2 long-lived passes per byte (the CPU bar's AES)",
        format!(
            "{} per core ({:.2} CPU s per GB)",
            rate(crypto.streaming / 2.0),
            2.0e9 / crypto.streaming
        ),
    ));
    table.row(row(
        "x25519 key share (feint), 1 core",
        format!(
            "{} µs: ≤ {:.0} handshakes/s per core",
            micros(crypto.key_share),
            1.0 / crypto.key_share.as_secs_f64()
        ),
    ));

    // Throughput: each cell runs ROUNDS times per subject, in the order direct, relay, relay +
    // AES, feint and then back, and keeps the best run (runs on a shared 2-core box are disturbed
    // now and then); CPU per GB adds up all runs. Then one more run each for the plain relay and
    // feint with their system calls counted, kept out of the figures above (perf's count costs a
    // little per call).
    let subjects: [(Option<&Target>, Option<u32>); 4] = [
        (Some(&direct), None),
        (Some(&relayed), Some(relay.pid())),
        (proxied.as_ref(), feint.as_ref().map(|f| f.helper.pid())),
        (Some(&relayed_crypto), Some(relay_crypto.pid())),
    ];
    // Two AES-256-CTR passes per relayed byte with long-lived ciphers: what the CPU floor adds
    // to the plain relay's cost.
    let aes_floor = 2.0e9 / crypto.streaming;
    let mut perf_problem: Option<String> = None;
    let mut bars: Vec<(String, String, bool)> = Vec::new();
    for direction in [Direction::Up, Direction::Down, Direction::Both] {
        for connections in [1usize, 16] {
            let per_connection = options.cell_bytes / connections as u64;
            let label = format!("{} ×{connections}", direction.name());
            eprintln!("throughput {label} ...");
            let mut cells: Vec<Result<Cell, String>> =
                (0..4).map(|_| Ok(Cell::default())).collect();
            for round in 0..ROUNDS {
                for index in [[0, 1, 3, 2], [2, 3, 1, 0]][round % 2] {
                    let (Some(target), pid) = subjects[index] else {
                        continue;
                    };
                    let Ok(cell) = &mut cells[index] else {
                        continue;
                    };
                    let before = PathCpu::sample(pid, dc.pid());
                    match throughput::run(
                        target,
                        direction,
                        connections,
                        per_connection,
                        CELL_LIMIT,
                    ) {
                        Ok(outcome) => {
                            if !outcome.complete {
                                eprintln!("  {target:?}: not complete after {CELL_LIMIT:?}");
                            }
                            cell.best = cell.best.max(outcome.bytes_per_second());
                            cell.bytes += outcome.bytes;
                            let spent = PathCpu::sample(pid, dc.pid()).since(&before);
                            cell.cpu += spent.proxy;
                            cell.path_cpu += spent.proxy + spent.dc + spent.client;
                        }
                        Err(e) => cells[index] = Err(e.to_string()),
                    }
                }
            }
            let mut calls: [Option<Result<Calls, String>>; 4] = [None, None, None, None];
            for index in [1, 2] {
                let (Some(target), Some(pid)) = subjects[index] else {
                    continue;
                };
                calls[index] = Some(count_calls(
                    target,
                    pid,
                    direction,
                    connections,
                    per_connection,
                    &mut perf_problem,
                ));
            }
            let show = |i: usize| match (&subjects[i].0, &cells[i]) {
                (None, _) => "—".to_string(),
                (_, Ok(cell)) => rate(cell.best),
                (_, Err(e)) => format!("error: {e}"),
            };
            let per_gb = |i: usize| -> Option<(Option<f64>, f64)> {
                match (&subjects[i], &cells[i]) {
                    ((Some(_), pid), Ok(cell)) if cell.bytes > 0 => {
                        let gb = cell.bytes as f64 / 1e9;
                        Some((pid.map(|_| cell.cpu / gb), cell.path_cpu / gb))
                    }
                    _ => None,
                }
            };
            let cpu = |i: usize| match per_gb(i) {
                Some((proxy, path)) => format!(
                    "{} / {path:.2}",
                    proxy.map_or("—".to_string(), |p| format!("{p:.2}"))
                ),
                None => "—".to_string(),
            };
            let (ratio, bar) = match (&cells[1], &cells[2], subjects[2].0) {
                (Ok(r), Ok(f), Some(_)) if r.best > 0.0 => {
                    let ratio = f.best / r.best;
                    let pass = ratio >= THROUGHPUT_BAR;
                    bars.push((format!("throughput {label}"), format!("{ratio:.3}"), pass));
                    (
                        format!("{ratio:.3}"),
                        format!("≥ {THROUGHPUT_BAR} {}", verdict(pass)),
                    )
                }
                _ => ("—".into(), format!("≥ {THROUGHPUT_BAR}")),
            };
            table.row(vec![
                format!("throughput {label}, payload"),
                show(0),
                show(1),
                show(3),
                show(2),
                ratio,
                bar,
            ]);
            let (ratio, bar) = match (per_gb(1), per_gb(2)) {
                (Some((Some(relay_cpu), _)), Some((Some(feint_cpu), _))) => {
                    let floor = relay_cpu + aes_floor;
                    let ratio = feint_cpu / floor;
                    let pass = ratio <= CPU_BAR;
                    bars.push((format!("CPU per GB {label}"), format!("{ratio:.3}"), pass));
                    (
                        format!("{ratio:.3} of relay + 2 AES = {floor:.2}"),
                        format!("≤ {CPU_BAR} {}", verdict(pass)),
                    )
                }
                _ => ("—".into(), format!("≤ {CPU_BAR}")),
            };
            table.row(vec![
                format!("  CPU s per GB, {label}: proxy / whole path"),
                cpu(0),
                cpu(1),
                cpu(3),
                cpu(2),
                ratio,
                bar,
            ]);
            let shown = |i: usize| match &calls[i] {
                Some(Ok(c)) => c.show(),
                Some(Err(e)) => format!("error: {e}"),
                None => "—".to_string(),
            };
            let ratio = match (&calls[1], &calls[2]) {
                (Some(Ok(r)), Some(Ok(f))) => match (r.all_per_mb(), f.all_per_mb()) {
                    (Some(r), Some(f)) if r > 0.0 => format!("{:.2}", f / r),
                    _ => "—".to_string(),
                },
                _ => "—".to_string(),
            };
            table.row(vec![
                format!("  system calls per MB, {label}: all (read/write family)"),
                String::new(),
                shown(1),
                String::new(),
                shown(2),
                ratio,
                String::new(),
            ]);
        }
    }

    // Handshakes: two interleaved halves per subject, counts and samples merged.
    eprintln!("handshakes ...");
    let mut shakes: Vec<Result<(u64, Duration, Latencies), String>> = (0..3)
        .map(|_| Ok((0, Duration::ZERO, Latencies::default())))
        .collect();
    for round in 0..ROUNDS {
        for index in interleaved(round) {
            let Some(target) = subjects[index].0 else {
                continue;
            };
            let Ok((count, elapsed, samples)) = &mut shakes[index] else {
                continue;
            };
            match handshake::run(
                target,
                HANDSHAKE_CLIENTS,
                options.handshake_time / ROUNDS as u32,
            ) {
                Ok(outcome) => {
                    *count += outcome.connections;
                    *elapsed += outcome.elapsed;
                    samples.merge(outcome.first_byte);
                }
                Err(e) => shakes[index] = Err(e.to_string()),
            }
        }
    }
    let rate_of = |s: &(u64, Duration, Latencies)| s.0 as f64 / s.1.as_secs_f64().max(1e-9);
    let per_second = |i: usize| match (&subjects[i].0, &shakes[i]) {
        (None, _) => "—".to_string(),
        (_, Ok(s)) => format!("{:.0}/s", rate_of(s)),
        (_, Err(e)) => format!("error: {e}"),
    };
    let (ratio, bar) = match (&shakes[1], &shakes[2], subjects[2].0) {
        (Ok(r), Ok(f), Some(_)) => {
            let ratio = rate_of(f) / rate_of(r);
            let pass = ratio >= HANDSHAKE_BAR;
            bars.push(("handshakes/s".into(), format!("{ratio:.3}"), pass));
            (
                format!("{ratio:.3}"),
                format!("≥ {HANDSHAKE_BAR} {}", verdict(pass)),
            )
        }
        _ => ("—".into(), format!("≥ {HANDSHAKE_BAR}")),
    };
    table.row(vec![
        format!("new connections/s, {HANDSHAKE_CLIENTS} clients (feint: full FakeTLS + obfs2)"),
        per_second(0),
        per_second(1),
        String::new(),
        per_second(2),
        ratio,
        bar,
    ]);
    let mut first_byte = |i: usize| match (&subjects[i].0, &mut shakes[i]) {
        (Some(_), Ok((_, _, samples))) => format!(
            "{} / {}",
            micros(samples.quantile(0.5)),
            micros(samples.quantile(0.99))
        ),
        _ => "—".to_string(),
    };
    let cells = [first_byte(0), first_byte(1), first_byte(2)];
    let [d, r, f] = cells;
    table.row(vec![
        "  time to first echoed byte p50 / p99, µs".into(),
        d,
        r,
        String::new(),
        f,
        String::new(),
        String::new(),
    ]);

    // Ping-pong: PING_CHUNKS interleaved chunks per subject, samples merged.
    for connections in [1usize, 64] {
        eprintln!("ping-pong ×{connections} ...");
        let rounds = if connections == 1 {
            options.ping_rounds.0
        } else {
            options.ping_rounds.1
        } / PING_CHUNKS;
        let mut pongs: Vec<Result<Latencies, String>> =
            (0..3).map(|_| Ok(Latencies::default())).collect();
        let mut part_p99s: Vec<Vec<Duration>> = vec![Vec::new(); 3];
        for chunk in 0..PING_CHUNKS {
            for index in interleaved(chunk as usize) {
                let Some(target) = subjects[index].0 else {
                    continue;
                };
                let Ok(samples) = &mut pongs[index] else {
                    continue;
                };
                match pingpong::run(
                    target,
                    connections,
                    PING_SIZE,
                    rounds,
                    rounds / 10 + 1,
                    CELL_LIMIT,
                ) {
                    Ok(mut outcome) if outcome.complete => {
                        part_p99s[index].push(outcome.round_trips.quantile(0.99));
                        samples.merge(outcome.round_trips);
                    }
                    Ok(_) => pongs[index] = Err(format!("not complete after {CELL_LIMIT:?}")),
                    Err(e) => pongs[index] = Err(e.to_string()),
                }
            }
        }
        let mut show = |i: usize| match (&subjects[i].0, &mut pongs[i]) {
            (None, _) => "—".to_string(),
            (_, Ok(samples)) => format!(
                "{} / {} / {}",
                micros(samples.quantile(0.5)),
                micros(samples.quantile(0.99)),
                micros(samples.quantile(0.999))
            ),
            (_, Err(e)) => format!("error: {e}"),
        };
        let shown = [show(0), show(1), show(2)];
        let (ratio, bar) = match (&pongs[1], &pongs[2], subjects[2].0) {
            (Ok(_), Ok(_), Some(_)) => {
                let ratio = median(&mut part_p99s[2]).as_secs_f64()
                    / median(&mut part_p99s[1]).as_secs_f64();
                let pass = ratio <= PING_P99_BAR;
                bars.push((
                    format!("ping-pong p99 ×{connections}"),
                    format!("{ratio:.3}"),
                    pass,
                ));
                (
                    format!("{ratio:.3} (p99, median of {PING_CHUNKS} parts)"),
                    format!("≤ {PING_P99_BAR} {}", verdict(pass)),
                )
            }
            _ => ("—".into(), format!("≤ {PING_P99_BAR}")),
        };
        let [d, r, f] = shown;
        table.row(vec![
            format!("ping-pong {PING_SIZE} B ×{connections}, p50 / p99 / p999 µs"),
            d,
            r,
            String::new(),
            f,
            ratio,
            bar,
        ]);
    }

    // Memory and idle CPU, on a fresh feint sized for the idle connections.
    let fd_room = (hard.saturating_sub(300) / 2) as usize;
    let idle_count = options.idle.unwrap_or(IDLE_TARGET).min(fd_room);
    if idle_count < options.idle.unwrap_or(IDLE_TARGET) {
        eprintln!(
            "idle: the hard open-file limit {hard} lets feint hold {idle_count} proxied connections (2 sockets each), not {}",
            options.idle.unwrap_or(IDLE_TARGET)
        );
    }
    let mut memory_line = feint.as_ref().map(|f| f.memory_line.clone());
    let feint_died = feint.as_mut().and_then(|f| f.helper.exit_report());
    drop(feint);
    if options.feint.is_some() {
        eprintln!("idle: {idle_count} connections ...");
        match idle_run(&setup, idle_count, options.idle_seconds) {
            Ok(idle) => {
                let per = idle.growth / idle_count as f64;
                let pass_memory = per <= IDLE_BYTES_BAR;
                let pass_cpu = idle.cpu_percent <= IDLE_CPU_BAR;
                bars.push((
                    "resident per idle connection".into(),
                    bytes(per),
                    pass_memory,
                ));
                bars.push((
                    format!("idle CPU, {idle_count} connections"),
                    format!("{:.2} %", idle.cpu_percent),
                    pass_cpu,
                ));
                memory_line = Some(idle.memory_line.clone());
                table.row(vec![
                    "feint VmRSS at 0 / at N idle authenticated".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!(
                        "{} / {} (N = {idle_count})",
                        bytes(idle.rss_before),
                        bytes(idle.rss_after)
                    ),
                    String::new(),
                    String::new(),
                ]);
                table.row(vec![
                    "  growth per idle connection (VmRSS ÷ N)".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!(
                        "{} ({} all in)",
                        bytes(per),
                        bytes(idle.rss_after / idle_count as f64)
                    ),
                    String::new(),
                    format!("≤ 2 KiB {}", verdict(pass_memory)),
                ]);
                table.row(vec![
                    format!("  CPU while idle for {} s", options.idle_seconds),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{:.2} % of a core", idle.cpu_percent),
                    String::new(),
                    format!("≤ 1 % {}", verdict(pass_cpu)),
                ]);
            }
            Err(e) => {
                table.row(vec![
                    format!("idle connections (N = {idle_count})"),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("error: {e}"),
                    String::new(),
                    String::new(),
                ]);
            }
        }
    }
    let fronted = front.stop();

    let mut out = format!(
        "feint benchmark, {} on {cpu} ({cores} cores), Linux {kernel}\n\n    {}\n\n",
        utc_now(),
        command_line()
    );
    for warning in [
        feint_died.map(|report| format!("WARNING: feint exited during the run: {report}")),
        (fronted > 0).then(|| {
            format!("WARNING: feint fronted {fronted} connection(s): some handshake failed")
        }),
    ]
    .into_iter()
    .flatten()
    {
        out.push_str(&warning);
        out.push_str("\n\n");
    }
    out.push_str(&table.render());
    if !bars.is_empty() {
        let failed: Vec<&str> = bars
            .iter()
            .filter(|(_, _, pass)| !pass)
            .map(|(name, _, _)| name.as_str())
            .collect();
        out.push_str(&format!(
            "\nBars: {} of {} pass{}.\n",
            bars.len() - failed.len(),
            bars.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!("; failing: {}", failed.join(", "))
            }
        ));
    }
    let t = options.threads;
    let segments = match options.segment {
        Some(n) => format!("The load client and the fake DC set TCP_MAXSEG {n} on their sockets (before connect; on the listeners before accept), so every hop, through the relay or feint too, carries internet-sized segments; a client connection reads back a segment of {segment_in_use} (TCP options take the rest)."),
        None => format!("Loopback-sized segments (--loopback-segments): a client connection reads back a segment of {segment_in_use}."),
    };
    let calls_note = match &perf_problem {
        None => "System calls per MB: one extra run per cell for the plain relay and feint, outside the figures above: all calls from `perf stat -e raw_syscalls:sys_enter -p PID`, and in brackets syscr + syscw from /proc/PID/io, which count read/readv/write/writev but not recv/recvfrom/send/sendto.".to_string(),
        Some(problem) => format!("System calls per MB: one extra run per cell for the plain relay and feint; perf could not count ({problem}), so only syscr + syscw from /proc/PID/io show, in brackets: they count read/readv/write/writev but not recv/recvfrom/send/sendto."),
    };
    let mut notes = vec![
        "Loopback only; the load client, the fake DC and the relay or feint share the machine.".to_string(),
        segments,
        format!("feint: --threads {t} --buffers 192 --max-connections-per-ip 0. Relay: mio, {t} loops with SO_REUSEPORT (as feint), a 64 KiB buffer per direction (up to 64 KiB per read and per write), no crypto; the client speaks raw bytes to it and to the DC. \"relay + 2 AES passes\" is the same relay running two AES-256-CTR passes over every byte (same keystream twice, so bytes pass unchanged): the best a proxy of this shape can do with obfs2's decrypt + re-encrypt."),
        "Client records carry 2878 B of payload, as Telegram clients send. Bulk bytes are filler the endpoints do not decipher (the proxy does); echoed, ACK and handshake bytes are checked through the real ciphers.".to_string(),
        format!("Throughput: {} per cell, split over the connections (\"both\": that much each way); best of {ROUNDS} interleaved runs per subject.", bytes(options.cell_bytes as f64)),
        format!("CPU s per GB of payload over all runs of a cell: the proxy's (utime + stime from /proc/PID/stat) / the whole path's (proxy + fake DC from /proc/PID/stat + load client from getrusage). The bar compares feint's with the plain relay's plus two AES passes with long-lived ciphers ({aes_floor:.2} s per GB, from the AES row)."),
        calls_note,
        format!("Handshakes: {HANDSHAKE_CLIENTS} blocking clients in {ROUNDS} interleaved parts; each connection ends with RST after the echoed byte. Ping-pong: {PING_SIZE} B, one message in flight per connection, {PING_CHUNKS} interleaved parts."),
        format!("Idle: VmRSS from /proc/PID/status of a fresh feint; N is capped by the hard open-file limit ({hard}), since feint holds 2 sockets per connection."),
        format!("Load average at start / end: {load_start} / {}.", load_average()),
    ];
    if let Some(line) = memory_line {
        notes.push(format!("feint (idle run) said: memory: {line}"));
    }
    out.push('\n');
    for note in &notes {
        out.push_str("- ");
        out.push_str(note);
        out.push('\n');
    }
    drop(relay);
    drop(relay_crypto);
    drop(dc);
    Ok(out)
}

struct Idle {
    rss_before: f64,
    rss_after: f64,
    growth: f64,
    cpu_percent: f64,
    memory_line: String,
}

fn idle_run(setup: &Setup, count: usize, seconds: u64) -> Result<Idle, String> {
    // SO_REUSEPORT spreads connections over the loops unevenly and each loop holds
    // max-connections / threads: leave room, or the fullest loop turns clients away.
    let feint = setup.start_feint(count + count / 10 + 64)?;
    let pid = feint.helper.pid();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = resident_bytes(pid).ok_or("no VmRSS")? as f64;
    let target = setup.feint_target(feint.address);
    let started = Instant::now();
    let sessions =
        idle::open(&target, count, 8, Duration::from_secs(180)).map_err(|e| e.to_string())?;
    eprintln!(
        "  {count} opened in {:.1} s; holding them silent",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = resident_bytes(pid).ok_or("no VmRSS")? as f64;
    let cpu_before = cpu_time(pid).ok_or("no CPU time")?;
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_time(pid).ok_or("no CPU time")? - cpu_before;
    let cpu_percent = cpu.as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
    idle::close(sessions);
    Ok(Idle {
        rss_before,
        rss_after,
        growth: rss_after - rss_before,
        cpu_percent,
        memory_line: feint.memory_line.clone(),
    })
}

/// The command that started this run, for the README to quote: as `scripts/bench` passed it in
/// FEINT_BENCH_COMMAND, else this program's own arguments.
fn command_line() -> String {
    std::env::var("FEINT_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().collect();
        args.join(" ")
    })
}

/// The 1-minute load average: how busy the machine was apart from the bench.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    values
        .get(values.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO)
}

/// The front of the bench: it accepts at once, as a real site does (feint dials the front for
/// every connection it accepts and closes that dial unused when the hello verifies), and
/// counts the connections that carried bytes: each is a handshake feint rejected.
struct FrontCounter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl FrontCounter {
    fn start(listener: TcpListener) -> FrontCounter {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let _ = listener.set_nonblocking(true);
            let mut open: Vec<std::net::TcpStream> = Vec::new();
            let mut fronted = 0;
            let mut buf = [0u8; 1024];
            while !flag.load(Ordering::Relaxed) {
                while let Ok((stream, _)) = listener.accept() {
                    if stream.set_nonblocking(true).is_ok() && open.len() < 50_000 {
                        open.push(stream);
                    }
                }
                open.retain_mut(|stream| match stream.read(&mut buf) {
                    Ok(0) => false,
                    Ok(_) => {
                        fronted += 1;
                        false
                    }
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                });
                std::thread::sleep(Duration::from_millis(1));
            }
            fronted
        });
        FrontCounter { stop, thread }
    }

    /// Stops and says how many connections were fronted.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// `load ADDR [SECRET] DIRECTION CONNECTIONS MIB`: one throughput run, for a profiler.
fn load_only() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(2).collect();
    let loopback = args.last().map(String::as_str) == Some("--loopback-segments");
    if loopback {
        args.pop();
    }
    load::use_segment((!loopback).then_some(INTERNET_SEGMENT));
    let usage = || {
        eprintln!(
            "usage: feint-bench load ADDR [SECRET] up|down|both CONNECTIONS MIB [--loopback-segments]\n       feint-bench load ADDR [SECRET] handshake CLIENTS SECONDS [--loopback-segments]\n       feint-bench load ADDR [SECRET] pingpong CONNECTIONS ROUNDS [--loopback-segments]"
        );
        ExitCode::from(2)
    };
    let (address, secret, rest) = match args.len() {
        4 => (&args[0], None, &args[1..]),
        5 => (&args[0], Some(&args[1]), &args[2..]),
        _ => return usage(),
    };
    let Ok(address) = address.parse::<SocketAddr>() else {
        return usage();
    };
    let target = match secret {
        None => Target::Raw(address),
        Some(secret) => {
            let bytes: Option<Vec<u8>> = (1..secret.len() / 2)
                .map(|i| u8::from_str_radix(secret.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            match bytes {
                Some(bytes) if secret.starts_with("ee") && bytes.len() > 16 => Target::FakeTls {
                    address,
                    key16: bytes[..16].try_into().expect("16 bytes"),
                    domain: bytes[16..].to_vec(),
                    dc: 2,
                },
                _ => return usage(),
            }
        }
    };
    let (Ok(count), Ok(amount)) = (rest[1].parse::<usize>(), rest[2].parse::<u64>()) else {
        return usage();
    };
    if rest[0] == "handshake" {
        return match handshake::run(&target, count, Duration::from_secs(amount.min(120))) {
            Ok(outcome) => {
                println!("{:.0} connections/s", outcome.per_second());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("feint-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if rest[0] == "pingpong" {
        return match pingpong::run(
            &target,
            count,
            PING_SIZE,
            amount,
            amount / 10 + 1,
            CELL_LIMIT,
        ) {
            Ok(mut outcome) => {
                let mut q = |q| micros(outcome.round_trips.quantile(q));
                println!(
                    "p50 / p99 / p999 µs: {} / {} / {}",
                    q(0.5),
                    q(0.99),
                    q(0.999)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("feint-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let direction = match rest[0].as_str() {
        "up" => Direction::Up,
        "down" => Direction::Down,
        "both" => Direction::Both,
        _ => return usage(),
    };
    let (connections, mib) = (count, amount);
    let _ = raise_open_file_limit();
    match throughput::run(
        &target,
        direction,
        connections,
        (mib << 20) / connections.max(1) as u64,
        Duration::from_secs(120),
    ) {
        Ok(outcome) => {
            println!(
                "{} in {:.2} s: {}{}",
                bytes(outcome.bytes as f64),
                outcome.elapsed.as_secs_f64(),
                rate(outcome.bytes_per_second()),
                if outcome.complete {
                    ""
                } else {
                    " (incomplete)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("feint-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
