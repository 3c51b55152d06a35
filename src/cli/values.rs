//! Parsers of flag values: each turns one argument into a checked value or a message that
//! says what form is expected. `cli.rs` names the flag in front of the message.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::secret::Secret;

pub(super) fn parse_secret(text: &std::ffi::OsStr) -> Result<Secret, UsageError> {
    let text = text.to_str().unwrap_or("");
    Secret::parse(text).map_err(|error| UsageError(error.to_string()))
}

pub(super) fn parse_bind(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not ADDR:PORT, such as 0.0.0.0:443 or [::]:443"))
}

/// `ID=ADDR:PORT` with ID in 1..=5: the media DC -ID follows its DC, so negative ids are
/// refused rather than taken as a second route.
pub(super) fn parse_dc(text: &str) -> Result<(i16, SocketAddr), String> {
    let usage = || format!("{text:?} is not ID=ADDR:PORT, such as 2=192.0.2.10:443");
    let (id, address) = text.split_once('=').ok_or_else(usage)?;
    let id: i16 = id.parse().map_err(|_| usage())?;
    if !(1..=5).contains(&id) {
        return Err(format!(
            "DC {id} does not exist; use 1 to 5 (a route for DC N also serves media DC -N)"
        ));
    }
    let address: SocketAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP ADDR:PORT, such as 192.0.2.10:443"))?;
    if address.port() == 0 {
        return Err(format!("{address} has port 0"));
    }
    Ok((id, address))
}

pub(super) fn parse_front(text: &str) -> Result<FrontTarget, String> {
    let (host, port) = parse_host_port(text)?;
    Ok(FrontTarget {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(DEFAULT_PORT),
    })
}

pub(super) fn parse_public(text: &str) -> Result<PublicAddress, String> {
    let (host, port) = parse_host_port(text)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !links::is_dialable(ip) {
            return Err(format!(
                "{ip} is not an address a client can dial (it is unspecified, loopback, \
                 multicast or broadcast); give this server's public address"
            ));
        }
    }
    Ok(PublicAddress {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `HOST[:PORT]`: HOST is a DNS name, an IPv4 address, or an IPv6 address in brackets; the
/// port, if any, is 1..=65535. Bare IPv6 is refused because `::1:443` is itself an address, so
/// a forgotten bracket would silently change the host. IPv6 comes back without brackets.
pub(super) fn parse_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let usage = || {
        format!(
            "{text:?} is not HOST[:PORT], such as example.com:443, 192.0.2.1 or [2001:db8::1]:443"
        )
    };
    if text.contains('/') {
        return Err(format!(
            "{text:?}: give HOST[:PORT] without a scheme or path, such as example.com:443"
        ));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(usage)?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| usage())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(usage)?),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.contains(':') {
            return Err(format!(
                "{text:?}: put an IPv6 address in brackets, such as [2001:db8::1]:443"
            ));
        }
        let is_name = secret::is_dns_name(&host.to_ascii_lowercase());
        if host.parse::<Ipv4Addr>().is_err() && !is_name {
            return Err(usage());
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                return Err(format!(
                    "{text:?} is not HOST[:PORT]: {port:?} is not a port from 1 to 65535"
                ))
            }
        },
    };
    Ok((host, port))
}

pub(super) fn parse_path(text: &str) -> Result<std::path::PathBuf, String> {
    match text {
        "" => Err("the file name is empty".into()),
        _ => Ok(text.into()),
    }
}

/// `socks5://[USER:PASS@]HOST[:PORT]`. The last '@' ends the credentials and the first ':'
/// ends the user, so a password may hold both; nothing is percent-decoded. The error never
/// repeats the text, which may hold a password.
pub(super) fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let rest = text
        .strip_prefix("socks5://")
        .ok_or("not a socks5://[USER:PASS@]HOST[:PORT] URL")?;
    let (credentials, address) = match rest.rsplit_once('@') {
        None => (None, rest),
        Some((user_password, address)) => {
            let (user, password) = user_password
                .split_once(':')
                .ok_or("the credentials are not USER:PASS")?;
            // RFC 1929 carries each in a length byte and does not allow empty ones.
            for (name, field) in [("USER", user), ("PASS", password)] {
                if !(1..=255).contains(&field.len()) {
                    return Err(format!("{name} must be 1 to 255 bytes"));
                }
            }
            let credentials = UpstreamCredentials {
                user: user.to_owned(),
                password: password.to_owned(),
            };
            (Some(credentials), address)
        }
    };
    let (host, port) = parse_host_port(address)?;
    Ok(Upstream {
        host: host.to_ascii_lowercase(),
        port: port.unwrap_or(DEFAULT_UPSTREAM_PORT),
        credentials,
    })
}

pub(super) fn parse_prefer_ip(text: &str) -> Result<PreferIp, String> {
    match text {
        "prefer-ipv4" => Ok(PreferIp::PreferIpv4),
        "prefer-ipv6" => Ok(PreferIp::PreferIpv6),
        "only-ipv4" => Ok(PreferIp::OnlyIpv4),
        "only-ipv6" => Ok(PreferIp::OnlyIpv6),
        _ => Err(format!(
            "{text:?} is not prefer-ipv4, prefer-ipv6, only-ipv4 or only-ipv6"
        )),
    }
}

/// `500ms`, `10s`, `5m`, `1h` or bare seconds; more than zero and at most `MAX_DURATION`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let usage = || format!("{text:?} is not a duration such as 500ms, 10s, 5m or 1h");
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number.parse().map_err(|_| usage())?;
    let too_long = || format!("{text} is longer than 24h");
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60).ok_or_else(too_long)?),
        "h" => Duration::from_secs(number.checked_mul(60 * 60).ok_or_else(too_long)?),
        _ => return Err(usage()),
    };
    if duration.is_zero() {
        return Err(format!("{text} must be more than zero"));
    }
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// A duration of at least [`MIN_TIMEOUT`], which the timer can honour.
pub(super) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < MIN_TIMEOUT {
        return Err(format!(
            "{text} is shorter than the timer's tick; the smallest is 100ms"
        ));
    }
    Ok(duration)
}

/// A whole number of seconds: a hello carries its time in whole seconds
/// (PROTOCOL.md §2.2), so a window of 500ms would be 0s and refuse every client.
pub(super) fn parse_time_skew(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "{text} is not whole seconds, as a hello's time is; the smallest is 1s"
        ));
    }
    Ok(duration)
}

/// Bytes, or a whole number with B, KiB, MiB or GiB; from 4KiB to 1GiB.
pub(super) fn parse_size(text: &str) -> Result<usize, String> {
    let usage = || format!("{text:?} is not a size such as 65536, 64KiB, 4MiB or 1GiB");
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: usize = number.parse().map_err(|_| usage())?;
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(usage()),
    };
    let bytes = number
        .checked_mul(1 << shift)
        .filter(|&bytes| bytes <= MAX_REPLAY_CACHE_BYTES)
        .ok_or_else(|| format!("{text} is more than 1GiB"))?;
    if bytes < MIN_REPLAY_CACHE_BYTES {
        return Err(format!("{text} is less than 4KiB"));
    }
    Ok(bytes)
}

pub(super) fn parse_count(text: &str, min: usize, max: usize) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count) if (min..=max).contains(&count) => Ok(count),
        _ => Err(format!(
            "{text:?} is not a whole number from {min} to {max}"
        )),
    }
}
