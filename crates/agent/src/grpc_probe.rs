//! gRPC probes: one `grpc.health.v1.Health/Check` call over cleartext HTTP/2 (h2c with prior
//! knowledge), as kubelet makes it, through a minimal HTTP/2 client written for this one
//! request.
//!
//! The client sends the connection preface, an empty SETTINGS frame, the request HEADERS
//! (every field a literal without indexing and without Huffman coding, which any HPACK decoder
//! accepts) and one DATA frame carrying the length-prefixed `HealthCheckRequest`. It then reads
//! frames until stream 1 ends, acknowledging the server's SETTINGS and answering PINGs. The
//! probe passes when the response message says `SERVING`. Response headers are not decoded
//! (that would need HPACK's Huffman table): a call that fails carries no message, so it fails
//! the probe, with the `grpc-status` left unread.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
/// The largest frame a peer may send before we announce otherwise (RFC 9113, 4.2).
const MAX_FRAME_SIZE: usize = 16_384;
/// More response body than a health answer could need means something else is talking.
const MAX_BODY: usize = 64 * 1024;
const STREAM: u32 = 1;

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
fn status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// Calls Check for `service` at `address`; `Err` holds a kubelet-style failure message.
pub async fn check(address: SocketAddr, service: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("failed to connect service {address:?}: {error}",))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&request(address, service))
        .await
        .map_err(|error| format!("rpc error: {error}"))?;
    let body = read_response(&mut stream).await?;
    match parse_status(&body)? {
        1 => Ok(()),
        status => Err(format!(
            "service unhealthy (responded with {:?})",
            status_name(status)
        )),
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&length.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK integer with an `prefix_bits`-bit prefix (RFC 7541, 5.1); `first` holds the
/// bits above the prefix.
fn hpack_integer(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let limit = (1usize << prefix_bits) - 1;
    if value < limit {
        out.push(first | value as u8);
        return;
    }
    out.push(first | limit as u8);
    value -= limit;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, neither string Huffman-coded.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_integer(out, 0x00, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    hpack_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn protobuf_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Everything the client sends: preface, SETTINGS, HEADERS and the request's DATA.
fn request(address: SocketAddr, service: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.health.v1.Health/Check"),
        (":authority", &address.to_string()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "kube-probe/1.37"),
    ] {
        hpack_literal(&mut headers, name, value);
    }
    // HealthCheckRequest { string service = 1; }
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        protobuf_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut data = vec![0u8];
    data.extend_from_slice(&(message.len() as u32).to_be_bytes());
    data.extend_from_slice(&message);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(FRAME_SETTINGS, 0, 0, &[]));
    bytes.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, STREAM, &headers));
    bytes.extend(frame(FRAME_DATA, FLAG_END_STREAM, STREAM, &data));
    bytes
}

/// Reads frames until stream 1 ends; returns its DATA payloads, concatenated.
async fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let failed = |error: std::io::Error| format!("rpc error: {error}");
    let mut body = Vec::new();
    loop {
        let mut header = [0u8; 9];
        stream.read_exact(&mut header).await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                "rpc error: the connection closed before the response ended".to_string()
            } else {
                failed(error)
            }
        })?;
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if length > MAX_FRAME_SIZE {
            return Err(format!(
                "rpc error: a {length}-byte frame exceeds the HTTP/2 frame size limit (is this a gRPC server?)"
            ));
        }
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.map_err(failed)?;
        match kind {
            FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                stream
                    .write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
                    .await
                    .map_err(failed)?;
            }
            FRAME_PING if flags & FLAG_ACK == 0 => {
                stream
                    .write_all(&frame(FRAME_PING, FLAG_ACK, 0, &payload))
                    .await
                    .map_err(failed)?;
            }
            FRAME_GOAWAY => {
                return Err("rpc error: the server closed the connection (GOAWAY)".into());
            }
            FRAME_RST_STREAM if stream_id == STREAM => {
                return Err("rpc error: the server reset the stream".into());
            }
            FRAME_DATA if stream_id == STREAM => {
                let data = unpad(&payload, flags)?;
                if body.len() + data.len() > MAX_BODY {
                    return Err("rpc error: the response is too large".into());
                }
                body.extend_from_slice(data);
                if flags & FLAG_END_STREAM != 0 {
                    return Ok(body);
                }
            }
            FRAME_HEADERS if stream_id == STREAM && flags & FLAG_END_STREAM != 0 => {
                return Ok(body);
            }
            // Response headers, WINDOW_UPDATE, PRIORITY, acknowledgements: nothing to do.
            _ => {}
        }
    }
}

fn unpad(payload: &[u8], flags: u8) -> Result<&[u8], String> {
    if flags & FLAG_PADDED == 0 {
        return Ok(payload);
    }
    let padding = *payload.first().ok_or("rpc error: malformed padded frame")? as usize;
    payload
        .get(1..payload.len().saturating_sub(padding))
        .filter(|_| padding < payload.len())
        .ok_or_else(|| "rpc error: malformed padded frame".to_string())
}

