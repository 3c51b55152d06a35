//! Deterministic simulation of one event loop: the real driver and connection core over
//! in-memory sockets, a fake clock and seeded randomness. Every schedule is replayed from its
//! seed; a failing seed is printed and belongs in `REGRESSIONS`.
//!
//! Per seed, a few clients connect: genuine TDLib clients (real captured hellos, relayed to a
//! DC that decodes feint's frame) and probers (garbage, HTTP, truncated or replayed hellos,
//! fronted to a fake front). Bytes arrive in random pieces, writes are partial, readiness comes
//! in any order, peers reset or half-close at any step, dials fail or hang, the buffer pool is
//! tiny and the clock jumps between any two events. Checked on every schedule: no panic; relayed
//! and fronted bytes arrive intact and in order; no connection spins; when every connection has
//! ended, every slot, buffer and timer is back.

use std::collections::VecDeque;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::Token;

use super::connection::{Clock, Env};
use super::driver::Driver;
use super::net::{CloseStyle, ConnectState, Net, Outcome, Readiness};
use super::shared::Shared;
use crate::proto::cipher::CtrState;
use crate::proto::hello::MAX_ASSEMBLED_LEN;
use crate::proto::obfs2;
use crate::proto::server_hello::MAX_CERT_LEN;
use crate::proto::testdata::{KEY, TDLIB_CAPTURES, TDLIB_DOMAIN, TDLIB_HELLO_LEN};
use crate::settings::Config;

/// Schedules per `cargo test` run.
const SCHEDULES: u64 = 2000;
/// Seeds that once failed; they run first, every time.
const REGRESSIONS: &[u64] = &[];
const MAX_STEPS: usize = 1000;
const BUFFER_LEN: usize = super::buffer::BUF_LEN;
const FRONT: &str = "192.0.2.80:443";

/// xorshift64*: small, fast and good enough to pick schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Connect {
    Pending,
    Connected,
    Refused,
    /// Never answers: only the dial deadline ends it.
    Silent,
}

/// One simulated socket as feint sees it, and the remote end's view.
struct Socket {
    token: Option<Token>,
    /// Bytes the remote sent, waiting for feint.
    inbound: VecDeque<u8>,
    inbound_fin: bool,
    reset: bool,
    /// Bytes feint wrote, not yet taken by the remote.
    outbound: VecDeque<u8>,
    out_room: usize,
    feint_fin: bool,
    closed: Option<CloseStyle>,
    connect: Connect,
    /// Where a dial went (None for accepted sockets).
    target: Option<SocketAddr>,
}

impl Socket {
    fn new(target: Option<SocketAddr>, connect: Connect) -> Self {
        Socket {
            token: None,
            inbound: VecDeque::new(),
            inbound_fin: false,
            reset: false,
            outbound: VecDeque::new(),
            out_room: 0,
            feint_fin: false,
            closed: None,
            connect,
            target,
        }
    }
}

pub struct SimStream(usize);

struct SimNet {
    sockets: Vec<Socket>,
    edges: Vec<(Token, Readiness)>,
    rng: Rng,
    /// Percent of dials that fail at once, and of those that are refused or never answer.
    dial_faults: u64,
}

impl SimNet {
    fn edge(&mut self, socket: usize, ready: Readiness) {
        if let Some(token) = self.sockets[socket].token {
            if self.sockets[socket].closed.is_none() {
                self.edges.push((token, ready));
            }
        }
    }
}

const READABLE: Readiness = Readiness {
    readable: true,
    writable: false,
    hung_up: false,
};
const WRITABLE: Readiness = Readiness {
    readable: false,
    writable: true,
    hung_up: false,
};
const HUNG_UP: Readiness = Readiness {
    readable: true,
    writable: false,
    hung_up: true,
};
const BROKEN: Readiness = Readiness {
    readable: true,
    writable: true,
    hung_up: true,
};

impl Net for SimNet {
    type Stream = SimStream;

    fn register(&mut self, stream: &mut SimStream, token: Token) -> bool {
        self.sockets[stream.0].token = Some(token);
        if self.sockets[stream.0].connect == Connect::Connected {
            self.edge(stream.0, WRITABLE);
        }
        true
    }

