//! The Notary Project certificate profile, each rule on certificates made by `openssl`
//! for the purpose: what notation-core-go v1.3.0 refuses in a signature's chain, and
//! what notation-go v1.3.2 refuses in a trust store, pullguard refuses too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use notation_core::profile::{
    check_chain, check_store_certificate, check_tsa_chain, key_spec, KeySpec, StoreKind,
};
use sigstore_core::certs::Cert;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key: `ec:P-256`, `ec:P-384`, `ec:P-521`, `rsa:2048`…
fn key(dir: &Path, name: &str, kind: &str) {
    let (alg, opt) = kind.split_once(':').unwrap();
    let opt = if alg == "ec" {
        format!("ec_paramgen_curve:{opt}")
    } else {
        format!("rsa_keygen_bits:{opt}")
    };
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            alg,
            "-pkeyopt",
            &opt,
            "-out",
            &format!("{name}.key"),
        ],
    );
}

/// A self-signed certificate `name` with extensions `ext` (openssl's x509v3 syntax).
fn self_signed(dir: &Path, name: &str, kind: &str, ext: &str) -> Cert {
    key(dir, name, kind);
    std::fs::write(
        dir.join(format!("{name}.cnf")),
        format!("[req]\ndistinguished_name = dn\n[dn]\n{ext}"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/C=US/ST=WA/O=Acme/CN={name}"),
            "-days",
            "30",
            "-config",
            &format!("{name}.cnf"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.crt"),
        ],
    );
    load(dir, name)
}

/// A certificate `name` issued by `issuer` with extensions `ext`.
fn issued(dir: &Path, name: &str, issuer: &str, kind: &str, ext: &str) -> Cert {
    key(dir, name, kind);
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    std::fs::write(
        dir.join(format!("{name}.cnf")),
        "[req]\ndistinguished_name = dn\n[dn]\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/C=US/ST=WA/O=Acme/CN={name}"),
            "-config",
            &format!("{name}.cnf"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{issuer}.crt"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.crt"),
        ],
    );
    load(dir, name)
}

fn load(dir: &Path, name: &str) -> Cert {
    let pem = std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
    let der = sigstore_core::keys::pem_blocks(&pem, "CERTIFICATE").unwrap();
    Cert::parse(&der[0]).unwrap()
}

const CA: &str = "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
const LEAF: &str = "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n";

fn refused(chain: &[Cert], because: &str) {
    let e = check_chain(chain).unwrap_err();
    assert!(e.contains(because), "wanted {because:?}, got {e}");
}

#[test]
fn a_chain_notation_accepts_passes() {
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    let inter = issued(d.path(), "inter", "root", "ec:P-384", CA);
    let leaf = issued(d.path(), "leaf", "inter", "rsa:3072", LEAF);
    check_chain(&[leaf.clone(), inter, root]).unwrap();
    assert_eq!(key_spec(&leaf), Some(KeySpec::Rsa(3072)));
}

#[test]
fn path_length_and_key_cert_sign_of_every_issuer_are_enforced() {
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(
        d.path(),
        "root",
        "ec:P-256",
        "[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\n",
    );
    let inter = issued(d.path(), "inter", "root", "ec:P-256", CA);
    let leaf = issued(d.path(), "leaf", "inter", "ec:P-256", LEAF);
    refused(&[leaf, inter, root], "path length");

    let d = tempfile::tempdir().unwrap();
    let root = self_signed(
        d.path(),
        "root",
        "ec:P-256",
        "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n",
    );
    let leaf = issued(d.path(), "leaf", "root", "ec:P-256", LEAF);
    refused(&[leaf, root], "not issued by");

    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    let notca = issued(
        d.path(),
        "notca",
        "root",
        "ec:P-256",
        "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,keyCertSign,digitalSignature\n",
    );
    let leaf = issued(d.path(), "leaf", "notca", "ec:P-256", LEAF);
    refused(&[leaf, notca, root], "not issued by");
}

#[test]
fn the_leaf_must_be_a_code_signing_certificate_and_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    for (name, ext, because) in [
        ("server", "[v3]\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning,serverAuth\n", "serverAuth"),
        ("stamps", "[v3]\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning,timeStamping\n", "timeStamping"),
        ("soft", "[v3]\nkeyUsage=digitalSignature\nextendedKeyUsage=codeSigning\n", "critical"),
        ("noku", "[v3]\nextendedKeyUsage=codeSigning\n", "must be present"),
        ("encipher", "[v3]\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=codeSigning\n", "keyEncipherment"),
        ("ca", "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n", "must not be a CA"),
        ("noeku", "[v3]\nkeyUsage=critical,digitalSignature\n", "codeSigning"),
    ] {
        let leaf = issued(d.path(), name, "root", "ec:P-256", ext);
        refused(&[leaf, root.clone()], because);
    }
    let small = issued(d.path(), "small", "root", "rsa:2560", LEAF);
    refused(&[small, root.clone()], "2560 bits");
    let p521 = issued(d.path(), "p521", "root", "ec:P-521", LEAF);
    assert_eq!(key_spec(&p521).and_then(KeySpec::algorithm), Some("ES512"));
}

