//! SOCKS5 client handshake (RFC 1928, with RFC 1929 username/password) as a state machine:
//! requests go into the caller's buffer, the server's bytes come in as the caller's slice, and
//! it ends in `Connected` or `Failed`. It never touches the socket it talks over.

use std::net::SocketAddr;

/// The longest request written: an RFC 1929 request with a 255-byte user and password.
pub const MAX_REQUEST_LEN: usize = 3 + 255 + 255;

const VERSION: u8 = 5;
const AUTH_VERSION: u8 = 1;
const METHOD_NONE: u8 = 0x00;
const METHOD_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const COMMAND_CONNECT: u8 = 1;
const ADDRESS_IPV4: u8 = 1;
const ADDRESS_DOMAIN: u8 = 3;
const ADDRESS_IPV6: u8 = 4;

/// A username and password for RFC 1929, each 1 to 255 bytes.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    user: &'a [u8],
    password: &'a [u8],
}

impl<'a> Credentials<'a> {
    /// `None` when either is empty or longer than 255 bytes, which RFC 1929 cannot carry.
    pub fn new(user: &'a [u8], password: &'a [u8]) -> Option<Credentials<'a>> {
        let fits = |field: &[u8]| (1..=255).contains(&field.len());
        (fits(user) && fits(password)).then_some(Credentials { user, password })
    }
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// Why a dial through the proxy failed. Only counters and logs tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The destination refused the connection (reply 5) or the proxy's rules forbid it (2).
    Refused,
    /// The proxy could not reach the destination: general failure (1), network or host
    /// unreachable (3, 4) or TTL expired (6).
    Unreachable,
    /// The proxy accepted none of our methods (0xFF) or rejected the username and password.
    AuthFailed,
    /// Anything else: wrong versions, a method we did not offer, an unknown reply code or
    /// address type, command or address type not supported (7, 8), or a call after the end.
    ProtocolError,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::Refused => "refused through the SOCKS5 proxy",
            Failure::Unreachable => "unreachable through the SOCKS5 proxy",
            Failure::AuthFailed => "SOCKS5 authentication failed",
            Failure::ProtocolError => "SOCKS5 protocol error",
        })
    }
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The server's message is not complete: keep the bytes, read more, call again with all.
    NeedMore,
    /// Drop `consumed` bytes of input, write `written` bytes of the request buffer to the proxy,
    /// then call again with whatever input is left or arrives.
    Send {
        consumed: usize,
        written: usize,
    },
    /// The tunnel is open: drop `consumed` bytes; any bytes after them came from the destination.
    Connected {
        consumed: usize,
    },
    Failed(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitMethod,
    AwaitAuth,
    AwaitReply,
    Done,
}

/// One CONNECT through a SOCKS5 proxy, from the greeting to the reply.
#[derive(Clone, Copy, Debug)]
pub struct Socks5Dial {
    destination: SocketAddr,
    phase: Phase,
}

impl Socks5Dial {
    /// Begins a dial to `destination` once the TCP connection to the proxy is up: writes the
    /// greeting into `out` and returns the machine and the greeting's length. With
    /// `credentials` it offers username/password as well as no authentication.
    pub fn start(
        destination: SocketAddr,
        credentials: Option<&Credentials>,
        out: &mut [u8; MAX_REQUEST_LEN],
    ) -> (Socks5Dial, usize) {
        let written = match credentials {
            None => put(out, &[VERSION, 1, METHOD_NONE]),
            Some(_) => put(out, &[VERSION, 2, METHOD_NONE, METHOD_PASSWORD]),
        };
        let dial = Socks5Dial {
            destination,
            phase: Phase::AwaitMethod,
        };
        (dial, written)
    }

    /// Takes the bytes the proxy sent so far and not yet consumed. `credentials` must be the
    /// ones given to `start`; requests go into `out`.
    pub fn receive(
        &mut self,
        input: &[u8],
        credentials: Option<&Credentials>,
        out: &mut [u8; MAX_REQUEST_LEN],
    ) -> Step {
        let step = match self.phase {
            Phase::AwaitMethod => self.on_method(input, credentials, out),
            Phase::AwaitAuth => self.on_auth(input, out),
            Phase::AwaitReply => on_reply(input),
            Phase::Done => Step::Failed(Failure::ProtocolError),
        };
        if matches!(step, Step::Connected { .. } | Step::Failed(_)) {
            self.phase = Phase::Done;
        }
        step
    }

