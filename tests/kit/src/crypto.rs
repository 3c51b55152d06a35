//! The primitives the protocol needs: HMAC-SHA256, SHA-256, AES-256-CTR and random bytes.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// AES-256-CTR with a 128-bit big-endian counter (docs/PROTOCOL.md §5.2).
pub struct Ctr(ctr::Ctr128BE<Aes256>);

impl Ctr {
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Ctr {
        Ctr(ctr::Ctr128BE::<Aes256>::new(key.into(), iv.into()))
    }

    /// Encrypts or decrypts in place, continuing the keystream.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().into()
}

/// Fills `buf` from the OS random source.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::getrandom(buf).expect("the OS random source works");
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    fill_random(&mut v);
    v
}

/// A random integer in `0..bound` (bound > 0); slightly biased, which tests do not mind.
pub fn random_below(bound: u32) -> u32 {
    let mut b = [0u8; 4];
    fill_random(&mut b);
    u32::from_le_bytes(b) % bound
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex; panics on bad input (test vectors only).
pub fn unhex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}
