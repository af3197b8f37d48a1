//! One Verify call without HTTP/2, on pullguardd's own socket: what the verifier that
//! containerd starts for every pull uses, so that a warm verdict costs one exec and one
//! round trip (docs/contracts.md §1). The gRPC API stays for everyone else; pullguardd
//! tells the two apart by the first four bytes of a connection (HTTP/2's are `PRI `).
//!
//! ```text
//! request:  "PGV1" u32-BE length, a VerifyRequest (protobuf)
//! reply:    "PGV1" u8 status, u32-BE length, then a VerifyResponse when status is 0,
//!           else UTF-8 text: the gRPC status code (tonic::Code) and its message
//! ```
//!
//! One call per connection; the same authorisation, limits and verdicts as gRPC's
//! `Verify`. A daemon that does not know the framing answers in HTTP/2 (its first bytes
//! are not `PGV1`), which the client takes as "ask over gRPC".

use std::io::{Read, Write};

use prost::Message as _;

use crate::{VerifyRequest, VerifyResponse};

/// The first four bytes of a request and of a reply.
pub const MAGIC: &[u8; 4] = b"PGV1";
/// Largest request body (the same bound as the gRPC server's decoding limit).
pub const MAX_REQUEST: usize = 256 * 1024;
/// Largest reply body a client reads (a verdict's text is capped well below).
pub const MAX_REPLY: usize = 1024 * 1024;

/// The bytes of a request.
pub fn request_frame(req: &VerifyRequest) -> Vec<u8> {
    let body = req.encode_to_vec();
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The bytes of a reply: the verdict, or a gRPC status code and its message.
pub fn reply_frame(reply: &Result<VerifyResponse, (i32, String)>) -> Vec<u8> {
    let (status, body) = match reply {
        Ok(v) => (0u8, v.encode_to_vec()),
        Err((code, message)) => (
            u8::try_from(*code).unwrap_or(2).max(1),
            message.as_bytes().to_vec(),
        ),
    };
    let mut out = Vec::with_capacity(9 + body.len());
    out.extend_from_slice(MAGIC);
    out.push(status);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// What a client read back.
#[derive(Debug)]
pub enum Reply {
    /// The verdict (boxed: it is most of the enum's size).
    Verdict(Box<VerifyResponse>),
    /// The daemon refused the call: a gRPC status code and its message.
    Status(i32, String),
    /// The peer does not speak this framing (an older pullguardd): ask over gRPC.
    NotSpoken,
}

/// Reads a reply (the stream's read timeout bounds the wait).
pub fn read_reply(mut r: impl Read) -> std::io::Result<Reply> {
    let mut head = [0u8; 4];
    match read_full(&mut r, &mut head)? {
        0 => return Ok(Reply::NotSpoken),
        4 if &head == MAGIC => {}
        _ => return Ok(Reply::NotSpoken),
    }
    let mut status_len = [0u8; 5];
    r.read_exact(&mut status_len)?;
    let len = u32::from_be_bytes([status_len[1], status_len[2], status_len[3], status_len[4]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_REPLY {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("pullguardd's reply is {len} bytes, over {MAX_REPLY}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    if status_len[0] == 0 {
        VerifyResponse::decode(body.as_slice())
            .map(|v| Reply::Verdict(Box::new(v)))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    } else {
        Ok(Reply::Status(
            i32::from(status_len[0]),
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

/// Reads until `buf` is full or the peer closes; how many bytes came.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One call on a connected stream (blocking; set its timeouts first).
pub fn call(mut stream: impl Read + Write, req: &VerifyRequest) -> std::io::Result<Reply> {
    stream.write_all(&request_frame(req))?;
    stream.flush()?;
    read_reply(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_and_a_status_round_trip_and_http2_is_not_spoken() {
        let v = VerifyResponse {
            allowed: true,
            message: "ok".into(),
            ..VerifyResponse::default()
        };
        let Reply::Verdict(back) = read_reply(reply_frame(&Ok(v.clone())).as_slice()).unwrap()
        else {
            panic!("a verdict");
        };
        assert_eq!(*back, v);
        let Reply::Status(code, msg) =
            read_reply(reply_frame(&Err((7, "no".into()))).as_slice()).unwrap()
        else {
            panic!("a status");
        };
        assert_eq!((code, msg.as_str()), (7, "no"));
        // What a daemon without the framing sends first: its HTTP/2 SETTINGS frame.
        let settings = [0u8, 0, 0x12, 4, 0, 0, 0, 0, 0];
        assert!(matches!(
            read_reply(&settings[..]).unwrap(),
            Reply::NotSpoken
        ));
        assert!(matches!(read_reply(&[][..]).unwrap(), Reply::NotSpoken));
        // A length over the bound is an error, never an allocation of it.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(read_reply(huge.as_slice()).is_err());
        let req = request_frame(&VerifyRequest {
            image: "a".into(),
            ..VerifyRequest::default()
        });
        assert_eq!(&req[..4], MAGIC);
        assert_eq!(
            u32::from_be_bytes([req[4], req[5], req[6], req[7]]) as usize,
            req.len() - 8
        );
    }
}
