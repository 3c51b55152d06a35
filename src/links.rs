//! What a user shares: the tg:// and t.me links for each address clients dial, and on request
//! the tg:// link as a QR code. `feint access` prints them, and `feint run` once its listeners
//! are bound. Links never name an address that no client can dial, such as loopback or 0.0.0.0.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::qr::{self, Palette};
use crate::secret::{self, Secret};
use crate::settings::PublicAddress;

/// What `feint access` and `feint run` say when they have no address to put in links.
pub const NO_PUBLIC_HINT: &str = "pass --public ADDR[:PORT] with this server's public address \
     to print links; feint never asks a third party for it";

/// A host and port that links carry; an IPv6 host is written without brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// False for addresses that name no machine a client elsewhere could reach: unspecified
/// (0.0.0.0, ::), loopback, multicast and the IPv4 broadcast address.
pub fn is_dialable(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast)
}

/// Where links point: every `--public` address, its port defaulting to `default_port`, or
/// without any, every listener address a client could dial.
pub fn endpoints(
    public: &[PublicAddress],
    default_port: u16,
    bound: &[SocketAddr],
) -> Vec<Endpoint> {
    if !public.is_empty() {
        return public
            .iter()
            .map(|address| Endpoint {
                host: address.host.clone(),
                port: address.port.unwrap_or(default_port),
            })
            .collect();
    }
    bound
        .iter()
        .filter(|address| is_dialable(address.ip()))
        .map(|address| Endpoint {
            host: address.ip().to_string(),
            port: address.port(),
        })
        .collect()
}

/// Writes both links for each endpoint, each pair followed by the tg:// link's QR code when
/// `qr_code` says how to draw one; or [`NO_PUBLIC_HINT`] when there is no endpoint.
pub fn write(
    out: &mut impl Write,
    secret: &Secret,
    endpoints: &[Endpoint],
    qr_code: Option<Palette>,
) -> io::Result<()> {
    if endpoints.is_empty() {
        writeln!(out, "{NO_PUBLIC_HINT}")?;
    }
    for endpoint in endpoints {
        let [tg, tme] = secret::links(secret, &endpoint.host, endpoint.port);
        writeln!(out, "{tg}\n{tme}")?;
        if let Some(palette) = qr_code {
            match qr::render(&tg, palette) {
                Some(drawing) => write!(out, "{drawing}")?,
                None => writeln!(out, "(the link is too long for a QR code)")?,
            }
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(host: &str, port: Option<u16>) -> PublicAddress {
        PublicAddress {
            host: host.into(),
            port,
        }
    }

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn public_addresses_take_the_default_port_when_they_have_none() {
        let bound = ["127.0.0.1:8443".parse().unwrap()];
        let addresses = [
            public("203.0.113.7", None),
            public("2001:db8::1", Some(443)),
        ];
        assert_eq!(
            endpoints(&addresses, 8443, &bound),
            [endpoint("203.0.113.7", 8443), endpoint("2001:db8::1", 443)]
        );
    }

    #[test]
    fn without_public_only_dialable_listeners_get_links() {
        let bound: Vec<SocketAddr> = ["0.0.0.0:443", "127.0.0.1:1", "[::]:443", "[::1]:2"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert!(endpoints(&[], 443, &bound).is_empty());
        let bound = [
            "192.0.2.1:443".parse().unwrap(),
            "[::1]:443".parse().unwrap(),
        ];
        assert_eq!(endpoints(&[], 443, &bound), [endpoint("192.0.2.1", 443)]);
    }

    #[test]
    fn no_endpoint_prints_the_hint_and_no_link() {
        let secret = Secret::with_domain([7; secret::KEY_LEN], "example.com").unwrap();
        let mut out = Vec::new();
        write(&mut out, &secret, &[], Some(Palette::InkIsLight)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{NO_PUBLIC_HINT}\n")
        );
    }

    #[test]
    fn every_endpoint_gets_both_links() {
        let secret = Secret::with_domain([7; secret::KEY_LEN], "example.com").unwrap();
        let mut out = Vec::new();
        let endpoints = [endpoint("203.0.113.7", 443), endpoint("2001:db8::1", 8443)];
        write(&mut out, &secret, &endpoints, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("tg://proxy?server=203.0.113.7&port=443&"));
        assert!(lines[1].starts_with("https://t.me/proxy?server=203.0.113.7&port=443&"));
        assert!(lines[2].starts_with("tg://proxy?server=2001%3Adb8%3A%3A1&port=8443&"));
    }
}
