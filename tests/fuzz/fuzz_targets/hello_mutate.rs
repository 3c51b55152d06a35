//! (d) Structure-aware: starts from a real TDLib hello (fixtures) or the 517-byte §10 hello, cuts
//! it into fields, mutates extensions, names, suites and lengths as the input says, rebuilds it
//! (optionally with one length field off), optionally re-signs it, optionally splits it into
//! several `16 03 01` records and appends trailing bytes, then runs assemble + verify.
//!
//! Oracles: a split hello assembles to exactly the single record; a re-signed hello never fails
//! the digest; the untouched, re-signed seed verifies.
#![no_main]

use feint::proto::hello::{Assembly, MAX_ASSEMBLED_LEN, MAX_HELLO_FRAGMENTS};
use feint_fuzz::{
    assemble_checked, reference_hello_unsigned, sign, verify_checked, verify_resigned, Input,
    CAPTURES, REFERENCE_DOMAIN, TDLIB_DOMAIN, TDLIB_HELLO_LEN,
};
use libfuzzer_sys::fuzz_target;

/// A hello cut into its fields (RFC 8446 §4.1.2); serialisation recomputes every length.
#[derive(Clone)]
struct Hello {
    record_version: [u8; 2],
    legacy_version: [u8; 2],
    session_id: Vec<u8>,
    suites: Vec<u8>,
    compression: Vec<u8>,
    extensions: Vec<(u16, Vec<u8>)>,
}

