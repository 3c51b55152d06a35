//! `cipher-speed [MILLISECONDS]`: how fast AES-256-CTR runs over one relayed chunk on one core,
//! for the choices feint's `CtrState` could make: the key schedule per call or kept, both
//! encrypt and decrypt round keys or encrypt only, two passes over the data or one fused pass
//! that XORs both keystreams. Prints GB/s of data (each byte counted once) per second of this
//! thread's CPU time, not wall time, so other processes on a shared machine disturb it less;
//! best of several runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use feint::proto::cipher::{apply_two, vaes, CtrState, Pass};
use feint_bench::sys::thread_cpu_time;

type Full = ctr::Ctr128BE<aes::Aes256>;
type EncryptOnly = ctr::Ctr128BE<aes::Aes256Enc>;

/// One variant's work on one chunk, with its cipher states.
type Step<'a> = Box<dyn FnMut(&mut [u8]) + 'a>;

/// Runs per variant; the best counts (the machine is shared).
const RUNS: usize = 10;
/// Keystream generated per step of the naive fused pass: fits in L1 beside the data.
const TILE: usize = 1024;

/// A CtrState's key, IV and position, with the cipher type chosen per variant.
#[derive(Clone)]
struct State {
    key: [u8; 32],
    iv: [u8; 16],
    position: u64,
}

impl State {
    fn new(seed: u8) -> Self {
        State {
            key: [seed; 32],
            iv: [seed.wrapping_add(1); 16],
            position: 0,
        }
    }

    /// The cipher at the current position, its key schedule expanded now.
    fn cipher<C: KeyIvInit + StreamCipherSeek>(&self) -> C {
        let mut cipher = C::new_from_slices(&self.key, &self.iv).expect("AES-256 key and IV sizes");
        cipher.seek(self.position);
        cipher
    }

    /// One pass, as `CtrState::apply` does it, with cipher type C.
    fn apply<C: KeyIvInit + StreamCipher + StreamCipherSeek>(&mut self, data: &mut [u8]) {
        self.cipher::<C>().apply_keystream(data);
        self.position += data.len() as u64;
    }
}

/// Both keystreams XORed into `data` in one pass, built from the ctr crate alone: per tile, A's
/// keystream and then B's go into a zeroed scratch tile (in L1), and the tile is XORed into the
/// data once. The naive fusion, beside feint's `apply_two`, which makes raw AES blocks.
fn apply_two_tiled<C: KeyIvInit + StreamCipher + StreamCipherSeek>(
    a: &mut State,
    b: &mut State,
    data: &mut [u8],
) {
    let (mut first, mut second) = (a.cipher::<C>(), b.cipher::<C>());
    let mut tile = [0u8; TILE];
    for chunk in data.chunks_mut(TILE) {
        let keystream = &mut tile[..chunk.len()];
        keystream.fill(0);
        first.apply_keystream(keystream);
        second.apply_keystream(keystream);
        for (byte, key) in chunk.iter_mut().zip(keystream.iter()) {
            *byte ^= *key;
        }
    }
    a.position += data.len() as u64;
    b.position += data.len() as u64;
}

/// The fused variants must give the bytes two `CtrState::apply` calls give, at any position.
fn check_fused_matches_two_passes() {
    for (start_a, start_b, len) in [(0, 0, 5000), (7, 64, 3000), (15, 1, 1), (64, 9, 2048)] {
        let mut expected: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut got = expected.clone();
        let mut tiled = expected.clone();
        let mut feint_a = CtrState::new([1; 32], [2; 16]);
        let mut feint_b = CtrState::new([3; 32], [4; 16]);
        feint_a.position = start_a;
        feint_b.position = start_b;
        feint_a.apply(&mut expected);
        feint_b.apply(&mut expected);
        let state = |key: u8, iv: u8, position: u64| State {
            key: [key; 32],
            iv: [iv; 16],
            position,
        };
        let mut a = CtrState::new([1; 32], [2; 16]);
        let mut b = CtrState::new([3; 32], [4; 16]);
        a.position = start_a;
        b.position = start_b;
        apply_two(&mut a, &mut b, &mut got);
        assert!(
            got == expected,
            "feint apply_two differs at {start_a}/{start_b}"
        );
        assert_eq!(
            (a.position, b.position),
            (feint_a.position, feint_b.position)
        );
        let (mut a, mut b) = (state(1, 2, start_a), state(3, 4, start_b));
        apply_two_tiled::<Full>(&mut a, &mut b, &mut tiled);
        assert!(
            tiled == expected,
            "tiled fused pass differs at {start_a}/{start_b}"
        );
    }
}

/// Bytes of `data` per CPU second through `step` in one run of `each` CPU time.
fn speed(each: Duration, data: &mut [u8], step: &mut dyn FnMut(&mut [u8])) -> f64 {
    let (start, wall) = (thread_cpu_time(), Instant::now());
    let mut bytes = 0u64;
    // Bounded: 1 << 24 steps, or 20 times `each` of wall time, whatever the CPU clock says.
    for _ in 0..(1u64 << 24) {
        step(data);
        bytes += data.len() as u64;
        if bytes % (1 << 20) < data.len() as u64
            && (thread_cpu_time() - start >= each || wall.elapsed() >= each * 20)
        {
            break;
        }
    }
    black_box(data);
    bytes as f64 / (thread_cpu_time() - start).as_secs_f64()
}

