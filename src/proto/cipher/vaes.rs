//! `apply_two` on x86-64 CPUs with VAES: both keystreams are made several AES blocks per
//! instruction (four in a 512-bit register with AVX-512, two in a 256-bit one without, as on
//! AMD Zen 3), counters built in registers, and XORed into the data in one pass. Chosen at run
//! time; the portable path in `cipher.rs` is the reference the tests hold this one to.
//! The only unsafe code outside `proxy/sys.rs`: SIMD intrinsics and their loads and stores.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::CtrState;

/// Data bytes per tile: 64 AES blocks of each keystream, in L1 beside the data.
const TILE: usize = 1024;
/// A tile's keystream blocks, plus the one a position inside a block reaches into.
const TILE_BLOCKS: usize = TILE / 16 + 1;
/// Room for the last group of blocks (four at most) to be written whole.
const BUFFER_BLOCKS: usize = TILE_BLOCKS.next_multiple_of(4) + 4;
/// Registers of each keystream in flight at once: enough to hide the AES instruction's
/// latency; sixteen 512-bit ones measured slower (spilled).
const BATCH: usize = 8;

/// Which register width this CPU runs the code below with, if any (std caches the checks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Width {
    W512,
    W256,
}

impl Width {
    pub fn best() -> Option<Width> {
        if Width::W512.available() {
            Some(Width::W512)
        } else if Width::W256.available() {
            Some(Width::W256)
        } else {
            None
        }
    }

    pub fn available(self) -> bool {
        let common = is_x86_feature_detected!("aes") && is_x86_feature_detected!("vaes");
        match self {
            Width::W512 => {
                common
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
            }
            Width::W256 => common && is_x86_feature_detected!("avx2"),
        }
    }
}

/// The AES-256 key schedules of a relay direction's two keystreams, broadcast to every lane of
/// a register of one width. Made only where that width is available, so holding one is the
/// proof that the code below may run. Lives on the stack for one read (boxing it would
/// allocate per read).
#[allow(clippy::large_enum_variant)]
pub enum Keys {
    W512(w512::Keys, w512::Keys),
    W256(w256::Keys, w256::Keys),
}

impl Keys {
    /// The schedules for the widest registers this CPU has; None without VAES.
    pub fn new(first: &[u8; 32], second: &[u8; 32]) -> Option<Keys> {
        Keys::with_width(first, second, Width::best()?)
    }

    /// The schedules for `width`, if this CPU has it (tests run every width this way).
    pub fn with_width(first: &[u8; 32], second: &[u8; 32], width: Width) -> Option<Keys> {
        if !width.available() {
            return None;
        }
        // SAFETY: `available` confirmed every feature `broadcast` is compiled for.
        Some(unsafe {
            match width {
                Width::W512 => {
                    Keys::W512(w512::Keys::broadcast(first), w512::Keys::broadcast(second))
                }
                Width::W256 => {
                    Keys::W256(w256::Keys::broadcast(first), w256::Keys::broadcast(second))
                }
            }
        })
    }
}

/// `cipher::Pass::apply_moving` with the `Keys` of `first` and `second`: false, touching
/// nothing, if the ranges are not as that requires (`super::fits`).
pub fn apply_two_moving(
    keys: &Keys,
    first: &mut CtrState,
    second: &mut CtrState,
    buf: &mut [u8],
    from: usize,
    to: usize,
    len: usize,
) -> bool {
    if !super::fits(buf, from, to, len) {
        return false;
    }
    // SAFETY: a `Keys` of a width exists only where that width is available, and the ranges
    // were checked.
    unsafe {
        match keys {
            Keys::W512(one, two) => {
                w512::apply_two((one, first), (two, second), buf, from, to, len)
            }
            Keys::W256(one, two) => {
                w256::apply_two((one, first), (two, second), buf, from, to, len)
            }
        }
    }
    true
}

