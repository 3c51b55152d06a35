//! AES-256-CTR stream state kept as key, IV and position (docs/PROTOCOL.md §5.2).
//! The key schedule is expanded per call, so an idle session holds 56 bytes per direction
//! instead of an expanded cipher. `apply_two` runs a relay's decrypt and re-encrypt in one pass.

use aes::cipher::{BlockCipherEncrypt, KeyInit, KeyIvInit, StreamCipher, StreamCipherSeek};
use aes::{Aes256Enc, Block};

#[cfg(target_arch = "x86_64")]
pub mod vaes;

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

/// Keystream bytes the portable pass makes per step: 64 AES blocks, as many as the aes crate
/// encrypts in one go with VAES-512, and small enough to stay in L1 beside the data.
const TILE: usize = 1024;
/// A tile's blocks, plus one for a position inside a block.
const TILE_BLOCKS: usize = TILE / 16 + 1;

/// XORs both keystreams, `first`'s and then `second`'s, into `data` and advances both: the
/// same bytes as `first.apply(data); second.apply(data)`, but the data is read and written once
/// and the keystreams come from raw AES blocks (encrypt-only key schedule). A relay direction
/// calls it, or a `Pass` for several pieces, with its decrypt and encrypt states.
pub fn apply_two(first: &mut CtrState, second: &mut CtrState, data: &mut [u8]) {
    Pass::new(first, second).apply(data);
}

/// A relay direction's decrypt and encrypt keystreams with both key schedules expanded once,
/// for all the pieces of one read: with VAES where the CPU has it (`cipher/vaes.rs`; with
/// 512-bit registers, `tests/bench`'s `cipher-speed` measured 4.2–5.3 GB/s per CPU second
/// against 2.4–3.1 for the portable pass), the aes crate's blocks elsewhere.
pub struct Pass<'a> {
    first: &'a mut CtrState,
    second: &'a mut CtrState,
    engine: Engine,
}

// Lives on the stack for one read and is never stored; boxing it would allocate per read.
#[allow(clippy::large_enum_variant)]
enum Engine {
    #[cfg(target_arch = "x86_64")]
    Vaes(vaes::Keys),
    Portable(Aes256Enc, Aes256Enc),
}

impl<'a> Pass<'a> {
    pub fn new(first: &'a mut CtrState, second: &'a mut CtrState) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = vaes::Keys::new(&first.key, &second.key) {
            return Pass {
                first,
                second,
                engine: Engine::Vaes(keys),
            };
        }
        Pass::portable(first, second)
    }

    /// The aes crate's blocks whatever the CPU: the reference the VAES path is tested against.
    pub fn portable(first: &'a mut CtrState, second: &'a mut CtrState) -> Self {
        let engine = Engine::Portable(
            Aes256Enc::new(&first.key.into()),
            Aes256Enc::new(&second.key.into()),
        );
        Pass {
            first,
            second,
            engine,
        }
    }

    /// XORs both keystreams into `data` at their current positions and advances both.
    pub fn apply(&mut self, data: &mut [u8]) {
        let len = data.len();
        self.apply_moving(data, 0, 0, len);
    }

    /// `apply` on `buf[from..from + len]`, with the result put at `buf[to..to + len]`: a
    /// record's payload moves down over its header in the same pass. Needs `to ≤ from` and
    /// `from + len ≤ buf.len()`; does nothing otherwise (the deframer never asks for that).
    pub fn apply_moving(&mut self, buf: &mut [u8], from: usize, to: usize, len: usize) {
        if !fits(buf, from, to, len) {
            return;
        }
        match &self.engine {
            #[cfg(target_arch = "x86_64")]
            Engine::Vaes(keys) => {
                vaes::apply_two_moving(keys, self.first, self.second, buf, from, to, len);
            }
            Engine::Portable(one, two) => {
                buf.copy_within(from..from + len, to);
                let data = &mut buf[to..to + len];
                let (first, second) = (&mut *self.first, &mut *self.second);
                let mut one = Keystream::new(one, first);
                let mut two = Keystream::new(two, second);
                for chunk in data.chunks_mut(TILE) {
                    let a = one.at(first.position, chunk.len());
                    let b = two.at(second.position, chunk.len());
                    for ((byte, a), b) in chunk.iter_mut().zip(a).zip(b) {
                        *byte ^= a ^ b;
                    }
                    first.position = first.position.wrapping_add(chunk.len() as u64);
                    second.position = second.position.wrapping_add(chunk.len() as u64);
                }
            }
        }
    }
}

