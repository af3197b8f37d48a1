//! The simple-signing payload cosign signs for an image:
//! `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},
//! "type":"cosign container image signature"},"optional":{...}}`.

use proof_kit::canonical::Json;

use crate::{Error, Reason};

/// The `critical.type` cosign writes for image signatures.
pub const COSIGN_TYPE: &str = "cosign container image signature";

/// What a payload signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`, as written.
    pub digest: String,
    /// `critical.identity.docker-reference`, as written.
    pub reference: String,
}

impl Payload {
    /// Parses a payload. Duplicate keys are refused: two readers of one document must
    /// not see two different digests.
    pub fn parse(bytes: &[u8]) -> Result<Payload, Error> {
        let bad = |m: String| Error::new(Reason::BadSignature, m);
        if bytes.len() > crate::MAX_DOCUMENT {
            return Err(bad(format!(
                "signed payload of {} bytes is over the limit",
                bytes.len()
            )));
        }
        let json = Json::parse(bytes)
            .map_err(|e| bad(format!("signed payload is not JSON cosign writes: {e}")))?;
        let critical = json
            .get("critical")
            .ok_or_else(|| bad("signed payload has no critical section".to_owned()))?;
        let text = |v: Option<&Json>, what: &str| match v {
            Some(Json::String(s)) => Ok(s.clone()),
            _ => Err(bad(format!("signed payload has no {what}"))),
        };
        let kind = text(critical.get("type"), "critical.type")?;
        if !kind.eq_ignore_ascii_case(COSIGN_TYPE) {
            return Err(bad(format!(
                "signed payload is a {kind:?}, not a {COSIGN_TYPE:?}"
            )));
        }
        let digest = text(
            critical
                .get("image")
                .and_then(|i| i.get("docker-manifest-digest")),
            "critical.image.docker-manifest-digest",
        )?;
        let reference = text(
            critical
                .get("identity")
                .and_then(|i| i.get("docker-reference")),
            "critical.identity.docker-reference",
        )?;
        Ok(Payload { digest, reference })
    }

    /// Does it sign exactly `expect.digest`, for the repository the rule expects?
    pub fn check(&self, expect: &crate::Expect<'_>) -> Result<(), Error> {
        if self.digest != expect.digest {
            return Err(Error::new(
                Reason::DigestMismatch,
                format!(
                    "a valid signature signs {} but the image pulled is {}",
                    shown(&self.digest),
                    expect.digest
                ),
            ));
        }
        if let Some(same) = expect.same_repository {
            if !same(&self.reference) {
                return Err(Error::new(
                    Reason::IdentityMismatch,
                    format!(
                        "a valid signature was made for repository {}, not this one",
                        shown(&self.reference)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Untrusted text for a message: at most 200 characters, debug-quoted.
pub(crate) fn shown(s: &str) -> String {
    format!("{:?}", s.chars().take(200).collect::<String>())
}