impl Hello {
    /// Cuts a well-formed seed; the seeds are known good, so this may index freely.
    fn parse(record: &[u8]) -> Self {
        let mut at = 43;
        let sid_len = usize::from(record[at]);
        let session_id = record[at + 1..at + 1 + sid_len].to_vec();
        at += 1 + sid_len;
        let suites_len = usize::from(u16::from_be_bytes([record[at], record[at + 1]]));
        let suites = record[at + 2..at + 2 + suites_len].to_vec();
        at += 2 + suites_len;
        let compression_len = usize::from(record[at]);
        let compression = record[at + 1..at + 1 + compression_len].to_vec();
        at += 1 + compression_len;
        let extensions_len = usize::from(u16::from_be_bytes([record[at], record[at + 1]]));
        at += 2;
        let end = at + extensions_len;
        assert_eq!(end, record.len());
        let mut extensions = Vec::new();
        while at < end {
            let kind = u16::from_be_bytes([record[at], record[at + 1]]);
            let len = usize::from(u16::from_be_bytes([record[at + 2], record[at + 3]]));
            extensions.push((kind, record[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
        }
        Hello {
            record_version: [record[1], record[2]],
            legacy_version: [record[9], record[10]],
            session_id,
            suites,
            compression,
            extensions,
        }
    }

    /// The record with zero random, and the offset and width of each length field.
    fn serialise(&self) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut fields = Vec::new();
        let mut r = vec![0x16, self.record_version[0], self.record_version[1], 0, 0];
        r.extend([0x01, 0, 0, 0]);
        r.extend(self.legacy_version);
        r.extend([0; 32]);
        fields.push((r.len(), 1));
        r.push(self.session_id.len() as u8);
        r.extend(&self.session_id);
        fields.push((r.len(), 2));
        r.extend((self.suites.len() as u16).to_be_bytes());
        r.extend(&self.suites);
        fields.push((r.len(), 1));
        r.push(self.compression.len() as u8);
        r.extend(&self.compression);
        let extensions_at = r.len();
        fields.push((extensions_at, 2));
        r.extend([0, 0]);
        for (kind, body) in &self.extensions {
            r.extend(kind.to_be_bytes());
            fields.push((r.len(), 2));
            r.extend((body.len() as u16).to_be_bytes());
            r.extend(body);
        }
        let extensions_len = (r.len() - extensions_at - 2) as u16;
        r[extensions_at..extensions_at + 2].copy_from_slice(&extensions_len.to_be_bytes());
        let handshake_len = (r.len() - 9) as u32;
        r[6..9].copy_from_slice(&handshake_len.to_be_bytes()[1..]);
        let record_len = (r.len() - 5) as u16;
        r[3..5].copy_from_slice(&record_len.to_be_bytes());
        fields.push((3, 2));
        fields.push((6, 3));
        (r, fields)
    }
}

/// An SNI extension body listing `names` as (name_type, name).
fn server_name_body(names: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend((name.len() as u16).to_be_bytes());
        list.extend(name);
    }
    let mut body = (list.len() as u16).to_be_bytes().to_vec();
    body.extend(list);
    body
}

fn mutate(hello: &mut Hello, input: &mut Input, domain: &[u8]) {
    let ops = input.u8() % 8;
    for _ in 0..ops {
        let count = hello.extensions.len();
        let pick = |input: &mut Input| usize::from(input.u8()) % count.max(1);
        match input.u8() % 14 {
            0 if count > 0 => {
                let n = pick(input);
                hello.extensions[n].0 = input.u16();
            }
            1 if count > 0 => {
                let n = pick(input);
                let body = &mut hello.extensions[n].1;
                let at = usize::from(input.u16());
                let value = input.u8();
                let at = at % body.len().max(1);
                if let Some(byte) = body.get_mut(at) {
                    *byte = value;
                }
            }
            2 if count > 0 => {
                let n = pick(input);
                let len = usize::from(input.u16());
                hello.extensions[n].1.truncate(len);
            }
            3 if count > 0 => {
                let n = pick(input);
                let len = usize::from(input.u8());
                let extra = input.bytes(len).to_vec();
                hello.extensions[n].1.extend(extra);
            }
            4 if count > 0 => {
                let n = pick(input);
                hello.extensions.remove(n);
            }
            5 if count > 0 => {
                let n = pick(input);
                let copy = hello.extensions[n].clone();
                let at = pick(input);
                hello
                    .extensions
                    .insert(at.min(hello.extensions.len()), copy);
            }
            6 if count > 1 => {
                let (a, b) = (pick(input), pick(input));
                hello.extensions.swap(a, b);
            }
            7 => {
                // A server_name with up to three names, each the domain or a variant of it.
                let mut names = Vec::new();
                for _ in 0..1 + input.u8() % 3 {
                    let kind = if input.u8() < 64 { input.u8() } else { 0 };
                    let mut name = domain.to_vec();
                    match input.u8() % 5 {
                        0 => {}
                        1 => name.truncate(usize::from(input.u8())),
                        2 => name.push(input.u8()),
                        3 => {
                            let at = usize::from(input.u8()) % name.len();
                            name[at] ^= input.u8() | 1;
                        }
                        _ => {
                            let len = usize::from(input.u8());
                            name = input.bytes(len).to_vec();
                        }
                    }
                    names.push((kind, name));
                }
                let body = server_name_body(&names);
                match hello.extensions.iter_mut().find(|(kind, _)| *kind == 0) {
                    Some(sni) => sni.1 = body,
                    None => hello.extensions.push((0, body)),
                }
            }
            8 => {
                let len = usize::from(input.u8());
                hello.suites = input.bytes(len).to_vec();
            }
            9 => {
                let len = usize::from(input.u8() % 40);
                hello.session_id = input.bytes(len).to_vec();
            }
            10 => {
                let len = usize::from(input.u8() % 4);
                hello.compression = input.bytes(len).to_vec();
            }
            11 => {
                // A raw SNI body.
                let len = usize::from(input.u8());
                let body = input.bytes(len).to_vec();
                let at = pick(input);
                hello.extensions.insert(at.min(count), (0, body));
            }
            12 => {
                // Padding, to push the size around (up to and past 16384).
                let len = usize::from(input.u16()) % 17000;
                hello.extensions.push((0x0015, vec![0; len]));
            }
            _ => {
                hello.record_version = [0x03, input.u8() % 4];
                hello.legacy_version = [input.u8(), input.u8()];
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (seed, domain) = match input.u8() % 4 {
        n @ 0..=2 => (
            CAPTURES[usize::from(n)][..TDLIB_HELLO_LEN].to_vec(),
            TDLIB_DOMAIN,
        ),
        _ => (reference_hello_unsigned(), REFERENCE_DOMAIN),
    };
    let flags = input.u8();
    let timestamp = input.u32();
    let now = u64::from(timestamp)
        .wrapping_add(u64::from(input.u8() % 8))
        .wrapping_sub(4);

    let mut hello = Hello::parse(&seed);
    mutate(&mut hello, &mut input, domain);
    let (mut record, fields) = hello.serialise();

    // One length field off by a small delta.
    let corrupt = flags & 1 != 0 && !fields.is_empty();
    if corrupt {
        let (at, width) = &fields[usize::from(input.u8()) % fields.len()];
        let delta = i32::from(input.u8() as i8);
        let field = &mut record[*at..*at + *width];
        let value = field.iter().fold(0i32, |acc, &b| (acc << 8) | i32::from(b));
        let bytes = value.wrapping_add(delta).to_be_bytes();
        field.copy_from_slice(&bytes[4 - *width..]);
    }
    let fragment = flags & 4 != 0 && record.len() > 5;
    if fragment {
        // A fragmented hello is signed over the rebuilt 16 03 01 header (docs/PROTOCOL.md §2.6).
        record[1..3].copy_from_slice(&[0x03, 0x01]);
    }
    if flags & 2 != 0 {
        sign(&mut record, &feint_fuzz::KEY, timestamp);
    }

    // On the wire: the record as is, or its handshake bytes in several records.
    let mut wire = Vec::new();
    let mut pieces = 1;
    if fragment {
        let handshake = &record[5..];
        let count = 1 + usize::from(input.u8()) % (MAX_HELLO_FRAGMENTS + 2);
        let mut cuts: Vec<usize> = (1..count)
            .map(|_| 1 + usize::from(input.u16()) % handshake.len().max(1))
            .filter(|&cut| cut < handshake.len())
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut start = 0;
        for end in cuts.into_iter().chain([handshake.len()]) {
            let piece = &handshake[start..end];
            wire.extend([0x16, 0x03, 0x01]);
            wire.extend((piece.len() as u16).to_be_bytes());
            wire.extend(piece);
            start = end;
        }
        pieces = wire.len().saturating_sub(handshake.len()) / 5;
    } else {
        wire.extend(&record);
    }
    let trailing = input.bytes(usize::from(flags >> 5)).to_vec();
    wire.extend(&trailing);

    let mut out = Box::new([0u8; MAX_ASSEMBLED_LEN]);
    let assembled = assemble_checked(&wire, &mut out);
    let mut single_out = Box::new([0u8; MAX_ASSEMBLED_LEN]);
    let single = assemble_checked(&record, &mut single_out);

    if fragment && pieces <= MAX_HELLO_FRAGMENTS {
        if let Assembly::Complete { len, .. } = single {
            // The rebuilt single record is what the client signed.
            match assembled {
                Assembly::Complete {
                    consumed,
                    len: joined,
                } => {
                    assert_eq!(consumed, wire.len() - trailing.len(), "{pieces} pieces");
                    assert_eq!(
                        &out[..joined],
                        &single_out[..len],
                        "{pieces} pieces rebuilt wrong"
                    );
                }
                other => panic!("{pieces} pieces of a good hello gave {other:?}"),
            }
        }
    }
    if !fragment {
        match (single, assembled) {
            (Assembly::Complete { .. }, Assembly::Complete { consumed, .. }) => {
                assert_eq!(consumed, record.len(), "trailing bytes consumed");
            }
            (Assembly::Complete { .. }, other) => panic!("trailing bytes changed {other:?}"),
            _ => {}
        }
    }

    if let Assembly::Complete { len, .. } = assembled {
        let signed = flags & 2 != 0;
        let result = verify_checked(&mut out[..len], domain, now);
        if signed && !corrupt {
            assert_ne!(result, Err(feint::proto::hello::Rejection::BadDigest));
        }
        let resigned = verify_resigned(&out[..len], domain, timestamp, u64::from(timestamp));
        if flags & 0x1f == 0 && data.len() <= 7 {
            // The seed, untouched and re-signed, must verify.
            resigned.expect("the seed hello must verify");
        }
    }
});
