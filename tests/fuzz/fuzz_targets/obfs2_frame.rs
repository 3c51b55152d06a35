//! (c) `obfs2::parse_client_frame` on arbitrary 64 bytes (with the fixture key, or a key from the
//! input when 80 bytes are given), and `upstream_frame` on the same bytes. Also a round trip: the
//! same bytes taken as a client's plaintext, with the `dd` tag, encrypted as a client does
//! (docs/PROTOCOL.md §5.2), must parse back to their DC.
#![no_main]

use feint::proto::cipher::CtrState;
use feint::proto::obfs2::{self, FRAME_LEN, TAG_PADDED_INTERMEDIATE};
use feint_fuzz::KEY;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((frame, rest)) = data.split_first_chunk::<FRAME_LEN>() else {
        return;
    };
    let key = rest.first_chunk::<16>().copied().unwrap_or(KEY);
    if let Ok(mut client) = obfs2::parse_client_frame(frame, &key) {
        // The keystreams must keep running after the header.
        let mut buf = [0u8; 32];
        client.decrypt.apply(&mut buf);
        client.encrypt.apply(&mut buf);
    }

    let dc = i16::from_le_bytes([frame[60], frame[61]]);
    if let Some(upstream) = obfs2::upstream_frame(frame, dc) {
        assert_eq!(&upstream.wire[..56], &frame[..56], "plain head changed");
        assert_ne!(upstream.wire[0], 0xef);
    }

    let mut plain = *frame;
    plain[56..60].copy_from_slice(&TAG_PADDED_INTERMEDIATE);
    let secret_key: [u8; 32] = Sha256::new()
        .chain_update(&plain[8..40])
        .chain_update(key)
        .finalize()
        .into();
    let iv: [u8; 16] = plain[40..56].try_into().unwrap();
    let mut wire = plain;
    CtrState::new(secret_key, iv).apply(&mut wire);
    wire[..56].copy_from_slice(&plain[..56]);
    let parsed = obfs2::parse_client_frame(&wire, &key).expect("a client's frame must parse");
    assert_eq!(parsed.dc, dc);
});
