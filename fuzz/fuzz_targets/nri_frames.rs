//! Bytes from containerd's NRI socket as pullguardd's plugin reads them: the multiplexer
//! splits them into frames (the first byte picks the read sizes, as a socket would cut
//! them), conn 1's stream into ttrpc messages, and each call's body into NRI's messages.
//! Never panics; a frame the demultiplexer returns is exactly what was encoded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nri::{api, mux, ttrpc};
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut).max(1);
    let mut demux = mux::Demux::new();
    let mut conn = ttrpc::Reader::new();
    for chunk in bytes.chunks(step) {
        demux.push(chunk);
        loop {
            match demux.next_frame() {
                Ok(Some(frame)) => {
                    // Written again, the payload may be split into several frames (at
                    // most mux::WRITE_FRAME bytes each); together they are the same.
                    let mut again = Vec::new();
                    mux::encode(frame.conn, &frame.payload, &mut again);
                    let mut d = mux::Demux::new();
                    d.push(&again);
                    let mut joined = Vec::new();
                    while let Ok(Some(f)) = d.next_frame() {
                        assert_eq!(f.conn, frame.conn);
                        assert!(f.payload.len() <= mux::WRITE_FRAME);
                        joined.extend_from_slice(&f.payload);
                    }
                    assert_eq!(joined, frame.payload);
                    assert_eq!(d.pending(), 0);
                    if frame.conn == mux::PLUGIN_CONN {
                        conn.push(&frame.payload);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        while let Some(message) = conn.next_message() {
            let ttrpc::Message::Whole { body, .. } = message else {
                continue;
            };
            let Ok(request) = ttrpc::Request::decode(body.as_slice()) else {
                continue;
            };
            let payload = request.payload.as_slice();
            match request.method.as_str() {
                "CreateContainer" => {
                    if let Ok(c) = api::CreateContainerRequest::decode(payload) {
                        let _ = c
                            .container
                            .as_ref()
                            .and_then(|c| c.annotations.get(nri::IMAGE_NAME_ANNOTATION));
                    }
                }
                "Configure" => {
                    let _ = api::ConfigureRequest::decode(payload);
                }
                "Synchronize" => {
                    let _ = api::SynchronizeRequest::decode(payload);
                }
                _ => {}
            }
        }
    }
});
