//! DNS wire format for the hot path: a query parser and the few writers an answer needs.
//!
//! Hand-rolled on purpose. Parsing a query and writing an answer with `hickory-proto` or
//! `domain` was measured 40–60× more expensive than this code (research note crates.md §2.2),
//! and both allocate per message; here a query is parsed into a fixed-size [`Question`] on the
//! stack and the answer is written straight into the caller's packet buffer, with no
//! allocation at all. `hickory-proto` is still used, but only in tests, as an independent
//! oracle that must accept every message this module writes.
//!
//! What is understood: the header, exactly one question (a name that may use compression
//! pointers, followed loop-free), answer/authority records skipped over, and the EDNS0 OPT
//! record in the additional section (advertised UDP size, version, DO bit). Anything else
//! malformed is reported as [`ParseError::Respond`] with FORMERR, unknown opcodes with NOTIMP,
//! and messages that are not queries at all (too short for a header, or QR already set) as
//! [`ParseError::Drop`]. No input can make the parser panic: every index is checked.
//!
//! Writers: the header, the echoed question, an OPT record, a SOA record whose names are
//! compressed against the question, and TCP length framing.

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name in wire format (RFC 1035 §2.3.4), including the root label.
pub const MAX_NAME_LEN: usize = 255;
/// Largest reply over UDP without EDNS0.
pub const CLASSIC_UDP_LIMIT: usize = 512;
/// Largest DNS message at all (TCP framing uses a 16-bit length).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Size of the OPT record this server appends when the query carried one.
pub const OPT_RECORD_LEN: usize = 11;
/// A compression pointer to the question name, which always starts right after the header.
pub const POINTER_TO_QUESTION: [u8; 2] = [0xC0, HEADER_LEN as u8];

/// Resource record types used by the server.
pub mod record_type {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Response codes. Values above 15 need the OPT record's extended-rcode byte.
pub mod response_code {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const BADVERS: u16 = 16;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;

const OPCODE_QUERY: u8 = 0;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const FLAG_CD: u16 = 0x0010;

/// EDNS0 parameters from the query's OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// Advertised UDP payload size (values below 512 are read as 512).
    pub udp_payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query: the header fields an answer echoes, and the one question.
///
/// The name is kept twice, as spelled (for the echoed question, so 0x20 case randomisation
/// survives) and lower-cased (the lookup key). Both are uncompressed wire format.
#[derive(Clone)]
pub struct Question {
    pub id: u16,
    pub opcode: u8,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    name_len: u8,
    label_count: u8,
    spelled: [u8; MAX_NAME_LEN],
    lower: [u8; MAX_NAME_LEN],
    /// Offset of each label's length byte within the name; the root label is not listed.
    label_starts: [u8; 128],
}

impl std::fmt::Debug for Question {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Question")
            .field("id", &self.id)
            .field("name", &display_name(self.name_spelled()))
            .field("qtype", &self.qtype)
            .field("qclass", &self.qclass)
            .field("edns", &self.edns)
            .finish()
    }
}

impl Question {
    /// The question name as the client spelled it (wire format, uncompressed).
    pub fn name_spelled(&self) -> &[u8] {
        &self.spelled[..self.name_len as usize]
    }

    /// The lower-cased question name (wire format, uncompressed): the lookup key.
    pub fn name_lower(&self) -> &[u8] {
        &self.lower[..self.name_len as usize]
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        self.label_count as usize
    }

    /// Byte offset, within the name, where label `index` (0 = leftmost) starts.
    pub fn label_start(&self, index: usize) -> usize {
        if index >= self.label_count as usize {
            self.name_len as usize - 1
        } else {
            self.label_starts[index] as usize
        }
    }

    /// Whether `offset` (within the name) is where a label, or the root, starts.
    pub fn is_label_start(&self, offset: usize) -> bool {
        offset + 1 == self.name_len as usize
            || self.label_starts[..self.label_count as usize].contains(&(offset as u8))
    }

    /// Label `index` (0 = leftmost), lower-cased, without its length byte.
    pub fn label(&self, index: usize) -> &[u8] {
        let start = self.label_start(index);
        let length = self.lower[start] as usize;
        &self.lower[start + 1..start + 1 + length]
    }

    /// The lower-cased name from label `index` to the root.
    pub fn suffix_from(&self, index: usize) -> &[u8] {
        &self.name_lower()[self.label_start(index)..]
    }

