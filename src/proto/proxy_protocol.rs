//! PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): reads the header a load
//! balancer puts before the client's bytes, and writes a version 2 header for the front.
//! Pure: the caller keeps the bytes and hands the front of its buffer to `parse` until it decides.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 line, CRLF included (proxy-protocol.txt §2.1: "PROXY UNKNOWN" with two
/// full IPv6 addresses and ports).
pub const MAX_V1_LEN: usize = 107;
/// The 12-byte signature that opens every version 2 header (proxy-protocol.txt §2.2).
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, and the length of the rest.
pub const V2_FIXED_LEN: usize = 16;
/// The longest version 2 header accepted: the spec's suggested 536-byte buffer, room for two
/// UNIX paths and some TLVs. Bounds how long a header may keep a connection reading.
pub const MAX_V2_LEN: usize = 536;
/// The longest header `write_v2` emits: the fixed part and two IPv6 addresses with ports.
pub const MAX_WRITTEN_LEN: usize = V2_FIXED_LEN + 36;

const V1_PREFIX: &[u8] = b"PROXY ";
/// Version 2 in the high nibble; the command in the low one.
const V2_LOCAL: u8 = 0x20;
const V2_PROXY: u8 = 0x21;
/// Family in the high nibble (1 INET, 2 INET6), transport in the low one (1 STREAM).
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
const V2_IPV4_BLOCK_LEN: usize = 12;
const V2_IPV6_BLOCK_LEN: usize = 36;

/// The addresses a header announced and how many bytes it took. Both addresses are `None` for
/// a LOCAL (v2) or UNKNOWN (v1) header, a health check by the balancer itself, and for families
/// without IP addresses: the caller then uses the connection's own peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// Header bytes at the front of the input; the client's own bytes start after them.
    pub consumed: usize,
}

/// Why the bytes are not a PROXY header. Every reason closes the connection; a variant only
/// feeds counters and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Neither "PROXY " nor the version 2 signature.
    NoSignature,
    /// No CRLF within the first 107 bytes of a version 1 line.
    LineTooLong,
    /// A version 1 line that breaks the grammar: fields, addresses or ports.
    BadLine,
    /// A version 2 header whose version nibble is not 2, or whose command is neither LOCAL nor
    /// PROXY.
    BadVersionOrCommand,
    /// A version 2 family or transport the spec does not define, or datagrams.
    UnsupportedFamily,
    /// A version 2 address block shorter than its family needs.
    ShortAddresses,
    /// A version 2 header longer than `MAX_V2_LEN`.
    TooLong,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderError::NoSignature => "no PROXY header",
            HeaderError::LineTooLong => "PROXY v1 line without CRLF in 107 bytes",
            HeaderError::BadLine => "malformed PROXY v1 line",
            HeaderError::BadVersionOrCommand => "PROXY v2 header with a bad version or command",
            HeaderError::UnsupportedFamily => "PROXY v2 header with an unsupported family",
            HeaderError::ShortAddresses => "PROXY v2 address block too short",
            HeaderError::TooLong => "PROXY v2 header longer than 536 bytes",
        })
    }
}

/// What the bytes so far say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// A header may still follow: read more and call again with all bytes so far.
    NeedMore,
    Invalid(HeaderError),
    Parsed(Header),
}

/// Reads a version 1 or 2 header from the front of `input`, the bytes received so far.
/// Never reads more than `MAX_V2_LEN` bytes, so a caller never needs more buffer than that.
pub fn parse(input: &[u8]) -> Parse {
    if is_prefix_of(input, V1_PREFIX) {
        parse_v1(input)
    } else if is_prefix_of(input, &V2_SIGNATURE) {
        parse_v2(input)
    } else {
        Parse::Invalid(HeaderError::NoSignature)
    }
}

