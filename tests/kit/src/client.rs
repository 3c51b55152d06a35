//! A FakeTLS client: hello, reply check, then obfs2 inside `17 03 03` records (docs/PROTOCOL.md
//! §2-§5), as TDLib does it.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use crate::crypto::Ctr;
use crate::hello::{self, HelloShape, HelloSpec};
use crate::obfs2::{self, TAG_PADDED_INTERMEDIATE};
use crate::record::{self, APPLICATION_DATA, CCS, MAX_CLIENT_PAYLOAD, MAX_SERVER_PAYLOAD};
use crate::{reply, unix_now, Secret};

/// How the client behaves; `Default` is a well-behaved current TDLib asking for DC 2.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub shape: HelloShape,
    /// SNI; `None` means the secret's domain.
    pub sni: Option<String>,
    /// Timestamp for the digest; `None` means now.
    pub time: Option<u32>,
    pub corrupt_digest: bool,
    pub dc: i16,
    pub tag: [u8; 4],
    /// Read and write timeout of the socket: bounds every wait on it.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            shape: HelloShape::Modern,
            sni: None,
            time: None,
            corrupt_digest: false,
            dc: 2,
            tag: TAG_PADDED_INTERMEDIATE,
            timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOptions {
    /// The hello these options describe.
    pub fn hello(&self, secret: &Secret) -> Vec<u8> {
        hello::build(&HelloSpec {
            shape: self.shape,
            sni: self.sni.clone().unwrap_or_else(|| secret.domain.clone()),
            time: self.time.unwrap_or_else(unix_now),
            key: secret.key,
            corrupt_digest: self.corrupt_digest,
        })
    }
}

/// A client past the FakeTLS handshake.
pub struct FakeTlsClient {
    pub hello: Vec<u8>,
    pub reply: Vec<u8>,
    pub writer: ClientWriter,
    pub reader: ClientReader,
}

/// The sending half: obfs2 encryption and record framing.
pub struct ClientWriter {
    stream: TcpStream,
    cipher: Ctr,
    /// CCS and the obfs2 header, sent with the first data as TDLib does.
    pending: Option<Vec<u8>>,
}

/// The receiving half: record deframing and obfs2 decryption.
pub struct ClientReader {
    stream: TcpStream,
    cipher: Ctr,
    buffered: Vec<u8>,
    /// Payload length of every record received, for framing assertions.
    pub record_lengths: Vec<usize>,
}

