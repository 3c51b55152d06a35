//! Command line (lexopt) → Command. No config file, no exit: main decides what to do.
//! Every value is checked here, so `proxy` can trust a `Config` it is handed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lexopt::Arg::{Long, Short, Value};

use crate::links;
use crate::secret::{self, Secret};

pub use crate::settings::{
    ClientProxyHeader, Config, FrontProxyHeader, FrontRoute, FrontTarget, LinkStyle, LogLevel,
    PreferIp, PublicAddress, Upstream, UpstreamCredentials,
};

/// Which encoding `generate-secret` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretEncoding {
    Hex,
    Base64,
}

// Built once per process, so the size of `Run` costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    /// Boxed: the settings are far larger than the other commands.
    Run(Box<Config>),
    /// Check this machine with the settings `run` would use.
    Doctor(Box<Config>),
    GenerateSecret {
        domain: String,
        encoding: SecretEncoding,
    },
    Access {
        /// At least one.
        public: Vec<PublicAddress>,
        link_style: LinkStyle,
        secret: Secret,
    },
    /// Help text for the top level or a subcommand.
    Help(&'static str),
    Version,
}

/// A usage error: one line naming the problem; main exits 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<lexopt::Error> for UsageError {
    fn from(error: lexopt::Error) -> UsageError {
        UsageError(match error {
            lexopt::Error::MissingValue {
                option: Some(option),
            } => format!("{option} needs a value"),
            lexopt::Error::UnexpectedValue { option, .. } => format!("{option} takes no value"),
            lexopt::Error::NonUnicodeValue(value) => format!("{value:?} is not valid UTF-8"),
            other => other.to_string(),
        })
    }
}