    /// Wire length of the echoed question section (name, type, class).
    pub fn section_len(&self) -> usize {
        self.name_len as usize + 4
    }
}

/// Why a message gets no normal answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a query we may answer (shorter than a header, or a response): send nothing.
    Drop,
    /// Answer with this header-only error response (FORMERR or NOTIMP).
    Respond {
        id: u16,
        opcode: u8,
        recursion_desired: bool,
        rcode: u16,
    },
}

/// Parses a query message. Never panics, whatever the input.
pub fn parse_query(packet: &[u8]) -> Result<Question, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::Drop);
    }
    let id = read_u16(packet, 0);
    let flags = read_u16(packet, 2);
    if flags & FLAG_QR != 0 {
        return Err(ParseError::Drop);
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let recursion_desired = flags & FLAG_RD != 0;
    let reject = |rcode| ParseError::Respond {
        id,
        opcode,
        recursion_desired,
        rcode,
    };
    if opcode != OPCODE_QUERY {
        return Err(reject(response_code::NOTIMP));
    }
    let question_count = read_u16(packet, 4);
    let answer_count = read_u16(packet, 6);
    let authority_count = read_u16(packet, 8);
    let additional_count = read_u16(packet, 10);
    if question_count != 1 {
        return Err(reject(response_code::FORMERR));
    }
    let mut question = Question {
        id,
        opcode,
        recursion_desired,
        checking_disabled: flags & FLAG_CD != 0,
        qtype: 0,
        qclass: 0,
        edns: None,
        name_len: 0,
        label_count: 0,
        spelled: [0; MAX_NAME_LEN],
        lower: [0; MAX_NAME_LEN],
        label_starts: [0; 128],
    };
    let formerr = reject(response_code::FORMERR);
    let mut position =
        read_question_name(packet, HEADER_LEN, &mut question).map_err(|_| formerr)?;
    if position + 4 > packet.len() {
        return Err(formerr);
    }
    question.qtype = read_u16(packet, position);
    question.qclass = read_u16(packet, position + 2);
    position += 4;
    for _ in 0..(answer_count as usize + authority_count as usize) {
        position = skip_record(packet, position).ok_or(formerr)?.end;
    }
    for _ in 0..additional_count {
        let record = skip_record(packet, position).ok_or(formerr)?;
        if record.rtype == record_type::OPT {
            // RFC 6891 §6.1.1: one OPT at most, owned by the root.
            if question.edns.is_some() || record.name_end != position + 1 {
                return Err(formerr);
            }
            let ttl = record.ttl;
            question.edns = Some(Edns {
                udp_payload: record.class.max(CLASSIC_UDP_LIMIT as u16),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        position = record.end;
    }
    Ok(question)
}

/// Offset just after the question section of any message (a reply, say); `None` if it is cut.
pub fn parse_question_end(message: &[u8]) -> Option<usize> {
    if message.len() < HEADER_LEN {
        return None;
    }
    let mut position = HEADER_LEN;
    for _ in 0..read_u16(message, 4) {
        position = skip_name(message, position)? + 4;
        if position > message.len() {
            return None;
        }
    }
    Some(position)
}

/// One resource record's framing, as found by [`skip_record`].
struct RecordFrame {
    name_end: usize,
    rtype: u16,
    class: u16,
    ttl: u32,
    end: usize,
}

fn skip_record(packet: &[u8], start: usize) -> Option<RecordFrame> {
    let name_end = skip_name(packet, start)?;
    let fixed = packet.get(name_end..name_end + 10)?;
    let rdata_len = read_u16(fixed, 8) as usize;
    let end = name_end + 10 + rdata_len;
    if end > packet.len() {
        return None;
    }
    Some(RecordFrame {
        name_end,
        rtype: read_u16(fixed, 0),
        class: read_u16(fixed, 2),
        ttl: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        end,
    })
}

/// Skips a name in place (a pointer ends it); returns the offset just after it.
fn skip_name(packet: &[u8], mut position: usize) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let length = *packet.get(position)? as usize;
        match length & 0xC0 {
            0x00 if length == 0 => return Some(position + 1),
            0x00 => {
                total += length + 1;
                if total >= MAX_NAME_LEN {
                    return None;
                }
                position += length + 1;
            }
            0xC0 => {
                packet.get(position + 1)?;
                return Some(position + 2);
            }
            _ => return None,
        }
    }
}

/// Errors from [`read_name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadName;

/// Reads a possibly compressed name starting at `start` into `out` (uncompressed wire
/// format, spelling kept). Returns the offset just after the name where it started, and the
/// name's length in `out`.
///
/// Loops are impossible to follow: every pointer must point strictly before the target of
/// the previous one (and before itself), so the walk makes progress towards offset 0.
pub fn read_name(
    packet: &[u8],
    start: usize,
    out: &mut [u8; MAX_NAME_LEN],
) -> Result<(usize, usize), BadName> {
    let mut position = start;
    let mut written = 0usize;
    let mut end_after_name = None;
    let mut lowest_target = start;
    loop {
        let length = *packet.get(position).ok_or(BadName)? as usize;
        match length & 0xC0 {
            0x00 => {
                if written + length + 1 > MAX_NAME_LEN {
                    return Err(BadName);
                }
                if length == 0 {
                    out[written] = 0;
                    written += 1;
                    let end = end_after_name.unwrap_or(position + 1);
                    return Ok((end, written));
                }
                let label = packet
                    .get(position + 1..position + 1 + length)
                    .ok_or(BadName)?;
                out[written] = length as u8;
                out[written + 1..written + 1 + length].copy_from_slice(label);
                written += length + 1;
                position += length + 1;
            }
            0xC0 => {
                let low = *packet.get(position + 1).ok_or(BadName)? as usize;
                let target = ((length & 0x3F) << 8) | low;
                if target >= lowest_target || target >= position {
                    return Err(BadName);
                }
                end_after_name.get_or_insert(position + 2);
                lowest_target = target;
                position = target;
            }
            _ => return Err(BadName),
        }
    }
}

fn read_question_name(
    packet: &[u8],
    start: usize,
    question: &mut Question,
) -> Result<usize, BadName> {
    let (end, length) = read_name(packet, start, &mut question.spelled)?;
    let mut offset = 0usize;
    let mut labels = 0usize;
    while question.spelled[offset] != 0 {
        question.label_starts[labels] = offset as u8;
        labels += 1;
        offset += question.spelled[offset] as usize + 1;
    }
    for (lower, spelled) in question.lower[..length]
        .iter_mut()
        .zip(&question.spelled[..length])
    {
        *lower = spelled.to_ascii_lowercase();
    }
    question.name_len = length as u8;
    question.label_count = labels as u8;
    Ok(end)
}

#[inline]
pub fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes([bytes[offset], bytes[offset + 1]])
}

