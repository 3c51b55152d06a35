//! AES-256-CTR (128-bit big-endian counter), SHA-256 and HMAC-SHA256, as docs/PROTOCOL.md §2.2
//! and §5.2 use them, from the same crates feint uses.

use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// One keystream; `apply` XORs it into data and advances.
pub struct Ctr(Aes256Ctr);

impl Ctr {
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Ctr(Aes256Ctr::new(key.into(), iv.into()))
    }

    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }

    /// Moves to byte `position` of the keystream (the endpoints skip bulk bytes they never read).
    pub fn seek(&mut self, position: u64) {
        self.0.seek(position);
    }

    pub fn position(&self) -> u64 {
        self.0.current_pos()
    }
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub fn random(out: &mut [u8]) {
    getrandom::getrandom(out).expect("the OS random source works");
}

pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    random(&mut out);
    out
}
