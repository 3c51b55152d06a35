//! The front checks: its answer to a TDLib-shaped hello (reachable, TLS 1.3, group, cipher,
//! records), and the secret's domain in DNS against `--public`.

use std::net::IpAddr;

use super::exchange::{list_ips, resolve};
use super::Finding;
use crate::proto::front_flight::{FrontProfile, GROUP_X25519, GROUP_X25519_MLKEM768};
use crate::proxy::probe_front;
use crate::settings::Config;

/// Front addresses probed before giving up.
const MAX_PROBED: usize = 4;

pub fn check(config: &Config) -> Vec<Finding> {
    vec![answer(config), dns(config)]
}

fn answer(config: &Config) -> Finding {
    let (host, port) = (config.front.host.as_str(), config.front.port);
    let addresses = match resolve(host, port) {
        Ok(addresses) => addresses,
        Err(e) => {
            return Finding::fail(
                "front",
                format!("cannot resolve the front {host}: {e}"),
                "check the name, or pass --front HOST[:PORT]",
            )
        }
    };
    let all = list_ips(&addresses);
    let mut errors = Vec::new();
    for &address in addresses.iter().take(MAX_PROBED) {
        match probe_front(address, config.secret.domain.as_bytes()) {
            Ok(profile) => {
                let mut finding = format!("{address} answers {}", describe(&profile));
                if host.parse::<IpAddr>().is_err() {
                    finding.push_str(&format!("; {host} is {all}"));
                }
                if profile.record_count > 1 {
                    return Finding::warn(
                        "front",
                        finding,
                        "feint answers clients in one record: a passive observer comparing \
                         record counts can tell; a front that sends its flight in one record \
                         hides better",
                    );
                }
                return Finding::ok("front", finding);
            }
            Err(e) => errors.push(format!("{address}: {e}")),
        }
    }
    Finding::fail(
        "front",
        format!(
            "no TLS 1.3 answer from {host}:{port}: {}",
            errors.join("; ")
        ),
        "probes must see a real TLS 1.3 site: pass --front HOST[:PORT] of one that serves the \
         secret's domain, or make a secret for another domain",
    )
}

/// `TLS 1.3, x25519mlkem768, TLS_AES_128_GCM_SHA256, flight in 1 record (4312 bytes)`.
fn describe(profile: &FrontProfile) -> String {
    let group = match profile.group {
        GROUP_X25519 => "x25519".to_owned(),
        GROUP_X25519_MLKEM768 => "x25519mlkem768".to_owned(),
        other => format!("group {other:04x}"),
    };
    let cipher = match profile.cipher_suite {
        [0x13, 0x01] => "TLS_AES_128_GCM_SHA256".to_owned(),
        [0x13, 0x02] => "TLS_AES_256_GCM_SHA384".to_owned(),
        [0x13, 0x03] => "TLS_CHACHA20_POLY1305_SHA256".to_owned(),
        [high, low] => format!("cipher {high:02x}{low:02x}"),
    };
    let records = match profile.record_count {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    };
    format!(
        "TLS 1.3, {group}, {cipher}, flight in {records} ({} bytes)",
        profile.flight_len
    )
}

/// Whether the secret's domain resolves to an address clients dial.
fn dns(config: &Config) -> Finding {
    let domain = config.secret.domain.as_str();
    let domain_ips = match resolve(domain, 443) {
        Ok(addresses) => addresses,
        Err(e) => {
            return Finding::warn(
                "dns",
                format!("{domain} does not resolve: {e}"),
                "a censor who looks up the SNI finds nothing: prefer a domain that resolves \
                 to this server",
            )
        }
    };
    if config.public.is_empty() {
        return Finding::warn(
            "dns",
            format!(
                "{domain} is {}; without --public doctor cannot tell where clients dial",
                list_ips(&domain_ips)
            ),
            "pass --public with this server's address, as to `feint run`",
        );
    }
    let mut public_ips = Vec::new();
    for public in &config.public {
        match resolve(&public.host, 443) {
            Ok(addresses) => public_ips.extend(addresses),
            Err(e) => {
                return Finding::warn(
                    "dns",
                    format!("--public {} does not resolve: {e}", public.host),
                    "clients could not dial it either: fix the name or give the address",
                )
            }
        }
    }
    let shared: Vec<IpAddr> = domain_ips
        .iter()
        .map(|a| a.ip())
        .filter(|ip| public_ips.iter().any(|p| p.ip() == *ip))
        .collect();
    let finding = format!(
        "{domain} is {}; clients dial {}",
        list_ips(&domain_ips),
        list_ips(&public_ips)
    );
    if shared.is_empty() {
        Finding::warn(
            "dns",
            finding,
            "a censor who resolves the SNI sees another server than the one clients connect \
             to: use a domain whose DNS points here, if you have one",
        )
    } else {
        Finding::ok("dns", finding)
    }
}
