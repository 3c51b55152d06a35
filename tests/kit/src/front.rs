//! A recording fronting target: a loopback listener that keeps every byte each connection sent,
//! so a test can check feint forwarded exactly what the client wrote (docs/PROTOCOL.md §8).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the front answers.
#[derive(Clone, Debug)]
pub enum FrontMode {
    /// Never write; close after the peer closes.
    Record,
    /// After the peer half-closes, send these bytes, then close.
    ReplyOnEof(Vec<u8>),
}

/// What the front saw on one connection.
#[derive(Clone, Debug, Default)]
pub struct FrontConnection {
    pub received: Vec<u8>,
    /// The peer closed its write side (or the connection).
    pub peer_closed: bool,
    pub error: Option<String>,
}

struct Shared {
    connections: Mutex<Vec<FrontConnection>>,
    changed: Condvar,
}

pub struct RecordingFront {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

const CONNECTION_IDLE_LIMIT: Duration = Duration::from_secs(60);
const MAX_CONNECTIONS: usize = 4096;

impl RecordingFront {
    pub fn start(mode: FrontMode) -> std::io::Result<RecordingFront> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            connections: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for _ in 0..MAX_CONNECTIONS {
                    let Ok((stream, _)) = listener.accept() else {
                        continue;
                    };
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let index = {
                        let mut conns = shared.connections.lock().unwrap();
                        conns.push(FrontConnection::default());
                        conns.len() - 1
                    };
                    let (shared, mode) = (shared.clone(), mode.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = serve(stream, index, &shared, &mode) {
                            update(&shared, index, |c| c.error = Some(e.to_string()));
                        }
                    });
                }
            })
        };
        Ok(RecordingFront {
            addr,
            shared,
            stop,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connections(&self) -> Vec<FrontConnection> {
        self.shared.connections.lock().unwrap().clone()
    }

    /// The connections that carried bytes from a client. feint dials the front for every
    /// connection it accepts and closes that dial unused when the hello verifies, so a client
    /// that was served leaves an empty connection here, and only these were fronted.
    pub fn fronted_connections(&self) -> Vec<FrontConnection> {
        self.connections()
            .into_iter()
            .filter(|c| !c.received.is_empty())
            .collect()
    }

    /// Waits until `done` holds or `timeout` passes; returns the last snapshot either way.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[FrontConnection]) -> bool,
    ) -> Vec<FrontConnection> {
        let end = Instant::now() + timeout;
        let mut conns = self.shared.connections.lock().unwrap();
        while !done(&conns) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            conns = self
                .shared
                .changed
                .wait_timeout(conns, end - now)
                .unwrap()
                .0;
        }
        conns.clone()
    }
}

impl Drop for RecordingFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn update(shared: &Shared, index: usize, f: impl FnOnce(&mut FrontConnection)) {
    f(&mut shared.connections.lock().unwrap()[index]);
    shared.changed.notify_all();
}

fn serve(
    mut stream: TcpStream,
    index: usize,
    shared: &Shared,
    mode: &FrontMode,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CONNECTION_IDLE_LIMIT))?;
    stream.set_write_timeout(Some(CONNECTION_IDLE_LIMIT))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                update(shared, index, |c| c.peer_closed = true);
                return Err(e);
            }
        };
        if n == 0 {
            break;
        }
        update(shared, index, |c| c.received.extend_from_slice(&buf[..n]));
    }
    update(shared, index, |c| c.peer_closed = true);
    if let FrontMode::ReplyOnEof(reply) = mode {
        stream.write_all(reply)?;
    }
    stream.shutdown(Shutdown::Both)
}
