//! AES-256-CTR stream state kept as key, IV and position (docs/PROTOCOL.md §5.2).
//! The key schedule is expanded per call, so an idle session holds 56 bytes per direction
//! instead of an expanded cipher.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

/// The counter block is one 128-bit big-endian integer, as OpenSSL and Go increment it.
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// One AES-256-CTR keystream: key, initial 128-bit big-endian counter block, byte position.
#[derive(Clone)]
pub struct CtrState {
    pub key: [u8; 32],
    pub iv: [u8; 16],
    pub position: u64,
}

impl CtrState {
    pub fn new(key: [u8; 32], iv: [u8; 16]) -> Self {
        CtrState {
            key,
            iv,
            position: 0,
        }
    }

    /// XORs the keystream at the current position into `data` and advances the position.
    pub fn apply(&mut self, data: &mut [u8]) {
        let mut cipher = Aes256Ctr::new(&self.key.into(), &self.iv.into());
        // A 128-bit counter cannot run out within 2^64 bytes, so neither call can fail.
        cipher.seek(self.position);
        cipher.apply_keystream(data);
        self.position = self.position.wrapping_add(data.len() as u64);
    }
}

impl std::fmt::Debug for CtrState {
    /// Shows only the position: the key and IV are secret material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtrState")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keystream(state: &mut CtrState, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        state.apply(&mut bytes);
        bytes
    }

    #[test]
    fn matches_nist_sp800_38a_ctr_aes256_vector() {
        // NIST SP 800-38A F.5.5, CTR-AES256.Encrypt, first two blocks.
        let key: [u8; 32] = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv: [u8; 16] = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let mut block: [u8; 32] =
            hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        CtrState::new(key, iv).apply(&mut block);
        let expected: [u8; 32] =
            hex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5");
        assert_eq!(block, expected);
    }

    #[test]
    fn applying_in_pieces_equals_applying_at_once() {
        let mut whole = CtrState::new([7; 32], [0xff; 16]);
        let expected = keystream(&mut whole, 100);
        let mut pieces = CtrState::new([7; 32], [0xff; 16]);
        let mut got = Vec::new();
        for size in [1, 15, 16, 17, 3, 48] {
            got.extend(keystream(&mut pieces, size));
        }
        assert_eq!(got, expected);
        assert_eq!(pieces.position, 100);
    }

    #[test]
    fn counter_carries_across_all_128_bits() {
        // With an all-ones IV the second block's counter wraps to zero; a 64-bit counter
        // would wrap only its low half and produce a different block.
        let mut wrapped = CtrState::new([1; 32], [0xff; 16]);
        let second = keystream(&mut wrapped, 32).split_off(16);
        let mut zero = CtrState::new([1; 32], [0; 16]);
        assert_eq!(second, keystream(&mut zero, 16));
    }

    #[test]
    fn debug_output_hides_key_and_iv() {
        let text = format!("{:?}", CtrState::new([0xab; 32], [0xcd; 16]));
        assert!(!text.contains("171") && !text.contains("ab"), "{text}");
    }

    fn hex<const N: usize>(text: &str) -> [u8; N] {
        let mut out = [0; N];
        assert_eq!(text.len(), 2 * N);
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
