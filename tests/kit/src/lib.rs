//! Black-box test kit for feint: an independent FakeTLS + obfuscated2 client, a fake DC, a
//! recording fronting target, and launchers for nginx, HAProxy, Dante and the feint binary.
//! Written from `docs/PROTOCOL.md` alone, never from feint's `src/proto`.

pub mod client;
pub mod crypto;
pub mod daemon;
pub mod dante;
pub mod dc;
pub mod feint;
pub mod front;
pub mod haproxy;
pub mod hello;
pub mod nginx;
pub mod obfs2;
pub mod qr;
pub mod record;
pub mod reply;
pub mod secret;
pub mod tempdir;
pub mod tls;
pub mod wire;

pub use client::{ClientOptions, FakeTlsClient};
pub use dante::Dante;
pub use dc::{DcMode, FakeDc};
pub use feint::Feint;
pub use front::RecordingFront;
pub use haproxy::Haproxy;
pub use hello::{HelloShape, HelloSpec};
pub use nginx::Nginx;
pub use secret::Secret;

use std::time::{SystemTime, UNIX_EPOCH};

/// The current unix time in seconds, as a FakeTLS hello carries it.
pub fn unix_now() -> u32 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u32::try_from(since.as_secs()).expect("unix time fits in 32 bits until 2106")
}
