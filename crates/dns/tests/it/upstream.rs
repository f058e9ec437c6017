//! A stub upstream resolver on 127.0.0.1 (UDP and TCP, same port) that knows only
//! `www.example.com` (dns-spec.md §1, reference configuration R). Built on hickory-proto so it
//! shares no code with the server under test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata};

pub struct Upstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.message_type = MessageType::Response;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    let known = Name::from_ascii("www.example.com.").ok()?;
    if question.name().to_lowercase() == known {
        match question.query_type() {
            RecordType::A => {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    300,
                    RData::A(rdata::A::new(192, 0, 2, 53)),
                ));
            }
            RecordType::AAAA => {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    300,
                    RData::AAAA(rdata::AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53)),
                ));
            }
            _ => {}
        }
    } else {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.to_vec().ok()
}

/// Starts the stub; it stops when dropped.
pub fn start() -> Upstream {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind stub upstream udp");
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicUsize::new(0));
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    {
        let stop = Arc::clone(&stop);
        let queries = Arc::clone(&queries);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, peer)) = udp.recv_from(&mut buffer) else {
                    continue;
                };
                queries.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = answer(&buffer[..len]) {
                    let _ = udp.send_to(&reply, peer);
                }
            }
        });
    }
    tcp.set_nonblocking(true).unwrap();
    {
        let stop = Arc::clone(&stop);
        let queries = Arc::clone(&queries);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut prefix = [0u8; 2];
                if stream.read_exact(&mut prefix).is_err() {
                    continue;
                }
                let mut query = vec![0u8; u16::from_be_bytes(prefix) as usize];
                if stream.read_exact(&mut query).is_err() {
                    continue;
                }
                queries.fetch_add(1, Ordering::Relaxed);
                if let Some(reply) = answer(&query) {
                    let _ = stream.write_all(&(reply.len() as u16).to_be_bytes());
                    let _ = stream.write_all(&reply);
                }
            }
        });
    }
    Upstream {
        addr,
        queries,
        stop,
    }
}

/// An upstream that never answers: its UDP socket is bound but never read, and its TCP
/// listener lets the kernel complete connections into the backlog but never accepts them.
pub struct Silent {
    pub addr: SocketAddr,
    _udp: UdpSocket,
    _tcp: TcpListener,
}

pub fn silent() -> Silent {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind silent upstream udp");
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr) {
            return Silent {
                addr,
                _udp: udp,
                _tcp: tcp,
            };
        }
    }
}
