//! The plain relay baseline: the same shape as feint (one mio loop per thread, each with its own
//! SO_REUSEPORT listener, edge-triggered, a step budget per wakeup, nodelay on both sockets) but
//! no TLS, no obfs2 and no crypto: bytes are copied through one 64 KiB buffer per direction, so
//! each read and each write moves up to 64 KiB per system call. The floor any proxy on this
//! machine stands on.
//!
//! With `Crypto::TwoPasses` every relayed byte also goes through two AES-256-CTR passes (long-
//! lived ciphers, as a proxy decrypts and re-encrypts); both passes use the same keystream, so
//! the bytes come out unchanged and the same clients work. That is the best a proxy of this
//! shape can do with obfs2's two cipher passes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::crypto::{random_array, Ctr};
use crate::sys::reuseport_listener;

/// What the relay does to the bytes it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crypto {
    None,
    TwoPasses,
}

/// The two passes of one direction: decrypt, then encrypt, with one keystream.
struct Passes {
    decrypt: Ctr,
    encrypt: Ctr,
}

impl Passes {
    fn new() -> Self {
        let (key, iv) = (random_array::<32>(), random_array::<16>());
        Passes {
            decrypt: Ctr::new(&key, &iv),
            encrypt: Ctr::new(&key, &iv),
        }
    }
}

const BUF_LEN: usize = 64 * 1024;
const STEP_BUDGET: usize = 64;
const LISTENER: Token = Token(usize::MAX);

struct Buffer {
    data: Box<[u8; BUF_LEN]>,
    start: usize,
    end: usize,
}

