//! Telegram DC addresses for direct mode (docs/PROTOCOL.md §6). Plain data.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Production addresses of a DC, all on port 443.
pub struct DcAddresses {
    pub v4: &'static [Ipv4Addr],
    pub v6: &'static [Ipv6Addr],
}

pub const DC_PORT: u16 = 443;

/// The CDN DC id; clients send it as 203 or, for media, -203 (docs/PROTOCOL.md §5.4).
pub const CDN_DC: u16 = 203;

static PRODUCTION: [DcAddresses; 5] = [
    DcAddresses {
        v4: &[Ipv4Addr::new(149, 154, 175, 50)],
        v6: &[Ipv6Addr::new(0x2001, 0xb28, 0xf23d, 0xf001, 0, 0, 0, 0xa)],
    },
    DcAddresses {
        // TDLib and mtg list a second IPv4 address for DC 2.
        v4: &[
            Ipv4Addr::new(149, 154, 167, 51),
            Ipv4Addr::new(95, 161, 76, 100),
        ],
        v6: &[Ipv6Addr::new(0x2001, 0x67c, 0x4e8, 0xf002, 0, 0, 0, 0xa)],
    },
    DcAddresses {
        v4: &[Ipv4Addr::new(149, 154, 175, 100)],
        v6: &[Ipv6Addr::new(0x2001, 0xb28, 0xf23d, 0xf003, 0, 0, 0, 0xa)],
    },
    DcAddresses {
        v4: &[Ipv4Addr::new(149, 154, 167, 91)],
        v6: &[Ipv6Addr::new(0x2001, 0x67c, 0x4e8, 0xf004, 0, 0, 0, 0xa)],
    },
    DcAddresses {
        v4: &[Ipv4Addr::new(149, 154, 171, 5)],
        v6: &[Ipv6Addr::new(0x2001, 0xb28, 0xf23f, 0xf005, 0, 0, 0, 0xa)],
    },
];

static CDN: DcAddresses = DcAddresses {
    v4: &[Ipv4Addr::new(91, 105, 192, 100)],
    // Only mtg lists an IPv6 address for the CDN.
    v6: &[Ipv6Addr::new(
        0x2a0a, 0xf280, 0x203, 0xa, 0x5000, 0, 0, 0x100,
    )],
};

/// Maps the signed DC id from the client's obfs2 frame to production addresses:
/// |id| for 1..=5, 203 and -203 to the CDN entry, None for anything else (0, test DCs 10 00x).
pub fn addresses(dc: i16) -> Option<&'static DcAddresses> {
    // A negative id asks for a media-only connection to the same DC.
    match dc.unsigned_abs() {
        id @ 1..=5 => PRODUCTION.get(usize::from(id) - 1),
        CDN_DC => Some(&CDN),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_v4(dc: i16) -> Option<Ipv4Addr> {
        addresses(dc).and_then(|a| a.v4.first().copied())
    }

    #[test]
    fn maps_each_production_dc_and_its_media_twin() {
        let expected = [
            "149.154.175.50",
            "149.154.167.51",
            "149.154.175.100",
            "149.154.167.91",
            "149.154.171.5",
        ];
        for (id, address) in (1i16..=5).zip(expected) {
            assert_eq!(first_v4(id).unwrap().to_string(), address);
            assert_eq!(first_v4(-id), first_v4(id));
            assert_eq!(addresses(id).unwrap().v6.len(), 1);
        }
    }

    #[test]
    fn dc_2_has_both_ipv4_addresses() {
        let v4 = addresses(2).unwrap().v4;
        assert_eq!(v4.len(), 2);
        assert_eq!(v4[1].to_string(), "95.161.76.100");
        assert_eq!(
            addresses(2).unwrap().v6[0].to_string(),
            "2001:67c:4e8:f002::a"
        );
    }

    #[test]
    fn maps_cdn_ids_in_both_signs() {
        assert_eq!(first_v4(203).unwrap().to_string(), "91.105.192.100");
        assert_eq!(first_v4(-203), first_v4(203));
        assert_eq!(
            addresses(203).unwrap().v6[0].to_string(),
            "2a0a:f280:203:a:5000::100"
        );
    }

    #[test]
    fn refuses_zero_test_and_unknown_dcs() {
        for id in [0, 6, -6, 10001, -10002, 10203, 202, i16::MIN, i16::MAX] {
            assert!(addresses(id).is_none(), "{id}");
        }
    }
}
