//! Our reply flight: ServerHello, CCS and one ApplicationData record standing in for the
//! certificate, signed as PROTOCOL.md §3 says. Written into the caller's buffer.

use super::hello::Verified;

/// iOS refuses a certificate record over 10 240 bytes (PROTOCOL.md §3.2).
pub const MAX_CERT_LEN: usize = 10240;
/// Bytes before the certificate payload with a 32-byte session id.
pub const FIXED_LEN: usize = 138;

/// Writes the reply into `out` and returns its length, 138 - 32 + session_id_len + noise.len().
/// `noise` (1..=MAX_CERT_LEN random bytes) becomes the certificate record's payload; `public_key`
/// is an X25519 public key. Returns None if `out` is too small or `noise` out of range.
pub fn emit(
    out: &mut [u8],
    key: &[u8; 16],
    hello: &Verified,
    public_key: &[u8; 32],
    noise: &[u8],
) -> Option<usize> {
    todo!()
}