/// The code of one register width: the same steps with that width's instructions.
macro_rules! width {
    (
        $module:ident, $features:literal, $vector:ty, $lanes:literal,
        load: $load:ident, store: $store:ident, xor: $xor:ident, add: $add:ident,
        shuffle: $shuffle:ident, aesenc: $aesenc:ident, aesenclast: $aesenclast:ident,
        broadcast: $broadcast:ident, zero: $zero:ident $(,)?
    ) => {
        pub mod $module {
            use core::arch::x86_64::*;

            use super::{expand, CtrState, BATCH, BUFFER_BLOCKS, TILE, TILE_BLOCKS};

            /// Bytes in one register.
            const BYTES: usize = 16 * $lanes;

            pub struct Keys([$vector; 15]);

            impl Keys {
                /// # Safety
                /// The CPU must have this width's features.
                #[target_feature(enable = $features)]
                pub unsafe fn broadcast(key: &[u8; 32]) -> Keys {
                    let mut wide = [$zero(); 15];
                    for (wide, key) in wide.iter_mut().zip(expand(key)) {
                        *wide = $broadcast(key);
                    }
                    Keys(wide)
                }
            }

            /// XORs `first`'s and then `second`'s keystream into `buf[from..from + len]`,
            /// writing the result to `buf[to..to + len]`; both positions advance. Each
            /// register's worth is loaded before it is stored, and `to ≤ from`, so a store
            /// never lands on source bytes not yet loaded.
            ///
            /// # Safety
            /// The CPU must have this width's features, and `to ≤ from`,
            /// `from + len ≤ buf.len()`.
            #[target_feature(enable = $features)]
            pub unsafe fn apply_two(
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
                    let whole = step / BYTES * BYTES;
                    let mut at = 0;
                    while at < whole {
                        // SAFETY: at + BYTES ≤ step, so both pieces lie inside the ranges
                        // the caller vouched for; each keystream buffer holds its skip
                        // (< 16) plus at least TILE + 64 bytes.
                        let x = $load(source.add(at).cast());
                        let ka = $load(a.as_ptr().add(at).cast());
                        let kb = $load(b.as_ptr().add(at).cast());
                        $store(sink.add(at).cast(), $xor($xor(x, ka), kb));
                        at += BYTES;
                    }
                    for i in whole..step {
                        // SAFETY: i < step, inside both ranges; a byte is read before it is
                        // written.
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
                keys: &'k [$vector; 15],
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

                /// Makes the keystream for the next `len` (≤ TILE) bytes. Every tile but the
                /// last is TILE bytes long, so the next one starts TILE / 16 blocks on, at the
                /// same place in its block; when that place is inside the block, the block was
                /// made last time and moves to the front rather than being made again.
                #[target_feature(enable = $features)]
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

            /// Encrypts the counter blocks `first`, `first + 1`, … (128-bit big-endian) into
            /// `out`, at least `count` of them, a register's worth at a time; `out` has room
            /// for `count` rounded up to that.
            #[target_feature(enable = $features)]
            fn encrypt_counters(
                keys: &[$vector; 15],
                first: u128,
                out: &mut [[u8; 16]],
                count: usize,
            ) {
                // Never more groups than `out` holds, whatever the caller asks: the stores
                // below rely on it.
                let groups = count.div_ceil($lanes).min(out.len() / $lanes);
                // Each 128-bit lane holds the counter little-endian; this shuffle makes it
                // big-endian.
                let reverse = $broadcast(_mm_set_epi8(
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                ));
                let low = first as u64;
                let high = (first >> 64) as u64;
                // Counters whose low 64 bits do not wrap in this run are built by vector
                // adds; the rare run that wraps is built one block at a time.
                let wraps = low.checked_add((groups * $lanes) as u64).is_none();
                let mut words = [0u64; 2 * $lanes];
                let mut steps = [0u64; 2 * $lanes];
                for lane in 0..$lanes {
                    words[2 * lane] = low.wrapping_add(lane as u64);
                    words[2 * lane + 1] = high;
                    steps[2 * lane] = $lanes;
                }
                // SAFETY: both arrays are one register long.
                let (mut next, step) =
                    unsafe { ($load(words.as_ptr().cast()), $load(steps.as_ptr().cast())) };
                let mut group = 0;
                while group < groups {
                    let batch = (groups - group).min(BATCH);
                    let mut state = [$zero(); BATCH];
                    for (i, lane) in state.iter_mut().enumerate().take(batch) {
                        let counters = if wraps {
                            let mut bytes = [0u8; BYTES];
                            for (j, block) in bytes.chunks_exact_mut(16).enumerate() {
                                let n = first.wrapping_add(((group + i) * $lanes + j) as u128);
                                block.copy_from_slice(&n.to_be_bytes());
                            }
                            // SAFETY: `bytes` is one register long.
                            unsafe { $load(bytes.as_ptr().cast()) }
                        } else {
                            let little = next;
                            next = $add(next, step);
                            $shuffle(little, reverse)
                        };
                        *lane = $xor(counters, keys[0]);
                    }
                    for key in &keys[1..14] {
                        for lane in state.iter_mut().take(batch) {
                            *lane = $aesenc(*lane, *key);
                        }
                    }
                    for (i, lane) in state.iter().enumerate().take(batch) {
                        let blocks = $aesenclast(*lane, keys[14]);
                        let at = (group + i) * $lanes;
                        // SAFETY: at + lanes ≤ groups * lanes ≤ out.len() blocks of 16 bytes.
                        unsafe { $store(out.as_mut_ptr().add(at).cast(), blocks) };
                    }
                    group += batch;
                }
            }
        }
    };
}

width!(
    w512, "aes,avx512f,avx512bw,vaes", __m512i, 4,
    load: _mm512_loadu_si512, store: _mm512_storeu_si512, xor: _mm512_xor_si512,
    add: _mm512_add_epi64, shuffle: _mm512_shuffle_epi8, aesenc: _mm512_aesenc_epi128,
    aesenclast: _mm512_aesenclast_epi128, broadcast: _mm512_broadcast_i32x4,
    zero: _mm512_setzero_si512,
);

width!(
    w256, "aes,avx2,vaes", __m256i, 2,
    load: _mm256_loadu_si256, store: _mm256_storeu_si256, xor: _mm256_xor_si256,
    add: _mm256_add_epi64, shuffle: _mm256_shuffle_epi8, aesenc: _mm256_aesenc_epi128,
    aesenclast: _mm256_aesenclast_epi128, broadcast: _mm256_broadcastsi128_si256,
    zero: _mm256_setzero_si256,
);

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
    macro_rules! steps {
        ($(($rcon:literal, $even:literal, $odd:literal)),*) => {
            $(even!($rcon, $even); odd!($odd);)*
        };
    }
    steps!(
        (0x01, 2, 3),
        (0x02, 4, 5),
        (0x04, 6, 7),
        (0x08, 8, 9),
        (0x10, 10, 11),
        (0x20, 12, 13)
    );
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
        width: Width,
        first: &mut CtrState,
        second: &mut CtrState,
        buf: &mut [u8],
        from: usize,
        to: usize,
        len: usize,
    ) -> bool {
        let Some(keys) = Keys::with_width(&first.key, &second.key, width) else {
            return false;
        };
        apply_two_moving(&keys, first, second, buf, from, to, len)
    }

    /// Every register width this CPU has.
    fn widths() -> Vec<Width> {
        [Width::W512, Width::W256]
            .into_iter()
            .filter(|width| width.available())
            .collect()
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

    fn agrees(width: Width, mut first: CtrState, mut second: CtrState, len: usize, seed: u64) {
        let original: Vec<u8> = (0..len).map(|n| (n as u64 ^ seed) as u8).collect();
        let (mut fast_first, mut fast_second) = (first.clone(), second.clone());
        let mut expected = original.clone();
        Pass::portable(&mut first, &mut second).apply(&mut expected);
        let mut got = original;
        assert!(fast(
            width,
            &mut fast_first,
            &mut fast_second,
            &mut got,
            0,
            0,
            len
        ));
        assert!(got == expected, "{width:?}: {len} bytes, seed {seed}");
        assert_eq!(fast_first.position, first.position);
        assert_eq!(fast_second.position, second.position);
    }

    #[test]
    fn gives_the_portable_bytes_at_random_keys_positions_and_lengths() {
        for width in widths() {
            let mut seed = 0x9e37_79b9_7f4a_7c15;
            for round in 0..400 {
                let len = match round % 4 {
                    0 => (next(&mut seed) % 80) as usize,
                    1 => (next(&mut seed) % 3000) as usize,
                    _ => (next(&mut seed) % 70_000) as usize,
                };
                let first = state(&mut seed, None);
                let second = state(&mut seed, None);
                agrees(width, first, second, len, seed);
            }
        }
    }

    #[test]
    fn moving_gives_the_portable_bytes_at_the_new_place_for_any_overlap() {
        for width in widths() {
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
                let original: Vec<u8> =
                    (0..from + len + tail).map(|n| (n * 31 + 7) as u8).collect();
                let (mut first, mut second) = (state(&mut seed, None), state(&mut seed, None));
                let (mut fast_first, mut fast_second) = (first.clone(), second.clone());
                let mut expected = original.clone();
                expected.copy_within(from..from + len, to);
                Pass::portable(&mut first, &mut second).apply(&mut expected[to..to + len]);
                let mut got = original;
                assert!(fast(
                    width,
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
    }

    #[test]
    fn moving_refuses_ranges_outside_the_buffer_or_upward() {
        for width in widths() {
            let mut seed = 3;
            let (mut first, mut second) = (state(&mut seed, None), state(&mut seed, None));
            let mut buf = [0u8; 100];
            assert!(!fast(width, &mut first, &mut second, &mut buf, 50, 0, 51));
            assert!(!fast(width, &mut first, &mut second, &mut buf, 10, 11, 5));
            assert!(!fast(
                width,
                &mut first,
                &mut second,
                &mut buf,
                usize::MAX,
                0,
                2
            ));
            assert_eq!(buf, [0; 100]);
        }
    }

    #[test]
    fn one_pass_over_many_pieces_gives_the_bytes_of_one_piece() {
        // Pass::new takes the widest registers there are.
        if Width::best().is_some() {
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
    }

    #[test]
    fn gives_the_portable_bytes_where_the_counter_carries_out_of_64_and_128_bits() {
        for width in widths() {
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
                    agrees(width, first, second, len, seed);
                }
            }
        }
    }
}
