//! Telegram DC addresses for direct mode (PROTOCOL.md §6). Plain data.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Production addresses of a DC, all on port 443.
pub struct DcAddresses {
    pub v4: &'static [Ipv4Addr],
    pub v6: &'static [Ipv6Addr],
}

pub const DC_PORT: u16 = 443;

/// Maps the signed DC id from the client's obfs2 frame to production addresses:
/// |id| for 1..=5, 203 and -203 to the CDN entry, None for anything else (0, test DCs 10 00x).
pub fn addresses(dc: i16) -> Option<&'static DcAddresses> {
    todo!()
}
