//! X25519 (RFC 7748) scalar multiplication, and the key share for our ServerHello: a random
//! point of the prime-order subgroup (docs/PROTOCOL.md §3.5). No allocation.
//!
//! Field elements mod p = 2^255 - 19 are five 51-bit limbs; products go through u128. The
//! ladder and every field operation run the same instructions whatever the scalar's bits. The
//! key share takes a variable number of tries, but it has no secret to hide: it is sent in
//! the clear, and the candidates it throws away are never used for anything else.

/// An element of GF(2^255 - 19) as five little-endian 51-bit limbs, not necessarily reduced.
#[derive(Clone, Copy)]
struct Fe([u64; 5]);

const MASK_51: u64 = (1 << 51) - 1;

/// Curve25519 is v² = u³ + A·u² + u with A = 486662.
const A: u64 = 486662;

/// (A - 2) / 4 for Curve25519's A = 486662 (RFC 7748 §5).
const A24: u64 = 121665;

/// Candidates `key_share` gets; each is a curve point with probability 1/2.
pub const KEY_SHARE_TRIES: usize = 16;

impl Fe {
    const ZERO: Fe = Fe([0; 5]);
    const ONE: Fe = Fe([1, 0, 0, 0, 0]);

    /// Reads 32 little-endian bytes, ignoring bit 255 as RFC 7748 §5 requires for u.
    fn from_bytes(bytes: &[u8; 32]) -> Fe {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        let (w0, w1, w2, w3) = (word(0), word(1), word(2), word(3));
        Fe([
            w0 & MASK_51,
            ((w0 >> 51) | (w1 << 13)) & MASK_51,
            ((w1 >> 38) | (w2 << 26)) & MASK_51,
            ((w2 >> 25) | (w3 << 39)) & MASK_51,
            (w3 >> 12) & MASK_51,
        ])
    }