/// The port of every default address: HTTPS, so the traffic looks like what it imitates.
pub const DEFAULT_PORT: u16 = 443;
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT));
pub const DEFAULT_PREFER_IP: PreferIp = PreferIp::PreferIpv4;
pub const DEFAULT_TIME_SKEW: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REPLAY_CACHE_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Enough for a carrier-grade NAT with dozens of Telegram users behind one address (each app
/// opens several connections), far below what it takes to fill the table.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 512;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_THREADS: usize = 0;
pub const DEFAULT_BUFFERS: usize = 192;
pub const DEFAULT_STATS_EVERY: Option<Duration> = Some(Duration::from_secs(60 * 60));
/// The usual SOCKS port, for an `--upstream` URL without one.
pub const DEFAULT_UPSTREAM_PORT: u16 = 1080;

/// Below this the replay table holds too few hellos to be worth having.
pub const MIN_REPLAY_CACHE_BYTES: usize = 4 << 10;

// Upper limits: each keeps a typo from asking for more memory than any VPS has, which would
// abort at startup instead of printing one line.
pub const MAX_REPLAY_CACHE_BYTES: usize = 1 << 30;
pub const MAX_MAX_CONNECTIONS: usize = 1 << 20;
pub const MAX_THREADS: usize = 1024;
/// 65,536 buffers of 48.5 KiB are about 3.2 GB.
pub const MAX_BUFFERS: usize = 1 << 16;
/// Keeps `Instant + duration` far from overflow in the event loop.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The event loop's timer ticks every 100 ms: a shorter timeout would be zero ticks, and
/// expire at once.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);

mod help;
mod values;

pub use help::{ACCESS_HELP, DOCTOR_HELP, GENERATE_SECRET_HELP, HELP, RUN_HELP};
use values::*;

/// Parses the whole command line. Fails with one line naming the problem.
pub fn parse(mut parser: lexopt::Parser) -> Result<Command, UsageError> {
    match parser.next()? {
        Some(Short('h') | Long("help")) => Ok(Command::Help(HELP)),
        Some(Short('V') | Long("version")) => Ok(Command::Version),
        Some(Value(command)) => match command.to_str() {
            Some("run") => parse_run(parser, "run").map(|config| match config {
                Some(config) => Command::Run(config),
                None => Command::Help(RUN_HELP),
            }),
            Some("doctor") => parse_run(parser, "doctor").map(|config| match config {
                Some(config) => Command::Doctor(config),
                None => Command::Help(DOCTOR_HELP),
            }),
            Some("generate-secret") => parse_generate_secret(parser),
            Some("access") => parse_access(parser),
            Some("help") => parse_help(parser),
            _ => Err(UsageError(format!(
                "unknown command {command:?}; see `feint --help`"
            ))),
        },
        Some(arg) => Err(unexpected(arg, "")),
        None => Err(UsageError(
            "missing command (run, generate-secret, access or doctor); see `feint --help`".into(),
        )),
    }
}

/// `run`'s options and SECRET, for `command` (run or doctor); None for --help.
fn parse_run(mut parser: lexopt::Parser, command: &str) -> Result<Option<Box<Config>>, UsageError> {
    let mut secret = None;
    let mut binds = Vec::new();
    let mut dc_overrides: Vec<(i16, SocketAddr)> = Vec::new();
    let mut front = None;
    let mut prefer_ip = DEFAULT_PREFER_IP;
    let mut time_skew = DEFAULT_TIME_SKEW;
    let mut replay_cache_bytes = DEFAULT_REPLAY_CACHE_BYTES;
    let mut max_connections = DEFAULT_MAX_CONNECTIONS;
    let mut max_connections_per_ip = DEFAULT_MAX_CONNECTIONS_PER_IP;
    let mut client_mss = None;
    let mut handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT;
    let mut idle_timeout = DEFAULT_IDLE_TIMEOUT;
    let mut threads = DEFAULT_THREADS;
    let mut buffers = DEFAULT_BUFFERS;
    let mut public = Vec::new();
    let mut link_style = LinkStyle::Text;
    let mut log = LogLevel::Quiet;
    let (mut metrics, mut stats_every) = (None, DEFAULT_STATS_EVERY);
    let (mut allow, mut block) = (None, None);
    let mut client_proxy_header = ClientProxyHeader::Absent;
    let mut front_proxy_header = FrontProxyHeader::Off;
    let mut upstream = None;
    let mut front_route = FrontRoute::Direct;
    let mut probe_front = true;

    while let Some(arg) = parser.next()? {
        match arg {
            Short('b') | Long("bind") => {
                let bind = flag_value(&mut parser, "--bind", parse_bind)?;
                if binds.contains(&bind) {
                    return Err(UsageError(format!("--bind: {bind} is given twice")));
                }
                binds.push(bind);
            }
            Long("dc") => {
                let (id, address) = flag_value(&mut parser, "--dc", parse_dc)?;
                if dc_overrides.iter().any(|&(seen, _)| seen == id) {
                    return Err(UsageError(format!("--dc: DC {id} is given twice")));
                }
                dc_overrides.push((id, address));
            }
            Long("front") => front = Some(flag_value(&mut parser, "--front", parse_front)?),
            Long("prefer-ip") => {
                prefer_ip = flag_value(&mut parser, "--prefer-ip", parse_prefer_ip)?
            }
            Long("time-skew") => {
                time_skew = flag_value(&mut parser, "--time-skew", parse_time_skew)?
            }
            Long("replay-cache") => {
                replay_cache_bytes = flag_value(&mut parser, "--replay-cache", parse_size)?;
            }
            Long("max-connections") => {
                max_connections = flag_value(&mut parser, "--max-connections", |text| {
                    parse_count(text, 1, MAX_MAX_CONNECTIONS)
                })?;
            }
            Long("client-mss") => {
                client_mss = Some(flag_value(&mut parser, "--client-mss", |text| {
                    parse_count(text, 88, 1460).map(|n| n as u16)
                })?);
            }
            Long("max-connections-per-ip") => {
                max_connections_per_ip =
                    flag_value(&mut parser, "--max-connections-per-ip", |text| {
                        parse_count(text, 0, MAX_MAX_CONNECTIONS)
                    })?;
            }
            Long("handshake-timeout") => {
                handshake_timeout = flag_value(&mut parser, "--handshake-timeout", parse_timeout)?;
            }
            Long("idle-timeout") => {
                idle_timeout = flag_value(&mut parser, "--idle-timeout", parse_timeout)?;
            }
            Long("threads") => {
                threads = flag_value(&mut parser, "--threads", |text| {
                    parse_count(text, 0, MAX_THREADS)
                })?;
            }
            Long("buffers") => {
                buffers = flag_value(&mut parser, "--buffers", |text| {
                    parse_count(text, 1, MAX_BUFFERS)
                })?;
            }
            Long("public") => add_public(&mut public, &mut parser)?,
            Long("qr") => link_style = LinkStyle::TextAndQrCode,
            Long("metrics") => metrics = Some(flag_value(&mut parser, "--metrics", parse_bind)?),
            Long("stats-every") => {
                stats_every = flag_value(&mut parser, "--stats-every", |text| match text {
                    "0" => Ok(None),
                    _ => parse_duration(text).map(Some),
                })?;
            }
            Long("allow") => allow = Some(flag_value(&mut parser, "--allow", parse_path)?),
            Long("block") => block = Some(flag_value(&mut parser, "--block", parse_path)?),
            Long("proxy-protocol") => client_proxy_header = ClientProxyHeader::Required,
            Long("front-proxy-protocol") => front_proxy_header = FrontProxyHeader::SendV2,
            Long("upstream") => {
                upstream = Some(flag_value(&mut parser, "--upstream", parse_upstream)?)
            }
            Long("front-via-upstream") => front_route = FrontRoute::ViaUpstream,
            Long("no-front-probe") => probe_front = false,
            Short('v') | Long("verbose") => log = LogLevel::Verbose,
            Short('h') | Long("help") => return Ok(None),
            Value(text) if secret.is_none() => secret = Some(parse_secret(&text)?),
            arg => return Err(unexpected(arg, command)),
        }
    }

    let secret: Secret = secret.ok_or_else(|| {
        UsageError(format!(
            "{command}: missing SECRET; make one with `feint generate-secret DOMAIN`"
        ))
    })?;
    if binds.is_empty() {
        binds.push(DEFAULT_BIND);
    }
    if front_route == FrontRoute::ViaUpstream && upstream.is_none() {
        return Err(UsageError("--front-via-upstream needs --upstream".into()));
    }
    let front = front.unwrap_or_else(|| FrontTarget {
        host: secret.domain.clone(),
        port: DEFAULT_PORT,
    });
    Ok(Some(Box::new(Config {
        secret,
        binds,
        dc_overrides,
        front,
        prefer_ip,
        time_skew,
        replay_cache_bytes,
        max_connections,
        max_connections_per_ip,
        client_mss,
        handshake_timeout,
        idle_timeout,
        public,
        link_style,
        log,
        threads,
        buffers,
        metrics,
        stats_every,
        allow,
        block,
        client_proxy_header,
        front_proxy_header,
        upstream,
        front_route,
        probe_front,
    })))
}

fn parse_generate_secret(mut parser: lexopt::Parser) -> Result<Command, UsageError> {
    let mut domain = None;
    let mut encoding = SecretEncoding::Hex;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("base64") => encoding = SecretEncoding::Base64,
            Short('h') | Long("help") => return Ok(Command::Help(GENERATE_SECRET_HELP)),
            Value(text) if domain.is_none() => {
                let text = text.to_string_lossy();
                let secret = Secret::with_domain([0; secret::KEY_LEN], &text).map_err(|_| {
                    UsageError(format!(
                        "generate-secret: {text:?} is not a DNS name of 4 to 182 bytes \
                         (labels of a-z, 0-9 and '-', such as example.com)"
                    ))
                })?;
                domain = Some(secret.domain);
            }
            arg => return Err(unexpected(arg, "generate-secret")),
        }
    }
    let domain = domain.ok_or_else(|| {
        UsageError("generate-secret: missing DOMAIN, the site to imitate, e.g. example.com".into())
    })?;
    Ok(Command::GenerateSecret { domain, encoding })
}