/// True if `buf[from..from + len]` can move to `buf[to..to + len]` in one forward pass: both
/// inside `buf`, and the destination not above the source.
fn fits(buf: &[u8], from: usize, to: usize, len: usize) -> bool {
    to <= from && from.checked_add(len).is_some_and(|end| end <= buf.len())
}

/// One keystream made block by block: counter blocks (IV + block number, one 128-bit
/// big-endian integer, as `Aes256Ctr` counts) encrypted in place.
struct Keystream<'c> {
    cipher: &'c Aes256Enc,
    iv: u128,
    blocks: [Block; TILE_BLOCKS],
}

impl<'c> Keystream<'c> {
    fn new(cipher: &'c Aes256Enc, state: &CtrState) -> Self {
        Keystream {
            cipher,
            iv: u128::from_be_bytes(state.iv),
            blocks: [Block::default(); TILE_BLOCKS],
        }
    }

    /// The `len` keystream bytes from byte `position` on; `len` is at most TILE.
    fn at(&mut self, position: u64, len: usize) -> &[u8] {
        let skip = (position % 16) as usize;
        let len = len.min(TILE);
        // skip < 16 and len ≤ TILE, so count ≤ TILE_BLOCKS and skip + len ≤ count * 16.
        let count = (skip + len).div_ceil(16);
        let first = u128::from(position / 16);
        let blocks = &mut self.blocks[..count];
        for (index, block) in blocks.iter_mut().enumerate() {
            let counter = self.iv.wrapping_add(first + index as u128);
            block.copy_from_slice(&counter.to_be_bytes());
        }
        self.cipher.encrypt_blocks(blocks);
        &Block::slice_as_flattened(blocks)[skip..skip + len]
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
    fn apply_two_equals_two_applies_at_any_position_and_length() {
        let positions = [0, 1, 15, 16, 17, 64, 1000, 1 << 40];
        let lengths = [0, 1, 15, 16, 17, 1023, 1024, 1025, 3000, 16 * 1024 + 5];
        for (i, &at_first) in positions.iter().enumerate() {
            let at_second = positions[(i * 3 + 1) % positions.len()];
            for len in lengths {
                let original: Vec<u8> = (0..len).map(|n| (n * 7) as u8).collect();
                let mut first = CtrState::new([1; 32], [0xfe; 16]);
                let mut second = CtrState::new([2; 32], [3; 16]);
                first.position = at_first;
                second.position = at_second;
                let (mut fused_first, mut fused_second) = (first.clone(), second.clone());
                let mut expected = original.clone();
                first.apply(&mut expected);
                second.apply(&mut expected);
                let mut got = original;
                apply_two(&mut fused_first, &mut fused_second, &mut got);
                assert!(got == expected, "at {at_first}/{at_second}, {len} bytes");
                assert_eq!(fused_first.position, first.position);
                assert_eq!(fused_second.position, second.position);
            }
        }
    }

    #[test]
    fn apply_two_carries_the_counter_across_all_128_bits() {
        // An all-ones IV wraps the counter to zero on the second block, as `apply` does.
        let mut expected = vec![0u8; 64];
        let mut first = CtrState::new([5; 32], [0xff; 16]);
        let mut second = CtrState::new([6; 32], [0xff; 16]);
        first.apply(&mut expected);
        second.apply(&mut expected);
        let mut got = vec![0u8; 64];
        apply_two(
            &mut CtrState::new([5; 32], [0xff; 16]),
            &mut CtrState::new([6; 32], [0xff; 16]),
            &mut got,
        );
        assert_eq!(got, expected);
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