    /// Writes the canonical (fully reduced) value as 32 little-endian bytes.
    fn to_bytes(self) -> [u8; 32] {
        let mut l = self.carry().carry().0;
        // The value is now below 2^255 + 19 < 2p. Adding 19 carries into bit 255 exactly when
        // the value is at least p; the exact carry chain below computes that carry q, 0 or 1.
        let mut q = (l[0] + 19) >> 51;
        q = (l[1] + q) >> 51;
        q = (l[2] + q) >> 51;
        q = (l[3] + q) >> 51;
        q = (l[4] + q) >> 51;
        // Subtract q * p by adding 19q and dropping bit 255.
        l[0] += 19 * q;
        l[1] += l[0] >> 51;
        l[0] &= MASK_51;
        l[2] += l[1] >> 51;
        l[1] &= MASK_51;
        l[3] += l[2] >> 51;
        l[2] &= MASK_51;
        l[4] += l[3] >> 51;
        l[3] &= MASK_51;
        l[4] &= MASK_51;

        let words = [
            l[0] | (l[1] << 51),
            (l[1] >> 13) | (l[2] << 38),
            (l[2] >> 26) | (l[3] << 25),
            (l[3] >> 39) | (l[4] << 12),
        ];
        let mut out = [0; 32];
        for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Brings every limb below 2^51 plus a small excess, folding the top carry back times 19.
    fn carry(self) -> Fe {
        let mut l = self.0;
        l[1] += l[0] >> 51;
        l[0] &= MASK_51;
        l[2] += l[1] >> 51;
        l[1] &= MASK_51;
        l[3] += l[2] >> 51;
        l[2] &= MASK_51;
        l[4] += l[3] >> 51;
        l[3] &= MASK_51;
        l[0] += 19 * (l[4] >> 51);
        l[4] &= MASK_51;
        Fe(l)
    }

    fn add(self, other: Fe) -> Fe {
        let (a, b) = (self.0, other.0);
        Fe([
            a[0] + b[0],
            a[1] + b[1],
            a[2] + b[2],
            a[3] + b[3],
            a[4] + b[4],
        ])
        .carry()
    }

    fn sub(self, other: Fe) -> Fe {
        // Adding 4p keeps every limb positive for inputs whose limbs are below 2^52.
        const FOUR_P: [u64; 5] = [
            4 * (MASK_51 - 18),
            4 * MASK_51,
            4 * MASK_51,
            4 * MASK_51,
            4 * MASK_51,
        ];
        let (a, b) = (self.0, other.0);
        Fe([
            a[0] + FOUR_P[0] - b[0],
            a[1] + FOUR_P[1] - b[1],
            a[2] + FOUR_P[2] - b[2],
            a[3] + FOUR_P[3] - b[3],
            a[4] + FOUR_P[4] - b[4],
        ])
        .carry()
    }

    fn mul(self, other: Fe) -> Fe {
        #[cfg(test)]
        count::mul();
        let (a, b) = (self.0, other.0);
        let m = |x: u64, y: u64| u128::from(x) * u128::from(y);
        // 2^255 = 19 mod p, so a product landing in limb 5 + i folds into limb i times 19.
        let (b1, b2, b3, b4) = (19 * b[1], 19 * b[2], 19 * b[3], 19 * b[4]);
        let c0 = m(a[0], b[0]) + m(a[4], b1) + m(a[3], b2) + m(a[2], b3) + m(a[1], b4);
        let c1 = m(a[1], b[0]) + m(a[0], b[1]) + m(a[4], b2) + m(a[3], b3) + m(a[2], b4);
        let c2 = m(a[2], b[0]) + m(a[1], b[1]) + m(a[0], b[2]) + m(a[4], b3) + m(a[3], b4);
        let c3 = m(a[3], b[0]) + m(a[2], b[1]) + m(a[1], b[2]) + m(a[0], b[3]) + m(a[4], b4);
        let c4 = m(a[4], b[0]) + m(a[3], b[1]) + m(a[2], b[2]) + m(a[1], b[3]) + m(a[0], b[4]);
        Fe::reduce_wide([c0, c1, c2, c3, c4])
    }

    /// self², with the cross products doubled instead of computed twice: 15 limb products
    /// where `mul` takes 25.
    fn square(self) -> Fe {
        #[cfg(test)]
        count::square();
        let a = self.0;
        let m = |x: u64, y: u64| u128::from(x) * u128::from(y);
        // Limbs stay below 2^52, so doubling or multiplying by 38 still fits in u64.
        let (d0, d1, d2) = (2 * a[0], 2 * a[1], 2 * a[2]);
        let (a3_19, a4_19) = (19 * a[3], 19 * a[4]);
        let c0 = m(a[0], a[0]) + m(d1, a4_19) + m(d2, a3_19);
        let c1 = m(d0, a[1]) + m(d2, a4_19) + m(a[3], a3_19);
        let c2 = m(d0, a[2]) + m(a[1], a[1]) + m(2 * a[3], a4_19);
        let c3 = m(d0, a[3]) + m(d1, a[2]) + m(a[4], a4_19);
        let c4 = m(d0, a[4]) + m(d1, a[3]) + m(a[2], a[2]);
        Fe::reduce_wide([c0, c1, c2, c3, c4])
    }

    /// self^(2^n): `n` squarings in a row.
    fn square_times(self, n: u32) -> Fe {
        let mut x = self;
        for _ in 0..n {
            x = x.square();
        }
        x
    }

    fn mul_small(self, factor: u64) -> Fe {
        let a = self.0;
        let m = |x: u64| u128::from(x) * u128::from(factor);
        Fe::reduce_wide([m(a[0]), m(a[1]), m(a[2]), m(a[3]), m(a[4])])
    }

    fn reduce_wide(c: [u128; 5]) -> Fe {
        let mask = u128::from(MASK_51);
        let c1 = c[1] + (c[0] >> 51);
        let c2 = c[2] + (c1 >> 51);
        let c3 = c[3] + (c2 >> 51);
        let c4 = c[4] + (c3 >> 51);
        // Input limbs stay below 2^52, so c4 < 2^107 and 19 times the top carry fits in u64.
        let top = (c4 >> 51) as u64;
        let l0 = (c[0] & mask) as u64 + 19 * top;
        Fe([
            l0 & MASK_51,
            (c1 & mask) as u64 + (l0 >> 51),
            (c2 & mask) as u64,
            (c3 & mask) as u64,
            (c4 & mask) as u64,
        ])
    }

    /// (self^(2^250 - 1), self^2, self^11): the common head of the curve25519 power chains, in
    /// 249 squarings and 10 multiplications. The exponents are public, so nothing here needs
    /// to hide them.
    fn pow_2_250_minus_1(self) -> (Fe, Fe, Fe) {
        let z2 = self.square();
        let z9 = z2.square_times(2).mul(self);
        let z11 = z9.mul(z2);
        let z_5_0 = z11.square().mul(z9); // 2^5 - 1
        let z_10_0 = z_5_0.square_times(5).mul(z_5_0);
        let z_20_0 = z_10_0.square_times(10).mul(z_10_0);
        let z_40_0 = z_20_0.square_times(20).mul(z_20_0);
        let z_50_0 = z_40_0.square_times(10).mul(z_10_0);
        let z_100_0 = z_50_0.square_times(50).mul(z_50_0);
        let z_200_0 = z_100_0.square_times(100).mul(z_100_0);
        let z_250_0 = z_200_0.square_times(50).mul(z_50_0);
        (z_250_0, z2, z11)
    }

    /// self^(p - 2) = 1 / self by Fermat (0 for 0): 254 squarings and 11 multiplications.
    fn invert(self) -> Fe {
        let (z_250_0, _, z11) = self.pow_2_250_minus_1();
        // (2^250 - 1) * 2^5 + 11 = 2^255 - 21 = p - 2.
        z_250_0.square_times(5).mul(z11)
    }

    /// self^((p - 3) / 2) = self^(2^254 - 11): 253 squarings and 12 multiplications. Times
    /// self it is Euler's criterion; times self² it is 1 / self to that power (see `key_share`).
    fn pow_p_minus_3_over_2(self) -> Fe {
        let (z_250_0, z2, _) = self.pow_2_250_minus_1();
        // ((2^250 - 1) * 2^3 + 2) * 2 + 1 = 2^254 - 11 = (p - 3) / 2.
        z_250_0.square_times(3).mul(z2).square().mul(self)
    }

    /// self^((p - 1) / 2), Euler's criterion: 1 for a nonzero square, p - 1 for a non-square,
    /// 0 for 0.
    #[cfg(test)]
    fn euler(self) -> Fe {
        self.pow_p_minus_3_over_2().mul(self)
    }

    /// Swaps `a` and `b` when `swap` is 1 and leaves them when it is 0, without a branch.
    fn conditional_swap(a: &mut Fe, b: &mut Fe, swap: u64) {
        let mask = 0u64.wrapping_sub(swap);
        for (x, y) in a.0.iter_mut().zip(b.0.iter_mut()) {
            let t = mask & (*x ^ *y);
            *x ^= t;
            *y ^= t;
        }
    }
}

/// X25519(scalar, u) with the Montgomery ladder of RFC 7748 §5.
fn scalar_mult(scalar: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    let mut k = *scalar;
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    ladder(&k, u, 255)
}

/// The Montgomery ladder over the low `bits` bits of `k`, unclamped.
fn ladder(k: &[u8; 32], u: &[u8; 32], bits: usize) -> [u8; 32] {
    let (x, z) = ladder_projective(k, u, bits);
    x.mul(z.invert()).to_bytes()
}

/// The ladder's result as projective (X : Z); Z is 0 for the point at infinity.
fn ladder_projective(k: &[u8; 32], u: &[u8; 32], bits: usize) -> (Fe, Fe) {
    let x1 = Fe::from_bytes(u);
    let (mut x2, mut z2, mut x3, mut z3) = (Fe::ONE, Fe::ZERO, x1, Fe::ONE);
    let mut swap = 0u64;
    for t in (0..bits.min(255)).rev() {
        let bit = u64::from((k[t / 8] >> (t % 8)) & 1);
        swap ^= bit;
        Fe::conditional_swap(&mut x2, &mut x3, swap);
        Fe::conditional_swap(&mut z2, &mut z3, swap);
        swap = bit;

        let a = x2.add(z2);
        let aa = a.square();
        let b = x2.sub(z2);
        let bb = b.square();
        let e = aa.sub(bb);
        let c = x3.add(z3);
        let d = x3.sub(z3);
        let da = d.mul(a);
        let cb = c.mul(b);
        x3 = da.add(cb).square();
        z3 = x1.mul(da.sub(cb).square());
        x2 = aa.mul(bb);
        z2 = e.mul(aa.add(e.mul_small(A24)));
    }
    Fe::conditional_swap(&mut x2, &mut x3, swap);
    Fe::conditional_swap(&mut z2, &mut z3, swap);
    (x2, z2)
}

/// The public key of `scalar` (clamped as RFC 7748 §5 says).
pub fn public_key(scalar: &[u8; 32]) -> [u8; 32] {
    let mut base_point = [0; 32];
    base_point[0] = 9;
    scalar_mult(scalar, &base_point)
}

/// A fresh key share for our ServerHello: a uniformly random point of the prime-order
/// subgroup other than the identity, as u, 32 bytes little-endian with bit 255 clear, like
/// every real public key (§3.5). Clients never use it (§3.2).
///
/// Telegram's way (§3.5): each 32-byte chunk of `random` in turn is a candidate u, kept if it
/// is the u of a curve point P; the share is u([8]P). About two candidates are tried on
/// average, each costing one power of about 253 squarings. If all 16 fail (probability
/// 2^-16) the share is the base point times a 128-bit scalar from the first 16 bytes.
pub fn key_share(random: &[u8; 32 * KEY_SHARE_TRIES]) -> [u8; 32] {
    for chunk in random.chunks_exact(32) {
        let mut candidate = [0; 32];
        candidate.copy_from_slice(chunk);
        if let Some(share) = subgroup_point(&candidate) {
            return share;
        }
    }
    let mut scalar = [0; 16];
    scalar.copy_from_slice(&random[..16]);
    key_share_by_ladder(&scalar)
}

/// u([8]P) for the curve point P with u = `candidate` (bit 255 ignored, reduced mod p), or
/// None when there is no such point, or [8]P is the identity (P of order 1, 2, 4 or 8).
///
/// With f = u³ + A·u² + u, P exists when f is a nonzero square. Multiplying by 8 maps the
/// curve's points 8 to 1 onto the subgroup of order ℓ, so a uniform u gives a uniform share.
/// One power serves both the test and the final inversion: for [8]P = (X : Z) and w = f·Z²,
/// g = w^((p - 3) / 2) gives g·w = w^((p - 1) / 2), which is 1 exactly when f is a nonzero
/// square and Z ≠ 0, and then g·f = f^((p - 1) / 2) / Z² = 1 / Z², so u = X·Z·g·f.
fn subgroup_point(candidate: &[u8; 32]) -> Option<[u8; 32]> {
    let u = Fe::from_bytes(candidate);
    let f = u.mul(u.add(Fe([A, 0, 0, 0, 0])).mul(u).add(Fe::ONE));
    let (mut x, mut z) = (u, Fe::ONE);
    for _ in 0..3 {
        (x, z) = double(x, z);
    }
    let w = f.mul(z.square());
    let g = w.pow_p_minus_3_over_2();
    if g.mul(w).to_bytes() != Fe::ONE.to_bytes() {
        return None;
    }
    Some(x.mul(z).mul(g.mul(f)).to_bytes())
}

/// x-only doubling in projective form: X' = (X² - Z²)², Z' = 4XZ(X² + A·XZ + Z²).
fn double(x: Fe, z: Fe) -> (Fe, Fe) {
    let aa = x.add(z).square();
    let bb = x.sub(z).square();
    let e = aa.sub(bb); // 4XZ
    (aa.mul(bb), e.mul(aa.add(e.mul_small(A24))))
}

/// The fallback key share: the base point times a 128-bit scalar, `random` with bit 127 set
/// so that no input gives the identity. The scalar is thrown away, and recovering a 128-bit
/// discrete logarithm is out of anyone's reach, so 128 ladder steps give a share nobody can
/// tell from a full-length one.
fn key_share_by_ladder(random: &[u8; 16]) -> [u8; 32] {
    let mut k = [0; 32];
    k[..16].copy_from_slice(random);
    k[15] |= 0x80;
    let mut base_point = [0; 32];
    base_point[0] = 9;
    ladder(&k, &base_point, 128)
}

/// Per-thread counts of field multiplications and squarings, so tests can compare costs
/// without timing anything.
#[cfg(test)]
mod count {
    use std::cell::Cell;