    fn on_method(
        &mut self,
        input: &[u8],
        credentials: Option<&Credentials>,
        out: &mut [u8; MAX_REQUEST_LEN],
    ) -> Step {
        let Some(&[version, method]) = input.get(..2) else {
            return Step::NeedMore;
        };
        if version != VERSION {
            return Step::Failed(Failure::ProtocolError);
        }
        match (method, credentials) {
            (METHOD_NONE, _) => self.send_connect(2, out),
            (METHOD_PASSWORD, Some(credentials)) => {
                self.phase = Phase::AwaitAuth;
                Step::Send {
                    consumed: 2,
                    written: write_auth(credentials, out),
                }
            }
            (NO_ACCEPTABLE_METHOD, _) => Step::Failed(Failure::AuthFailed),
            _ => Step::Failed(Failure::ProtocolError),
        }
    }

    fn on_auth(&mut self, input: &[u8], out: &mut [u8; MAX_REQUEST_LEN]) -> Step {
        let Some(&[version, status]) = input.get(..2) else {
            return Step::NeedMore;
        };
        match (version, status) {
            (AUTH_VERSION, 0) => self.send_connect(2, out),
            (AUTH_VERSION, _) => Step::Failed(Failure::AuthFailed),
            _ => Step::Failed(Failure::ProtocolError),
        }
    }