/// Connects to `addr` with a bounded timeout and sets the read and write timeouts.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// As [`connect`], from `local` (another loopback address such as 127.0.0.2, so a server can
/// tell this client from feint, which connects from 127.0.0.1). std cannot bind before
/// connecting, hence libc.
pub fn connect_from(
    local: Ipv4Addr,
    addr: SocketAddrV4,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket takes plain integers and returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is the socket just created; the stream owns it from here and closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SO_SNDTIMEO also bounds a blocking connect on Linux.
    stream.set_write_timeout(Some(timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    let from = sockaddr(local, 0);
    // SAFETY: from is a valid sockaddr_in of length len, alive for the call.
    if unsafe { libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let to = sockaddr(*addr.ip(), addr.port());
    // SAFETY: as above.
    if unsafe { libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl FakeTlsClient {
    /// Connects, sends a hello, reads the three-record reply and checks its HMAC. Fails with
    /// `InvalidData` if the reply is not a valid FakeTLS reply for this hello and key.
    pub fn connect(
        addr: SocketAddr,
        secret: &Secret,
        options: &ClientOptions,
    ) -> io::Result<FakeTlsClient> {
        let stream = connect(addr, options.timeout)?;
        let hello = options.hello(secret);
        Self::handshake(stream, secret, options, hello)
    }

    /// As [`FakeTlsClient::connect`], on a connected stream with a prepared hello.
    pub fn handshake(
        mut stream: TcpStream,
        secret: &Secret,
        options: &ClientOptions,
        hello: Vec<u8>,
    ) -> io::Result<FakeTlsClient> {
        stream.write_all(&hello)?;
        let reply = reply::read(&mut stream)?;
        if !reply::verify(&reply, &hello::client_random(&hello), &secret.key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server random does not verify with our key",
            ));
        }
        let (header, ciphers) = obfs2::initiate(options.tag, options.dc, Some(&secret.key));
        let mut pending = CCS.to_vec();
        pending.extend_from_slice(&header);
        Ok(FakeTlsClient {
            hello,
            reply,
            writer: ClientWriter {
                stream: stream.try_clone()?,
                cipher: ciphers.send,
                pending: Some(pending),
            },
            reader: ClientReader {
                stream,
                cipher: ciphers.receive,
                buffered: Vec::new(),
                record_lengths: Vec::new(),
            },
        })
    }

    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.writer.send(data)
    }

    pub fn flush_header(&mut self) -> io::Result<()> {
        self.writer.flush_header()
    }

    pub fn recv_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.reader.recv_exact(n)
    }

    pub fn recv_to_eof(&mut self, max: usize) -> io::Result<Vec<u8>> {
        self.reader.recv_to_eof(max)
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.writer.shutdown_write()
    }

    pub fn split(self) -> (ClientWriter, ClientReader) {
        (self.writer, self.reader)
    }
}

impl ClientWriter {
    /// Encrypts `data` and sends it in records of at most 2878 bytes, with the CCS and obfs2
    /// header in front the first time.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let mut encrypted = data.to_vec();
        self.cipher.apply(&mut encrypted);
        let mut out = Vec::new();
        let mut payload = Vec::new();
        if let Some(pending) = self.pending.take() {
            out.extend_from_slice(&pending[..CCS.len()]);
            payload.extend_from_slice(&pending[CCS.len()..]);
        }
        payload.extend_from_slice(&encrypted);
        if payload.is_empty() {
            return Ok(());
        }
        out.extend_from_slice(&record::frame_app_data(&payload, MAX_CLIENT_PAYLOAD));
        self.stream.write_all(&out)
    }

    /// As [`ClientWriter::send`], but in records of at most `record_max` bytes, each record
    /// written to the socket in pieces of at most `write_max` bytes: exercises a server's
    /// record parser across record and read boundaries.
    pub fn send_fragmented(
        &mut self,
        data: &[u8],
        record_max: usize,
        write_max: usize,
    ) -> io::Result<()> {
        let mut encrypted = data.to_vec();
        self.cipher.apply(&mut encrypted);
        let mut out = Vec::new();
        let mut payload = Vec::new();
        if let Some(pending) = self.pending.take() {
            out.extend_from_slice(&pending[..CCS.len()]);
            payload.extend_from_slice(&pending[CCS.len()..]);
        }
        payload.extend_from_slice(&encrypted);
        out.extend_from_slice(&record::frame_app_data(&payload, record_max));
        for piece in out.chunks(write_max) {
            self.stream.write_all(piece)?;
        }
        Ok(())
    }

    /// Sends the CCS and the obfs2 header now, in a record of their own.
    pub fn flush_header(&mut self) -> io::Result<()> {
        self.send(&[])
    }

    /// Sends raw bytes, bypassing encryption and framing.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

impl ClientReader {
    /// Reads one `17 03 03` record and decrypts it into the buffer. `Ok(false)` on EOF.
    fn fill(&mut self) -> io::Result<bool> {
        let Some(rec) = record::read_record(&mut self.stream)? else {
            return Ok(false);
        };
        if rec.kind != APPLICATION_DATA || rec.version != [0x03, 0x03] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record type {:#04x} version {:02x?}", rec.kind, rec.version),
            ));
        }
        if rec.payload.is_empty() || rec.payload.len() > MAX_SERVER_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record payload of {} bytes", rec.payload.len()),
            ));
        }
        self.record_lengths.push(rec.payload.len());
        let mut payload = rec.payload;
        self.cipher.apply(&mut payload);
        self.buffered.extend_from_slice(&payload);
        Ok(true)
    }

    /// Exactly `n` decrypted bytes; `UnexpectedEof` if the stream ends first.
    pub fn recv_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffered.len() < n {
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {} of {n} bytes", self.buffered.len()),
                ));
            }
        }
        Ok(self.buffered.drain(..n).collect())
    }

    /// Everything until EOF, failing if more than `max` bytes come.
    pub fn recv_to_eof(&mut self, max: usize) -> io::Result<Vec<u8>> {
        while self.fill()? {
            if self.buffered.len() > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {max} bytes before EOF"),
                ));
            }
        }
        Ok(std::mem::take(&mut self.buffered))
    }

    /// Reads raw bytes, bypassing deframing.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// As [`ClientReader::read_raw`], with a read timeout of `timeout` for this call only.
    pub fn read_raw_with_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<usize> {
        let previous = self.stream.read_timeout()?;
        self.stream.set_read_timeout(Some(timeout))?;
        let result = self.stream.read(buf);
        self.stream.set_read_timeout(previous)?;
        result
    }
}
