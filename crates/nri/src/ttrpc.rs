//! ttrpc, containerd's small RPC protocol, as far as a unary NRI plugin needs it. A
//! message is a 10-byte header — body length (u32), stream ID (u32), type (u8), flags
//! (u8), integers big endian — and a protobuf body: [`Request`] (type 1) or
//! [`Response`] (type 2). The caller picks odd stream IDs; the answer carries the same
//! ID. Bodies over 4 MiB are refused, as ttrpc refuses them.
//!
//! Sans-IO, like [`crate::mux`]: it parses the peer's bytes, so nothing here panics.

use crate::Error;

/// Bytes of a message header.
pub const HEADER_LEN: usize = 10;
/// The largest body ttrpc accepts.
pub const MAX_MESSAGE: usize = 4 << 20;
/// Message type of a request.
pub const REQUEST: u8 = 1;
/// Message type of a response.
pub const RESPONSE: u8 = 2;

/// A ttrpc call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// Fully qualified service, `nri.pkg.api.v1alpha1.Plugin`.
    #[prost(string, tag = "1")]
    pub service: String,
    /// Method, `CreateContainer`.
    #[prost(string, tag = "2")]
    pub method: String,
    /// The method's request message, encoded.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// The caller's deadline, nanoseconds from when it sent the call (0: none).
    #[prost(int64, tag = "4")]
    pub timeout_nano: i64,
    /// Metadata (unused by NRI).
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<KeyValue>,
}

/// One metadata entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The answer to a call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// Absent or code 0: success.
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    /// The method's response message, encoded.
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// A gRPC-style status (`google.rpc.Status`; its details are not used here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// gRPC code: 0 OK, 7 permission denied, 12 unimplemented, 13 internal.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong, for people: containerd passes it on to the CRI caller.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC status codes used here.
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The caller may not do this (a refused container).
    pub const PERMISSION_DENIED: i32 = 7;
    /// Too large a message.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// A method the plugin does not implement.
    pub const UNIMPLEMENTED: i32 = 12;
    /// The plugin could not process the call.
    pub const INTERNAL: i32 = 13;
}

/// One message read from a conn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A whole message.
    Whole {
        /// Stream ID.
        stream: u32,
        /// Type ([`REQUEST`], [`RESPONSE`], or another the caller ignores).
        kind: u8,
        /// Type-specific flags.
        flags: u8,
        /// Body.
        body: Vec<u8>,
    },
    /// A message whose body was over [`MAX_MESSAGE`]: skipped (not buffered), so that
    /// the caller can answer its stream with an error, as ttrpc does.
    Oversized {
        /// Stream ID.
        stream: u32,
        /// Type.
        kind: u8,
        /// The length it announced.
        len: usize,
    },
}

/// Appends one message to `out`; refuses a body over [`MAX_MESSAGE`].
pub fn encode(
    stream: u32,
    kind: u8,
    flags: u8,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if body.len() > MAX_MESSAGE {
        return Err(Error::Protocol(format!(
            "a ttrpc message of {} bytes, over the {MAX_MESSAGE}-byte limit",
            body.len()
        )));
    }
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(body);
    Ok(())
}

/// Reassembles messages from one conn's byte stream.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    /// Body bytes of an oversized message still to be thrown away.
    skip: usize,
}

impl Reader {
    /// A reader with nothing read yet.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Adds bytes of the conn's stream. Bytes of an oversized message being skipped are
    /// dropped here, never held.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(bytes.len());
            self.skip -= n;
            bytes = bytes.get(n..).unwrap_or_default();
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next message, `None` until one is complete.
    pub fn next_message(&mut self) -> Option<Message> {
        if self.skip > 0 {
            return None;
        }
        let header: [u8; HEADER_LEN] = self.buf.get(..HEADER_LEN)?.try_into().ok()?;
        let [l0, l1, l2, l3, s0, s1, s2, s3, kind, flags] = header;
        let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
        let stream = u32::from_be_bytes([s0, s1, s2, s3]);
        if len > MAX_MESSAGE {
            self.buf.drain(..HEADER_LEN);
            let held = self.buf.len().min(len);
            self.buf.drain(..held);
            self.skip = len - held;
            return Some(Message::Oversized { stream, kind, len });
        }
        let body = self.buf.get(HEADER_LEN..HEADER_LEN + len)?.to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Some(Message::Whole {
            stream,
            kind,
            flags,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn messages_round_trip_across_arbitrary_cuts() {
        let req = Request {
            service: "nri.pkg.api.v1alpha1.Plugin".into(),
            method: "CreateContainer".into(),
            payload: vec![1, 2, 3],
            timeout_nano: 2_000_000_000,
            metadata: vec![],
        };
        let mut wire = Vec::new();
        encode(3, REQUEST, 0, &req.encode_to_vec(), &mut wire).unwrap();
        encode(5, RESPONSE, 0, &[], &mut wire).unwrap();
        for cut in 0..wire.len() {
            let mut r = Reader::new();
            r.push(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(m) = r.next_message() {
                got.push(m);
            }
            r.push(&wire[cut..]);
            while let Some(m) = r.next_message() {
                got.push(m);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            let Message::Whole {
                stream, kind, body, ..
            } = &got[0]
            else {
                panic!("{got:?}")
            };
            assert_eq!((*stream, *kind), (3, REQUEST));
            assert_eq!(Request::decode(body.as_slice()).unwrap(), req);
        }
    }

    #[test]
    fn the_header_is_length_stream_type_flags() {
        let mut wire = Vec::new();
        encode(1, REQUEST, 0, b"xy", &mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 2, 0, 0, 0, 1, 1, 0, b'x', b'y']);
    }

    #[test]
    fn oversized_messages_are_skipped_without_being_held_and_the_next_one_is_read() {
        let len = MAX_MESSAGE + 5;
        let mut r = Reader::new();
        r.push(&u32::try_from(len).unwrap().to_be_bytes());
        r.push(&[0, 0, 0, 9, REQUEST, 0]);
        r.push(&[0u8; 1000]);
        assert_eq!(
            r.next_message(),
            Some(Message::Oversized {
                stream: 9,
                kind: REQUEST,
                len
            })
        );
        r.push(&vec![0u8; len - 1000]);
        assert!(r.buf.is_empty());
        let mut next = Vec::new();
        encode(11, REQUEST, 0, b"ok", &mut next).unwrap();
        r.push(&next);
        assert!(matches!(
            r.next_message(),
            Some(Message::Whole { stream: 11, .. })
        ));
        assert!(encode(1, REQUEST, 0, &vec![0; MAX_MESSAGE + 1], &mut Vec::new()).is_err());
    }
}