#[inline]
pub fn write_u16(bytes: &mut [u8], offset: usize, value: u16) {
    bytes[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
}

/// Header flags of a response to `question`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseFlags {
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_available: bool,
}

/// Writes a response header. `rcode` may exceed 15; only its low four bits go here (the rest
/// belongs in the OPT record).
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    out: &mut [u8],
    id: u16,
    opcode: u8,
    recursion_desired: bool,
    checking_disabled: bool,
    flags: ResponseFlags,
    rcode: u16,
    counts: [u16; 4],
) {
    let mut bits = FLAG_QR | ((opcode as u16 & 0xF) << 11) | (rcode & 0xF);
    if flags.authoritative {
        bits |= FLAG_AA;
    }
    if flags.truncated {
        bits |= FLAG_TC;
    }
    if recursion_desired {
        bits |= FLAG_RD;
    }
    if flags.recursion_available {
        bits |= FLAG_RA;
    }
    if checking_disabled {
        bits |= FLAG_CD;
    }
    write_u16(out, 0, id);
    write_u16(out, 2, bits);
    for (index, count) in counts.iter().enumerate() {
        write_u16(out, 4 + index * 2, *count);
    }
}

/// Writes the header-only reply for a [`ParseError::Respond`]. Returns its length.
pub fn write_error_reply(out: &mut [u8], error: ParseError) -> Option<usize> {
    match error {
        ParseError::Drop => None,
        ParseError::Respond {
            id,
            opcode,
            recursion_desired,
            rcode,
        } => {
            write_header(
                out,
                id,
                opcode,
                recursion_desired,
                false,
                ResponseFlags::default(),
                rcode,
                [0; 4],
            );
            Some(HEADER_LEN)
        }
    }
}

