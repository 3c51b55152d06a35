//! An nginx on loopback serving a static page over TLS (self-signed certificate for the test
//! domain) and plain HTTP, started as a child process and killed on drop. It may require a
//! PROXY protocol header on both ports and log the address in it.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tempdir::TempDir;

/// nginx's `client_header_timeout` in the tests: a silent or half-sent request is closed
/// after this long.
pub const HEADER_TIMEOUT_SECONDS: u64 = 3;

pub struct Nginx {
    /// `listen … ssl`.
    pub tls_addr: SocketAddr,
    /// Plain HTTP on the same server block.
    pub http_addr: SocketAddr,
    pub domain: String,
    /// The body of `/`.
    pub index: Vec<u8>,
    /// The body of `/big.bin`: 3 MiB of random bytes, for relays under backpressure.
    pub big: Vec<u8>,
    child: Child,
    dir: TempDir,
}

/// Whether nginx's ports expect a PROXY protocol header (`listen … proxy_protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    Absent,
    Required,
}

const START_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 3;

/// The nginx binary: Debian puts it in /usr/sbin, which a CI PATH may lack.
fn nginx_binary() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("nginx")
    }
}

/// Two free loopback ports. Another process may take one before nginx binds it; `start` then
/// retries with new ports.
fn free_ports() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn index_page(domain: &str) -> Vec<u8> {
    let mut page = format!(
        "<!doctype html>\n<html><head><title>{domain}</title></head><body>\n\
         <h1>Welcome to {domain}</h1>\n"
    );
    // Big enough that the TLS answer spans several records.
    for i in 0..400 {
        page.push_str(&format!("<p>Paragraph {i}: nothing to see here.</p>\n"));
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
}

impl Nginx {
    /// Writes a certificate, a page and a config into a temp dir, starts nginx and waits, bounded,
    /// until its TLS port accepts.
    pub fn start(domain: &str) -> io::Result<Nginx> {
        Self::start_with(domain, ProxyHeader::Absent)
    }

    /// As [`Nginx::start`], with both ports expecting a PROXY protocol header when `header` is
    /// `Required`; [`Nginx::access_log`] then shows the address each header carried.
    pub fn start_with(domain: &str, header: ProxyHeader) -> io::Result<Nginx> {
        let dir = TempDir::new("feint-nginx")?;
        let d = dir.path().to_path_buf();
        fs::create_dir_all(d.join("html"))?;
        fs::create_dir_all(d.join("tmp"))?;
        let index = index_page(domain);
        fs::write(d.join("html/index.html"), &index)?;
        let big = crate::crypto::random_bytes(3 << 20);
        fs::write(d.join("html/big.bin"), &big)?;
        // RSA, not ECDSA: an RSA-PSS signature always has the key's length, while a DER ECDSA
        // signature varies by a byte or two, and the fronting tests compare the record lengths
        // of two TLS answers.
        let openssl = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048"])
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={domain}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{domain}"))
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .stdin(Stdio::null())
            .output()?;
        if !openssl.status.success() {
            return Err(io::Error::other(format!(
                "openssl req failed: {}",
                String::from_utf8_lossy(&openssl.stderr)
            )));
        }

        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let (tls_port, http_port) = free_ports()?;
            let conf = config(&d, domain, tls_port, http_port, header);
            fs::write(d.join("nginx.conf"), conf)?;
            let _ = fs::remove_file(d.join("error.log"));
            let log = fs::File::create(d.join("stderr.log"))?;
            let mut child = Command::new(nginx_binary())
                .arg("-p")
                .arg(&d)
                .arg("-c")
                .arg(d.join("nginx.conf"))
                .arg("-e")
                .arg(d.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()?;
            let tls_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, tls_port));
            let http_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, http_port));
            if wait_ready(&mut child, &[tls_addr, http_addr])? {
                return Ok(Nginx {
                    tls_addr,
                    http_addr,
                    domain: domain.to_string(),
                    index,
                    big,
                    child,
                    dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = format!(
                "{}{}",
                fs::read_to_string(d.join("stderr.log")).unwrap_or_default(),
                fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
        }
        Err(io::Error::other(format!(
            "nginx did not start: {last_error}"
        )))
    }

    /// The access log so far: one line per request, `REMOTE_ADDR PROXY_ADDR:PROXY_PORT "REQUEST"
    /// STATUS`, where the PROXY fields come from a PROXY protocol header (`:` without one).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log so far (level info), for diagnostics.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// True once every address accepts; false if nginx exits or the deadline passes.
fn wait_ready(child: &mut Child, addrs: &[SocketAddr]) -> io::Result<bool> {
    let end = Instant::now() + START_TIMEOUT;
    // Bounded poll: nginx has no readiness signal we could wait on instead.
    for _ in 0..1000 {
        if child.try_wait()?.is_some() || Instant::now() >= end {
            return Ok(false);
        }
        let ready = addrs
            .iter()
            .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
        if ready {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(false)
}

fn config(
    dir: &std::path::Path,
    domain: &str,
    tls_port: u16,
    http_port: u16,
    header: ProxyHeader,
) -> String {
    let d = dir.display();
    let proxy_protocol = match header {
        ProxyHeader::Absent => "",
        ProxyHeader::Required => " proxy_protocol",
    };
    // The user directive only matters when nginx starts as root; it keeps nginx from switching
    // to "nobody", who could not read the temp dir.
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        "{user}daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    log_format addresses '$remote_addr $proxy_protocol_addr:$proxy_protocol_port \"$request\" $status';
    access_log {d}/access.log addresses;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/html;
    # Short, so tests can compare how long nginx and feint keep a silent connection; it also
    # bounds the TLS handshake in nginx 1.22.
    client_header_timeout {HEADER_TIMEOUT_SECONDS}s;
    server {{
        listen 127.0.0.1:{tls_port} ssl{proxy_protocol};
        listen 127.0.0.1:{http_port}{proxy_protocol};
        server_name {domain};
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {d}/html;
        location / {{ index index.html; }}
    }}
}}
"
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
