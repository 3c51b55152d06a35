//! The fake DC for scripts/bench.
//! `bench-dc [--raw ADDR] [--obfs2 ADDR] [--segment BYTES] [--lifetime SECONDS]` prints
//! `raw ADDR` and `obfs2 ADDR` on stdout once bound, then serves until the lifetime ends or its
//! parent dies. `--segment` sets TCP_MAXSEG on the listeners (0, the default: loopback's own).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use feint_bench::dc::{self, Framing};
use feint_bench::sys::{die_with_parent, raise_open_file_limit, reuseport_listener};

fn main() -> ExitCode {
    die_with_parent();
    let mut binds: Vec<(SocketAddr, Framing)> = Vec::new();
    let mut lifetime = Duration::from_secs(900);
    let mut segment = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--raw" | "--obfs2" => match value.parse() {
                Ok(address) => binds.push((
                    address,
                    if flag == "--raw" {
                        Framing::Raw
                    } else {
                        Framing::Obfs2
                    },
                )),
                Err(_) => return usage(&format!("bad address {value:?}")),
            },
            "--segment" => match value.parse::<u32>() {
                Ok(bytes) => segment = Some(bytes).filter(|&b| b > 0),
                Err(_) => return usage(&format!("bad segment size {value:?}")),
            },
            "--lifetime" => match value.parse() {
                Ok(seconds) => lifetime = Duration::from_secs(seconds),
                Err(_) => return usage(&format!("bad lifetime {value:?}")),
            },
            _ => return usage(&format!("unknown flag {flag:?}")),
        }
    }
    if binds.is_empty() {
        return usage("give --raw or --obfs2");
    }
    if let Err(e) = raise_open_file_limit() {
        eprintln!("bench-dc: cannot raise the open-file limit: {e}");
    }
    let mut listeners = Vec::new();
    let mut stdout = std::io::stdout();
    for (address, framing) in binds {
        let listener = match reuseport_listener(address, segment) {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("bench-dc: bind {address}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let name = match framing {
            Framing::Raw => "raw",
            Framing::Obfs2 => "obfs2",
        };
        let bound = listener
            .local_addr()
            .expect("a bound listener has an address");
        let _ = writeln!(stdout, "{name} {bound}");
        listeners.push((listener, framing));
    }
    let _ = stdout.flush();
    match dc::run(listeners, lifetime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-dc: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "bench-dc: {problem}\nusage: bench-dc [--raw ADDR] [--obfs2 ADDR] [--segment BYTES] [--lifetime SECONDS]"
    );
    ExitCode::from(2)
}