impl Buffer {
    fn new() -> Self {
        Buffer {
            data: Box::new([0; BUF_LEN]),
            start: 0,
            end: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

enum Moved {
    Some,
    Nothing,
    Eof,
    Failed,
}

/// Reads from `from` into free room in `buffer`, then writes what it holds to `to`.
fn pump(
    from: &mut TcpStream,
    buffer: &mut Buffer,
    to: &mut TcpStream,
    read_open: bool,
    passes: Option<&mut Passes>,
) -> Moved {
    let mut moved = Moved::Nothing;
    if read_open && buffer.end < BUF_LEN {
        match from.read(&mut buffer.data[buffer.end..]) {
            Ok(0) => return Moved::Eof,
            Ok(n) => {
                if let Some(passes) = passes {
                    let fresh = &mut buffer.data[buffer.end..buffer.end + n];
                    passes.decrypt.apply(fresh);
                    passes.encrypt.apply(fresh);
                }
                buffer.end += n;
                moved = Moved::Some;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = Moved::Some,
            Err(_) => return Moved::Failed,
        }
    }
    if !buffer.is_empty() {
        match to.write(&buffer.data[buffer.start..buffer.end]) {
            Ok(n) => {
                buffer.start += n;
                if buffer.is_empty() {
                    buffer.start = 0;
                    buffer.end = 0;
                }
                moved = Moved::Some;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => moved = Moved::Some,
            Err(_) => return Moved::Failed,
        }
    }
    moved
}

struct Pair {
    passes: Option<Box<[Passes; 2]>>,
    client: TcpStream,
    upstream: TcpStream,
    connected: bool,
    to_upstream: Buffer,
    to_client: Buffer,
    client_eof: bool,
    upstream_eof: bool,
    upstream_shut: bool,
    client_shut: bool,
}

enum Step {
    Progress,
    Blocked,
    Close,
}

impl Pair {
    fn drive(&mut self) -> Step {
        if !self.connected {
            match self.upstream.take_error() {
                Ok(None) => {}
                _ => return Step::Close,
            }
            match self.upstream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Blocked,
                Err(_) => return Step::Close,
            }
        }
        for _ in 0..STEP_BUDGET {
            let mut progress = false;
            let [up, down] = match &mut self.passes {
                Some(passes) => {
                    let [up, down] = &mut **passes;
                    [Some(up), Some(down)]
                }
                None => [None, None],
            };
            match pump(
                &mut self.client,
                &mut self.to_upstream,
                &mut self.upstream,
                !self.client_eof,
                up,
            ) {
                Moved::Some => progress = true,
                Moved::Nothing => {}
                Moved::Eof => {
                    self.client_eof = true;
                    progress = true;
                }
                Moved::Failed => return Step::Close,
            }
            match pump(
                &mut self.upstream,
                &mut self.to_client,
                &mut self.client,
                !self.upstream_eof,
                down,
            ) {
                Moved::Some => progress = true,
                Moved::Nothing => {}
                Moved::Eof => {
                    self.upstream_eof = true;
                    progress = true;
                }
                Moved::Failed => return Step::Close,
            }
            // Half-close travels on only after the bytes before it.
            if self.client_eof && self.to_upstream.is_empty() && !self.upstream_shut {
                let _ = self.upstream.shutdown(Shutdown::Write);
                self.upstream_shut = true;
            }
            if self.upstream_eof && self.to_client.is_empty() && !self.client_shut {
                let _ = self.client.shutdown(Shutdown::Write);
                self.client_shut = true;
            }
            if self.upstream_shut && self.client_shut {
                return Step::Close;
            }
            if !progress {
                return Step::Blocked;
            }
        }
        Step::Progress
    }
}

struct Loop {
    crypto: Crypto,
    poll: Poll,
    listener: TcpListener,
    upstream: SocketAddr,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
}

impl Loop {
    fn accept(&mut self, ready: &mut Vec<usize>) -> io::Result<()> {
        for _ in 0..STEP_BUDGET {
            let (mut client, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Ok(()),
            };
            let mut upstream = match TcpStream::connect(self.upstream) {
                Ok(upstream) => upstream,
                Err(_) => continue,
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let index = self.free.pop().unwrap_or_else(|| {
                self.pairs.push(None);
                self.pairs.len() - 1
            });
            let both = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut client, Token(2 * index), both)?;
            self.poll
                .registry()
                .register(&mut upstream, Token(2 * index + 1), both)?;
            self.pairs[index] = Some(Pair {
                passes: match self.crypto {
                    Crypto::None => None,
                    Crypto::TwoPasses => Some(Box::new([Passes::new(), Passes::new()])),
                },
                client,
                upstream,
                connected: false,
                to_upstream: Buffer::new(),
                to_client: Buffer::new(),
                client_eof: false,
                upstream_eof: false,
                upstream_shut: false,
                client_shut: false,
            });
            ready.push(index);
        }
        // Budget spent: come back for the rest next round.
        ready.push(usize::MAX);
        Ok(())
    }

    fn run(&mut self, deadline: Instant) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut again: VecDeque<usize> = VecDeque::new();
        let mut accept_again = false;
        while Instant::now() < deadline {
            let timeout = if again.is_empty() && !accept_again {
                Duration::from_millis(500)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut ready: Vec<usize> = again.drain(..).collect();
            let mut accept_now = std::mem::take(&mut accept_again);
            for event in events.iter() {
                if event.token() == LISTENER {
                    accept_now = true;
                } else {
                    ready.push(event.token().0 / 2);
                }
            }
            if accept_now {
                self.accept(&mut ready)?;
                if ready.last() == Some(&usize::MAX) {
                    ready.pop();
                    accept_again = true;
                }
            }
            for index in ready {
                let Some(pair) = self.pairs.get_mut(index).and_then(Option::as_mut) else {
                    continue;
                };
                match pair.drive() {
                    Step::Blocked => {}
                    Step::Progress => {
                        if !again.contains(&index) {
                            again.push_back(index);
                        }
                    }
                    Step::Close => {
                        if let Some(mut pair) = self.pairs[index].take() {
                            let _ = self.poll.registry().deregister(&mut pair.client);
                            let _ = self.poll.registry().deregister(&mut pair.upstream);
                        }
                        again.retain(|&i| i != index);
                        self.free.push(index);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Binds `bind` once per thread (port 0: the first bind picks it) and returns the bound address
/// and the loops' thread handles. Each loop stops at `lifetime`.
pub fn start(
    bind: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
    crypto: Crypto,
    lifetime: Duration,
) -> io::Result<(SocketAddr, Vec<std::thread::JoinHandle<io::Result<()>>>)> {
    let deadline = Instant::now() + lifetime;
    let mut address = bind;
    let mut handles = Vec::new();
    for index in 0..threads.max(1) {
        let listener = reuseport_listener(address, None)?;
        address = listener.local_addr()?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut relay = Loop {
            crypto,
            poll,
            listener,
            upstream,
            pairs: Vec::new(),
            free: Vec::new(),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("relay-{index}"))
                .spawn(move || relay.run(deadline))?,
        );
    }
    Ok((address, handles))
}