    fn send_connect(&mut self, consumed: usize, out: &mut [u8; MAX_REQUEST_LEN]) -> Step {
        self.phase = Phase::AwaitReply;
        let port = self.destination.port().to_be_bytes();
        let written = match self.destination {
            SocketAddr::V4(address) => {
                put(out, &[VERSION, COMMAND_CONNECT, 0, ADDRESS_IPV4])
                    + put(&mut out[4..], &address.ip().octets())
                    + put(&mut out[8..], &port)
            }
            SocketAddr::V6(address) => {
                put(out, &[VERSION, COMMAND_CONNECT, 0, ADDRESS_IPV6])
                    + put(&mut out[4..], &address.ip().octets())
                    + put(&mut out[20..], &port)
            }
        };
        Step::Send { consumed, written }
    }
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT` (RFC 1928 §6). A failure code ends the dial as soon as
/// it arrives; the bound address is only skipped.
fn on_reply(input: &[u8]) -> Step {
    let Some(&[version, reply]) = input.get(..2) else {
        return Step::NeedMore;
    };
    if version != VERSION {
        return Step::Failed(Failure::ProtocolError);
    }
    let failure = match reply {
        0 => None,
        2 | 5 => Some(Failure::Refused),
        1 | 3 | 4 | 6 => Some(Failure::Unreachable),
        _ => Some(Failure::ProtocolError),
    };
    if let Some(failure) = failure {
        return Step::Failed(failure);
    }
    let Some(&address_type) = input.get(3) else {
        return Step::NeedMore;
    };
    let address_len = match address_type {
        ADDRESS_IPV4 => 4,
        ADDRESS_IPV6 => 16,
        ADDRESS_DOMAIN => match input.get(4) {
            Some(&name_len) => 1 + usize::from(name_len),
            None => return Step::NeedMore,
        },
        _ => return Step::Failed(Failure::ProtocolError),
    };
    let consumed = 4 + address_len + 2;
    if input.len() < consumed {
        return Step::NeedMore;
    }
    Step::Connected { consumed }
}

/// `VER ULEN UNAME PLEN PASSWD` (RFC 1929 §2).
fn write_auth(credentials: &Credentials, out: &mut [u8; MAX_REQUEST_LEN]) -> usize {
    let user_len = u8::try_from(credentials.user.len()).expect("Credentials::new bounds the user");
    let password_len =
        u8::try_from(credentials.password.len()).expect("Credentials::new bounds the password");
    let mut at = put(out, &[AUTH_VERSION, user_len]);
    at += put(&mut out[at..], credentials.user);
    at += put(&mut out[at..], &[password_len]);
    at + put(&mut out[at..], credentials.password)
}

/// Copies `bytes` to the start of `out`; every caller writes within `MAX_REQUEST_LEN`.
fn put(out: &mut [u8], bytes: &[u8]) -> usize {
    out[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPV4_SUCCESS: [u8; 10] = [5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];

    fn destination_v4() -> SocketAddr {
        "149.154.167.51:443".parse().unwrap()
    }

    fn credentials() -> Credentials<'static> {
        Credentials::new(b"alice", b"s3cret").unwrap()
    }

    /// What the client wrote and how the dial ended, driving it the way the event loop will:
    /// `server` arrives in pieces cut at `cuts`, unconsumed bytes are kept and handed back.
    struct Transcript {
        written: Vec<u8>,
        end: Step,
        leftover: Vec<u8>,
    }

    fn drive(
        destination: SocketAddr,
        credentials: Option<&Credentials>,
        server: &[u8],
        cuts: &[usize],
    ) -> Transcript {
        let mut out = [0; MAX_REQUEST_LEN];
        let (mut dial, len) = Socks5Dial::start(destination, credentials, &mut out);
        let mut written = out[..len].to_vec();
        let mut pending = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([server.len()].iter()) {
            pending.extend_from_slice(&server[from..to]);
            from = to;
            // Bounded: each round either consumes bytes, ends or waits for more.
            for _ in 0..8 {
                match dial.receive(&pending, credentials, &mut out) {
                    Step::NeedMore => break,
                    Step::Send {
                        consumed,
                        written: len,
                    } => {
                        pending.drain(..consumed);
                        written.extend_from_slice(&out[..len]);
                    }
                    end => {
                        if let Step::Connected { consumed } = end {
                            pending.drain(..consumed);
                        }
                        // Bytes not yet delivered follow the reply on the same stream.
                        pending.extend_from_slice(&server[from..]);
                        return Transcript {
                            written,
                            end,
                            leftover: pending,
                        };
                    }
                }
            }
        }
        Transcript {
            written,
            end: Step::NeedMore,
            leftover: pending,
        }
    }

    fn connect_request_v4() -> Vec<u8> {
        vec![5, 1, 0, 1, 149, 154, 167, 51, 0x01, 0xbb]
    }

    #[test]
    fn connects_without_authentication() {
        let mut server = vec![5, 0];
        server.extend_from_slice(&IPV4_SUCCESS);
        server.extend_from_slice(b"stream");
        let transcript = drive(destination_v4(), None, &server, &[]);
        let mut expected = vec![5, 1, 0];
        expected.extend(connect_request_v4());
        assert_eq!(transcript.written, expected);
        assert_eq!(transcript.end, Step::Connected { consumed: 10 });
        assert_eq!(transcript.leftover, b"stream");
    }

    #[test]
    fn connects_with_username_and_password() {
        let mut server = vec![5, 2, 1, 0];
        server.extend_from_slice(&IPV4_SUCCESS);
        let transcript = drive(destination_v4(), Some(&credentials()), &server, &[]);
        let mut expected = vec![5, 2, 0, 2, 1, 5];
        expected.extend_from_slice(b"alice");
        expected.push(6);
        expected.extend_from_slice(b"s3cret");
        expected.extend(connect_request_v4());
        assert_eq!(transcript.written, expected);
        assert_eq!(transcript.end, Step::Connected { consumed: 10 });
    }

    #[test]
    fn offers_both_methods_and_takes_no_auth_when_chosen() {
        let mut server = vec![5, 0];
        server.extend_from_slice(&IPV4_SUCCESS);
        let transcript = drive(destination_v4(), Some(&credentials()), &server, &[]);
        let mut expected = vec![5, 2, 0, 2];
        expected.extend(connect_request_v4());
        assert_eq!(transcript.written, expected);
        assert!(matches!(transcript.end, Step::Connected { .. }));
    }

    #[test]
    fn sends_ipv6_destinations_and_skips_any_bound_address() {
        let destination: SocketAddr = "[2001:b28:f23d:f001::a]:443".parse().unwrap();
        let mut ipv6_reply = vec![5, 0, 5, 0, 0, 4];
        ipv6_reply.extend_from_slice(&[0; 16]);
        ipv6_reply.extend_from_slice(&[0, 80, 0xee]);
        let mut domain_reply = vec![5, 0, 5, 0, 0, 3, 9];
        domain_reply.extend_from_slice(b"localhost");
        domain_reply.extend_from_slice(&[0, 80, 0xee]);
        for server in [ipv6_reply, domain_reply] {
            let transcript = drive(destination, None, &server, &[]);
            let mut expected = vec![5, 1, 0, 5, 1, 0, 4];
            expected.extend_from_slice(&[0x20, 0x01, 0x0b, 0x28, 0xf2, 0x3d, 0xf0, 0x01]);
            expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x0a, 0x01, 0xbb]);
            assert_eq!(transcript.written, expected);
            assert!(matches!(transcript.end, Step::Connected { .. }));
            assert_eq!(transcript.leftover, [0xee]);
        }
    }

    #[test]
    fn replies_split_at_every_byte_give_the_same_result() {
        let mut server = vec![5, 2, 1, 0];
        server.extend_from_slice(&[5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 1]);
        server.extend_from_slice(b"after");
        let whole = drive(destination_v4(), Some(&credentials()), &server, &[]);
        assert!(matches!(whole.end, Step::Connected { consumed: 11 }));
        for cut in 0..=server.len() {
            let split = drive(destination_v4(), Some(&credentials()), &server, &[cut]);
            assert_eq!(split.written, whole.written, "cut at {cut}");
            assert_eq!(split.end, whole.end, "cut at {cut}");
            assert_eq!(split.leftover, whole.leftover, "cut at {cut}");
        }
        let every: Vec<usize> = (1..server.len()).collect();
        let bytewise = drive(destination_v4(), Some(&credentials()), &server, &every);
        assert_eq!(bytewise.written, whole.written);
        assert_eq!(bytewise.end, whole.end);
        assert_eq!(bytewise.leftover, b"after");
    }

    #[test]
    fn maps_reply_codes_to_failures() {
        for (code, failure) in [
            (1, Failure::Unreachable),
            (2, Failure::Refused),
            (3, Failure::Unreachable),
            (4, Failure::Unreachable),
            (5, Failure::Refused),
            (6, Failure::Unreachable),
            (7, Failure::ProtocolError),
            (8, Failure::ProtocolError),
            (9, Failure::ProtocolError),
            (0xff, Failure::ProtocolError),
        ] {
            // A failure is final as soon as its code arrives, without the bound address.
            let transcript = drive(destination_v4(), None, &[5, 0, 5, code], &[]);
            assert_eq!(transcript.end, Step::Failed(failure), "reply {code}");
        }
    }

    #[test]
    fn rejected_methods_and_passwords_fail_authentication() {
        let refused = drive(destination_v4(), None, &[5, 0xff], &[]);
        assert_eq!(refused.end, Step::Failed(Failure::AuthFailed));
        let wrong = drive(destination_v4(), Some(&credentials()), &[5, 2, 1, 1], &[]);
        assert_eq!(wrong.end, Step::Failed(Failure::AuthFailed));
    }

    #[test]
    fn protocol_violations_fail() {
        let with = Some(credentials());
        for (credentials, server) in [
            (None, &[4, 0][..]),
            (None, &[5, 2]),
            (None, &[5, 1]),
            (with, &[5, 3]),
            (with, &[5, 2, 5, 0]),
            (None, &[5, 0, 4, 0, 0, 1]),
            (None, &[5, 0, 5, 0, 0, 2, 0, 0]),
            (None, &[5, 0, 5, 0, 0, 0]),
        ] {
            let transcript = drive(destination_v4(), credentials.as_ref(), server, &[]);
            assert_eq!(
                transcript.end,
                Step::Failed(Failure::ProtocolError),
                "{server:?}"
            );
        }
    }

    #[test]
    fn a_finished_dial_takes_no_more_input() {
        let mut out = [0; MAX_REQUEST_LEN];
        let (mut dial, _) = Socks5Dial::start(destination_v4(), None, &mut out);
        assert!(matches!(
            dial.receive(&[5, 0], None, &mut out),
            Step::Send { .. }
        ));
        assert_eq!(
            dial.receive(&IPV4_SUCCESS, None, &mut out),
            Step::Connected { consumed: 10 }
        );
        assert_eq!(
            dial.receive(&IPV4_SUCCESS, None, &mut out),
            Step::Failed(Failure::ProtocolError)
        );
    }

    #[test]
    fn credentials_hold_1_to_255_bytes_and_never_print() {
        let long = [b'a'; 256];
        assert!(Credentials::new(b"", b"p").is_none());
        assert!(Credentials::new(b"u", b"").is_none());
        assert!(Credentials::new(&long, b"p").is_none());
        assert!(Credentials::new(b"u", &long).is_none());
        let longest = Credentials::new(&long[..255], &long[..255]).unwrap();
        let mut out = [0; MAX_REQUEST_LEN];
        assert_eq!(write_auth(&longest, &mut out), MAX_REQUEST_LEN);
        assert_eq!(format!("{:?}", credentials()), "Credentials { .. }");
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let server: Vec<u8> = (0..len)
                .map(|_| {
                    let byte = next();
                    // Mostly small values, so the machine gets past its version checks.
                    if byte & 1 == 0 {
                        (byte >> 8) as u8 % 6
                    } else {
                        (byte >> 8) as u8
                    }
                })
                .collect();
            let cut = (next() as usize) % (len + 1);
            let transcript = drive(destination_v4(), Some(&credentials()), &server, &[cut]);
            if let Step::Connected { .. } = transcript.end {
                assert!(transcript.leftover.len() < server.len());
            }
        }
    }
}