    thread_local! {
        static MULS: Cell<u64> = const { Cell::new(0) };
        static SQUARES: Cell<u64> = const { Cell::new(0) };
    }

    pub fn mul() {
        MULS.with(|c| c.set(c.get() + 1));
    }

    pub fn square() {
        SQUARES.with(|c| c.set(c.get() + 1));
    }

    /// (multiplications, squarings) that `f` ran on this thread.
    pub fn ops<T>(f: impl FnOnce() -> T) -> (u64, u64) {
        let before = (MULS.with(Cell::get), SQUARES.with(Cell::get));
        std::hint::black_box(f());
        (
            MULS.with(Cell::get) - before.0,
            SQUARES.with(Cell::get) - before.1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> [u8; 32] {
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn matches_rfc7748_section_5_2_vectors() {
        let cases = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (scalar, u, expected) in cases {
            assert_eq!(scalar_mult(&hex(scalar), &hex(u)), hex(expected));
        }
    }

    #[test]
    fn matches_rfc7748_iterated_vector_after_1000_rounds() {
        let mut k = public_key_base();
        let mut u = public_key_base();
        for round in 1..=1000 {
            let next = scalar_mult(&k, &u);
            u = k;
            k = next;
            if round == 1 {
                assert_eq!(
                    k,
                    hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
                );
            }
        }
        assert_eq!(
            k,
            hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
        );
    }

    /// SplitMix64, for deterministic pseudo-random test inputs.
    struct TestRng(u64);

    impl TestRng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn fill(&mut self, out: &mut [u8]) {
            for chunk in out.chunks_mut(8) {
                chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
            }
        }

        fn bytes(&mut self) -> [u8; 32] {
            let mut out = [0; 32];
            self.fill(&mut out);
            out
        }
    }

    fn p_minus_one() -> [u8; 32] {
        let mut b = [0xff; 32];
        b[0] = 0xec;
        b[31] = 0x7f;
        b
    }

    /// Field elements worth testing: small ones, ones near p and 2^255, limbs at their
    /// largest unreduced values, and pseudo-random ones.
    fn test_elements() -> Vec<Fe> {
        let mut out = vec![Fe::ONE, Fe([2, 0, 0, 0, 0]), Fe([9, 0, 0, 0, 0])];
        out.push(Fe::from_bytes(&p_minus_one()));
        out.push(Fe::from_bytes(&[0xff; 32])); // 2^255 - 1 = 18 mod p
        out.push(Fe([(1 << 52) - 1; 5]));
        out.push(Fe([MASK_51, 0, MASK_51, 0, MASK_51]));
        let mut rng = TestRng(1);
        out.extend((0..200).map(|_| Fe::from_bytes(&rng.bytes())));
        out
    }

    /// The old bit-by-bit square-and-multiply inversion, as a reference.
    fn invert_by_bits(z: Fe) -> Fe {
        // p - 2 = 2^255 - 21: bits 254..0 are all set except bits 4 and 2.
        let mut result = Fe::ONE;
        for bit in (0..255).rev() {
            result = result.mul(result);
            if bit != 4 && bit != 2 {
                result = result.mul(z);
            }
        }
        result
    }

    #[test]
    fn square_matches_mul_by_itself_even_for_unreduced_limbs() {
        for x in test_elements() {
            assert_eq!(x.square().to_bytes(), x.mul(x).to_bytes());
            assert_eq!(x.square_times(3).to_bytes(), {
                let x2 = x.mul(x);
                let x4 = x2.mul(x2);
                x4.mul(x4).to_bytes()
            });
        }
    }

    #[test]
    fn an_element_times_its_inverse_is_one() {
        for x in test_elements() {
            assert_eq!(x.mul(x.invert()).to_bytes(), Fe::ONE.to_bytes());
            assert_eq!(x.invert().to_bytes(), invert_by_bits(x).to_bytes());
        }
    }

    #[test]
    fn the_inverse_of_zero_is_zero() {
        assert_eq!(Fe::ZERO.invert().to_bytes(), [0; 32]);
        let mut p = p_minus_one();
        p[0] = 0xed;
        assert_eq!(Fe::from_bytes(&p).invert().to_bytes(), [0; 32]);
    }

    #[test]
    fn inversion_takes_254_squarings_and_11_multiplications() {
        let x = Fe([12345, 6789, 1, 2, 3]);
        assert_eq!(count::ops(|| x.invert()), (11, 254));
        assert_eq!(count::ops(|| x.pow_p_minus_3_over_2()), (12, 253));
        assert_eq!(count::ops(|| invert_by_bits(x)), (508, 0));
    }

    #[test]
    fn euler_criterion_tells_squares_from_non_squares() {
        let minus_one = p_minus_one();
        // p = 5 mod 8, so 2 is not a square mod p.
        let two = Fe([2, 0, 0, 0, 0]);
        assert_eq!(two.euler().to_bytes(), minus_one);
        assert_eq!(Fe::ONE.euler().to_bytes(), Fe::ONE.to_bytes());
        assert_eq!(Fe::ZERO.euler().to_bytes(), [0; 32]);
        for x in test_elements() {
            if x.to_bytes() == [0; 32] {
                continue;
            }
            assert_eq!(x.square().euler().to_bytes(), Fe::ONE.to_bytes());
            assert_eq!(x.square().mul(two).euler().to_bytes(), minus_one);
        }
    }

    fn public_key_base() -> [u8; 32] {
        let mut nine = [0; 32];
        nine[0] = 9;
        nine
    }

    #[test]
    fn matches_rfc7748_section_6_1_public_keys_and_shared_secret() {
        let alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let alice_public = public_key(&alice);
        let bob_public = public_key(&bob);
        assert_eq!(
            alice_public,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob_public,
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(scalar_mult(&alice, &bob_public), shared);
        assert_eq!(scalar_mult(&bob, &alice_public), shared);
    }

    #[test]
    fn matches_protocol_section_10_key_share() {
        assert_eq!(
            public_key(&[0x77; 32]),
            hex("1cf579aba45a10ba1d1ef06d91fca2aa9ed0a1150515653155405d0b18cb9a67")
        );
    }

    #[test]
    fn ignores_the_top_bit_of_u_and_reduces_non_canonical_u() {
        // RFC 7748 §5: bit 255 of u is masked; u = p + 9 encodes the same point as 9.
        let scalar = [0x42; 32];
        let mut high_bit = public_key_base();
        high_bit[31] |= 0x80;
        assert_eq!(scalar_mult(&scalar, &high_bit), public_key(&scalar));
        let mut p_plus_9 = [0xff; 32];
        p_plus_9[0] = 0xed + 9;
        p_plus_9[31] = 0x7f;
        assert_eq!(scalar_mult(&scalar, &p_plus_9), public_key(&scalar));
    }

    #[test]
    fn canonical_encoding_of_p_minus_one_and_p() {
        let p_minus_one = {
            let mut b = [0xff; 32];
            b[0] = 0xec;
            b[31] = 0x7f;
            b
        };
        assert_eq!(Fe::from_bytes(&p_minus_one).to_bytes(), p_minus_one);
        let mut p = p_minus_one;
        p[0] = 0xed;
        assert_eq!(Fe::from_bytes(&p).to_bytes(), [0; 32]);
        assert_eq!(
            Fe::from_bytes(&p_minus_one)
                .invert()
                .mul(Fe::from_bytes(&p_minus_one))
                .to_bytes(),
            Fe::ONE.to_bytes()
        );
    }

    /// ℓ = 2^252 + 27742317777372353535851937790883648493, the prime-order subgroup's order.
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// u³ + A·u² + u, written out independently of `subgroup_point`.
    fn curve_rhs(u: Fe) -> Fe {
        let u2 = u.square();
        u2.mul(u).add(u2.mul_small(A)).add(u)
    }

    fn is_curve_point(u: &[u8; 32]) -> bool {
        curve_rhs(Fe::from_bytes(u)).euler().to_bytes() == Fe::ONE.to_bytes()
    }

    /// [ℓ]P is the identity (Z = 0).
    fn is_in_prime_order_subgroup(u: &[u8; 32]) -> bool {
        ladder_projective(&ELL, u, 253).1.to_bytes() == [0; 32]
    }

    fn assert_valid_key_share(share: &[u8; 32]) {
        assert_eq!(share[31] & 0x80, 0, "top bit set: {share:02x?}");
        assert_eq!(Fe::from_bytes(share).to_bytes(), *share, "not canonical");
        assert_ne!(*share, [0; 32]);
        assert!(is_curve_point(share), "not on the curve: {share:02x?}");
        assert!(
            is_in_prime_order_subgroup(share),
            "order not ℓ: {share:02x?}"
        );
    }

    fn random_input(rng: &mut TestRng) -> [u8; 32 * KEY_SHARE_TRIES] {
        let mut random = [0; 32 * KEY_SHARE_TRIES];
        rng.fill(&mut random);
        random
    }

    /// Candidates from `rng` that are (`true`) or are not (`false`) curve points.
    fn candidate(rng: &mut TestRng, on_curve: bool) -> [u8; 32] {
        loop {
            let c = rng.bytes();
            if is_curve_point(&c) == on_curve {
                return c;
            }
        }
    }

    #[test]
    fn key_shares_are_canonical_curve_points_of_the_prime_order_subgroup() {
        let mut rng = TestRng(2);
        for _ in 0..300 {
            assert_valid_key_share(&key_share(&random_input(&mut rng)));
        }
    }

    #[test]
    fn key_shares_of_different_random_bytes_differ() {
        let mut rng = TestRng(3);
        let mut shares: Vec<[u8; 32]> = (0..300)
            .map(|_| key_share(&random_input(&mut rng)))
            .collect();
        shares.sort_unstable();
        shares.dedup();
        assert_eq!(shares.len(), 300);
    }

    #[test]
    fn the_subgroup_check_knows_the_base_point_and_rejects_points_not_multiplied_by_8() {
        let nine = public_key_base();
        assert_valid_key_share(&nine);
        // [ℓ - 1]P = -P, which has the same u: the ladder and ℓ agree.
        let mut ell_minus_one = ELL;
        ell_minus_one[0] -= 1;
        assert_eq!(ladder(&ell_minus_one, &nine, 253), nine);
        // Only one curve point in 8 is in the subgroup; most random ones are not.
        let mut rng = TestRng(4);
        let outside = (0..16)
            .map(|_| candidate(&mut rng, true))
            .filter(|c| !is_in_prime_order_subgroup(c))
            .count();
        assert!(outside >= 8, "only {outside} of 16 outside the subgroup");
    }

    #[test]
    fn a_candidate_is_kept_exactly_when_it_is_a_curve_point_and_gives_8_times_that_point() {
        let mut eight = [0; 32];
        eight[0] = 8;
        let mut rng = TestRng(5);
        let mut kept = 0;
        for _ in 0..200 {
            let c = rng.bytes();
            let share = subgroup_point(&c);
            assert_eq!(share.is_some(), is_curve_point(&c));
            if let Some(share) = share {
                assert_eq!(share, ladder(&eight, &c, 4));
                kept += 1;
            }
        }
        assert!((60..=140).contains(&kept), "{kept} of 200 kept");
    }

    #[test]
    fn the_share_comes_from_the_first_candidate_that_is_a_curve_point() {
        let mut rng = TestRng(6);
        for skipped in [0, 1, 5, KEY_SHARE_TRIES - 1] {
            let mut random = random_input(&mut rng);
            for chunk in random.chunks_exact_mut(32).take(skipped) {
                chunk.copy_from_slice(&candidate(&mut rng, false));
            }
            let point = candidate(&mut rng, true);
            random[32 * skipped..32 * skipped + 32].copy_from_slice(&point);
            assert_eq!(Some(key_share(&random)), subgroup_point(&point));
        }
    }

    #[test]
    fn zero_and_small_order_candidates_are_rejected() {
        let mut p = p_minus_one();
        p[0] = 0xed;
        let small_order = [
            [0; 32],
            p,
            Fe::ONE.to_bytes(),
            p_minus_one(),
            hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        ];
        let mut on_curve = 0;
        for u in small_order {
            assert_eq!(subgroup_point(&u), None, "{u:02x?}");
            on_curve += usize::from(is_curve_point(&u));
        }
        // u = 1 (order 4) and both order-8 points pass Euler's test; [8]P = O rejects them.
        assert_eq!(on_curve, 3);
    }

    #[test]
    fn when_no_candidate_is_a_curve_point_the_share_is_the_ladder_of_the_first_16_bytes() {
        let mut rng = TestRng(8);
        for _ in 0..4 {
            let miss = candidate(&mut rng, false);
            let mut random = [0; 32 * KEY_SHARE_TRIES];
            for chunk in random.chunks_exact_mut(32) {
                chunk.copy_from_slice(&miss);
            }
            let mut k = [0; 32];
            k[..16].copy_from_slice(&miss[..16]);
            k[15] |= 0x80;
            let share = key_share(&random);
            assert_eq!(share, ladder(&k, &public_key_base(), 255));
            assert_valid_key_share(&share);
        }
    }

    #[test]
    fn all_zero_random_bytes_still_give_a_valid_key_share() {
        let share = key_share(&[0; 32 * KEY_SHARE_TRIES]);
        assert_valid_key_share(&share);
        let mut k = [0; 32];
        k[15] = 0x80;
        assert_eq!(share, ladder(&k, &public_key_base(), 255));
    }

    /// Prints, never asserts: `cargo test --release x25519 -- --nocapture` for the figures.
    /// The test build counts field operations, which the timings include.
    #[test]
    fn prints_the_time_and_field_operations_of_a_key_share() {
        let n: u32 = if cfg!(debug_assertions) { 100 } else { 10_000 };
        let mut rng = TestRng(9);
        let inputs: Vec<_> = (0..64).map(|_| random_input(&mut rng)).collect();
        let (muls, squares) = count::ops(|| {
            for random in &inputs {
                std::hint::black_box(key_share(random));
            }
        });
        let start = std::time::Instant::now();
        for i in 0..n {
            let random = &inputs[i as usize % inputs.len()];
            std::hint::black_box(key_share(std::hint::black_box(random)));
        }
        let elapsed = start.elapsed();
        println!(
            "key share: {n} in {elapsed:?}, {:?} each; {} multiplications, {} squarings \
             on average over {} inputs",
            elapsed / n,
            muls / inputs.len() as u64,
            squares / inputs.len() as u64,
            inputs.len()
        );
        let scalar = [0x5a; 16];
        let (muls, squares) = count::ops(|| key_share_by_ladder(&scalar));
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut scalar = scalar;
            scalar[..4].copy_from_slice(&i.to_le_bytes());
            std::hint::black_box(key_share_by_ladder(std::hint::black_box(&scalar)));
        }
        let elapsed = start.elapsed();
        println!(
            "fallback (128-step ladder): {n} in {elapsed:?}, {:?} each; {muls} \
             multiplications, {squares} squarings",
            elapsed / n
        );
    }
}
