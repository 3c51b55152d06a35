//! (b) `record::Deframer::deframe` on arbitrary bytes, fed in one piece and in pieces cut at
//! points drawn from the first two input bytes: both must give the same payload or the same error.
//!
//! The relay's way (`deframe_with`, the payload deciphered and moved by `cipher::Pass` in one
//! pass, VAES where the CPU has it) must give the same payload, deciphered, as `deframe` and
//! the portable pass.
//!
//! Input: 2 bytes choosing the cuts, then the client's stream after the hello.
#![no_main]

use feint::proto::cipher::{CtrState, Pass};
use feint::proto::record::{Deframer, RecordError};
use feint_fuzz::XorShift;
use libfuzzer_sys::fuzz_target;

/// Feeds `stream` cut at `cuts` (sorted, each <= len); returns the payload, or the first error
/// with the payload returned before it.
fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<RecordError>) {
    let mut deframer = Deframer::new();
    let mut payload = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&stream.len()]) {
        let mut piece = stream[start..end].to_vec();
        match deframer.deframe(&mut piece) {
            Ok(len) => {
                assert!(
                    len <= piece.len(),
                    "{len} payload bytes from {} read",
                    piece.len()
                );
                payload.extend_from_slice(&piece[..len]);
            }
            Err(error) => {
                // The stream stays refused, even for an empty read.
                assert_eq!(deframer.deframe(&mut []), Err(error));
                assert_eq!(deframer.deframe(&mut [0x17, 3, 3, 0, 1, 0]), Err(error));
                return (payload, Some(error));
            }
        }
        start = end;
    }
    (payload, None)
}

/// Two keystreams as a relay direction has them, at odd positions.
fn states() -> (CtrState, CtrState) {
    let mut decrypt = CtrState::new([0x11; 32], [0xfe; 16]);
    let mut encrypt = CtrState::new([0x22; 32], [0x01; 16]);
    decrypt.position = 64 + 7;
    encrypt.position = 64;
    (decrypt, encrypt)
}

/// `run`, the relay's way: each piece deframed with its payload put through one `Pass`.
fn run_relay(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<RecordError>) {
    let mut deframer = Deframer::new();
    let (mut decrypt, mut encrypt) = states();
    let mut payload = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([&stream.len()]) {
        let mut piece = stream[start..end].to_vec();
        let mut pass = Pass::new(&mut decrypt, &mut encrypt);
        let result = deframer.deframe_with(&mut piece, |buf, from, to, len| {
            pass.apply_moving(buf, from, to, len)
        });
        match result {
            Ok(len) => payload.extend_from_slice(&piece[..len]),
            Err(error) => return (payload, Some(error)),
        }
        start = end;
    }
    (payload, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let whole = run(stream, &[]);
    if whole.1.is_some() {
        assert!(
            whole.0.is_empty(),
            "one piece: payload returned with an error"
        );
    }

    let mut rng = XorShift(u64::from(u16::from_le_bytes([a, b])) << 32 | stream.len() as u64);
    let count = usize::from(a % 24);
    let mut cuts: Vec<usize> = (0..count)
        .map(|_| match rng.next_u64() % 4 {
            // Mostly near record boundaries and inside headers, where state carries over.
            0 => rng.upto(stream.len().min(16)),
            _ => rng.upto(stream.len()),
        })
        .collect();
    cuts.sort_unstable();
    let pieces = run(stream, &cuts);

    assert_eq!(whole.1, pieces.1, "the error differs with cuts {cuts:?}");
    if whole.1.is_none() {
        assert_eq!(whole.0, pieces.0, "the payload differs with cuts {cuts:?}");
    } else {
        // Bytes returned before the error are a prefix of what a clean stream would carry.
        assert!(pieces.0.len() <= stream.len());
    }

    // The relay's way, in the same pieces: the same payload, deciphered by the portable pass.
    let relayed = run_relay(stream, &cuts);
    assert_eq!(
        relayed.1, pieces.1,
        "relay: the error differs with cuts {cuts:?}"
    );
    if pieces.1.is_none() {
        let mut expected = pieces.0.clone();
        let (mut decrypt, mut encrypt) = states();
        Pass::portable(&mut decrypt, &mut encrypt).apply(&mut expected);
        assert!(
            relayed.0 == expected,
            "relay: the payload differs with cuts {cuts:?}"
        );
    }

    // Every byte at once, one by one: the same result.
    if stream.len() <= 4096 {
        let singles: Vec<usize> = (1..stream.len()).collect();
        let one_by_one = run(stream, &singles);
        assert_eq!(whole.1, one_by_one.1, "byte by byte: the error differs");
        if whole.1.is_none() {
            assert_eq!(whole.0, one_by_one.0, "byte by byte: the payload differs");
        }
    }
});