/// The `status` of the first gRPC message of `body` (a missing field is UNKNOWN, 0).
fn parse_status(body: &[u8]) -> Result<u64, String> {
    if body.is_empty() {
        return Err(
            "rpc error: the call failed without a response (grpc-status in the trailers)".into(),
        );
    }
    let malformed = || "rpc error: malformed HealthCheckResponse".to_string();
    if body.len() < 5 {
        return Err(malformed());
    }
    if body[0] != 0 {
        return Err("rpc error: the response is compressed, which was not asked for".into());
    }
    let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let mut message = body.get(5..5 + length).ok_or_else(malformed)?;
    let mut status = 0;
    while !message.is_empty() {
        let key = read_varint(&mut message).ok_or_else(malformed)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = read_varint(&mut message).ok_or_else(malformed)?,
            (_, 0) => {
                read_varint(&mut message).ok_or_else(malformed)?;
            }
            (_, 1) => message = message.get(8..).ok_or_else(malformed)?,
            (_, 2) => {
                let skip = read_varint(&mut message).ok_or_else(malformed)? as usize;
                message = message.get(skip..).ok_or_else(malformed)?;
            }
            (_, 5) => message = message.get(4..).ok_or_else(malformed)?,
            _ => return Err(malformed()),
        }
    }
    Ok(status)
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn hpack_integers_follow_rfc_7541() {
        // The RFC's examples: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_integer(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        hpack_integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }

    #[test]
    fn responses_parse() {
        assert_eq!(parse_status(&[0, 0, 0, 0, 2, 0x08, 0x01]), Ok(1));
        // An unknown string field before the status is skipped.
        assert_eq!(
            parse_status(&[0, 0, 0, 0, 5, 0x12, 0x01, b'x', 0x08, 0x02]),
            Ok(2)
        );
        // An empty message: UNKNOWN.
        assert_eq!(parse_status(&[0, 0, 0, 0, 0]), Ok(0));
        assert!(parse_status(&[]).is_err());
        assert!(parse_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
    }

    /// Reads one client's request (headers block, DATA payload) the way an HTTP/2 server
    /// would, then answers with `status` or, for `None`, a trailers-only error.
    async fn serve_one(listener: &TcpListener, status: Option<u8>) -> (Vec<u8>, Vec<u8>) {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        socket.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface[..], PREFACE);
        // The server's SETTINGS, and a PING the client must answer.
        socket
            .write_all(&frame(FRAME_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]))
            .await
            .unwrap();
        socket
            .write_all(&frame(FRAME_PING, 0, 0, b"12345678"))
            .await
            .unwrap();
        let (mut headers, mut data) = (Vec::new(), Vec::new());
        let (mut settings_acknowledged, mut ping_answered) = (false, false);
        while !(settings_acknowledged && ping_answered && !data.is_empty()) {
            let mut header = [0u8; 9];
            socket.read_exact(&mut header).await.unwrap();
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            socket.read_exact(&mut payload).await.unwrap();
            match (header[3], header[4]) {
                (FRAME_HEADERS, _) => headers = payload,
                (FRAME_DATA, flags) => {
                    assert_eq!(flags & FLAG_END_STREAM, FLAG_END_STREAM);
                    data = payload;
                }
                (FRAME_SETTINGS, FLAG_ACK) => settings_acknowledged = true,
                (FRAME_PING, FLAG_ACK) => {
                    assert_eq!(payload, b"12345678");
                    ping_answered = true;
                }
                _ => {}
            }
        }
        socket
            .write_all(&frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
            .await
            .unwrap();
        let mut response_headers = Vec::new();
        hpack_literal(&mut response_headers, ":status", "200");
        hpack_literal(&mut response_headers, "content-type", "application/grpc");
        let mut trailers = Vec::new();
        match status {
            Some(status) => {
                socket
                    .write_all(&frame(
                        FRAME_HEADERS,
                        FLAG_END_HEADERS,
                        STREAM,
                        &response_headers,
                    ))
                    .await
                    .unwrap();
                // A padded DATA frame: pad length 3, the message, 3 bytes of padding.
                let mut padded = vec![3, 0, 0, 0, 0, 2, 0x08, status];
                padded.extend_from_slice(&[0, 0, 0]);
                socket
                    .write_all(&frame(FRAME_DATA, FLAG_PADDED, STREAM, &padded))
                    .await
                    .unwrap();
                hpack_literal(&mut trailers, "grpc-status", "0");
            }
            None => {
                trailers = response_headers;
                hpack_literal(&mut trailers, "grpc-status", "12");
            }
        }
        socket
            .write_all(&frame(
                FRAME_HEADERS,
                FLAG_END_HEADERS | FLAG_END_STREAM,
                STREAM,
                &trailers,
            ))
            .await
            .unwrap();
        (headers, data)
    }

    #[tokio::test]
    async fn health_checks_over_h2c() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for status in [Some(1), Some(2), None] {
                requests.push(serve_one(&listener, status).await);
            }
            requests
        });
        assert_eq!(check(address, "payments").await, Ok(()));
        assert_eq!(
            check(address, "").await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let Err(message) = check(address, "").await else {
            panic!("a failed call must fail the probe");
        };
        assert!(message.starts_with("rpc error:"), "{message}");
        let requests = server.await.unwrap();
        let (headers, data) = &requests[0];
        let mut expected = Vec::new();
        hpack_literal(&mut expected, ":path", "/grpc.health.v1.Health/Check");
        assert!(
            headers
                .windows(expected.len())
                .any(|window| window == expected),
            "{headers:?}"
        );
        assert_eq!(
            data,
            &[
                0, 0, 0, 0, 10, 0x0a, 8, b'p', b'a', b'y', b'm', b'e', b'n', b't', b's'
            ]
        );
        // No service: an empty request message.
        assert_eq!(requests[1].1, [0, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_closed_port_fails() {
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = reserved.local_addr().unwrap();
        let Err(message) = check(closed, "").await else {
            panic!("nothing listens there");
        };
        assert!(
            message.starts_with("failed to connect service"),
            "{message}"
        );
    }
}
