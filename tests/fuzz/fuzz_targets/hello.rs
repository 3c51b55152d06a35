//! (a) `hello::assemble` on arbitrary bytes; when Complete, `hello::verify` on the output with a
//! fixed key and domain and an arbitrary `now`.
//!
//! Input: 8 bytes of `now` (LE), then the bytes the client sent.
#![no_main]

use feint::proto::hello::{Assembly, MAX_ASSEMBLED_LEN};
use feint_fuzz::{
    assemble_checked, check_prefix, verify_checked, verify_resigned, XorShift, TDLIB_DOMAIN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (now, input) = match data.split_first_chunk::<8>() {
        Some((now, input)) => (u64::from_le_bytes(*now), input),
        None => (0, data),
    };
    let mut out = Box::new([0u8; MAX_ASSEMBLED_LEN]);
    let whole = assemble_checked(input, &mut out);

    // A few prefixes must agree with the whole.
    let mut rng = XorShift(now ^ input.len() as u64);
    check_prefix(input, input.len().saturating_sub(1), whole);
    check_prefix(input, rng.upto(input.len()), whole);
    if let Assembly::Complete { consumed, .. } = whole {
        check_prefix(input, consumed - 1, whole);
    }

    if let Assembly::Complete { len, .. } = whole {
        let record = &mut out[..len];
        let _ = verify_checked(record, TDLIB_DOMAIN, now);
        let _ = verify_checked(record, b"example.com", now);
        // And once more with a valid digest, to get past that check.
        let _ = verify_resigned(record, TDLIB_DOMAIN, now as u32, u64::from(now as u32));
    }
});
