//! The fake DC: one mio loop holding any number of connections (10,000 idle ones included). On
//! an obfs2 listener it reads the proxy's 64-byte header without a secret
//! (docs/PROTOCOL.md §5.5); on a raw listener it reads plain bytes. Then it obeys the client's
//! `Command`. Bulk bytes are counted, not deciphered, so the DC costs the same behind feint as
//! behind the plain relay; echoed bytes and ACKs go through the real ciphers, so they prove the
//! keys end to end.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::command::{Command, ACK, COMMAND_LEN};
use crate::obfs2::{accept_frame, Streams, FRAME_LEN, TAG_PADDED_INTERMEDIATE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The proxy's obfs2 header first (feint).
    Obfs2,
    /// Plain bytes (the load client directly, or the plain relay).
    Raw,
}

const STEP_BUDGET: usize = 64;
const SCRATCH_LEN: usize = 64 * 1024;

enum Phase {
    Header,
    Command,
    Running(Command),
}

struct Connection {
    stream: TcpStream,
    phase: Phase,
    prefix: [u8; FRAME_LEN],
    prefix_have: usize,
    streams: Option<Streams>,
    received: u64,
    sent: u64,
    echoed: u64,
    out: Vec<u8>,
    out_start: usize,
    acked: bool,
    read_closed: bool,
}

enum Step {
    Progress,
    Blocked,
    Close,
}

impl Connection {
    fn new(stream: TcpStream, framing: Framing) -> Self {
        Connection {
            stream,
            phase: match framing {
                Framing::Obfs2 => Phase::Header,
                Framing::Raw => Phase::Command,
            },
            prefix: [0; FRAME_LEN],
            prefix_have: 0,
            streams: None,
            received: 0,
            sent: 0,
            echoed: 0,
            out: Vec::new(),
            out_start: 0,
            acked: false,
            read_closed: false,
        }
    }

    /// Runs until the socket blocks both ways or the budget is spent (then returns Progress).
    fn drive(&mut self, scratch: &mut [u8], filler: &[u8]) -> Step {
        for _ in 0..STEP_BUDGET {
            match self.step(scratch, filler) {
                Step::Progress => continue,
                other => return other,
            }
        }
        Step::Progress
    }