/// Writes the question section (as spelled) right after the header; returns the offset after it.
pub fn write_question(out: &mut [u8], question: &Question) -> usize {
    let name = question.name_spelled();
    let end = HEADER_LEN + name.len();
    out[HEADER_LEN..end].copy_from_slice(name);
    write_u16(out, end, question.qtype);
    write_u16(out, end + 2, question.qclass);
    end + 4
}

/// Writes this server's OPT record: our UDP payload size, `rcode`'s upper bits, version 0, DO
/// echoed. No options (unknown ones, cookies included, are dropped, see dns-spec.md §9.2).
pub fn write_opt(out: &mut [u8], at: usize, edns: Edns, rcode: u16, udp_payload: u16) -> usize {
    let record = &mut out[at..at + OPT_RECORD_LEN];
    record[0] = 0;
    write_u16(record, 1, record_type::OPT);
    write_u16(record, 3, udp_payload);
    record[5] = (rcode >> 4) as u8;
    record[6] = 0;
    write_u16(record, 7, if edns.dnssec_ok { 0x8000 } else { 0 });
    write_u16(record, 9, 0);
    at + OPT_RECORD_LEN
}

/// The parts of a SOA record that do not depend on the query.
#[derive(Clone, Copy, Debug)]
pub struct SoaFields {
    pub ttl: u32,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// Length of the SOA record written by [`write_soa`].
pub const SOA_RECORD_LEN: usize = 12 + (7 + 2) + (11 + 2) + 20;

/// Writes the zone SOA with every name compressed against the question: the owner is the
/// zone, which is the suffix of the question name starting at `zone_offset` (an offset
/// within the name). MNAME is `ns.dns.<zone>` and RNAME `hostmaster.<zone>`.
pub fn write_soa(out: &mut [u8], at: usize, zone_offset: usize, fields: SoaFields) -> usize {
    let pointer = 0xC000 | (HEADER_LEN + zone_offset) as u16;
    let record = &mut out[at..at + SOA_RECORD_LEN];
    write_u16(record, 0, pointer);
    write_u16(record, 2, record_type::SOA);
    write_u16(record, 4, CLASS_IN);
    record[6..10].copy_from_slice(&fields.ttl.to_be_bytes());
    write_u16(record, 10, (SOA_RECORD_LEN - 12) as u16);
    record[12..19].copy_from_slice(b"\x02ns\x03dns");
    write_u16(record, 19, pointer);
    record[21..32].copy_from_slice(b"\x0ahostmaster");
    write_u16(record, 32, pointer);
    let numbers = [
        fields.serial,
        fields.refresh,
        fields.retry,
        fields.expire,
        fields.minimum,
    ];
    for (index, number) in numbers.iter().enumerate() {
        record[34 + index * 4..38 + index * 4].copy_from_slice(&number.to_be_bytes());
    }
    at + SOA_RECORD_LEN
}

/// Writes one resource record owned by a compression pointer. Returns the offset after it.
pub fn write_record(
    out: &mut [u8],
    at: usize,
    owner_pointer: u16,
    rtype: u16,
    ttl: u32,
    rdata: &[u8],
) -> usize {
    let end = at + 12 + rdata.len();
    let record = &mut out[at..end];
    write_u16(record, 0, owner_pointer);
    write_u16(record, 2, rtype);
    write_u16(record, 4, CLASS_IN);
    record[6..10].copy_from_slice(&ttl.to_be_bytes());
    write_u16(record, 10, rdata.len() as u16);
    record[12..].copy_from_slice(rdata);
    end
}

/// Offset just after the record starting at `at` in an encoded section whose owner names are
/// all compression pointers (true of everything this server pre-encodes).
pub fn pointer_owned_record_end(section: &[u8], at: usize) -> usize {
    at + 12 + read_u16(section, at + 10) as usize
}

/// Encodes a dotted name (`web-0.nginx.default.svc.cluster.local`, trailing dot optional) in
/// lower-case wire format. Returns `None` for names DNS cannot carry (empty or over-long
/// labels, over-long names).
pub fn encode_name(dotted: &str) -> Option<Vec<u8>> {
    let trimmed = dotted.strip_suffix('.').unwrap_or(dotted);
    let mut wire = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            wire.push(label.len() as u8);
            wire.extend(label.bytes().map(|byte| byte.to_ascii_lowercase()));
        }
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_LEN).then_some(wire)
}

