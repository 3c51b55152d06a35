//! `apply_two` on x86-64 CPUs with VAES and AVX-512: both keystreams are made four AES blocks
//! per instruction, counters built in registers, and XORed into the data in one pass. Chosen at
//! run time; the portable path in `cipher.rs` is the reference the tests hold this one to.
//! The only unsafe code outside `proxy/sys.rs`: SIMD intrinsics and their loads and stores.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::CtrState;

/// Data bytes per tile: 64 AES blocks of each keystream, in L1 beside the data.
const TILE: usize = 1024;
/// A tile's keystream blocks, plus the one a position inside a block reaches into.
const TILE_BLOCKS: usize = TILE / 16 + 1;
/// Room for the last group of four blocks to be written whole.
const BUFFER_BLOCKS: usize = TILE_BLOCKS.next_multiple_of(4) + 4;

/// Whether this CPU runs the code below (std caches the answer).
pub fn available() -> bool {
    is_x86_feature_detected!("aes")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("vaes")
}

/// An AES-256 key schedule broadcast to the four lanes of a register. Made only where
/// `available()` holds, so holding one is the proof that the code below may run.
pub struct Keys([__m512i; 15]);

impl Keys {
    pub fn new(key: &[u8; 32]) -> Option<Keys> {
        if !available() {
            return None;
        }
        // SAFETY: `available` confirmed every feature `broadcast` is compiled for.
        Some(unsafe { Keys::broadcast(key) })
    }

    #[target_feature(enable = "aes,avx512f,avx512bw,vaes")]
    fn broadcast(key: &[u8; 32]) -> Keys {
        let mut wide = [_mm512_setzero_si512(); 15];
        for (wide, key) in wide.iter_mut().zip(expand(key)) {
            *wide = _mm512_broadcast_i32x4(key);
        }
        Keys(wide)
    }
}

/// `cipher::Pass::apply_moving` with each state's `Keys`: false, touching nothing, if the
/// ranges are not as that requires (`to ≤ from`, `from + len ≤ buf.len()`).
pub fn apply_two_moving(
    first: (&Keys, &mut CtrState),
    second: (&Keys, &mut CtrState),
    buf: &mut [u8],
    from: usize,
    to: usize,
    len: usize,
) -> bool {
    if to > from || from.checked_add(len).is_none_or(|end| end > buf.len()) {
        return false;
    }
    // SAFETY: a `Keys` exists only where `available` holds, and the ranges were checked.
    unsafe { apply_two(first, second, buf, from, to, len) };
    true
}

/// XORs `first`'s and then `second`'s keystream into `buf[from..from + len]`, writing the
/// result to `buf[to..to + len]`; both positions advance. Each 64-byte piece is loaded before
/// it is stored, and `to ≤ from`, so a store never lands on source bytes not yet loaded.
///
/// # Safety
/// The CPU must have AES-NI, AVX-512F, AVX-512BW and VAES (`available()`), and
/// `to ≤ from`, `from + len ≤ buf.len()`.
#[target_feature(enable = "aes,avx512f,avx512bw,vaes")]
unsafe fn apply_two(
    (one, first): (&Keys, &mut CtrState),
    (two, second): (&Keys, &mut CtrState),
    buf: &mut [u8],
    from: usize,
    to: usize,
    len: usize,
) {
    if len == 0 {
        return;
    }
    let mut one = Stream::new(one, first);
    let mut two = Stream::new(two, second);
    let mut start = true;
    let base = buf.as_mut_ptr();
    let mut done = 0;
    while done < len {
        let step = (len - done).min(TILE);
        one.fill(step, start);
        two.fill(step, start);
        start = false;
        let source = base.add(from + done);
        let sink = base.add(to + done);
        let (a, b) = (one.bytes(), two.bytes());
        let whole = step / 64 * 64;
        let mut at = 0;
        while at < whole {
            // SAFETY: at + 64 ≤ step, so both pieces lie inside the ranges the caller
            // vouched for; each keystream buffer holds its skip (< 16) plus at least
            // TILE + 64 bytes.
            let x = _mm512_loadu_si512(source.add(at).cast());
            let ka = _mm512_loadu_si512(a.as_ptr().add(at).cast());
            let kb = _mm512_loadu_si512(b.as_ptr().add(at).cast());
            let y = _mm512_ternarylogic_epi64::<0x96>(x, ka, kb);
            _mm512_storeu_si512(sink.add(at).cast(), y);
            at += 64;
        }
        for i in whole..step {
            // SAFETY: i < step, inside both ranges; one byte is read before it is written.
            let byte = source.add(i).read();
            sink.add(i).write(byte ^ a[i] ^ b[i]);
        }
        done += step;
    }
    first.position = first.position.wrapping_add(len as u64);
    second.position = second.position.wrapping_add(len as u64);
}

