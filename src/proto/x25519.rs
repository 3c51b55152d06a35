//! X25519 (RFC 7748) scalar multiplication of the base point, for a key share that is a real
//! curve point (PROTOCOL.md §3.5). Constant time; no allocation.

/// The public key of `scalar` (clamped as RFC 7748 §5 says).
pub fn public_key(scalar: &[u8; 32]) -> [u8; 32] {
    todo!()
}
