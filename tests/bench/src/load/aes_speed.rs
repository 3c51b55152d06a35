//! Raw AES-256-CTR speed of the aes 0.8 + ctr 0.9 crates (Ctr128BE<Aes256>) on this CPU, in
//! process: once as a long-lived cipher over 16 KiB blocks, and once with the key schedule
//! expanded again for every 16 KiB (what a proxy that keeps only key, IV and position per
//! session, like feint's CtrState, pays).

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::crypto::Ctr;

const BLOCK: usize = 16 * 1024;

pub struct Outcome {
    /// Bytes per second, one core, long-lived cipher.
    pub streaming: f64,
    /// Bytes per second, one core, key expanded per 16 KiB.
    pub rekeyed: f64,
}

pub fn run(duration: Duration) -> Outcome {
    let mut data = vec![0x5au8; BLOCK];
    let key = [7u8; 32];
    let iv = [9u8; 16];
    let streaming = measure(
        duration,
        || {
            let mut cipher = Ctr::new(&key, &iv);
            move |data: &mut [u8]| cipher.apply(data)
        },
        &mut data,
    );
    let mut position = 0u64;
    let rekeyed = measure(
        duration,
        || {
            move |data: &mut [u8]| {
                let mut cipher = Ctr::new(black_box(&key), &iv);
                cipher.seek(position);
                cipher.apply(data);
                position += data.len() as u64;
            }
        },
        &mut data,
    );
    black_box(&data);
    Outcome { streaming, rekeyed }
}

fn measure<F: FnMut(&mut [u8])>(
    duration: Duration,
    make: impl FnOnce() -> F,
    data: &mut [u8],
) -> f64 {
    let mut apply = make();
    for _ in 0..64 {
        apply(data);
    }
    let start = Instant::now();
    let mut bytes = 0u64;
    // Bounded: at most 1 << 22 blocks (64 GiB) whatever the clock says.
    for _ in 0..(1u64 << 22) {
        for _ in 0..64 {
            apply(data);
        }
        bytes += 64 * data.len() as u64;
        if start.elapsed() >= duration {
            break;
        }
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}