/// One keystream: its round keys, its next block number and a buffer of blocks.
struct Stream<'k> {
    keys: &'k [__m512i; 15],
    iv: u128,
    /// The block the next tile's keystream begins in.
    block: u128,
    /// Where in that block the position sits.
    skip: usize,
    blocks: [[u8; 16]; BUFFER_BLOCKS],
}

impl<'k> Stream<'k> {
    fn new(keys: &'k Keys, state: &CtrState) -> Stream<'k> {
        Stream {
            keys: &keys.0,
            iv: u128::from_be_bytes(state.iv),
            block: u128::from(state.position / 16),
            skip: (state.position % 16) as usize,
            blocks: [[0; 16]; BUFFER_BLOCKS],
        }
    }

    /// The tile's keystream bytes, from the position on.
    fn bytes(&self) -> &[u8] {
        &self.blocks.as_flattened()[self.skip..]
    }

    /// Makes the keystream for the next `len` (≤ TILE) bytes. Every tile but the last is
    /// TILE bytes long, so the next one starts TILE / 16 blocks on, at the same place in its
    /// block; when that place is inside the block, the block was made last time and moves to
    /// the front rather than being made again.
    #[target_feature(enable = "aes,avx512f,avx512bw,vaes")]
    fn fill(&mut self, len: usize, start: bool) {
        let mut from = 0;
        if !start {
            self.block = self.block.wrapping_add((TILE / 16) as u128);
            if self.skip != 0 {
                self.blocks[0] = self.blocks[TILE_BLOCKS - 1];
                from = 1;
            }
        }
        let needed = (self.skip + len).div_ceil(16);
        let first = self.iv.wrapping_add(self.block).wrapping_add(from as u128);
        if needed > from {
            encrypt_counters(self.keys, first, &mut self.blocks[from..], needed - from);
        }
    }
}

/// Encrypts the counter blocks `first`, `first + 1`, … (128-bit big-endian) into `out`, at
/// least `count` of them, in groups of four; `out` has room for `count` rounded up to four.
#[target_feature(enable = "aes,avx512f,avx512bw,vaes")]
fn encrypt_counters(keys: &[__m512i; 15], first: u128, out: &mut [[u8; 16]], count: usize) {
    let groups = count.div_ceil(4);
    debug_assert!(groups * 4 <= out.len());
    // Each 128-bit lane holds the counter little-endian; this shuffle makes it big-endian.
    let reverse = _mm512_broadcast_i32x4(_mm_set_epi8(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ));
    let low = first as u64;
    let high = (first >> 64) as u64;
    // Counters whose low 64 bits do not wrap in this run are built by vector adds; the rare
    // run that wraps is built one block at a time.
    let wraps = low.checked_add(groups as u64 * 4).is_none();
    let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    let mut next = _mm512_set_epi64(
        high as i64,
        low.wrapping_add(3) as i64,
        high as i64,
        low.wrapping_add(2) as i64,
        high as i64,
        low.wrapping_add(1) as i64,
        high as i64,
        low as i64,
    );
    let mut group = 0;
    while group < groups {
        let batch = (groups - group).min(8);
        let mut state = [_mm512_setzero_si512(); 8];
        for (i, lane) in state.iter_mut().enumerate().take(batch) {
            let counters = if wraps {
                let mut bytes = [0u8; 64];
                for (j, block) in bytes.chunks_exact_mut(16).enumerate() {
                    let n = first.wrapping_add(((group + i) * 4 + j) as u128);
                    block.copy_from_slice(&n.to_be_bytes());
                }
                // SAFETY: `bytes` is 64 bytes.
                unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) }
            } else {
                let little = next;
                next = _mm512_add_epi64(next, four);
                _mm512_shuffle_epi8(little, reverse)
            };
            *lane = _mm512_xor_si512(counters, keys[0]);
        }
        for key in &keys[1..14] {
            for lane in state.iter_mut().take(batch) {
                *lane = _mm512_aesenc_epi128(*lane, *key);
            }
        }
        for (i, lane) in state.iter().enumerate().take(batch) {
            let block = _mm512_aesenclast_epi128(*lane, keys[14]);
            let at = (group + i) * 4;
            // SAFETY: at + 4 ≤ groups * 4 ≤ out.len() blocks of 16 bytes.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(at).cast(), block) };
        }
        group += batch;
    }
}