/// CPU nanoseconds per key schedule for cipher type C, best of RUNS runs.
fn schedule_ns<C: KeyIvInit>(each: Duration) -> f64 {
    let (key, iv) = ([7u8; 32], [9u8; 16]);
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let start = thread_cpu_time();
        let mut count = 0u64;
        while count < 10_000_000
            && (!count.is_multiple_of(1024) || thread_cpu_time() - start < each)
        {
            black_box(C::new_from_slices(black_box(&key), black_box(&iv)).expect("sizes"));
            count += 1;
        }
        best = best.min((thread_cpu_time() - start).as_nanos() as f64 / count as f64);
    }
    best
}

fn main() {
    let millis = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200u64);
    let each = Duration::from_millis(millis);
    println!(
        "AES-256-CTR on one core, GB of data per CPU second, best of {RUNS} runs of {millis} ms (load average {})",
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    );
    println!(
        "key schedule per call: Aes256 (encrypt + decrypt keys) {:.0} ns, Aes256Enc {:.0} ns",
        schedule_ns::<Full>(each),
        schedule_ns::<EncryptOnly>(each)
    );
    check_fused_matches_two_passes();
    let names = [
        "1 pass, long-lived cipher (schedule once)",
        "1 pass, feint CtrState::apply (schedule per call)",
        "1 pass, schedule per call, Aes256Enc",
        "2 passes, long-lived ciphers",
        "2 passes, feint CtrState::apply ×2 (the relay today)",
        "2 passes, schedule per call, Aes256Enc",
        "fused, ctr keystreams into a tile, Aes256",
        "fused, feint apply_two (VAES where the CPU has it)",
        "fused, feint Pass::portable (aes crate blocks, Aes256Enc)",
        "fused, feint Pass over 2878-byte records (a client's)",
        "fused, feint VAES with 256-bit registers (as on AMD Zen 3)",
    ];
    let mut best = vec![[0.0f64; 2]; names.len()];
    for (column, size) in [16 * 1024, 64 * 1024].into_iter().enumerate() {
        let mut data = vec![0x5au8; size];
        let mut long_a: Full = State::new(1).cipher();
        let mut long_b: Full = State::new(1).cipher();
        let mut long_c: Full = State::new(3).cipher();
        let mut feint_a = CtrState::new([1; 32], [2; 16]);
        let mut feint_b = CtrState::new([1; 32], [2; 16]);
        let mut feint_c = CtrState::new([3; 32], [4; 16]);
        let mut one = State::new(1);
        let (mut two_a, mut two_b) = (State::new(1), State::new(3));
        let (mut tile_a, mut tile_b) = (State::new(1), State::new(3));
        let mut fused_a = CtrState::new([1; 32], [2; 16]);
        let mut fused_b = CtrState::new([3; 32], [4; 16]);
        let mut portable_a = CtrState::new([1; 32], [2; 16]);
        let mut portable_b = CtrState::new([3; 32], [4; 16]);
        let mut records_a = CtrState::new([1; 32], [2; 16]);
        let mut records_b = CtrState::new([3; 32], [4; 16]);
        let mut narrow_a = CtrState::new([1; 32], [2; 16]);
        let mut narrow_b = CtrState::new([3; 32], [4; 16]);
        let narrow_keys = vaes::Keys::with_width(&narrow_a.key, &narrow_b.key, vaes::Width::W256);
        let mut steps: Vec<Step> = vec![
            Box::new(|d: &mut [u8]| long_a.apply_keystream(d)),
            Box::new(|d: &mut [u8]| feint_a.apply(d)),
            Box::new(|d: &mut [u8]| one.apply::<EncryptOnly>(d)),
            Box::new(|d: &mut [u8]| {
                long_b.apply_keystream(d);
                long_c.apply_keystream(d);
            }),
            Box::new(|d: &mut [u8]| {
                feint_b.apply(d);
                feint_c.apply(d);
            }),
            Box::new(|d: &mut [u8]| {
                two_a.apply::<EncryptOnly>(d);
                two_b.apply::<EncryptOnly>(d);
            }),
            Box::new(|d: &mut [u8]| apply_two_tiled::<Full>(&mut tile_a, &mut tile_b, d)),
            Box::new(|d: &mut [u8]| apply_two(&mut fused_a, &mut fused_b, d)),
            Box::new(|d: &mut [u8]| Pass::portable(&mut portable_a, &mut portable_b).apply(d)),
            Box::new(|d: &mut [u8]| {
                let mut pass = Pass::new(&mut records_a, &mut records_b);
                for record in d.chunks_mut(2878) {
                    pass.apply(record);
                }
            }),
            Box::new(|d: &mut [u8]| {
                // Without 256-bit VAES the row stays at zero.
                if let Some(keys) = &narrow_keys {
                    let len = d.len();
                    vaes::apply_two_moving(keys, &mut narrow_a, &mut narrow_b, d, 0, 0, len);
                }
            }),
        ];
        // Interleaved: every variant runs once per round, so a busy moment hits all alike.
        for _ in 0..RUNS {
            for (index, step) in steps.iter_mut().enumerate() {
                let rate = speed(each, &mut data, step.as_mut());
                best[index][column] = best[index][column].max(rate / 1e9);
            }
        }
    }
    println!("| variant | 16 KiB | 64 KiB |\n|---|---|---|");
    for (name, [small, large]) in names.iter().zip(&best) {
        println!("| {name} | {small:.2} | {large:.2} |");
    }
}
