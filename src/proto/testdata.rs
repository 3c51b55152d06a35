//! Test data shared by the proto unit tests: key16 of docs/PROTOCOL.md §10 and the real TDLib
//! captures in tests/fixtures (their README gives the secret, the times and the DCs).

/// key16 of docs/PROTOCOL.md §10, also the key of the TDLib captures.
pub const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The domain of the TDLib captures' secret.
pub const TDLIB_DOMAIN: &[u8] = b"www.example.com";

/// Every capture starts with a 1731-byte ClientHello record.
pub const TDLIB_HELLO_LEN: usize = 1731;

/// One connection's first bytes, with the time in its hello's digest and the DC in its frame.
pub struct Capture {
    pub bytes: &'static [u8],
    pub time: u32,
    pub dc: i16,
}

pub const TDLIB_CAPTURES: [Capture; 3] = [
    Capture {
        bytes: include_bytes!("../../tests/fixtures/tdlib-1.8.69/client-to-proxy-003.bin"),
        time: 1_795_691_477,
        dc: 2,
    },
    Capture {
        bytes: include_bytes!("../../tests/fixtures/tdlib-1.8.69/client-to-proxy-004.bin"),
        time: 1_795_691_477,
        dc: 3,
    },
    Capture {
        bytes: include_bytes!("../../tests/fixtures/tdlib-1.8.69/client-to-proxy-006.bin"),
        time: 1_795_691_478,
        dc: 5,
    },
];

/// nginx 1.22.1 with OpenSSL 3.0.19 and a self-signed RSA-2048 certificate, answering the
/// first TDLib capture: everything it sent before going quiet (its README says more).
pub const NGINX_FLIGHT: &[u8] =
    include_bytes!("../../tests/fixtures/nginx-1.22/flight-to-tdlib-003.bin");

/// Bytes from a hex string of even length (test input only).
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("test hex is valid"))
        .collect()
}