/// The AES-256 encryption key schedule (FIPS 197 §5.2) with AES-NI's key-generation assist.
#[target_feature(enable = "aes")]
fn expand(key: &[u8; 32]) -> [__m128i; 15] {
    // SAFETY: both loads read 16 bytes inside the 32-byte key.
    let (mut a, mut b) = unsafe {
        (
            _mm_loadu_si128(key.as_ptr().cast()),
            _mm_loadu_si128(key.as_ptr().add(16).cast()),
        )
    };
    let mut keys = [_mm_setzero_si128(); 15];
    keys[0] = a;
    keys[1] = b;
    // Each step makes two round keys: the even one from the odd before it, with the round
    // constant, and the odd one from that even one; the last step makes only round key 14.
    macro_rules! even {
        ($rcon:literal, $at:literal) => {
            a = mix(
                a,
                _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(b)),
            );
            keys[$at] = a;
        };
    }
    macro_rules! odd {
        ($at:literal) => {
            b = mix(
                b,
                _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(a)),
            );
            keys[$at] = b;
        };
    }
    even!(0x01, 2);
    odd!(3);
    even!(0x02, 4);
    odd!(5);
    even!(0x04, 6);
    odd!(7);
    even!(0x08, 8);
    odd!(9);
    even!(0x10, 10);
    odd!(11);
    even!(0x20, 12);
    odd!(13);
    even!(0x40, 14);
    keys
}

