//! What pullguard-verifier reads from containerd, parsed without I/O of its own so that
//! it can be fuzzed (fuzz/) and tested apart from the process.

#![deny(missing_docs)]

/// Arguments and descriptor handling.
pub mod input {
    use std::io::Read as _;

    /// The only stdin media type containerd sends.
    pub const DESCRIPTOR_MEDIA_TYPE: &str = "application/vnd.oci.descriptor.v1+json";
    /// A descriptor is a few hundred bytes; containerd writes it in one line.
    pub const MAX_STDIN: u64 = 64 * 1024;

    /// The arguments containerd passes.
    #[derive(Debug)]
    pub struct Args {
        /// `-name`: the reference as the user typed it.
        pub name: String,
        /// `-digest`: the manifest or index digest containerd resolved.
        pub digest: String,
        /// `-stdin-media-type`.
        pub media_type: String,
    }

    /// Go's flag syntax: `-name X`, `--name X`, `-name=X`.
    pub fn parse_args(argv: &[String]) -> Result<Args, String> {
        let mut name = None;
        let mut digest = None;
        let mut media_type = None;
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            let (key, inline) = match flag.split_once('=') {
                Some((k, v)) => (k, Some(v.to_owned())),
                None => (flag, None),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag -{key} needs a value"))?,
            };
            let slot = match key {
                "name" => &mut name,
                "digest" => &mut digest,
                "stdin-media-type" => &mut media_type,
                other => return Err(format!("unknown flag -{other}")),
            };
            *slot = Some(value);
        }
        // The digest is what containerd pulls; without it only the name could be judged.
        Ok(Args {
            name: name.filter(|n| !n.is_empty()).ok_or("missing -name")?,
            digest: digest
                .filter(|d| !d.is_empty())
                .ok_or("missing -digest (containerd always passes the resolved digest)")?,
            media_type: media_type.unwrap_or_default(),
        })
    }

    /// Reads and checks the descriptor on stdin against `-digest`.
    pub fn read_descriptor(args: &Args, input: impl std::io::Read) -> Result<(), String> {
        if !args.media_type.is_empty() && args.media_type != DESCRIPTOR_MEDIA_TYPE {
            return Err(format!(
                "stdin media type {:?} is not {DESCRIPTOR_MEDIA_TYPE}",
                args.media_type
            ));
        }
        let mut buf = Vec::new();
        input
            .take(MAX_STDIN + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the descriptor on stdin: {e}"))?;
        if buf.len() as u64 > MAX_STDIN {
            return Err(format!(
                "the descriptor on stdin is larger than {MAX_STDIN} bytes"
            ));
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            return Err("no descriptor on stdin (containerd always sends one)".to_owned());
        }
        let desc: serde_json::Value = serde_json::from_slice(&buf)
            .map_err(|e| format!("the descriptor on stdin is not JSON: {e}"))?;
        let digest = desc["digest"]
            .as_str()
            .ok_or("the descriptor on stdin has no digest")?;
        if digest != args.digest {
            return Err(format!(
                "descriptor digest {digest} differs from -digest {}",
                args.digest
            ));
        }
        Ok(())
    }
}