    fn read(&mut self, stream: &mut SimStream, buf: &mut [u8]) -> Outcome {
        let socket = &mut self.sockets[stream.0];
        assert!(socket.closed.is_none(), "read after close");
        if socket.reset {
            return Outcome::Failed;
        }
        if socket.inbound.is_empty() {
            return if socket.inbound_fin {
                Outcome::Closed
            } else {
                Outcome::WouldBlock
            };
        }
        let n = buf.len().min(socket.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(socket.inbound.drain(..n)) {
            *slot = byte;
        }
        Outcome::Progress(n)
    }

    fn read_vectored(&mut self, stream: &mut SimStream, bufs: &mut [IoSliceMut<'_>]) -> Outcome {
        let mut total = 0;
        for buf in bufs.iter_mut() {
            match self.read(stream, buf) {
                Outcome::Progress(n) => {
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                other if total == 0 => return other,
                _ => break,
            }
        }
        Outcome::Progress(total)
    }

    fn peek(&mut self, stream: &mut SimStream, buf: &mut [u8]) -> Outcome {
        let socket = &self.sockets[stream.0];
        if socket.reset {
            return Outcome::Failed;
        }
        if socket.inbound.is_empty() {
            return if socket.inbound_fin {
                Outcome::Closed
            } else {
                Outcome::WouldBlock
            };
        }
        let n = buf.len().min(socket.inbound.len());
        for (slot, byte) in buf.iter_mut().zip(socket.inbound.iter()) {
            *slot = *byte;
        }
        Outcome::Progress(n)
    }

    fn write(&mut self, stream: &mut SimStream, buf: &[u8]) -> Outcome {
        let socket = &mut self.sockets[stream.0];
        assert!(!socket.feint_fin, "write after shutdown");
        assert_eq!(socket.connect, Connect::Connected, "write before connected");
        if socket.reset {
            return Outcome::Failed;
        }
        if socket.out_room == 0 {
            return Outcome::WouldBlock;
        }
        let n = buf.len().min(socket.out_room);
        socket.out_room -= n;
        socket.outbound.extend(&buf[..n]);
        Outcome::Progress(n)
    }

    fn shutdown_write(&mut self, stream: &mut SimStream) {
        self.sockets[stream.0].feint_fin = true;
    }

    fn dial(&mut self, address: SocketAddr, token: Token, _watch: bool) -> Option<SimStream> {
        if self.rng.below(100) < self.dial_faults / 2 {
            return None;
        }
        let connect = if self.rng.below(100) < self.dial_faults {
            if self.rng.chance(50) {
                Connect::Refused
            } else {
                Connect::Silent
            }
        } else {
            Connect::Pending
        };
        self.sockets.push(Socket::new(Some(address), connect));
        let id = self.sockets.len() - 1;
        self.sockets[id].token = Some(token);
        Some(SimStream(id))
    }

    fn connect_state(&mut self, stream: &mut SimStream) -> ConnectState {
        match self.sockets[stream.0].connect {
            Connect::Connected => ConnectState::Connected,
            Connect::Refused => ConnectState::Refused,
            Connect::Pending | Connect::Silent => ConnectState::Pending,
        }
    }

    fn client_verified(&mut self, _stream: &mut SimStream) {}

    fn local_address(&mut self, _stream: &mut SimStream) -> Option<SocketAddr> {
        "203.0.113.1:443".parse().ok()
    }

    fn dialled_itself(&mut self, _stream: &mut SimStream) -> bool {
        false
    }

    fn close(&mut self, stream: SimStream, style: CloseStyle) {
        let socket = &mut self.sockets[stream.0];
        assert!(socket.closed.is_none(), "closed twice");
        socket.closed = Some(style);
    }
}

/// What a client of the simulation is.
enum Role {
    /// A real TDLib capture: hello, then CCS and the obfs2 frame; then random payload.
    Genuine {
        /// Client-to-proxy keystream after the captured bytes.
        send: CtrState,
        /// Proxy-to-client keystream.
        receive: CtrState,
        /// Plaintext sent after the frame, to compare with what the DC decodes.
        sent_plain: Vec<u8>,
        /// Raw TLS bytes received, parsed into `received_plain` record by record.
        received_raw: Vec<u8>,
        received_plain: Vec<u8>,
        records_seen: usize,
    },
    /// Anything else; it must be answered by the front, byte for byte.
    Prober { received: Vec<u8> },
}

struct Client {
    /// The accepted socket (feint's side).
    socket: usize,
    /// Bytes still to send, in order.
    script: VecDeque<u8>,
    /// Everything it has sent.
    sent: Vec<u8>,
    fin_after_script: bool,
    role: Role,
    done: bool,
}

/// A remote end that feint dialled: the front or a DC.
struct Remote {
    socket: usize,
    /// Everything received, raw.
    received: Vec<u8>,
    /// DC only: the keystreams from feint's frame, once it is in.
    dc_keys: Option<(CtrState, CtrState)>,
    dc_plain: Vec<u8>,
    /// Bytes of `received` already decoded.
    decoded: usize,
    /// What it answers, in order.
    answer: VecDeque<u8>,
    answered: Vec<u8>,
    fin_after_answer: bool,
}

struct World {
    rng: Rng,
    driver: Driver<SimNet>,
    clients: Vec<Client>,
    remotes: Vec<Remote>,
    buffers: usize,
    tick: u64,
    unix: u64,
}

/// The settings of every schedule, from a command line like an operator's; only the secret's
/// key and domain (those of the TDLib captures) matter to the core here.
fn config() -> Config {
    let mut secret = String::from("ee");
    for byte in KEY.iter().chain(TDLIB_DOMAIN) {
        secret.push_str(&format!("{byte:02x}"));
    }
    let args = ["run", "--front", "192.0.2.80:443", &secret];
    match crate::cli::parse(lexopt::Parser::from_args(args)) {
        Ok(crate::cli::Command::Run(config)) => *config,
        _ => panic!("the simulation's command line parses"),
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let front: SocketAddr = FRONT.parse().expect("front address");
        let shared = Shared::new(&config());
        let mut fronts = [None; super::shared::MAX_FRONT_ADDRESSES];
        fronts[0] = Some(front);
        if rng.chance(30) {
            fronts[1] = Some("192.0.2.81:443".parse().expect("address"));
        }
        shared.set_front_addresses(fronts);
        let shared = Arc::new(shared);
        let buffers = 1 + rng.below(4) as usize;
        let max_connections = 2 + rng.below(6) as usize;
        let mut key = [0; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let env = Env {
            loop_index: 0,
            shared,
            handshake_ticks: 100,
            idle_ticks: 600,
            dial_ticks: 50,
            now: Clock::default(),
            rng: CtrState::new(key, [0; 16]),
            scratch: vec![0; BUFFER_LEN],
            assembled: vec![0; MAX_ASSEMBLED_LEN],
            noise: vec![0; MAX_CERT_LEN],
        };
        let net = SimNet {
            sockets: Vec::new(),
            edges: Vec::new(),
            rng: Rng(rng.next() | 1),
            dial_faults: [0, 0, 10, 40][rng.below(4) as usize],
        };
        let unix = u64::from(TDLIB_CAPTURES[0].time);
        let mut world = World {
            rng,
            driver: Driver::new(net, env, max_connections, buffers),
            clients: Vec::new(),
            remotes: Vec::new(),
            buffers,
            tick: 0,
            unix,
        };
        world.set_clock();
        world
    }

    fn set_clock(&mut self) {
        self.driver.set_clock(Clock {
            tick: self.tick,
            unix: self.unix + self.tick / 10,
            micros: self.tick * 100_000,
        });
    }

    fn net(&mut self) -> &mut SimNet {
        &mut self.driver.net
    }

    /// A new client connects, if the table has room (else it would wait in the backlog).
    fn connect_client(&mut self) {
        if !self.driver.has_room() {
            return;
        }
        let role_pick = self.rng.below(10);
        let (script, role) = if role_pick < 5 {
            let capture = self.rng.below(TDLIB_CAPTURES.len() as u64) as usize;
            genuine(capture)
        } else {
            prober(role_pick, &mut self.rng)
        };
        let fin_after_script = self.rng.chance(30);
        let net = self.net();
        net.sockets.push(Socket::new(None, Connect::Connected));
        let socket = net.sockets.len() - 1;
        net.sockets[socket].out_room = 1 + net.rng.below(3000) as usize;
        self.clients.push(Client {
            socket,
            script: script.into(),
            sent: Vec::new(),
            fin_after_script,
            role,
            done: false,
        });
        let id = self.clients.len() as u64;
        // Admission never fails here: the table had room.
        let peer = "198.51.100.1:50000".parse().ok();
        assert!(self.driver.admit(id, SimStream(socket), peer).is_ok());
    }

    /// Notices sockets that feint dialled and gives each a remote end.
    fn adopt_dials(&mut self) {
        let count = self.driver.net.sockets.len();
        for socket in 0..count {
            let dialled = self.driver.net.sockets[socket].target.is_some();
            if !dialled || self.remotes.iter().any(|r| r.socket == socket) {
                continue;
            }
            let is_front = self.driver.net.sockets[socket]
                .target
                .is_some_and(|t| t.ip().to_string().starts_with("192.0.2."));
            // Some DC answers span several records, a few bytes past a record's end.
            let answer_len = match self.rng.below(10) {
                0 if !is_front => {
                    16_384 * (1 + self.rng.below(3) as usize) + self.rng.below(20) as usize
                }
                _ => self.rng.below(if is_front { 3000 } else { 6000 }) as usize,
            };
            let answer = self.rng.bytes(answer_len);
            let fin_after_answer = is_front && self.rng.chance(50);
            self.remotes.push(Remote {
                socket,
                received: Vec::new(),
                dc_keys: None,
                dc_plain: Vec::new(),
                decoded: 0,
                answer: answer.into(),
                answered: Vec::new(),
                fin_after_answer,
            });
        }
    }

    /// One random thing happens in the world outside feint.
    fn act(&mut self) {
        match self.rng.below(100) {
            0..=4 => self.connect_client(),
            5..=34 => self.client_sends(),
            35..=54 => self.client_reads(),
            55..=74 => self.remote_acts(),
            75..=79 => self.resolve_connect(),
            80..=84 => self.fault(),
            _ => self.advance_clock(),
        }
    }

    fn pick_client(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.clients.len())
            .filter(|&i| !self.clients[i].done)
            .collect();
        (!live.is_empty()).then(|| live[self.rng.below(live.len() as u64) as usize])
    }

    fn client_sends(&mut self) {
        let Some(index) = self.pick_client() else {
            return;
        };
        let pieces = [1, 2, 7, 100, 600, 5000];
        let size = pieces[self.rng.below(pieces.len() as u64) as usize];
        let client = &mut self.clients[index];
        let socket = client.socket;
        if self.driver.net.sockets[socket].closed.is_some() {
            client.done = true;
            return;
        }
        if client.script.is_empty() {
            if let Role::Genuine { .. } = client.role {
                // Only after the reply, as TDLib does, so the frame follows a decided hello.
                if self.driver.net.sockets[socket].inbound.is_empty() {
                    more_genuine_data(client, &mut self.rng);
                }
            }
        }
        let client = &mut self.clients[index];
        let n = size.min(client.script.len());
        let bytes: Vec<u8> = client.script.drain(..n).collect();
        client.sent.extend_from_slice(&bytes);
        let finish = client.script.is_empty() && client.fin_after_script;
        let net = &mut self.driver.net;
        if net.sockets[socket].inbound_fin {
            return;
        }
        net.sockets[socket].inbound.extend(&bytes);
        if finish {
            net.sockets[socket].inbound_fin = true;
            net.edge(socket, HUNG_UP);
        } else if n > 0 {
            net.edge(socket, READABLE);
        }
    }

    fn client_reads(&mut self) {
        let Some(index) = self.pick_client() else {
            return;
        };
        let socket = self.clients[index].socket;
        let room = 1 + self.rng.below(60_000) as usize;
        let net = &mut self.driver.net;
        let n = room.min(net.sockets[socket].outbound.len());
        let bytes: Vec<u8> = net.sockets[socket].outbound.drain(..n).collect();
        net.sockets[socket].out_room += room;
        net.edge(socket, WRITABLE);
        let client = &mut self.clients[index];
        match &mut client.role {
            Role::Prober { received } => received.extend_from_slice(&bytes),
            Role::Genuine {
                received_raw,
                received_plain,
                receive,
                records_seen,
                ..
            } => {
                received_raw.extend_from_slice(&bytes);
                parse_records(received_raw, received_plain, receive, records_seen);
            }
        }
    }

    fn remote_acts(&mut self) {
        self.adopt_dials();
        if self.remotes.is_empty() {
            return;
        }
        let index = self.rng.below(self.remotes.len() as u64) as usize;
        let socket = self.remotes[index].socket;
        if self.driver.net.sockets[socket].connect != Connect::Connected
            || self.driver.net.sockets[socket].closed.is_some()
        {
            return;
        }
        // Read what feint sent.
        let take = 1 + self.rng.below(20000) as usize;
        let net = &mut self.driver.net;
        let n = take.min(net.sockets[socket].outbound.len());
        let bytes: Vec<u8> = net.sockets[socket].outbound.drain(..n).collect();
        net.sockets[socket].out_room += take;
        net.edge(socket, WRITABLE);
        let remote = &mut self.remotes[index];
        remote.received.extend_from_slice(&bytes);
        let is_front = self.driver.net.sockets[socket]
            .target
            .is_some_and(is_front_addr);
        if !is_front {
            decode_dc(remote);
        }
        // Answer some: a DC only once it has the frame.
        if !self.rng.chance(50) || !(is_front || remote.dc_keys.is_some()) {
            return;
        }
        let most = if self.rng.chance(20) { 60_000 } else { 3000 };
        let n = (1 + self.rng.below(most) as usize).min(remote.answer.len());
        let bytes: Vec<u8> = remote.answer.drain(..n).collect();
        let finish = remote.answer.is_empty() && remote.fin_after_answer;
        remote.answered.extend_from_slice(&bytes);
        let mut wire = bytes;
        if let Some((_, encrypt)) = remote.dc_keys.as_mut() {
            encrypt.apply(&mut wire);
        }
        let net = &mut self.driver.net;
        if net.sockets[socket].inbound_fin || net.sockets[socket].reset {
            return;
        }
        net.sockets[socket].inbound.extend(&wire);
        if finish {
            net.sockets[socket].inbound_fin = true;
            net.edge(socket, HUNG_UP);
        } else if !wire.is_empty() {
            net.edge(socket, READABLE);
        }
    }

    fn resolve_connect(&mut self) {
        let net = &mut self.driver.net;
        let pending: Vec<usize> = (0..net.sockets.len())
            .filter(|&s| net.sockets[s].connect == Connect::Pending)
            .collect();
        if pending.is_empty() {
            return;
        }
        let socket = pending[net.rng.below(pending.len() as u64) as usize];
        net.sockets[socket].connect = Connect::Connected;
        net.sockets[socket].out_room = 1 + net.rng.below(30000) as usize;
        net.edge(socket, WRITABLE);
        self.adopt_dials();
    }

    /// A reset or a half-close, on a client or a remote.
    fn fault(&mut self) {
        if !self.rng.chance(30) {
            return;
        }
        let count = self.driver.net.sockets.len();
        if count == 0 {
            return;
        }
        let socket = self.rng.below(count as u64) as usize;
        let reset = self.rng.chance(50);
        let net = &mut self.driver.net;
        if net.sockets[socket].closed.is_some() {
            return;
        }
        if reset {
            net.sockets[socket].reset = true;
            net.edge(socket, BROKEN);
        } else {
            net.sockets[socket].inbound_fin = true;
            net.edge(socket, HUNG_UP);
        }
        for client in &mut self.clients {
            if client.socket == socket {
                client.script.clear();
                // Its bytes can no longer be compared with what the other side got.
                client.done = true;
            }
        }
    }

    fn advance_clock(&mut self) {
        let steps = [1, 1, 1, 5, 20, 60, 120];
        self.tick += steps[self.rng.below(steps.len() as u64) as usize];
        self.set_clock();
        self.driver.on_tick();
    }

    /// Delivers some of the pending edges in random order, then runs the queues.
    fn deliver(&mut self) {
        let mut edges = std::mem::take(&mut self.driver.net.edges);
        let count = 1 + self.rng.below(edges.len() as u64 + 1) as usize;
        for _ in 0..count.min(edges.len()) {
            let index = self.rng.below(edges.len() as u64) as usize;
            let (token, ready) = edges.swap_remove(index);
            self.driver.on_event(token, ready);
        }
        edges.append(&mut self.driver.net.edges);
        self.driver.net.edges = edges;
        if self.rng.chance(70) {
            self.driver.run_queues();
        }
    }

    fn check_invariants(&self) {
        let in_use = self.buffers - self.driver.pool().available();
        assert!(
            in_use <= 2 * self.driver.live_connections(),
            "{in_use} buffers held by {} connections",
            self.driver.live_connections()
        );
    }

    /// Runs the queues and edges out; with nothing happening outside, feint must go quiet.
    fn settle(&mut self) {
        for _ in 0..200 {
            let edges = std::mem::take(&mut self.driver.net.edges);
            for (token, ready) in edges {
                self.driver.on_event(token, ready);
            }
            self.driver.run_queues();
            if self.driver.net.edges.is_empty() && !self.driver.busy() {
                return;
            }
        }
        panic!("feint keeps running with nothing happening: a spin");
    }

    fn check_streams(&self) {
        for client in &self.clients {
            match &client.role {
                Role::Prober { received } if !received.is_empty() => {
                    let answered = self.remotes.iter().any(|remote| {
                        remote.dc_keys.is_none() && remote.answered.starts_with(received)
                    });
                    assert!(answered, "a prober got bytes the front never sent");
                }
                Role::Prober { .. } => {}
                Role::Genuine {
                    received_plain,
                    sent_plain,
                    records_seen,
                    ..
                } => {
                    if *records_seen > usize::MAX / 4 {
                        continue;
                    }
                    // Some DC saw a prefix of the plaintext, and sent what the client decoded.
                    let matched = self.remotes.iter().any(|remote| {
                        remote.dc_keys.is_some()
                            && sent_plain.starts_with(&remote.dc_plain)
                            && remote.answered.starts_with(received_plain)
                    });
                    assert!(
                        matched || received_plain.is_empty(),
                        "a genuine client's bytes were corrupted"
                    );
                }
            }
        }
        // Every front received a prefix of what one client sent.
        for remote in &self.remotes {
            let target = self.driver.net.sockets[remote.socket].target;
            if remote.dc_keys.is_some() || !target.is_some_and(is_front_addr) {
                continue;
            }
            let owner = self
                .clients
                .iter()
                .any(|client| client.sent.starts_with(&remote.received));
            assert!(owner, "fronted bytes differ from what was sent");
        }
        // Every DC's plaintext is a prefix of one genuine client's.
        for remote in &self.remotes {
            if remote.dc_keys.is_none() {
                continue;
            }
            let owner = self.clients.iter().any(|client| match &client.role {
                Role::Genuine { sent_plain, .. } => sent_plain.starts_with(&remote.dc_plain),
                Role::Prober { .. } => false,
            });
            assert!(owner, "a DC received bytes no client sent");
        }
    }

    /// Ends every connection by time and checks that everything came back.
    fn finish(&mut self) {
        for _ in 0..50 {
            if self.driver.live_connections() == 0 {
                break;
            }
            // Remotes and clients go away: reset everything still open.
            let count = self.driver.net.sockets.len();
            for socket in 0..count {
                let net = &mut self.driver.net;
                if net.sockets[socket].closed.is_none() && !net.sockets[socket].reset {
                    net.sockets[socket].reset = true;
                    net.edge(socket, BROKEN);
                }
            }
            self.settle();
            self.tick += 1000;
            self.set_clock();
            self.driver.on_tick();
            self.settle();
        }
        assert_eq!(self.driver.live_connections(), 0, "connections left open");
        assert_eq!(self.driver.pool().available(), self.buffers, "buffers lost");
        assert!(!self.driver.timers_pending(), "timers left behind");
        assert!(!self.driver.busy(), "queue entries left behind");
        for socket in &self.driver.net.sockets {
            if socket.token.is_some() {
                assert!(socket.closed.is_some(), "a socket was never closed");
            }
        }
    }
}

fn is_front_addr(address: SocketAddr) -> bool {
    address.ip().to_string().starts_with("192.0.2.")
}

/// A genuine client's script: a captured TDLib hello, CCS and frame record.
fn genuine(capture: usize) -> (Vec<u8>, Role) {
    let bytes = TDLIB_CAPTURES[capture].bytes;
    // hello, CCS (6 bytes), AppData header (5 bytes), then the frame and the first payload.
    let payload = &bytes[TDLIB_HELLO_LEN + 11..];
    let mut frame = [0; obfs2::FRAME_LEN];
    frame.copy_from_slice(&payload[..obfs2::FRAME_LEN]);
    let parsed = obfs2::parse_client_frame(&frame, &KEY).expect("the capture's frame is valid");
    let mut send = parsed.decrypt;
    let mut first = payload[obfs2::FRAME_LEN..].to_vec();
    send.apply(&mut first);
    (
        bytes.to_vec(),
        Role::Genuine {
            send,
            receive: parsed.encrypt,
            sent_plain: first,
            received_raw: Vec::new(),
            received_plain: Vec::new(),
            records_seen: 0,
        },
    )
}

/// Queues one more ApplicationData record of random payload for a genuine client.
fn more_genuine_data(client: &mut Client, rng: &mut Rng) {
    let Role::Genuine {
        send, sent_plain, ..
    } = &mut client.role
    else {
        return;
    };
    if sent_plain.len() > 12_000 {
        return;
    }
    let len = 1 + rng.below(3000) as usize;
    let plain = rng.bytes(len);
    let mut wire = plain.clone();
    send.apply(&mut wire);
    sent_plain.extend_from_slice(&plain);
    client.script.extend([0x17, 0x03, 0x03]);
    client.script.extend((len as u16).to_be_bytes());
    client.script.extend(wire);
}

/// A prober's script: garbage, HTTP, a truncated hello or a replayed one.
fn prober(pick: u64, rng: &mut Rng) -> (Vec<u8>, Role) {
    let role = Role::Prober {
        received: Vec::new(),
    };
    let hello = &TDLIB_CAPTURES[0].bytes[..TDLIB_HELLO_LEN];
    let script = match pick {
        5 => {
            let len = 1 + rng.below(4000) as usize;
            rng.bytes(len)
        }
        6 => b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n".to_vec(),
        7 => hello[..1 + rng.below(TDLIB_HELLO_LEN as u64 - 1) as usize].to_vec(),
        8 => {
            let mut bad = hello.to_vec();
            let at = 11 + rng.below(20) as usize;
            bad[at] ^= 1;
            bad
        }
        _ => {
            // A replay of a hello a genuine client may also use: only one of them passes.
            let mut replay = hello.to_vec();
            let extra = 1 + rng.below(50) as usize;
            replay.extend(rng.bytes(extra));
            replay
        }
    };
    (script, role)
}

/// Splits received TLS records: the three of the reply flight, then relay records.
fn parse_records(
    raw: &mut Vec<u8>,
    plain: &mut Vec<u8>,
    receive: &mut CtrState,
    records_seen: &mut usize,
) {
    loop {
        if raw.len() < 5 {
            return;
        }
        let len = u16::from_be_bytes([raw[3], raw[4]]) as usize;
        if raw.len() < 5 + len {
            return;
        }
        let record: Vec<u8> = raw.drain(..5 + len).collect();
        *records_seen += 1;
        if *records_seen > 3 {
            if record[0] != 0x17 {
                // Not a relay: this client was fronted (a replayed capture, a stale clock).
                *records_seen = usize::MAX / 2;
                raw.clear();
                return;
            }
            let mut data = record[5..].to_vec();
            receive.apply(&mut data);
            plain.extend_from_slice(&data);
        }
    }
}

/// A DC decodes feint's frame (keys from the frame itself) and then the stream.
fn decode_dc(remote: &mut Remote) {
    if remote.dc_keys.is_none() {
        if remote.received.len() < obfs2::FRAME_LEN {
            return;
        }
        let frame = &remote.received[..obfs2::FRAME_LEN];
        let mut key = [0; 32];
        let mut iv = [0; 16];
        key.copy_from_slice(&frame[8..40]);
        iv.copy_from_slice(&frame[40..56]);
        let mut decrypt = CtrState::new(key, iv);
        let mut head = frame.to_vec();
        decrypt.apply(&mut head);
        assert_eq!(
            &head[56..60],
            &[0xdd; 4],
            "feint's frame carries the dd tag"
        );
        let mut reversed = [0; 48];
        reversed.copy_from_slice(&frame[8..56]);
        reversed.reverse();
        key.copy_from_slice(&reversed[..32]);
        iv.copy_from_slice(&reversed[32..]);
        remote.dc_keys = Some((decrypt, CtrState::new(key, iv)));
        remote.decoded = obfs2::FRAME_LEN;
    }
    if let Some((decrypt, _)) = remote.dc_keys.as_mut() {
        let mut data = remote.received[remote.decoded..].to_vec();
        decrypt.apply(&mut data);
        remote.dc_plain.extend_from_slice(&data);
        remote.decoded = remote.received.len();
    }
}

fn run_schedule(seed: u64) {
    let mut world = World::new(seed);
    let clients = 1 + world.rng.below(5);
    for _ in 0..clients {
        world.connect_client();
    }
    for _ in 0..MAX_STEPS {
        world.act();
        world.deliver();
        world.check_invariants();
    }
    world.settle();
    world.check_streams();
    world.finish();
}

#[test]
fn thousands_of_schedules_keep_every_promise() {
    let seeds = REGRESSIONS.iter().copied().chain(1..=SCHEDULES);
    for seed in seeds {
        let result = std::panic::catch_unwind(|| run_schedule(seed));
        if let Err(panic) = result {
            eprintln!("simulation failed with seed {seed}; add it to REGRESSIONS");
            std::panic::resume_unwind(panic);
        }
    }
}

/// A DC read a few bytes past a full record leaves as two records, the second lent bytes by
/// the first so that it is no smaller than a TLS server's; the bytes stay intact and in order.
#[test]
fn a_read_just_past_a_full_record_makes_no_tiny_record() {
    use super::buffer::BufferPool;
    use super::net::Side;
    use super::pipe::{self, Peer, Pipe, Transform};
    for extra in [1usize, 6, 17, 18, 300] {
        let mut net = SimNet {
            sockets: Vec::new(),
            edges: Vec::new(),
            rng: Rng(7),
            dial_faults: 0,
        };
        let plain: Vec<u8> = (0..16_384 + extra).map(|i| (i * 7) as u8).collect();
        for (inbound, out_room) in [(plain.clone(), 0), (Vec::new(), 1 << 20)] {
            let mut socket = Socket::new(Some(FRONT.parse().expect("address")), Connect::Connected);
            socket.inbound.extend(inbound);
            socket.out_room = out_room;
            net.sockets.push(socket);
        }
        let mut dc = Peer::new(Side::Upstream);
        dc.attach(SimStream(0));
        dc.ready.readable = true;
        let mut client = Peer::new(Side::Client);
        client.attach(SimStream(1));
        client.ready.writable = true;
        let mut pool = BufferPool::new(1);
        let mut pipe = Pipe::default();
        let (mut decrypt, mut encrypt) = (
            CtrState::new([1; 32], [2; 16]),
            CtrState::new([3; 32], [4; 16]),
        );
        for _ in 0..4 {
            let transform = Transform::ToClient {
                decrypt: &mut decrypt,
                encrypt: &mut encrypt,
            };
            let _ = pipe::relay(
                &mut pipe,
                &mut dc,
                &mut client,
                &mut net,
                &mut pool,
                transform,
            );
        }
        let wire: Vec<u8> = net.sockets[1].outbound.iter().copied().collect();
        let (mut undo_encrypt, mut undo_decrypt) = (
            CtrState::new([3; 32], [4; 16]),
            CtrState::new([1; 32], [2; 16]),
        );
        let mut at = 0;
        let mut got = Vec::new();
        let mut lens = Vec::new();
        while at + 5 <= wire.len() {
            let len = usize::from(u16::from_be_bytes([wire[at + 3], wire[at + 4]]));
            let mut data = wire[at + 5..at + 5 + len].to_vec();
            undo_encrypt.apply(&mut data);
            undo_decrypt.apply(&mut data);
            got.extend_from_slice(&data);
            lens.push(len);
            at += 5 + len;
        }
        assert_eq!(got, plain, "{extra}: the bytes arrive intact ({lens:?})");
        assert!(
            lens.iter().all(|&len| len >= 17),
            "{extra}: records {lens:?}"
        );
    }
}

/// With the front's profile learned, a verified hello's reply waits for the front's own time
/// to answer (here 0.3 s), on the hold queue, and then goes out whole.
#[test]
fn the_reply_waits_for_the_fronts_time_to_answer() {
    use crate::proto::front_flight;
    use crate::proto::testdata::NGINX_FLIGHT;
    let mut world = World::new(1);
    let mut profile = front_flight::parse_flight(NGINX_FLIGHT).expect("nginx's flight parses");
    profile.first_byte = std::time::Duration::from_millis(300);
    world.driver.shared().set_front_profile(Some(profile));
    world.clients.clear();
    let (script, role) = genuine(0);
    let net = world.net();
    net.sockets.push(Socket::new(None, Connect::Connected));
    let socket = net.sockets.len() - 1;
    net.sockets[socket].out_room = 1 << 20;
    net.sockets[socket]
        .inbound
        .extend(&script[..TDLIB_HELLO_LEN]);
    let _ = role;
    let peer = "198.51.100.1:50000".parse().ok();
    assert!(world.driver.admit(1, SimStream(socket), peer).is_ok());
    world.settle();
    assert!(
        world.driver.net.sockets[socket].outbound.is_empty(),
        "the reply left before the front would have answered"
    );
    // Two ticks (0.2 s): still held. Four (0.4 s): out, as one flight.
    for (ticks, sent) in [(2, false), (2, true)] {
        world.tick += ticks;
        world.set_clock();
        world.driver.on_tick();
        world.driver.run_queues();
        world.settle();
        let out = world.driver.net.sockets[socket].outbound.len();
        assert_eq!(out > 0, sent, "after {} ticks: {out} bytes", world.tick);
    }
    assert!(
        world.driver.net.sockets[socket].inbound.is_empty(),
        "the hello was taken"
    );
}
