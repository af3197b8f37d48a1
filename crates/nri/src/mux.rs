//! The connection multiplexer NRI puts on the plugin's unix connection, as it goes over
//! the wire: one connection carries several byte streams ("conns"), and each frame is an
//! 8-byte header — conn ID and payload length, both u32 big endian — and the payload.
//! Conn 1 carries the plugin's service (containerd calls it), conn 2 the runtime's
//! (the plugin calls it). A conn is a byte stream and its ttrpc messages are
//! reassembled from it ([`crate::ttrpc::Reader`]).
//!
//! What is written is split into frames of at most [`WRITE_FRAME`] bytes, far below
//! the [`MAX_PAYLOAD`] NRI's multiplexer names: containerd's side hands each frame
//! whole to a `Read` call and fails it (`ENOMEM`, then `ttrpc: closed`) when the
//! caller's buffer is smaller, and ttrpc reads through a 4096-byte `bufio.Reader`. A
//! longer frame there drops the plugin, and containerd then creates the container
//! unchecked (NRI v0.12, containerd 2.3/2.4).
//!
//! Sans-IO: bytes in, frames out. Everything here parses bytes from the peer, so every
//! length is checked before it is used and nothing panics (fuzzed: `fuzz/nri_frames`).

use crate::Error;

/// The plugin's service: containerd sends requests, the plugin answers.
pub const PLUGIN_CONN: u32 = 1;
/// The runtime's service: the plugin sends requests (registration), containerd answers.
pub const RUNTIME_CONN: u32 = 2;
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;
/// The largest payload of one frame: one whole ttrpc message (its header and the
/// largest body ttrpc allows), where NRI's writer splits. A longer frame is refused.
pub const MAX_PAYLOAD: usize = crate::ttrpc::HEADER_LEN + crate::ttrpc::MAX_MESSAGE;

/// The largest frame written: the size of the buffer containerd's ttrpc reads the
/// multiplexed conn through (Go's `bufio` default), so that every frame fits the read
/// that receives it.
pub const WRITE_FRAME: usize = 4096;

/// Appends `payload` for `conn` to `out` as frames of at most [`WRITE_FRAME`] bytes.
pub fn encode(conn: u32, payload: &[u8], out: &mut Vec<u8>) {
    // An empty payload is still one (empty) frame.
    let empty: [&[u8]; 1] = [&[]];
    let chunks: Box<dyn Iterator<Item = &[u8]>> = if payload.is_empty() {
        Box::new(empty.into_iter())
    } else {
        Box::new(payload.chunks(WRITE_FRAME))
    };
    for chunk in chunks {
        // chunks() caps each at MAX_PAYLOAD, far below u32::MAX.
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&conn.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// One frame: the conn it belongs to and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Conn ID.
    pub conn: u32,
    /// Payload bytes (part of that conn's byte stream).
    pub payload: Vec<u8>,
}

/// Splits the bytes read from the connection into frames.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// A demultiplexer with nothing read yet.
    pub fn new() -> Demux {
        Demux::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one is complete. A frame longer than
    /// [`MAX_PAYLOAD`] is a protocol error: the connection cannot be trusted to carry
    /// the rest, and the caller closes it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let (conn, len) = header.split_at(4);
        let conn = u32::from_be_bytes(conn.try_into().unwrap_or_default());
        let len = u32::from_be_bytes(len.try_into().unwrap_or_default());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_PAYLOAD {
            return Err(Error::Protocol(format!(
                "a multiplexer frame of {len} bytes on conn {conn}, over the {MAX_PAYLOAD}-byte limit"
            )));
        }
        let Some(payload) = self.buf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = payload.to_vec();
        self.buf.drain(..HEADER_LEN + len);
        Ok(Some(Frame { conn, payload }))
    }

    /// Bytes held that do not make a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        encode(PLUGIN_CONN, b"hello", &mut wire);
        encode(RUNTIME_CONN, b"", &mut wire);
        encode(7, b"x", &mut wire);
        let mut d = Demux::new();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame {
                    conn: 1,
                    payload: b"hello".to_vec()
                },
                Frame {
                    conn: 2,
                    payload: Vec::new()
                },
                Frame {
                    conn: 7,
                    payload: b"x".to_vec()
                },
            ]
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_header_is_conn_then_length_big_endian() {
        let mut wire = Vec::new();
        encode(2, b"ab", &mut wire);
        assert_eq!(wire, [0, 0, 0, 2, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn long_payloads_are_split_and_oversized_frames_refused() {
        let big = vec![7u8; 2 * WRITE_FRAME + 3];
        let mut wire = Vec::new();
        encode(1, &big, &mut wire);
        let mut d = Demux::new();
        d.push(&wire);
        let lens: Vec<usize> = std::iter::from_fn(|| d.next_frame().unwrap())
            .map(|f| f.payload.len())
            .collect();
        assert_eq!(lens, [WRITE_FRAME, WRITE_FRAME, 3]);

        let mut d = Demux::new();
        let too_long = u32::try_from(MAX_PAYLOAD + 1).unwrap();
        d.push(&1u32.to_be_bytes());
        d.push(&too_long.to_be_bytes());
        assert!(matches!(d.next_frame(), Err(Error::Protocol(_))));
        let mut d = Demux::new();
        d.push(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(Error::Protocol(_))));
    }

    #[test]
    fn long_refusal_closes_plugin_no_frame_is_longer_than_containerds_read_buffer() {
        // The attack: a refusal quoting 6,000 characters went out as one frame, which
        // containerd's side could not read; it dropped the plugin and created the
        // container. Every frame written must fit Go's 4096-byte bufio read.
        for len in [0, 1, 4095, 4096, 4097, 6_000, 70_000] {
            let mut wire = Vec::new();
            encode(PLUGIN_CONN, &vec![b'x'; len], &mut wire);
            let mut d = Demux::new();
            d.push(&wire);
            let mut total = 0;
            while let Some(f) = d.next_frame().unwrap() {
                assert!(
                    f.payload.len() <= 4096,
                    "{len}: a frame of {}",
                    f.payload.len()
                );
                total += f.payload.len();
            }
            assert_eq!(total, len);
        }
    }
}