fn parse_access(mut parser: lexopt::Parser) -> Result<Command, UsageError> {
    let mut secret = None;
    let mut public = Vec::new();
    let mut link_style = LinkStyle::Text;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("public") => add_public(&mut public, &mut parser)?,
            Long("qr") => link_style = LinkStyle::TextAndQrCode,
            Short('h') | Long("help") => return Ok(Command::Help(ACCESS_HELP)),
            Value(text) if secret.is_none() => secret = Some(parse_secret(&text)?),
            arg => return Err(unexpected(arg, "access")),
        }
    }
    let secret = secret.ok_or_else(|| UsageError("access: missing SECRET".into()))?;
    // Without --public there is no honest link to print, and guessing the address would mean
    // asking a third party.
    if public.is_empty() {
        return Err(UsageError(format!("access: {}", links::NO_PUBLIC_HINT)));
    }
    Ok(Command::Access {
        public,
        link_style,
        secret,
    })
}

fn parse_help(mut parser: lexopt::Parser) -> Result<Command, UsageError> {
    let text = match parser.next()? {
        None => HELP,
        Some(Value(command)) => match command.to_str() {
            Some("run") => RUN_HELP,
            Some("generate-secret") => GENERATE_SECRET_HELP,
            Some("access") => ACCESS_HELP,
            Some("doctor") => DOCTOR_HELP,
            Some("help") => HELP,
            _ => {
                return Err(UsageError(format!(
                    "help: unknown command {command:?}; see `feint --help`"
                )))
            }
        },
        Some(arg) => return Err(unexpected(arg, "help")),
    };
    match parser.next()? {
        None => Ok(Command::Help(text)),
        Some(arg) => Err(unexpected(arg, "help")),
    }
}

/// Reads one `--public` value into `public`, refusing one given twice.
fn add_public(
    public: &mut Vec<PublicAddress>,
    parser: &mut lexopt::Parser,
) -> Result<(), UsageError> {
    let address = flag_value(parser, "--public", parse_public)?;
    if public.contains(&address) {
        return Err(UsageError(format!(
            "--public: {} is given twice",
            address.host
        )));
    }
    public.push(address);
    Ok(())
}