/// One key-schedule step: each word of `key` XORed with all the words before it, then `word`.
#[target_feature(enable = "aes")]
fn mix(key: __m128i, word: __m128i) -> __m128i {
    let mut key = key;
    key = _mm_xor_si128(key, _mm_slli_si128::<4>(key));
    key = _mm_xor_si128(key, _mm_slli_si128::<8>(key));
    _mm_xor_si128(key, word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cipher::Pass;

    /// The VAES path on `buf[from..from + len]`, moved to `to`.
    fn fast(
        first: &mut CtrState,
        second: &mut CtrState,
        buf: &mut [u8],
        from: usize,
        to: usize,
        len: usize,
    ) -> bool {
        let (Some(one), Some(two)) = (Keys::new(&first.key), Keys::new(&second.key)) else {
            return false;
        };
        apply_two_moving((&one, first), (&two, second), buf, from, to, len)
    }

    /// A small deterministic generator for keys, IVs, positions and lengths.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn state(seed: &mut u64, iv_low: Option<u64>) -> CtrState {
        let mut key = [0u8; 32];
        for chunk in key.chunks_exact_mut(8) {
            chunk.copy_from_slice(&next(seed).to_le_bytes());
        }
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&next(seed).to_le_bytes());
        let low = iv_low.unwrap_or_else(|| next(seed));
        iv[8..].copy_from_slice(&low.to_be_bytes());
        let mut state = CtrState::new(key, iv);
        state.position = next(seed) % 5000;
        state
    }

    fn agrees(mut first: CtrState, mut second: CtrState, len: usize, seed: u64) {
        let original: Vec<u8> = (0..len).map(|n| (n as u64 ^ seed) as u8).collect();
        let (mut fast_first, mut fast_second) = (first.clone(), second.clone());
        let mut expected = original.clone();
        Pass::portable(&mut first, &mut second).apply(&mut expected);
        let mut got = original;
        assert!(fast(&mut fast_first, &mut fast_second, &mut got, 0, 0, len));
        assert!(got == expected, "{len} bytes, seed {seed}");
        assert_eq!(fast_first.position, first.position);
        assert_eq!(fast_second.position, second.position);
    }

    #[test]
    fn gives_the_portable_bytes_at_random_keys_positions_and_lengths() {
        if !available() {
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for round in 0..400 {
            let len = match round % 4 {
                0 => (next(&mut seed) % 80) as usize,
                1 => (next(&mut seed) % 3000) as usize,
                _ => (next(&mut seed) % 70_000) as usize,
            };
            let first = state(&mut seed, None);
            let second = state(&mut seed, None);
            agrees(first, second, len, seed);
        }
    }

    #[test]
    fn moving_gives_the_portable_bytes_at_the_new_place_for_any_overlap() {
        if !available() {
            return;
        }
        let mut seed = 11;
        for round in 0..300 {
            let len = (next(&mut seed) % 6000) as usize;
            let gap = match round % 3 {
                0 => (next(&mut seed) % 70) as usize,
                _ => (next(&mut seed) % 3000) as usize,
            };
            let to = (next(&mut seed) % 40) as usize;
            let from = to + gap;
            let tail = (next(&mut seed) % 20) as usize;
            let original: Vec<u8> = (0..from + len + tail).map(|n| (n * 31 + 7) as u8).collect();
            let (mut first, mut second) = (state(&mut seed, None), state(&mut seed, None));
            let (mut fast_first, mut fast_second) = (first.clone(), second.clone());
            let mut expected = original.clone();
            expected.copy_within(from..from + len, to);
            Pass::portable(&mut first, &mut second).apply(&mut expected[to..to + len]);
            let mut got = original;
            assert!(fast(
                &mut fast_first,
                &mut fast_second,
                &mut got,
                from,
                to,
                len
            ));
            assert!(got == expected, "{len} bytes from {from} to {to}");
            assert_eq!(fast_first.position, first.position);
        }
    }

    #[test]
    fn moving_refuses_ranges_outside_the_buffer_or_upward() {
        if !available() {
            return;
        }
        let mut seed = 3;
        let (mut first, mut second) = (state(&mut seed, None), state(&mut seed, None));
        let mut buf = [0u8; 100];
        assert!(!fast(&mut first, &mut second, &mut buf, 50, 0, 51));
        assert!(!fast(&mut first, &mut second, &mut buf, 10, 11, 5));
        assert!(!fast(&mut first, &mut second, &mut buf, usize::MAX, 0, 2));
        assert_eq!(buf, [0; 100]);
    }

    #[test]
    fn one_pass_over_many_pieces_gives_the_bytes_of_one_piece() {
        if !available() {
            return;
        }
        let mut seed = 5;
        for _ in 0..50 {
            let (first, second) = (state(&mut seed, None), state(&mut seed, None));
            let len = (next(&mut seed) % 9000) as usize;
            let original: Vec<u8> = (0..len).map(|n| (n * 13) as u8).collect();
            let mut expected = original.clone();
            let (mut a, mut b) = (first.clone(), second.clone());
            Pass::portable(&mut a, &mut b).apply(&mut expected);
            let (mut c, mut d) = (first, second);
            let mut got = original;
            let mut pass = Pass::new(&mut c, &mut d);
            let mut rest = &mut got[..];
            while !rest.is_empty() {
                let piece = ((next(&mut seed) % 3000) as usize).min(rest.len());
                let (now, later) = rest.split_at_mut(piece);
                pass.apply(now);
                rest = later;
            }
            assert!(got == expected, "{len} bytes in pieces");
            assert_eq!((c.position, d.position), (a.position, b.position));
        }
    }

    #[test]
    fn gives_the_portable_bytes_where_the_counter_carries_out_of_64_and_128_bits() {
        if !available() {
            return;
        }
        let mut seed = 7;
        // The IV's low 64 bits just below the carry: counters cross it inside a tile, at a
        // tile's edge, and (all ones) wrap all 128 bits.
        for back in [1u64, 2, 3, 4, 5, 17, 63, 64, 65, 130] {
            for len in [16, 100, 1024, 1040, 5000] {
                let mut first = state(&mut seed, Some(u64::MAX - back));
                let mut second = state(&mut seed, Some(u64::MAX - back / 2));
                first.position %= 64;
                second.position = 0;
                second.iv[..8].fill(0xff);
                agrees(first, second, len, seed);
            }
        }
    }
}