/// True when `input` and `signature` agree on their common length: `input` is the signature,
/// starts with it, or may still grow into it.
fn is_prefix_of(input: &[u8], signature: &[u8]) -> bool {
    input.iter().zip(signature).all(|(a, b)| a == b)
}

fn parse_v1(input: &[u8]) -> Parse {
    let window = input.get(..MAX_V1_LEN).unwrap_or(input);
    let Some(newline) = window.iter().position(|&byte| byte == b'\n') else {
        return if window.len() == MAX_V1_LEN {
            Parse::Invalid(HeaderError::LineTooLong)
        } else {
            Parse::NeedMore
        };
    };
    // A lone LF does not end the line (proxy-protocol.txt §2.1); nor may a CR stand inside it.
    let Some(line) = window[..newline].strip_suffix(b"\r") else {
        return Parse::Invalid(HeaderError::BadLine);
    };
    match read_v1_line(line) {
        Some((source, destination)) => Parse::Parsed(Header {
            source,
            destination,
            consumed: newline + 1,
        }),
        None => Parse::Invalid(HeaderError::BadLine),
    }
}

type Addresses = (Option<SocketAddr>, Option<SocketAddr>);

/// `PROXY TCP4|TCP6 SRC DST SRCPORT DSTPORT`, or `PROXY UNKNOWN` with anything after it.
fn read_v1_line(line: &[u8]) -> Option<Addresses> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("PROXY ")?;
    if rest == "UNKNOWN" || rest.starts_with("UNKNOWN ") {
        return Some((None, None));
    }
    let mut fields = rest.split(' ');
    let protocol = fields.next()?;
    let source_ip = fields.next()?;
    let destination_ip = fields.next()?;
    let source_port = v1_port(fields.next()?)?;
    let destination_port = v1_port(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    let (source, destination): (IpAddr, IpAddr) = match protocol {
        "TCP4" => (
            source_ip.parse::<Ipv4Addr>().ok()?.into(),
            destination_ip.parse::<Ipv4Addr>().ok()?.into(),
        ),
        "TCP6" => (
            source_ip.parse::<Ipv6Addr>().ok()?.into(),
            destination_ip.parse::<Ipv6Addr>().ok()?.into(),
        ),
        _ => return None,
    };
    Some((
        Some(SocketAddr::new(source, source_port)),
        Some(SocketAddr::new(destination, destination_port)),
    ))
}

