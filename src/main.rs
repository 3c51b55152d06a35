//! Entry point: parse the command line, then run one command. The only place that prints a
//! fatal error and exits: 2 for a usage error, 1 for anything else.

use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;

use feint::cli::{self, Command, LinkStyle, SecretEncoding, UsageError};
use feint::doctor;
use feint::links;
use feint::proxy;
use feint::qr::Palette;
use feint::secret::{self, Secret};

/// Why feint stopped.
enum Error {
    Usage(UsageError),
    /// No randomness from the OS: `generate-secret` must not fall back to anything weaker.
    Random(getrandom::Error),
    /// stdout is closed, e.g. a pipe whose reader exited.
    Output(io::Error),
    /// `proxy::run` failed: its error carries the context, such as the address it could not bind.
    Run(io::Error),
    /// `doctor` found this many failures; its table says which.
    Doctor(usize),
}

impl Error {
    fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Random(_) | Error::Output(_) | Error::Run(_) | Error::Doctor(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(error) => write!(f, "{error}"),
            Error::Random(error) => write!(f, "cannot get random bytes from the OS: {error}"),
            Error::Output(error) => write!(f, "cannot write to stdout: {error}"),
            Error::Run(error) => write!(f, "{error}"),
            Error::Doctor(1) => f.write_str("1 check failed"),
            Error::Doctor(count) => write!(f, "{count} checks failed"),
        }
    }
}

fn main() {
    if let Err(error) = execute(lexopt::Parser::from_env()) {
        // Nothing useful is left to do if stderr is gone too.
        let _ = writeln!(io::stderr(), "feint: {error}");
        std::process::exit(error.exit_code());
    }
}

fn execute(parser: lexopt::Parser) -> Result<(), Error> {
    match cli::parse(parser).map_err(Error::Usage)? {
        Command::Help(text) => print(text),
        Command::Version => print(&format!("feint {}\n", env!("CARGO_PKG_VERSION"))),
        Command::GenerateSecret { domain, encoding } => {
            let mut key = [0u8; secret::KEY_LEN];
            getrandom::getrandom(&mut key).map_err(Error::Random)?;
            let secret = Secret::with_domain(key, &domain)
                .map_err(|error| Error::Usage(UsageError(error.to_string())))?;
            let text = match encoding {
                SecretEncoding::Hex => secret.to_hex(),
                SecretEncoding::Base64 => secret.to_base64(),
            };
            print(&format!("{text}\n"))
        }
        Command::Access {
            public,
            link_style,
            secret,
        } => {
            let endpoints = links::endpoints(&public, cli::DEFAULT_PORT, &[]);
            let stdout = io::stdout();
            let qr_code = qr_palette(link_style, &stdout);
            links::write(&mut stdout.lock(), &secret, &endpoints, qr_code).map_err(Error::Output)
        }
        Command::Doctor(config) => {
            let report = doctor::examine(&config);
            report
                .write(&mut io::stdout().lock())
                .map_err(Error::Output)?;
            match report.failures() {
                0 => Ok(()),
                count => Err(Error::Doctor(count)),
            }
        }
        Command::Run(config) => {
            // A bad list file is a usage error: the operator named it on the command line.
            let lists = proxy::AccessLists::load(config.allow.as_deref(), config.block.as_deref())
                .map_err(|e| Error::Usage(UsageError(e.to_string())))?;
            let announce = |bound: &[SocketAddr]| {
                let default_port = bound.first().map_or(cli::DEFAULT_PORT, |a| a.port());
                let endpoints = links::endpoints(&config.public, default_port, bound);
                let stderr = io::stderr();
                let qr_code = qr_palette(config.link_style, &stderr);
                // A closed stderr leaves nobody to tell; the proxy serves all the same.
                let _ = links::write(&mut stderr.lock(), &config.secret, &endpoints, qr_code);
            };
            proxy::run(&config, lists, announce).map_err(Error::Run)
        }
    }
}

/// How to draw QR codes on `stream`, if at all: black on white for a terminal, whatever its
/// theme; plain characters for a pipe or a log, where escape codes would be noise.
fn qr_palette(style: LinkStyle, stream: &impl IsTerminal) -> Option<Palette> {
    match style {
        LinkStyle::Text => None,
        LinkStyle::TextAndQrCode if stream.is_terminal() => Some(Palette::BlackOnWhite),
        LinkStyle::TextAndQrCode => Some(Palette::InkIsLight),
    }
}

/// Writes to stdout, reporting a closed pipe instead of panicking as `print!` would: a panic
/// aborts the release build.
fn print(text: &str) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Error::Output)
}