#[test]
fn a_chain_must_end_with_a_self_signed_root_and_hold_no_other_self_signed_certificate() {
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    let inter = issued(d.path(), "inter", "root", "ec:P-256", CA);
    let leaf = issued(d.path(), "leaf", "inter", "ec:P-256", LEAF);
    refused(&[leaf.clone(), inter.clone()], "self-signed root");
    refused(
        &[leaf, inter, root.clone(), root],
        "self-signed but not the chain's last",
    );
}

#[test]
fn trust_stores_hold_cas_or_self_signed_certificates_only() {
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    let inter = issued(d.path(), "inter", "root", "ec:P-256", CA);
    let leaf = issued(d.path(), "leaf", "inter", "ec:P-256", LEAF);
    let selfsigned = root_leaf(d.path());
    check_store_certificate(&root, StoreKind::Signing).unwrap();
    check_store_certificate(&inter, StoreKind::Signing).unwrap();
    check_store_certificate(&selfsigned, StoreKind::Signing).unwrap();
    let e = check_store_certificate(&leaf, StoreKind::Signing).unwrap_err();
    assert!(e.contains("neither a CA nor self-signed"), "{e}");
    check_store_certificate(&root, StoreKind::Tsa).unwrap();
    assert!(check_store_certificate(&inter, StoreKind::Tsa).is_err());
    assert!(check_store_certificate(&selfsigned, StoreKind::Tsa).is_err());
}

/// A self-signed code-signing certificate (not a CA).
fn root_leaf(dir: &Path) -> Cert {
    self_signed(dir, "selfsigned", "ec:P-256", LEAF)
}

/// A JWS notation-go wrote, its chain swapped for a P-521 leaf under a root of the
/// trust store and its algorithm for ES512 (the signature bytes no longer matter:
/// pullguard refuses before it would check them).
#[test]
fn p521_signatures_are_unsupported_not_bad() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let d = tempfile::tempdir().unwrap();
    let root = self_signed(d.path(), "root", "ec:P-256", CA);
    let leaf = issued(d.path(), "leaf", "root", "ec:P-521", LEAF);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("signature.jws")).unwrap()).unwrap();
    let mut protected: serde_json::Value =
        serde_json::from_slice(&url.decode(env["protected"].as_str().unwrap()).unwrap()).unwrap();
    protected["alg"] = "ES512".into();
    env["protected"] = url.encode(serde_json::to_vec(&protected).unwrap()).into();
    env["header"]["x5c"] = serde_json::json!([b64.encode(leaf.der()), b64.encode(root.der())]);
    let digest = std::fs::read_to_string(fixtures.join("digest")).unwrap();
    let manifest = std::fs::read(fixtures.join("manifest.json")).unwrap();
    let target = notation_core::Target {
        digest: digest.trim(),
        size: manifest.len() as u64,
        media_type: "application/vnd.oci.image.manifest.v1+json",
    };
    let ids = ["*".to_owned()];
    let trust = notation_core::Trust {
        ca: std::slice::from_ref(&root),
        signing_authority: &[],
        tsa: &[],
        identities: &ids,
        level: notation_core::Level::Strict,
        now: time::OffsetDateTime::now_utc(),
    };
    let e = notation_core::verify(
        notation_core::envelope::JWS,
        &serde_json::to_vec(&env).unwrap(),
        &target,
        &trust,
    )
    .unwrap_err();
    assert_eq!(e.reason, notation_core::Reason::Unsupported, "{e:?}");
    assert!(e.message.contains("P-521"), "{}", e.message);
}