    fn step(&mut self, scratch: &mut [u8], filler: &[u8]) -> Step {
        let mut progress = false;
        // 1. Pending echo or ACK bytes.
        while self.out_start < self.out.len() {
            match self.stream.write(&self.out[self.out_start..]) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    self.out_start += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
        // 2. Filler for downloads.
        if let Phase::Running(Command::Source { bytes } | Command::Both { bytes }) = self.phase {
            if self.out.is_empty() && self.sent < bytes {
                let n = filler.len().min((bytes - self.sent) as usize);
                match self.stream.write(&filler[..n]) {
                    Ok(0) => return Step::Close,
                    Ok(n) => {
                        self.sent += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                }
            }
        }
        // 3. Reads, unless echo bytes are still waiting to go out (backpressure).
        if !self.read_closed && self.out.is_empty() {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.read_closed = true;
                    progress = true;
                }
                Ok(n) => {
                    if !self.take(&mut scratch[..n]) {
                        return Step::Close;
                    }
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(_) => return Step::Close,
            }
        }
        // 4. Completions.
        match self.phase {
            Phase::Running(Command::Sink { bytes }) if self.received >= bytes && !self.acked => {
                self.queue_ack(0);
                progress = true;
            }
            Phase::Running(Command::Both { bytes })
                if self.received >= bytes && self.sent >= bytes && !self.acked =>
            {
                self.queue_ack(bytes);
                progress = true;
            }
            Phase::Running(Command::Echo { close_after })
                if close_after > 0 && self.echoed >= close_after && self.out.is_empty() =>
            {
                return Step::Close;
            }
            _ => {}
        }
        if self.read_closed && self.out.is_empty() {
            return Step::Close;
        }
        if progress {
            Step::Progress
        } else {
            Step::Blocked
        }
    }

    fn queue_ack(&mut self, position: u64) {
        let mut ack = [ACK];
        if let Some(streams) = &mut self.streams {
            streams.send.seek(position);
            streams.send.apply(&mut ack);
        }
        self.out.push(ack[0]);
        self.acked = true;
    }

    /// Takes bytes just read. Returns false when the connection must close.
    fn take(&mut self, mut data: &mut [u8]) -> bool {
        loop {
            match self.phase {
                Phase::Header => {
                    let n = (FRAME_LEN - self.prefix_have).min(data.len());
                    self.prefix[self.prefix_have..self.prefix_have + n].copy_from_slice(&data[..n]);
                    self.prefix_have += n;
                    data = &mut data[n..];
                    if self.prefix_have < FRAME_LEN {
                        return true;
                    }
                    let accepted = accept_frame(&self.prefix, None);
                    if accepted.tag != TAG_PADDED_INTERMEDIATE {
                        return false;
                    }
                    self.streams = Some(accepted.streams);
                    self.prefix_have = 0;
                    self.phase = Phase::Command;
                }
                Phase::Command => {
                    let n = (COMMAND_LEN - self.prefix_have).min(data.len());
                    self.prefix[self.prefix_have..self.prefix_have + n].copy_from_slice(&data[..n]);
                    self.prefix_have += n;
                    data = &mut data[n..];
                    if self.prefix_have < COMMAND_LEN {
                        return true;
                    }
                    let mut command = [0u8; COMMAND_LEN];
                    command.copy_from_slice(&self.prefix[..COMMAND_LEN]);
                    if let Some(streams) = &mut self.streams {
                        streams.receive.apply(&mut command);
                    }
                    match Command::decode(&command) {
                        Some(command) => self.phase = Phase::Running(command),
                        None => return false,
                    }
                }
                Phase::Running(command) => {
                    self.received += data.len() as u64;
                    if let Command::Echo { close_after } = command {
                        let keep = if close_after > 0 {
                            data.len()
                                .min(close_after.saturating_sub(self.echoed) as usize)
                        } else {
                            data.len()
                        };
                        let data = &mut data[..keep];
                        if let Some(streams) = &mut self.streams {
                            streams.receive.apply(data);
                            streams.send.apply(data);
                        }
                        self.out.extend_from_slice(data);
                        self.echoed += keep as u64;
                    }
                    return true;
                }
            }
        }
    }
}

/// Runs the fake DC on `listeners` until `lifetime` has passed.
pub fn run(listeners: Vec<(StdListener, Framing)>, lifetime: Duration) -> io::Result<()> {
    let deadline = Instant::now() + lifetime;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listening: Vec<(TcpListener, Framing)> = Vec::new();
    for (index, (listener, framing)) in listeners.into_iter().enumerate() {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, Token(index), Interest::READABLE)?;
        listening.push((listener, framing));
    }
    let first_connection = listening.len();
    let mut connections: Vec<Option<Connection>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut again: VecDeque<usize> = VecDeque::new();
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let filler = crate::faketls::filler(SCRATCH_LEN);

    while Instant::now() < deadline {
        let timeout = if again.is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut ready: Vec<usize> = again.drain(..).collect();
        for event in events.iter() {
            let Token(token) = event.token();
            if token < first_connection {
                let (listener, framing) = &listening[token];
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    let index = free.pop().unwrap_or_else(|| {
                        connections.push(None);
                        connections.len() - 1
                    });
                    poll.registry().register(
                        &mut stream,
                        Token(first_connection + index),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    connections[index] = Some(Connection::new(stream, *framing));
                    ready.push(index);
                }
            } else {
                ready.push(token - first_connection);
            }
        }
        for index in ready {
            let Some(connection) = connections.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            match connection.drive(&mut scratch, &filler) {
                Step::Blocked => {}
                Step::Progress => {
                    if !again.contains(&index) {
                        again.push_back(index);
                    }
                }
                Step::Close => {
                    if let Some(mut connection) = connections[index].take() {
                        let _ = poll.registry().deregister(&mut connection.stream);
                    }
                    again.retain(|&i| i != index);
                    free.push(index);
                }
            }
        }
    }
    Ok(())
}
