//! `--allow` and `--block`: files of CIDR lines turned into sorted, merged address ranges, built
//! once per load and looked up by binary search without allocating. Loading reads files; the
//! caller decides whether a bad file stops the start or keeps the old lists.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::stats::plural;

/// Ranges one file may hold, after merging: 1M ranges are 32 MiB of IPv6 or 8 MiB of IPv4.
pub const MAX_RANGES: usize = 1 << 20;
/// Largest file read; FireHOL's biggest sets are a few MiB.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// What the lists say about a client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// In `--block`: fronted, never reset, so it sees only the website.
    Blocked,
    /// `--allow` is given and the address is not in it: fronted too.
    NotAllowed,
}

/// Why a list file was not loaded.
#[derive(Debug)]
pub struct ListError {
    pub path: PathBuf,
    /// 1-based; 0 when the fault is the whole file (unreadable, too big).
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path.display(), self.reason),
            line => write!(f, "{} line {line}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for ListError {}

/// Sorted, disjoint, non-adjacent inclusive ranges of IPv4 and IPv6 addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl AddressSet {
    /// Parses list text: one `ADDR` or `ADDR/PREFIX` per line, `#` starts a comment, blank lines
    /// are skipped. A bare address is a /32 or /128; host bits under the prefix are ignored.
    /// Fails with the 1-based line number and the reason.
    pub fn parse(text: &str) -> Result<AddressSet, (usize, String)> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            if v4.len() + v6.len() >= MAX_RANGES {
                return Err((number, format!("more than {MAX_RANGES} entries")));
            }
            match parse_entry(entry).map_err(|reason| (number, reason))? {
                Range::V4(start, end) => v4.push((start, end)),
                Range::V6(start, end) => v6.push((start, end)),
            }
        }
        Ok(AddressSet {
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// Reads and parses the file at `path`, refusing files over `MAX_FILE_BYTES`.
    pub fn load(path: &Path) -> Result<AddressSet, ListError> {
        let fail = |line, reason: String| ListError {
            path: path.to_owned(),
            line,
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(0, e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(0, e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(fail(0, format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            fail(line, "not UTF-8 text".into())
        })?;
        AddressSet::parse(text).map_err(|(line, reason)| fail(line, reason))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(ip) => within(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => within(&self.v6, u128::from(ip)),
        }
    }

    /// Merged ranges held, for the log line after a load.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// An IPv4 client on a dual-stack `[::]` listener arrives as `::ffff:a.b.c.d`; lists name it
/// in IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn within<T: Ord + Copy>(ranges: &[(T, T)], address: T) -> bool {
    let after = ranges.partition_point(|&(start, _)| start <= address);
    after
        .checked_sub(1)
        .and_then(|index| ranges.get(index))
        .is_some_and(|&(_, end)| address <= end)
}

enum Range {
    V4(u32, u32),
    V6(u128, u128),
}

fn parse_entry(entry: &str) -> Result<Range, String> {
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{entry:?} is not an IP address or CIDR such as 192.0.2.0/24"))?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(text) => match text.parse::<u32>() {
            Ok(prefix) if prefix <= bits && !text.starts_with('+') => prefix,
            _ => {
                return Err(format!(
                    "{entry:?} has a prefix length other than 0 to {bits}"
                ))
            }
        },
    };
    Ok(match ip {
        IpAddr::V4(v4) => {
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            let start = u32::from(v4) & !host;
            Range::V4(start, start | host)
        }
        IpAddr::V6(v6) => {
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            let start = u128::from(v6) & !host;
            Range::V6(start, start | host)
        }
    })
}

/// Sorts and joins overlapping or adjacent ranges, then gives back the spare capacity.
fn merge<T: Ord + Copy + Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut merged: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if last.1.successor().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged.shrink_to_fit();
    merged
}

trait Successor: Sized {
    fn successor(self) -> Option<Self>;
}

impl Successor for u32 {
    fn successor(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Successor for u128 {
    fn successor(self) -> Option<u128> {
        self.checked_add(1)
    }
}

/// The allow and block lists in force, swapped whole on reload.
#[derive(Clone, Debug, Default)]
pub struct AccessLists {
    allow: Option<AddressSet>,
    block: Option<AddressSet>,
}

impl AccessLists {
    /// Loads the files given by `--allow` and `--block`; no files, no lists.
    pub fn load(allow: Option<&Path>, block: Option<&Path>) -> Result<AccessLists, ListError> {
        Ok(AccessLists {
            allow: allow.map(AddressSet::load).transpose()?,
            block: block.map(AddressSet::load).transpose()?,
        })
    }

    /// The block list wins over the allow list.
    pub fn verdict(&self, ip: IpAddr) -> Verdict {
        if self.block.as_ref().is_some_and(|block| block.contains(ip)) {
            return Verdict::Blocked;
        }
        match &self.allow {
            Some(allow) if !allow.contains(ip) => Verdict::NotAllowed,
            _ => Verdict::Allowed,
        }
    }

    /// `allowing N ranges, blocking M ranges`, for the log line after a load; None with no lists.
    pub fn describe(&self) -> Option<String> {
        let ranges = |n: usize| plural(n as u64, "range");
        match (&self.allow, &self.block) {
            (None, None) => None,
            (Some(allow), None) => Some(format!("allowing {}", ranges(allow.ranges()))),
            (None, Some(block)) => Some(format!("blocking {}", ranges(block.ranges()))),
            (Some(allow), Some(block)) => Some(format!(
                "allowing {}, blocking {}",
                ranges(allow.ranges()),
                ranges(block.ranges())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> AddressSet {
        AddressSet::parse(text).expect("the list parses")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn cidrs_cover_exactly_their_addresses() {
        let list = set("192.0.2.0/24\n2001:db8::/32\n198.51.100.7\n::1\n");
        for inside in [
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.7",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::1",
        ] {
            assert!(list.contains(ip(inside)), "{inside}");
        }
        for outside in [
            "192.0.1.255",
            "192.0.3.0",
            "198.51.100.6",
            "198.51.100.8",
            "2001:db9::",
            "::2",
        ] {
            assert!(!list.contains(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn ipv4_mapped_clients_match_ipv4_entries() {
        let list = set("203.0.113.0/24");
        assert!(list.contains(ip("::ffff:203.0.113.9")));
        assert!(!list.contains(ip("::ffff:203.0.114.9")));
    }

    #[test]
    fn comments_blank_lines_and_host_bits_are_accepted() {
        let list = set("# FireHOL header\n\n   \n10.1.2.3/8   # host bits\n\t172.16.0.0/12\r\n");
        assert!(list.contains(ip("10.255.0.1")));
        assert!(list.contains(ip("172.31.255.255")));
        assert_eq!(list.ranges(), 2);
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let list = set("10.0.0.0/25\n10.0.0.128/25\n10.0.0.0/8\n11.0.0.0/8\n0.0.0.0/0\n::/0\n");
        assert_eq!(list.ranges(), 2);
        assert!(list.contains(ip("255.255.255.255")));
        assert!(list.contains(ip("ffff::1")));
        let apart = set("10.0.0.0/24\n10.0.2.0/24\n");
        assert_eq!(apart.ranges(), 2);
        assert!(!apart.contains(ip("10.0.1.0")));
    }

    #[test]
    fn an_empty_list_holds_nothing() {
        let list = set("# nothing\n");
        assert_eq!(list.ranges(), 0);
        assert!(!list.contains(ip("0.0.0.0")));
        assert!(!list.contains(ip("::")));
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        for (text, line, words) in [
            ("10.0.0.0/8\nexample.com\n", 2, "not an IP address"),
            ("# ok\n\n10.0.0.0/33\n", 3, "prefix length"),
            ("::/129\n", 1, "prefix length"),
            ("10.0.0.0/\n", 1, "prefix length"),
            ("10.0.0.0/+8\n", 1, "prefix length"),
            ("10.0.0.0-10.0.0.9\n", 1, "not an IP address"),
            ("10.0.0.0/8 10.0.0.1\n", 1, "prefix length"),
        ] {
            let (number, reason) = AddressSet::parse(text).expect_err(text);
            assert_eq!(number, line, "{text:?}");
            assert!(reason.contains(words), "{text:?}: {reason}");
        }
    }

    #[test]
    fn a_firehol_netset_loads_as_it_is() {
        let text = "\
#
# firehol_level1
#
# ipv4 hash:net ipset
#
0.0.0.0/8
1.10.16.0/20
223.254.0.0/16
";
        let list = set(text);
        assert!(list.contains(ip("1.10.31.255")));
        assert!(!list.contains(ip("1.10.32.0")));
    }

    #[test]
    fn block_wins_over_allow() {
        let lists = AccessLists {
            allow: Some(set("10.0.0.0/8")),
            block: Some(set("10.9.0.0/16")),
        };
        assert_eq!(lists.verdict(ip("10.1.0.1")), Verdict::Allowed);
        assert_eq!(lists.verdict(ip("10.9.0.1")), Verdict::Blocked);
        assert_eq!(lists.verdict(ip("11.0.0.1")), Verdict::NotAllowed);
        assert_eq!(AccessLists::default().verdict(ip("::1")), Verdict::Allowed);
    }

    #[test]
    fn load_names_the_file_and_refuses_binary() {
        let dir = std::env::temp_dir().join(format!("feint-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("bad.netset");
        std::fs::write(&path, b"10.0.0.0/8\n\xff\xfe\n").expect("written");
        let error = AddressSet::load(&path).expect_err("binary refused");
        assert_eq!(error.line, 2);
        assert!(error.to_string().contains("bad.netset line 2: not UTF-8"));
        let missing = AddressSet::load(&dir.join("missing")).expect_err("missing file");
        assert_eq!(missing.line, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