/// Renders a wire-format name as dotted text, for logs and tests.
pub fn display_name(wire: &[u8]) -> String {
    let mut text = String::new();
    let mut position = 0;
    while let Some(&length) = wire.get(position) {
        if length == 0 || length & 0xC0 != 0 {
            break;
        }
        let label = wire
            .get(position + 1..position + 1 + length as usize)
            .unwrap_or_default();
        for &byte in label {
            if byte.is_ascii_graphic() && byte != b'.' && byte != b'\\' {
                text.push(byte as char);
            } else {
                text.push_str(&format!("\\{byte:03}"));
            }
        }
        text.push('.');
        position += length as usize + 1;
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// Offsets of every label suffix of a wire name (offset of label i within the name).
pub fn label_offsets(wire: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut position = 0;
    while let Some(&length) = wire.get(position) {
        if length == 0 {
            break;
        }
        offsets.push(position);
        position += length as usize + 1;
    }
    offsets
}

/// TCP framing: the two-byte length prefix of a message.
pub fn tcp_length_prefix(message_len: usize) -> [u8; 2] {
    (message_len.min(MAX_MESSAGE_LEN) as u16).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            packet.push(label.len() as u8);
            packet.extend(label.bytes());
        }
        packet.push(0);
        packet.extend(qtype.to_be_bytes());
        packet.extend(CLASS_IN.to_be_bytes());
        packet
    }

    #[test]
    fn parses_a_plain_query() {
        let question = parse_query(&query("Web-0.Nginx.default.svc.cluster.local", 1)).unwrap();
        assert_eq!(question.id, 0x1234);
        assert!(question.recursion_desired);
        assert_eq!(question.qtype, 1);
        assert_eq!(question.label_count(), 6);
        assert_eq!(question.label(1), b"nginx");
        assert_eq!(question.suffix_from(4), b"\x07cluster\x05local\x00");
        assert_eq!(&question.name_spelled()[1..6], b"Web-0");
        assert!(question.edns.is_none());
    }

    #[test]
    fn reads_edns() {
        let mut packet = query("a.b", 28);
        packet[11] = 1;
        packet.extend([0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        let question = parse_query(&packet).unwrap();
        assert_eq!(
            question.edns,
            Some(Edns {
                udp_payload: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
        packet.extend([0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0]);
        packet[11] = 2;
        assert!(matches!(
            parse_query(&packet),
            Err(ParseError::Respond { rcode: 1, .. })
        ));
    }

    #[test]
    fn follows_backward_pointers_and_rejects_loops() {
        // Question name "x" + pointer to a name stored after... not allowed (forward pointer).
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend([1, b'x', 0xC0, 12]);
        packet.extend([0, 1, 0, 1]);
        assert!(matches!(
            parse_query(&packet),
            Err(ParseError::Respond { rcode: 1, .. })
        ));

        let mut out = [0u8; MAX_NAME_LEN];
        // A valid backward chain: name at 0 is "a", name at 3 is "b" + pointer to 0.
        let buffer = [1, b'a', 0, 1, b'b', 0xC0, 0];
        assert_eq!(read_name(&buffer, 3, &mut out), Ok((7, 5)));
        assert_eq!(&out[..5], b"\x01b\x01a\x00");
        // Pointer chain that revisits a target.
        let looping = [1, b'a', 0xC0, 0, 0xC0, 2];
        assert_eq!(read_name(&looping, 4, &mut out), Err(BadName));
    }

    #[test]
    fn rejects_what_it_must() {
        assert!(matches!(parse_query(&[0; 5]), Err(ParseError::Drop)));
        let mut response = query("a", 1);
        response[2] |= 0x80;
        assert!(matches!(parse_query(&response), Err(ParseError::Drop)));
        let mut notify = query("a", 1);
        notify[2] = 0x20;
        assert!(matches!(
            parse_query(&notify),
            Err(ParseError::Respond { rcode: 4, .. })
        ));
        let mut two_questions = query("a", 1);
        two_questions[5] = 2;
        assert!(matches!(
            parse_query(&two_questions),
            Err(ParseError::Respond { rcode: 1, .. })
        ));
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode_name("Ab.c.").unwrap(), b"\x02ab\x01c\x00");
        assert_eq!(encode_name("").unwrap(), b"\x00");
        assert!(encode_name("a..b").is_none());
        assert_eq!(display_name(b"\x02ab\x01c\x00"), "ab.c.");
        assert_eq!(label_offsets(b"\x02ab\x01c\x00"), vec![0, 3]);
    }
}