/// Decimal 0..=65535 without a sign or leading zeroes (proxy-protocol.txt §2.1).
fn v1_port(text: &str) -> Option<u16> {
    let digits_only = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

fn parse_v2(input: &[u8]) -> Parse {
    let Some(fixed) = input.get(..V2_FIXED_LEN) else {
        return Parse::NeedMore;
    };
    let version_command = fixed[12];
    let family_transport = fixed[13];
    let block_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let consumed = V2_FIXED_LEN + block_len;
    if consumed > MAX_V2_LEN {
        return Parse::Invalid(HeaderError::TooLong);
    }
    if version_command != V2_LOCAL && version_command != V2_PROXY {
        return Parse::Invalid(HeaderError::BadVersionOrCommand);
    }
    let family = family_transport >> 4;
    let transport = family_transport & 0x0f;
    // Families 0..=3 (UNSPEC, INET, INET6, UNIX) and transports 0..=2 (UNSPEC, STREAM, DGRAM)
    // are defined; anything else "must be rejected as invalid by receivers".
    if family > 3 || transport > 2 {
        return Parse::Invalid(HeaderError::UnsupportedFamily);
    }
    let Some(block) = input.get(V2_FIXED_LEN..consumed) else {
        return Parse::NeedMore;
    };
    let no_addresses = Parse::Parsed(Header {
        source: None,
        destination: None,
        consumed,
    });
    if version_command == V2_LOCAL {
        // The balancer's own connection: the spec says to use the real endpoints.
        return no_addresses;
    }
    if transport == 2 {
        return Parse::Invalid(HeaderError::UnsupportedFamily);
    }
    let addresses = match family_transport {
        V2_TCP4 => v2_ipv4_addresses(block),
        V2_TCP6 => v2_ipv6_addresses(block),
        // UNSPEC or UNIX: nothing to count an IP against, so the caller uses the peer address.
        _ => return no_addresses,
    };
    match addresses {
        Some((source, destination)) => Parse::Parsed(Header {
            source: Some(source),
            destination: Some(destination),
            consumed,
        }),
        None => Parse::Invalid(HeaderError::ShortAddresses),
    }
}

/// Source and destination addresses, then source and destination ports; TLVs after them are
/// skipped by the caller's `consumed`.
fn v2_ipv4_addresses(block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let block: &[u8; V2_IPV4_BLOCK_LEN] = block.get(..V2_IPV4_BLOCK_LEN)?.try_into().ok()?;
    let [s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1] = *block;
    Some((
        SocketAddr::from(([s0, s1, s2, s3], u16::from_be_bytes([sp0, sp1]))),
        SocketAddr::from(([d0, d1, d2, d3], u16::from_be_bytes([dp0, dp1]))),
    ))
}

fn v2_ipv6_addresses(block: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let block: &[u8; V2_IPV6_BLOCK_LEN] = block.get(..V2_IPV6_BLOCK_LEN)?.try_into().ok()?;
    let mut source = [0; 16];
    let mut destination = [0; 16];
    source.copy_from_slice(&block[..16]);
    destination.copy_from_slice(&block[16..32]);
    Some((
        SocketAddr::from((source, u16::from_be_bytes([block[32], block[33]]))),
        SocketAddr::from((destination, u16::from_be_bytes([block[34], block[35]]))),
    ))
}

/// Writes a version 2 PROXY header for a TCP connection from `source` to `destination` into
/// `out` and returns its length: TCP4 when both are IPv4 (IPv4-mapped IPv6 counts as IPv4),
/// else TCP6 with any IPv4 address mapped. `None` when `out` is shorter than `MAX_WRITTEN_LEN`.
pub fn write_v2(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> Option<usize> {
    let out = out.get_mut(..MAX_WRITTEN_LEN)?;
    out[..12].copy_from_slice(&V2_SIGNATURE);
    out[12] = V2_PROXY;
    let (source_ip, destination_ip) = (source.ip().to_canonical(), destination.ip().to_canonical());
    let block_len = match (source_ip, destination_ip) {
        (IpAddr::V4(source_ip), IpAddr::V4(destination_ip)) => {
            out[13] = V2_TCP4;
            out[16..20].copy_from_slice(&source_ip.octets());
            out[20..24].copy_from_slice(&destination_ip.octets());
            V2_IPV4_BLOCK_LEN
        }
        _ => {
            out[13] = V2_TCP6;
            out[16..32].copy_from_slice(&ipv6_of(source_ip).octets());
            out[32..48].copy_from_slice(&ipv6_of(destination_ip).octets());
            V2_IPV6_BLOCK_LEN
        }
    };
    let ports_at = V2_FIXED_LEN + block_len - 4;
    out[ports_at..ports_at + 2].copy_from_slice(&source.port().to_be_bytes());
    out[ports_at + 2..ports_at + 4].copy_from_slice(&destination.port().to_be_bytes());
    let block_len_field = u16::try_from(block_len).expect("an address block is 12 or 36 bytes");
    out[14..16].copy_from_slice(&block_len_field.to_be_bytes());
    Some(V2_FIXED_LEN + block_len)
}

fn ipv6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn parsed(source: &str, destination: &str, consumed: usize) -> Parse {
        Parse::Parsed(Header {
            source: Some(addr(source)),
            destination: Some(addr(destination)),
            consumed,
        })
    }

    fn unaddressed(consumed: usize) -> Parse {
        Parse::Parsed(Header {
            source: None,
            destination: None,
            consumed,
        })
    }

    /// A version 2 header with the given command and family bytes and address block.
    fn v2(version_command: u8, family_transport: u8, block: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(version_command);
        header.push(family_transport);
        header.extend_from_slice(&(block.len() as u16).to_be_bytes());
        header.extend_from_slice(block);
        header
    }

    const V2_TCP4_BLOCK: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb];

    /// Every proper prefix of a complete header must ask for more.
    fn assert_prefixes_need_more(header: &[u8]) {
        for len in 0..header.len() {
            assert_eq!(parse(&header[..len]), Parse::NeedMore, "prefix of {len}");
        }
    }

    #[test]
    fn reads_a_v1_tcp4_line_and_leaves_the_rest() {
        let input = b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\r\n\x16\x03\x01";
        assert_eq!(
            parse(input),
            parsed("192.0.2.7:50000", "10.0.0.1:443", input.len() - 3)
        );
    }

    #[test]
    fn reads_a_v1_tcp6_line() {
        let input = b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n";
        assert_eq!(
            parse(input),
            parsed("[2001:db8::7]:65535", "[::1]:0", input.len())
        );
    }

    #[test]
    fn reads_v1_unknown_with_or_without_addresses() {
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), unaddressed(15));
        let long = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                     ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(long.len(), MAX_V1_LEN);
        assert_eq!(parse(long), unaddressed(MAX_V1_LEN));
    }

    #[test]
    fn accepts_the_longest_v1_line() {
        let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                     ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), 104);
        assert!(matches!(parse(line), Parse::Parsed(header) if header.consumed == 104));
    }

    #[test]
    fn v1_waits_for_the_crlf_at_every_length() {
        assert_prefixes_need_more(b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\r\n");
    }

    #[test]
    fn rejects_a_v1_line_without_crlf_in_107_bytes() {
        let mut input = b"PROXY UNKNOWN ".to_vec();
        input.resize(MAX_V1_LEN, b'x');
        assert_eq!(parse(&input), Parse::Invalid(HeaderError::LineTooLong));
        input.extend_from_slice(b"\r\n");
        assert_eq!(parse(&input), Parse::Invalid(HeaderError::LineTooLong));
        assert_eq!(parse(&input[..MAX_V1_LEN - 1]), Parse::NeedMore);
    }

    #[test]
    fn rejects_malformed_v1_lines() {
        for line in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\r\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 50000\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443 1\r\n",
            b"PROXY TCP4  192.0.2.7 10.0.0.1 50000 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443 \r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 050000 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 00 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +5 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 443\r\n",
            b"PROXY TCP4 192.0.02.7 10.0.0.1 50000 443\r\n",
            b"PROXY TCP4 2001:db8::7 ::1 50000 443\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 50000 443\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 50000 443\r\n",
            b"PROXY tcp4 192.0.2.7 10.0.0.1 50000 443\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 \xff 10.0.0.1 50000 443\r\n",
        ] {
            assert_eq!(
                parse(line),
                Parse::Invalid(HeaderError::BadLine),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rejects_bytes_without_a_signature_as_soon_as_they_diverge() {
        assert_eq!(parse(b"\x16"), Parse::Invalid(HeaderError::NoSignature));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Parse::Invalid(HeaderError::NoSignature)
        );
        assert_eq!(parse(b"PROXZ"), Parse::Invalid(HeaderError::NoSignature));
        assert_eq!(
            parse(b"\r\n\r\n\0\r\nQUIT\r"),
            Parse::Invalid(HeaderError::NoSignature)
        );
        assert_eq!(parse(b""), Parse::NeedMore);
        assert_eq!(parse(b"PRO"), Parse::NeedMore);
        assert_eq!(parse(b"\r\n\r"), Parse::NeedMore);
    }

    #[test]
    fn reads_a_v2_tcp4_header_and_leaves_the_rest() {
        let mut input = v2(V2_PROXY, V2_TCP4, &V2_TCP4_BLOCK);
        input.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(parse(&input), parsed("192.0.2.7:50000", "10.0.0.1:443", 28));
    }

    #[test]
    fn reads_a_v2_tcp6_header() {
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        block.extend_from_slice(&[0xff, 0xff, 0x00, 0x00]);
        let input = v2(V2_PROXY, V2_TCP6, &block);
        assert_eq!(parse(&input), parsed("[2001:db8::7]:65535", "[::1]:0", 52));
    }

    #[test]
    fn skips_v2_tlvs_after_the_addresses() {
        let mut block = V2_TCP4_BLOCK.to_vec();
        // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP with 3 bytes.
        block.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0]);
        let mut input = v2(V2_PROXY, V2_TCP4, &block);
        let header_len = input.len();
        input.push(0x16);
        assert_eq!(
            parse(&input),
            parsed("192.0.2.7:50000", "10.0.0.1:443", header_len)
        );
    }

    #[test]
    fn v2_local_carries_no_addresses_whatever_its_family() {
        assert_eq!(parse(&v2(V2_LOCAL, 0x00, &[])), unaddressed(16));
        assert_eq!(
            parse(&v2(V2_LOCAL, V2_TCP4, &V2_TCP4_BLOCK)),
            unaddressed(28)
        );
        assert_eq!(parse(&v2(V2_LOCAL, V2_TCP6, &[1, 2])), unaddressed(18));
    }

    #[test]
    fn v2_unspec_and_unix_carry_no_addresses() {
        assert_eq!(parse(&v2(V2_PROXY, 0x00, &[])), unaddressed(16));
        assert_eq!(parse(&v2(V2_PROXY, 0x31, &[0; 216])), unaddressed(232));
        assert_eq!(parse(&v2(V2_PROXY, 0x10, &V2_TCP4_BLOCK)), unaddressed(28));
    }

    #[test]
    fn v2_waits_for_the_whole_header_at_every_length() {
        assert_prefixes_need_more(&v2(V2_PROXY, V2_TCP4, &V2_TCP4_BLOCK));
        let mut block = V2_TCP4_BLOCK.to_vec();
        block.extend_from_slice(&[0x04, 0x00, 0x01, 0]);
        assert_prefixes_need_more(&v2(V2_PROXY, V2_TCP4, &block));
    }

    #[test]
    fn rejects_v2_versions_and_commands_other_than_2_local_proxy() {
        for version_command in [0x00, 0x01, 0x11, 0x22, 0x2f, 0x31, 0xf1] {
            assert_eq!(
                parse(&v2(version_command, V2_TCP4, &V2_TCP4_BLOCK)),
                Parse::Invalid(HeaderError::BadVersionOrCommand),
                "{version_command:#x}"
            );
        }
    }

    #[test]
    fn rejects_undefined_v2_families_transports_and_datagrams() {
        for family_transport in [0x41, 0xf1, 0x13, 0x1f] {
            assert_eq!(
                parse(&v2(V2_PROXY, family_transport, &V2_TCP4_BLOCK)),
                Parse::Invalid(HeaderError::UnsupportedFamily),
                "{family_transport:#x}"
            );
        }
        assert_eq!(
            parse(&v2(V2_PROXY, 0x12, &V2_TCP4_BLOCK)),
            Parse::Invalid(HeaderError::UnsupportedFamily)
        );
        // The family is checked before the rest arrives, so a bad one closes at once.
        assert_eq!(
            parse(&v2(V2_PROXY, 0x41, &V2_TCP4_BLOCK)[..16]),
            Parse::Invalid(HeaderError::UnsupportedFamily)
        );
    }

    #[test]
    fn rejects_v2_address_blocks_shorter_than_their_family() {
        assert_eq!(
            parse(&v2(V2_PROXY, V2_TCP4, &V2_TCP4_BLOCK[..11])),
            Parse::Invalid(HeaderError::ShortAddresses)
        );
        assert_eq!(
            parse(&v2(V2_PROXY, V2_TCP6, &[0; 35])),
            Parse::Invalid(HeaderError::ShortAddresses)
        );
    }

    #[test]
    fn rejects_v2_headers_longer_than_536_bytes_before_reading_them() {
        let longest = v2(V2_PROXY, 0x00, &[0; MAX_V2_LEN - V2_FIXED_LEN]);
        assert_eq!(parse(&longest), unaddressed(MAX_V2_LEN));
        let too_long = v2(V2_PROXY, 0x00, &[0; MAX_V2_LEN - V2_FIXED_LEN + 1]);
        assert_eq!(parse(&too_long[..16]), Parse::Invalid(HeaderError::TooLong));
        let mut huge = too_long[..16].to_vec();
        huge[14..16].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(parse(&huge), Parse::Invalid(HeaderError::TooLong));
    }

    #[test]
    fn writes_tcp4_headers_that_parse_back() {
        let mut out = [0xaa; MAX_WRITTEN_LEN];
        let (source, destination) = (addr("192.0.2.7:50000"), addr("10.0.0.1:443"));
        let len = write_v2(source, destination, &mut out).unwrap();
        assert_eq!(&out[..len], &v2(V2_PROXY, V2_TCP4, &V2_TCP4_BLOCK)[..]);
        assert_eq!(
            parse(&out[..len]),
            parsed("192.0.2.7:50000", "10.0.0.1:443", 28)
        );
    }

    #[test]
    fn writes_tcp6_headers_that_parse_back() {
        let mut out = [0; 64];
        let (source, destination) = (addr("[2001:db8::7]:1"), addr("[::1]:443"));
        let len = write_v2(source, destination, &mut out).unwrap();
        assert_eq!(len, 52);
        assert_eq!(out[13], V2_TCP6);
        assert_eq!(
            parse(&out[..len]),
            parsed("[2001:db8::7]:1", "[::1]:443", 52)
        );
    }

    #[test]
    fn writes_mapped_addresses_as_tcp4_and_mixed_families_as_tcp6() {
        let mut out = [0; MAX_WRITTEN_LEN];
        let len = write_v2(
            addr("[::ffff:192.0.2.7]:50000"),
            addr("10.0.0.1:443"),
            &mut out,
        );
        assert_eq!(len, Some(28));
        assert_eq!(
            parse(&out[..28]),
            parsed("192.0.2.7:50000", "10.0.0.1:443", 28)
        );

        let len = write_v2(addr("192.0.2.7:50000"), addr("[::1]:443"), &mut out).unwrap();
        assert_eq!(
            parse(&out[..len]),
            parsed("[::ffff:192.0.2.7]:50000", "[::1]:443", 52)
        );
    }

    #[test]
    fn write_refuses_a_short_buffer() {
        let mut out = [0; MAX_WRITTEN_LEN - 1];
        assert_eq!(
            write_v2(addr("192.0.2.7:1"), addr("10.0.0.1:2"), &mut out),
            None
        );
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed xorshift stream: deterministic, and no dependency for randomness.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let prefixes: [&[u8]; 3] = [b"", b"PROXY ", &V2_SIGNATURE];
        for round in 0..20_000 {
            let mut input = prefixes[round % 3].to_vec();
            let len = (next() % 600) as usize;
            let alphabet: &[u8] = b"PROXY TCP46UNKNOWN0123456789abcdef.: \r\n\x00\x11\x21\x20";
            for _ in 0..len {
                let byte = next();
                input.push(if byte & 1 == 0 {
                    alphabet[(byte >> 8) as usize % alphabet.len()]
                } else {
                    (byte >> 8) as u8
                });
            }
            if let Parse::Parsed(header) = parse(&input) {
                assert!(header.consumed <= input.len() && header.consumed <= MAX_V2_LEN);
            }
        }
    }
}
