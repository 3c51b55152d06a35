//! In-process speed of the crypto a proxy pays for, on this CPU: AES-256-CTR from the aes 0.9 +
//! ctr 0.10 crates (Ctr128BE<Aes256>) as a long-lived cipher, the same through feint's own
//! `CtrState` (key schedule expanded per call, here per 16 KiB), feint's `apply_two` (a relay's
//! two passes fused into one), and feint's x25519 key share, which every FakeTLS handshake
//! computes once. `cipher-speed` compares more ways to run the cipher. Rates are per second of
//! this thread's CPU time, so a busy machine slows them less.

use std::hint::black_box;
use std::time::{Duration, Instant};

use feint::proto::cipher::{apply_two, CtrState};
use feint::proto::x25519;

use crate::crypto::Ctr;
use crate::sys::thread_cpu_time;

const BLOCK: usize = 16 * 1024;

pub struct Outcome {
    /// Bytes per second, one core, long-lived cipher.
    pub streaming: f64,
    /// Bytes per second, one core, feint's CtrState::apply on 16 KiB.
    pub feint_ctr: f64,
    /// Bytes per second through both passes, one core, feint's apply_two on 16 KiB.
    pub feint_two: f64,
    /// Time for one key share as feint's handshake makes it (`x25519::key_share`).
    pub key_share: Duration,
}

pub fn run(duration: Duration) -> Outcome {
    let mut data = vec![0x5au8; BLOCK];
    let key = [7u8; 32];
    let iv = [9u8; 16];
    let mut cipher = Ctr::new(&key, &iv);
    let streaming = bytes_per_second(duration, &mut data, |d| cipher.apply(d));
    let mut state = CtrState::new(key, iv);
    let feint_ctr = bytes_per_second(duration, &mut data, |d| state.apply(d));
    let mut second = CtrState::new([8; 32], iv);
    let feint_two = bytes_per_second(duration, &mut data, |d| {
        apply_two(&mut state, &mut second, d)
    });
    black_box(&data);
    let mut random = [0u8; 32 * x25519::KEY_SHARE_TRIES];
    let mut rng = CtrState::new([3; 32], [4; 16]);
    let (start, wall) = (thread_cpu_time(), Instant::now());
    let mut count = 0u32;
    // Bounded: 100,000 keys, or 10 times `duration` of wall time, whatever the CPU clock says.
    while count < 100_000
        && (count < 16
            || (thread_cpu_time() - start < duration / 2 && wall.elapsed() < duration * 10))
    {
        random.fill(0);
        rng.apply(&mut random);
        black_box(x25519::key_share(black_box(&random)));
        count += 1;
    }
    Outcome {
        streaming,
        feint_ctr,
        feint_two,
        key_share: (thread_cpu_time() - start) / count,
    }
}

fn bytes_per_second(duration: Duration, data: &mut [u8], mut apply: impl FnMut(&mut [u8])) -> f64 {
    for _ in 0..64 {
        apply(data);
    }
    let (start, wall) = (thread_cpu_time(), Instant::now());
    let mut bytes = 0u64;
    // Bounded: at most 1 << 22 rounds of 64 blocks, or 20 times `duration` of wall time.
    for _ in 0..(1u64 << 22) {
        for _ in 0..64 {
            apply(data);
        }
        bytes += 64 * data.len() as u64;
        if thread_cpu_time() - start >= duration || wall.elapsed() >= duration * 20 {
            break;
        }
    }
    bytes as f64 / (thread_cpu_time() - start).as_secs_f64().max(1e-9)
}