/// Reads a flag's value and validates it, so the error names the flag.
fn flag_value<T>(
    parser: &mut lexopt::Parser,
    flag: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, UsageError> {
    let value = parser.value()?;
    let text = value
        .to_str()
        .ok_or_else(|| UsageError(format!("{flag}: {value:?} is not valid UTF-8")))?;
    parse(text).map_err(|why| UsageError(format!("{flag}: {why}")))
}

/// The one-line error for an option or argument that a command does not take.
fn unexpected(arg: lexopt::Arg<'_>, command: &str) -> UsageError {
    let help = if command.is_empty() {
        "feint --help".to_owned()
    } else {
        format!("feint {command} --help")
    };
    UsageError(match arg {
        Short(flag) => format!("unknown option '-{flag}'; see `{help}`"),
        Long(flag) => format!("unknown option '--{flag}'; see `{help}`"),
        Value(text) => format!("unexpected argument {text:?}; see `{help}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_HEX: &str = "ee000102030405060708090a0b0c0d0e0f6578616d706c652e636f6d";
    const SECRET_BASE64URL: &str = "7gABAgMEBQYHCAkKCwwNDg9leGFtcGxlLmNvbQ";

    fn parse_args(args: &[&str]) -> Result<Command, UsageError> {
        parse(lexopt::Parser::from_args(args))
    }

    fn run_config(args: &[&str]) -> Config {
        let mut argv = vec!["run"];
        argv.extend_from_slice(args);
        match parse_args(&argv) {
            Ok(Command::Run(config)) => *config,
            other => panic!("{argv:?} gave {other:?}"),
        }
    }

    /// The error line for `argv`; the test fails if `argv` parses.
    fn error(argv: &[&str]) -> String {
        match parse_args(argv) {
            Err(UsageError(line)) => {
                assert!(!line.contains('\n'), "{line:?} is more than one line");
                line
            }
            Ok(command) => panic!("{argv:?} was accepted as {command:?}"),
        }
    }

    fn run_error(args: &[&str]) -> String {
        let mut argv = vec!["run"];
        argv.extend_from_slice(args);
        error(&argv)
    }

    #[test]
    fn run_uses_the_defaults() {
        let config = run_config(&[SECRET_HEX]);
        assert_eq!(config.secret.domain, "example.com");
        assert_eq!(config.secret.key[15], 15);
        assert_eq!(config.binds, vec!["0.0.0.0:443".parse().unwrap()]);
        assert!(config.dc_overrides.is_empty());
        assert_eq!(
            config.front,
            FrontTarget {
                host: "example.com".into(),
                port: 443
            }
        );
        assert_eq!(config.prefer_ip, PreferIp::PreferIpv4);
        assert_eq!(config.time_skew, Duration::from_secs(300));
        assert_eq!(config.replay_cache_bytes, 4 * 1024 * 1024);
        assert_eq!(config.max_connections, 8192);
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(300));
        assert!(config.public.is_empty());
        assert_eq!(config.link_style, LinkStyle::Text);
        assert_eq!(config.log, LogLevel::Quiet);
        assert_eq!(config.threads, 0);
        assert_eq!(config.buffers, 192);
        assert_eq!(config.metrics, None);
        assert_eq!(config.stats_every, Some(Duration::from_secs(3600)));
        assert_eq!((config.allow, config.block), (None, None));
        assert!(config.probe_front);
    }

    #[test]
    fn run_reads_the_operations_flags() {
        let config = run_config(&[
            "--metrics=[::1]:9100",
            "--stats-every",
            "0",
            "--allow",
            "/etc/feint/allow.netset",
            "--block",
            "block.txt",
            SECRET_HEX,
        ]);
        assert_eq!(config.metrics, Some("[::1]:9100".parse().unwrap()));
        assert_eq!(config.stats_every, None);
        assert_eq!(config.allow, Some("/etc/feint/allow.netset".into()));
        assert_eq!(config.block, Some("block.txt".into()));
        let every = run_config(&["--stats-every", "10m", SECRET_HEX]).stats_every;
        assert_eq!(every, Some(Duration::from_secs(600)));
    }

    #[test]
    fn run_reads_every_flag() {
        let config = run_config(&[
            "-b",
            "127.0.0.1:8443",
            "--bind=[::]:443",
            "--dc",
            "2=127.0.0.1:9002",
            "--dc",
            "5=[::1]:9005",
            "--front",
            "[::1]:8444",
            "--prefer-ip",
            "only-ipv6",
            "--time-skew",
            "90s",
            "--replay-cache",
            "64KiB",
            "--max-connections",
            "10",
            "--handshake-timeout",
            "500ms",
            "--idle-timeout",
            "1h",
            "--threads",
            "2",
            "--buffers",
            "64",
            "--public",
            "Proxy.example.org:8443",
            "--public",
            "[2001:db8::1]",
            "--qr",
            "--no-front-probe",
            "-v",
            SECRET_BASE64URL,
        ]);
        assert!(!config.probe_front);
        assert_eq!(
            config.binds,
            vec![
                "127.0.0.1:8443".parse::<SocketAddr>().unwrap(),
                "[::]:443".parse().unwrap()
            ]
        );
        assert_eq!(
            config.dc_overrides,
            vec![
                (2, "127.0.0.1:9002".parse().unwrap()),
                (5, "[::1]:9005".parse().unwrap())
            ]
        );
        assert_eq!(
            config.front,
            FrontTarget {
                host: "::1".into(),
                port: 8444
            }
        );
        assert_eq!(config.prefer_ip, PreferIp::OnlyIpv6);
        assert_eq!(config.time_skew, Duration::from_secs(90));
        assert_eq!(config.replay_cache_bytes, 65536);
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.handshake_timeout, Duration::from_millis(500));
        assert_eq!(config.idle_timeout, Duration::from_secs(3600));
        assert_eq!(config.threads, 2);
        assert_eq!(config.buffers, 64);
        assert_eq!(
            config.public,
            [
                PublicAddress {
                    host: "proxy.example.org".into(),
                    port: Some(8443)
                },
                PublicAddress {
                    host: "2001:db8::1".into(),
                    port: None
                }
            ]
        );
        assert_eq!(config.link_style, LinkStyle::TextAndQrCode);
        assert_eq!(config.log, LogLevel::Verbose);
        assert_eq!(config.secret.domain, "example.com");
    }

    #[test]
    fn run_accepts_the_smallest_durations_the_clocks_honour() {
        let config = run_config(&[
            "--handshake-timeout",
            "100ms",
            "--idle-timeout",
            "100ms",
            "--time-skew",
            "2000ms",
            SECRET_HEX,
        ]);
        assert_eq!(config.handshake_timeout, MIN_TIMEOUT);
        assert_eq!(config.idle_timeout, MIN_TIMEOUT);
        assert_eq!(config.time_skew, Duration::from_secs(2));
        assert_eq!(
            run_config(&["--time-skew", "1", SECRET_HEX]).time_skew,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn run_accepts_the_secret_before_the_flags() {
        let config = run_config(&[SECRET_HEX, "--verbose", "--prefer-ip", "prefer-ipv6"]);
        assert_eq!(config.log, LogLevel::Verbose);
        assert_eq!(config.prefer_ip, PreferIp::PreferIpv6);
        assert_eq!(
            run_config(&["--prefer-ip", "only-ipv4", SECRET_HEX]).prefer_ip,
            PreferIp::OnlyIpv4
        );
    }

    #[test]
    fn front_takes_names_ipv4_and_bracketed_ipv6() {
        let front = |text: &str| run_config(&["--front", text, SECRET_HEX]).front;
        assert_eq!(
            front("Example.org:8443"),
            FrontTarget {
                host: "example.org".into(),
                port: 8443
            }
        );
        assert_eq!(
            front("127.0.0.1:8443"),
            FrontTarget {
                host: "127.0.0.1".into(),
                port: 8443
            }
        );
        assert_eq!(
            front("nginx.local"),
            FrontTarget {
                host: "nginx.local".into(),
                port: 443
            }
        );
        assert_eq!(
            front("[2001:db8::1]"),
            FrontTarget {
                host: "2001:db8::1".into(),
                port: 443
            }
        );
    }

    #[test]
    fn durations_and_sizes_read_their_units() {
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("7s"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("8192B"), Ok(8192));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    }

    #[test]
    fn run_rejects_bad_values_naming_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bind", "0.0.0.0"], "--bind:"),
            (&["--bind", "localhost:443"], "--bind:"),
            (&["-b", "0.0.0.0:443", "-b", "0.0.0.0:443"], "given twice"),
            (&["--dc", "2"], "--dc:"),
            (&["--dc", "6=127.0.0.1:443"], "--dc: DC 6"),
            (&["--dc", "0=127.0.0.1:443"], "--dc: DC 0"),
            (&["--dc", "-2=127.0.0.1:443"], "--dc: DC -2"),
            (&["--dc", "x=127.0.0.1:443"], "--dc:"),
            (&["--dc", "2=example.com:443"], "--dc:"),
            (&["--dc", "2=127.0.0.1:0"], "--dc:"),
            (
                &["--dc", "2=127.0.0.1:1", "--dc", "2=127.0.0.1:2"],
                "--dc: DC 2 is given twice",
            ),
            (
                &["--front", "::1:443"],
                "--front: \"::1:443\": put an IPv6 address in brackets",
            ),
            (&["--public", "2001:db8::1"], "--public:"),
            (&["--front", "bad_host:443"], "--front:"),
            (&["--front", "example.com:0"], "--front:"),
            (&["--front", "example.com:99999"], "--front:"),
            (&["--front", "[::1]x"], "--front:"),
            (&["--front", "[nope]:443"], "--front:"),
            (&["--prefer-ip", "ipv4"], "--prefer-ip:"),
            (&["--time-skew", "0"], "--time-skew:"),
            (&["--time-skew", "5 m"], "--time-skew:"),
            (&["--time-skew", "1.5s"], "--time-skew:"),
            (&["--time-skew", "-1s"], "--time-skew:"),
            (&["--time-skew", "25h"], "--time-skew:"),
            (&["--time-skew", "99999999999999999999h"], "--time-skew:"),
            (&["--time-skew", "999999999999999999h"], "--time-skew:"),
            (&["--replay-cache", "4095"], "--replay-cache:"),
            (&["--replay-cache", "4MB"], "--replay-cache:"),
            (&["--replay-cache", "2GiB"], "--replay-cache:"),
            (&["--replay-cache", "MiB"], "--replay-cache:"),
            (&["--max-connections", "0"], "--max-connections:"),
            (&["--max-connections", "many"], "--max-connections:"),
            (&["--handshake-timeout", "0ms"], "--handshake-timeout:"),
            (
                &["--handshake-timeout", "99ms"],
                "--handshake-timeout: 99ms is shorter than the timer's tick; the smallest is 100ms",
            ),
            (&["--idle-timeout", "1ms"], "--idle-timeout: 1ms is shorter"),
            (
                &["--time-skew", "500ms"],
                "--time-skew: 500ms is not whole seconds, as a hello's time is; the smallest is 1s",
            ),
            (
                &["--time-skew", "1500ms"],
                "--time-skew: 1500ms is not whole",
            ),
            (&["--idle-timeout", "soon"], "--idle-timeout:"),
            (&["--threads", "-1"], "--threads"),
            (&["--threads", "100000"], "--threads:"),
            (&["--buffers", "0"], "--buffers:"),
            (&["--metrics", "localhost:9100"], "--metrics:"),
            (&["--stats-every", "0s"], "--stats-every:"),
            (&["--stats-every", "often"], "--stats-every:"),
            (&["--allow", ""], "--allow:"),
            (&["--public", "not a host"], "--public:"),
            (&["--public", "203.0.113.7:0"], "--public:"),
            (
                &["--public", "203.0.113.7:https"],
                "--public: \"203.0.113.7:https\" is not HOST[:PORT]: \"https\" is not a port",
            ),
            (
                &["--public", "http://x.y"],
                "--public: \"http://x.y\": give HOST[:PORT] without a scheme or path",
            ),
            (
                &["--front", "http://x"],
                "--front: \"http://x\": give HOST[:PORT] without a scheme or path",
            ),
            (&["--front", "x.example/"], "without a scheme or path"),
            (
                &["--public", "0.0.0.0"],
                "--public: 0.0.0.0 is not an address a client can dial",
            ),
            (&["--public", "[::]:443"], "--public: :: is not an address"),
            (
                &["--public", "127.0.0.1"],
                "--public: 127.0.0.1 is not an address",
            ),
            (&["--public", "[::1]"], "--public: ::1 is not an address"),
            (
                &["--public", "224.0.0.1"],
                "--public: 224.0.0.1 is not an address",
            ),
            (
                &["--public", "255.255.255.255"],
                "--public: 255.255.255.255 is not an address",
            ),
            (
                &["--public", "a.example:443", "--public", "A.example:443"],
                "--public: a.example is given twice",
            ),
            (&["--verbose=yes"], "--verbose takes no value"),
            (&["--frobnicate"], "unknown option '--frobnicate'"),
            (&["-x"], "unknown option '-x'"),
        ];
        for (args, expected) in cases {
            let mut args = args.to_vec();
            args.push(SECRET_HEX);
            let line = run_error(&args);
            assert!(
                line.contains(expected),
                "{args:?} gave {line:?}, not {expected:?}"
            );
        }
    }

    #[test]
    fn run_reads_proxy_protocol_and_upstream_flags() {
        let config = run_config(&[SECRET_HEX]);
        assert_eq!(config.client_proxy_header, ClientProxyHeader::Absent);
        assert_eq!(config.front_proxy_header, FrontProxyHeader::Off);
        assert_eq!(config.upstream, None);
        assert_eq!(config.front_route, FrontRoute::Direct);

        let config = run_config(&[
            "--proxy-protocol",
            "--front-proxy-protocol",
            "--upstream",
            "socks5://al:ice@p:ss@Proxy.Example.org:1081",
            "--front-via-upstream",
            SECRET_HEX,
        ]);
        assert_eq!(config.client_proxy_header, ClientProxyHeader::Required);
        assert_eq!(config.front_proxy_header, FrontProxyHeader::SendV2);
        assert_eq!(config.front_route, FrontRoute::ViaUpstream);
        let upstream = config.upstream.expect("--upstream given");
        assert_eq!(
            (upstream.host.as_str(), upstream.port),
            ("proxy.example.org", 1081)
        );
        let credentials = upstream.credentials.expect("credentials given");
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("al", "ice@p:ss")
        );
        assert!(!format!("{credentials:?}").contains("ice"));

        let upstream = |text: &str| run_config(&["--upstream", text, SECRET_HEX]).upstream;
        let bare = upstream("socks5://[::1]").expect("--upstream given");
        assert_eq!(
            (bare.host.as_str(), bare.port),
            ("::1", DEFAULT_UPSTREAM_PORT)
        );
        assert_eq!(bare.credentials, None);
        let longest = format!("socks5://{0}:{0}@127.0.0.1:1", "u".repeat(255));
        assert!(upstream(&longest).is_some());
    }

    #[test]
    fn run_rejects_bad_upstreams_without_echoing_them() {
        let long = format!("socks5://{}:p@127.0.0.1:1080", "u".repeat(256));
        for (text, expected) in [
            ("127.0.0.1:1080", "--upstream: not a socks5://"),
            ("socks4://127.0.0.1:1080", "--upstream: not a socks5://"),
            (
                "http://u:secret@127.0.0.1:1080",
                "--upstream: not a socks5://",
            ),
            (
                "socks5://secret@127.0.0.1:1080",
                "--upstream: the credentials are not USER:PASS",
            ),
            (
                "socks5://:secret@127.0.0.1:1080",
                "--upstream: USER must be 1 to 255 bytes",
            ),
            (
                "socks5://u:@127.0.0.1:1080",
                "--upstream: PASS must be 1 to 255 bytes",
            ),
            (long.as_str(), "--upstream: USER must be 1 to 255 bytes"),
            ("socks5://u:secret@127.0.0.1:0", "--upstream:"),
            ("socks5://u:secret@::1:1080", "--upstream:"),
            ("socks5://u:secret@", "--upstream:"),
        ] {
            let line = run_error(&["--upstream", text, SECRET_HEX]);
            assert!(line.contains(expected), "{text}: {line}");
            assert!(!line.contains("secret"), "{text}: {line}");
        }
        assert_eq!(
            run_error(&["--front-via-upstream", SECRET_HEX]),
            "--front-via-upstream needs --upstream"
        );
        assert!(run_error(&["--proxy-protocol=v2", SECRET_HEX]).contains("takes no value"));
        let port = RUN_HELP
            .split("--upstream socks5://")
            .nth(1)
            .expect("in help");
        assert!(port.contains(&format!("[default port: {DEFAULT_UPSTREAM_PORT}]")));
    }

    #[test]
    fn run_rejects_missing_extra_and_wrong_secrets() {
        assert!(run_error(&[]).contains("missing SECRET"));
        assert_eq!(run_error(&["--bind"]), "--bind needs a value");
        assert_eq!(run_error(&[SECRET_HEX, "-b"]), "-b needs a value");
        assert!(run_error(&["-v"]).contains("missing SECRET"));
        assert!(run_error(&[SECRET_HEX, SECRET_HEX]).contains("unexpected argument"));
        assert!(run_error(&["dd000102030405060708090a0b0c0d0e0f"])
            .contains("feint only speaks FakeTLS"));
        assert!(run_error(&["000102030405060708090a0b0c0d0e0f"]).contains("generate-secret DOMAIN"));
        assert!(run_error(&["ee00zz!"]).contains("neither hex nor base64"));
        assert!(run_error(&["ee000102030405060708090a0b0c0d0e0f"]).contains("too short"));
        assert!(run_error(&["ee000102030405060708090a0b0c0d0e0f616263"]).contains("domain"));
    }

    #[test]
    fn generate_secret_reads_domain_and_encoding() {
        match parse_args(&["generate-secret", "Example.COM"]) {
            Ok(Command::GenerateSecret { domain, encoding }) => {
                assert_eq!(domain, "example.com");
                assert_eq!(encoding, SecretEncoding::Hex);
            }
            other => panic!("{other:?}"),
        }
        match parse_args(&["generate-secret", "--base64", "example.com"]) {
            Ok(Command::GenerateSecret { encoding, .. }) => {
                assert_eq!(encoding, SecretEncoding::Base64)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn generate_secret_rejects_bad_domains_and_arguments() {
        assert!(error(&["generate-secret"]).contains("missing DOMAIN"));
        for domain in [
            "abc",
            "exa_mple.com",
            "a-.com",
            "a..com",
            "192.0.2.1",
            &"a".repeat(183),
        ] {
            let line = error(&["generate-secret", domain]);
            assert!(line.contains("is not a DNS name"), "{domain}: {line}");
        }
        assert!(error(&["generate-secret", "a.com", "b.com"]).contains("unexpected argument"));
        assert!(error(&["generate-secret", "--hex", "a.com"]).contains("'--hex'"));
    }

    #[test]
    fn access_reads_public_and_secret() {
        match parse_args(&[
            "access",
            "--public",
            "[2001:db8::1]:8443",
            "--public",
            "203.0.113.7",
            SECRET_HEX,
        ]) {
            Ok(Command::Access {
                public,
                link_style,
                secret,
            }) => {
                let hosts: Vec<_> = public.iter().map(|a| (a.host.as_str(), a.port)).collect();
                assert_eq!(hosts, [("2001:db8::1", Some(8443)), ("203.0.113.7", None)]);
                assert_eq!(link_style, LinkStyle::Text);
                assert_eq!(secret.domain, "example.com");
            }
            other => panic!("{other:?}"),
        }
        match parse_args(&["access", "--qr", "--public", "203.0.113.7", SECRET_HEX]) {
            Ok(Command::Access { link_style, .. }) => {
                assert_eq!(link_style, LinkStyle::TextAndQrCode)
            }
            other => panic!("{other:?}"),
        }
        assert!(error(&["access", SECRET_BASE64URL]).contains("access: pass --public"));
        assert!(error(&["access"]).contains("missing SECRET"));
        assert!(error(&["access", "--public", "0.0.0.0", SECRET_HEX])
            .contains("is not an address a client can dial"));
        assert!(error(&["access", "--public"]).contains("--public needs a value"));
        assert!(error(&["access", "--public", "a b", SECRET_HEX]).contains("--public:"));
        assert!(error(&["access", "--bind", "0.0.0.0:1", SECRET_HEX]).contains("'--bind'"));
    }

    #[test]
    fn help_and_version_come_from_every_spelling() {
        let help = |argv: &[&str]| match parse_args(argv) {
            Ok(Command::Help(text)) => text,
            other => panic!("{argv:?} gave {other:?}"),
        };
        assert_eq!(help(&["--help"]), HELP);
        assert_eq!(help(&["-h"]), HELP);
        assert_eq!(help(&["help"]), HELP);
        assert_eq!(help(&["help", "run"]), RUN_HELP);
        assert_eq!(help(&["run", "--help"]), RUN_HELP);
        assert_eq!(help(&["run", "-h"]), RUN_HELP);
        assert_eq!(help(&["help", "generate-secret"]), GENERATE_SECRET_HELP);
        assert_eq!(help(&["generate-secret", "--help"]), GENERATE_SECRET_HELP);
        assert_eq!(help(&["help", "access"]), ACCESS_HELP);
        assert_eq!(help(&["access", "-h"]), ACCESS_HELP);
        assert_eq!(help(&["help", "doctor"]), DOCTOR_HELP);
        assert_eq!(help(&["doctor", "--help"]), DOCTOR_HELP);
        assert!(matches!(parse_args(&["--version"]), Ok(Command::Version)));
        assert!(matches!(parse_args(&["-V"]), Ok(Command::Version)));
    }

    #[test]
    fn doctor_takes_exactly_the_options_of_run() {
        let args = [
            "--dc",
            "2=127.0.0.1:9",
            "--time-skew",
            "1m",
            "-b",
            "[::]:8443",
        ];
        let mut argv = vec!["doctor"];
        argv.extend_from_slice(&args);
        argv.push(SECRET_HEX);
        let run = run_config(&argv[1..]);
        match parse_args(&argv) {
            Ok(Command::Doctor(config)) => {
                assert_eq!(config.dc_overrides, run.dc_overrides);
                assert_eq!(config.time_skew, run.time_skew);
                assert_eq!(config.binds, run.binds);
                assert_eq!(config.front, run.front);
            }
            other => panic!("{argv:?} gave {other:?}"),
        }
        assert!(error(&["doctor", "--nope", SECRET_HEX]).contains("feint doctor --help"));
        assert!(error(&["doctor"]).starts_with("doctor: missing SECRET"));
    }

    #[test]
    fn top_level_rejects_missing_and_unknown_commands() {
        assert!(error(&[]).contains("missing command"));
        assert!(error(&["serve"]).contains("unknown command \"serve\""));
        assert!(error(&["--bind", "0.0.0.0:443"]).contains("unknown option '--bind'"));
        assert!(error(&["help", "serve"]).contains("unknown command"));
        assert!(error(&["help", "run", "access"]).contains("unexpected argument"));
    }

    /// The options a command's `parse_*` function matches, read from this file's source, so a
    /// new flag cannot be accepted without being documented.
    fn accepted_options(function: &str) -> Vec<String> {
        let source = include_str!("cli.rs");
        let start = source
            .find(&format!("fn {function}("))
            .expect("the parse function exists");
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("the function ends")];
        let mut options = Vec::new();
        for (prefix, close, dashes) in [("Long(\"", '"', "--"), ("Short('", '\'', "-")] {
            for piece in body.split(prefix).skip(1) {
                let name = &piece[..piece.find(close).expect("the literal ends")];
                options.push(format!("{dashes}{name}"));
            }
        }
        options
    }

    #[test]
    fn every_accepted_option_is_in_its_help() {
        for (function, help, minimum) in [
            ("parse", HELP, 4),
            ("parse_run", RUN_HELP, 17),
            ("parse_generate_secret", GENERATE_SECRET_HELP, 3),
            ("parse_access", ACCESS_HELP, 4),
        ] {
            let options = accepted_options(function);
            assert!(options.len() >= minimum, "{function}: {options:?}");
            for option in options {
                let documented = help
                    .lines()
                    .any(|line| line.split([' ', ',', '=', '[']).any(|word| word == option));
                assert!(
                    documented,
                    "{option} is accepted by {function} but not in its help"
                );
            }
        }
    }

    #[test]
    fn help_defaults_match_the_constants() {
        let default = |text: &str| {
            let start = RUN_HELP.find(&format!("{text}\n")).expect("flag in help");
            let rest = &RUN_HELP[start..];
            let from = rest.find("[default: ").expect("a default") + "[default: ".len();
            rest[from..from + rest[from..].find(']').unwrap()].to_owned()
        };
        assert_eq!(default("--bind ADDR:PORT").parse(), Ok(DEFAULT_BIND));
        assert_eq!(
            parse_duration(&default("--time-skew DURATION")),
            Ok(DEFAULT_TIME_SKEW)
        );
        assert_eq!(
            parse_size(&default("--replay-cache SIZE")),
            Ok(DEFAULT_REPLAY_CACHE_BYTES)
        );
        assert_eq!(
            default("--max-connections N").parse(),
            Ok(DEFAULT_MAX_CONNECTIONS)
        );
        assert_eq!(
            parse_duration(&default("--handshake-timeout DURATION")),
            Ok(DEFAULT_HANDSHAKE_TIMEOUT)
        );
        assert_eq!(
            parse_duration(&default("--idle-timeout DURATION")),
            Ok(DEFAULT_IDLE_TIMEOUT)
        );
        assert_eq!(default("--threads N").parse(), Ok(DEFAULT_THREADS));
        assert_eq!(default("--buffers N").parse(), Ok(DEFAULT_BUFFERS));
        let every = parse_duration(&default("--stats-every DURATION"));
        assert_eq!(every.ok(), DEFAULT_STATS_EVERY);
        assert_eq!(
            parse_prefer_ip(&default("--prefer-ip MODE")),
            Ok(DEFAULT_PREFER_IP)
        );
    }

    #[test]
    fn help_lines_fit_in_100_columns() {
        for text in [HELP, RUN_HELP, GENERATE_SECRET_HELP, ACCESS_HELP] {
            for line in text.lines() {
                assert!(line.len() <= 100, "{line:?}");
            }
        }
    }
}