/// The attack: a countersignature whose token carries many certificates, each tried
/// as its signer and as each step of its path (a signature check apiece) before the
/// path is known to reach no trusted root. Tokens made by openssl's TSA: the signer
/// and its root, then as many unrelated CA certificates as the case needs.
#[test]
fn a_timestamp_token_carrying_many_certificates_is_refused_before_they_are_tried() {
    use proof_kit::tsa::{verify_token, Authorities};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let root = self_signed(dir, "tsaroot", "ec:P-256", CA);
    issued(
        dir,
        "tsa",
        "tsaroot",
        "ec:P-256",
        "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
    );
    let pem = |name: &str| std::fs::read(dir.join(format!("{name}.crt"))).unwrap();
    let mut others = Vec::new();
    for i in 0..10 {
        self_signed(dir, &format!("other{i}"), "ec:P-256", CA);
        others.push(pem(&format!("other{i}")));
    }
    std::fs::write(dir.join("signature"), b"what the countersignature covers").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ts.cnf"),
        "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = ./serial\ncrypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\nordering = no\ntsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "ts",
            "-query",
            "-data",
            "signature",
            "-sha256",
            "-cert",
            "-out",
            "req.tsq",
        ],
    );
    // A token carrying the signer, its root and `n` unrelated certificates.
    let token = |n: usize| {
        let mut chain = pem("tsaroot");
        for o in &others[..n] {
            chain.extend_from_slice(o);
        }
        std::fs::write(dir.join("chain.pem"), chain).unwrap();
        openssl(
            dir,
            &[
                "ts",
                "-reply",
                "-config",
                "ts.cnf",
                "-queryfile",
                "req.tsq",
                "-signer",
                "tsa.crt",
                "-inkey",
                "tsa.key",
                "-chain",
                "chain.pem",
                "-token_out",
                "-out",
                "token.der",
            ],
        );
        std::fs::read(dir.join("token.der")).unwrap()
    };
    let roots = [root];
    let check = |token: &[u8]| {
        verify_token(
            token,
            b"what the countersignature covers",
            Authorities::Roots(&roots),
        )
    };
    check(&token(0)).unwrap();
    // Ten certificates in all: still read.
    check(&token(8)).unwrap();
    let e = check(&token(10)).unwrap_err();
    assert!(e.to_string().contains("carries 12 certificates"), "{e}");
}

/// A countersignature's chain as notation-go checks it after verifying the token
/// (`ValidateTimestampingCertChain`): what a trusted TSA's root could issue and
/// notation-go refuses to count — a CA certificate with the timeStamping usage signing
/// tokens itself, the usage not critical or beside another, no key usage — is refused.
#[test]
fn a_countersignatures_chain_follows_the_timestamping_profile() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let root = self_signed(dir, "tsaroot", "ec:P-256", CA);
    let leaf = |name: &str, ext: &str| issued(dir, name, "tsaroot", "ec:P-256", ext);
    let good = leaf(
        "tsa",
        "[v3]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
    );
    check_tsa_chain(&[good, root.clone()]).unwrap();
    // Key usage present but not critical: notation-go wants it present only.
    let lax_ku = leaf(
        "tsa-ku",
        "[v3]\nkeyUsage=digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
    );
    check_tsa_chain(&[lax_ku, root.clone()]).unwrap();
    for (name, ext, because) in [
        (
            "tsa-ca",
            "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
            "must not be a CA",
        ),
        (
            "tsa-noncrit",
            "[v3]\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=timeStamping\n",
            "must be marked critical",
        ),
        (
            "tsa-two",
            "[v3]\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping,codeSigning\n",
            "only extended key usage must be timeStamping",
        ),
        (
            "tsa-noku",
            "[v3]\nextendedKeyUsage=critical,timeStamping\n",
            "key usage extension must be present",
        ),
        (
            "tsa-sign",
            "[v3]\nkeyUsage=critical,digitalSignature,keyCertSign\nextendedKeyUsage=critical,timeStamping\n",
            "digitalSignature only",
        ),
    ] {
        let e = check_tsa_chain(&[leaf(name, ext), root.clone()]).unwrap_err();
        assert!(e.contains(because), "{name}: wanted {because:?}, got {e}");
    }
    // An intermediate without keyCertSign (present, not critical) breaks the path.
    issued(
        dir,
        "inter",
        "tsaroot",
        "ec:P-256",
        "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=cRLSign\n",
    );
    let under = issued(
        dir,
        "tsa-under",
        "inter",
        "ec:P-256",
        "[v3]\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
    );
    assert!(check_tsa_chain(&[under, load(dir, "inter"), root]).is_err());
}

/// A certificate whose algorithm outside the signed part differs from the one inside
/// it: Go's parser (Notation's, cosign's) refuses it, and so does pullguard's.
#[test]
fn a_certificate_whose_outer_and_inner_algorithms_differ_does_not_parse() {
    let d = tempfile::tempdir().unwrap();
    let leaf = self_signed(d.path(), "root", "ec:P-256", CA);
    let mut der = leaf.der().to_vec();
    // ecdsa-with-SHA256; its last occurrence is the outer AlgorithmIdentifier.
    let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    let at = der.windows(oid.len()).rposition(|w| w == oid).unwrap();
    Cert::parse(&der).unwrap();
    der[at + oid.len() - 1] = 0x03; // ecdsa-with-SHA384
    let e = Cert::parse(&der).unwrap_err();
    assert!(e.to_string().contains("outer and inner"), "{e}");
}
