//! The FakeTLS ClientHello: reassembly from the bytes read so far and verification
//! (PROTOCOL.md §2). Decides as early as possible when bytes cannot be a valid hello.

use std::time::Duration;

/// Smallest and largest handshake payload accepted (PROTOCOL.md §2.3).
pub const MIN_HELLO_LEN: usize = 100;
pub const MAX_HELLO_LEN: usize = 16384;
/// At most this many `16 03 01` records are joined into one hello (PROTOCOL.md §2.6).
pub const MAX_HELLO_FRAGMENTS: usize = 10;
/// Size of the single-record form written by `assemble`: header plus the largest handshake.
pub const MAX_ASSEMBLED_LEN: usize = 5 + MAX_HELLO_LEN;

/// Why a connection is not a FakeTLS client of ours. Every variant leads to fronting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The first bytes are not a TLS handshake record (`16 03 01` or `16 03 03`).
    NotTls,
    /// A record or handshake length out of bounds, too many fragments, or a body that ends early.
    Truncated,
    /// The handshake message is not a well-formed ClientHello.
    NotClientHello,
    /// No SNI, two SNI extensions, or a name other than the secret's domain.
    WrongDomain,
    /// The HMAC in the client random does not match our key.
    BadDigest,
    /// The timestamp is outside the accepted window.
    ClockSkew,
    /// This hello was accepted before.
    Replayed,
    /// No TLS 1.3 cipher suite offered.
    NoTls13Suite,
    /// Bytes followed the hello before our reply.
    TrailingData,
    /// The hello did not complete before the handshake deadline.
    Timeout,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}

/// What the bytes read so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assembly {
    /// Could still become a valid hello; read more.
    NeedMore,
    /// A whole hello: `consumed` input bytes became `len` bytes of single-record form in `out`.
    Complete { consumed: usize, len: usize },
    /// Cannot be a valid hello, whatever follows.
    Rejected(Rejection),
}

/// Looks at `input` (every byte the client sent so far) and, once one hello is complete,
/// writes it as a single record (`16 03 01`, length, handshake) into `out`, which must be at
/// least MAX_ASSEMBLED_LEN long. Fragments over several `16 03 01` records are joined.
pub fn assemble(input: &[u8], out: &mut [u8]) -> Assembly {
    todo!()
}

/// What a verified hello tells us, for the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub client_random: [u8; 32],
    pub session_id: [u8; 32],
    pub session_id_len: u8,
    pub cipher_suite: [u8; 2],
    pub timestamp: u32,
}

/// Checks an assembled hello (PROTOCOL.md §2.4 steps 2-5 and 7): ClientHello structure, SNI equal
/// to `domain`, digest in constant time, |now - ts| <= max_skew, a TLS 1.3 suite. Replay is the
/// caller's step. `record` is modified (the random is zeroed for the HMAC).
pub fn verify(
    record: &mut [u8],
    key: &[u8; 16],
    domain: &[u8],
    now_unix: u64,
    max_skew: Duration,
) -> Result<Verified, Rejection> {
    todo!()
}
