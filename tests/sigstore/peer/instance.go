package main

// The fake Sigstore instance of one differential run: a Fulcio-like CA (root and
// intermediate), a CT log, a Rekor v1 log and an RFC 3161 timestamp authority, each with
// a twin that the trusted root does not name; and the primitives that make the pieces
// of a signing event the way those services do (leaf certificates with embedded SCTs,
// Rekor entries with signed entry timestamps, inclusion proofs and checkpoints,
// timestamp responses).

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	"github.com/digitorus/timestamp"
	ct "github.com/google/certificate-transparency-go"
	"github.com/google/certificate-transparency-go/ctutil"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	prototrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	trustedRootMediaType = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
	rekorURL             = "https://rekor.test"
	fulcioURL            = "https://fulcio.test"
	ctlogURL             = "https://ctfe.test"
	tsaURL               = "https://tsa.test"
)

var (
	oidIssuerV1   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	oidSCTList    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
	oidExtKeyUse  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamp  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidTSAPolicy  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}
	rekorTreeHost = "rekor.test"
)

// authority: a certificate and its key.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (a authority) pem() []byte { return certPEM(a.cert) }

type instance struct {
	now time.Time
	// Trusted by the trusted root.
	fulcioRoot, fulcioInter authority
	ctlog, rekor            *ecdsa.PrivateKey
	tsaRoot, tsaLeaf        authority
	// Not in the trusted root.
	otherRoot, otherInter authority
	otherCT, otherRekor   *ecdsa.PrivateKey
	otherTSARoot          authority
	otherTSALeaf          authority
	// Rekor's tree ID, in the checkpoint origin "rekor.test - <tree ID>".
	treeID int64

	rootJSON []byte
	trusted  *root.TrustedRoot
}

func newECKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func randomSerial() (*big.Int, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x01
	return new(big.Int).SetBytes(b), nil
}

func spki(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // only P-256 keys made here
	}
	return der
}

// logID: RFC 6962 §3.2, SHA-256 of the DER SubjectPublicKeyInfo.
func logID(k *ecdsa.PrivateKey) []byte {
	h := sha256.Sum256(spki(&k.PublicKey))
	return h[:]
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func signSHA256(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, k, h[:])
}

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// caPair: a self-signed root and an intermediate under it, made like Fulcio's (the
// intermediate restricted to code signing, path length 0).
func caPair(now time.Time, org string) (authority, authority, error) {
	rootKey, err := newECKey()
	if err != nil {
		return authority{}, authority{}, err
	}
	sn, err := randomSerial()
	if err != nil {
		return authority{}, authority{}, err
	}
	rootT := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org},
		NotBefore:             now.Add(-72 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootCert, err := createCert(rootT, rootT, &rootKey.PublicKey, rootKey)
	if err != nil {
		return authority{}, authority{}, err
	}
	interKey, err := newECKey()
	if err != nil {
		return authority{}, authority{}, err
	}
	if sn, err = randomSerial(); err != nil {
		return authority{}, authority{}, err
	}
	interT := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + "-intermediate"},
		NotBefore:             now.Add(-72 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	interCert, err := createCert(interT, rootCert, &interKey.PublicKey, rootKey)
	if err != nil {
		return authority{}, authority{}, err
	}
	return authority{rootCert, rootKey}, authority{interCert, interKey}, nil
}

// tsaPair: a timestamping root and a leaf with the one critical extended key usage
// timeStamping that RFC 3161 §2.3 asks for.
func tsaPair(now time.Time, org string) (authority, authority, error) {
	rootKey, err := newECKey()
	if err != nil {
		return authority{}, authority{}, err
	}
	sn, err := randomSerial()
	if err != nil {
		return authority{}, authority{}, err
	}
	rootT := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " root"},
		NotBefore:             now.Add(-72 * time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	rootCert, err := createCert(rootT, rootT, &rootKey.PublicKey, rootKey)
	if err != nil {
		return authority{}, authority{}, err
	}
	leafKey, err := newECKey()
	if err != nil {
		return authority{}, authority{}, err
	}
	if sn, err = randomSerial(); err != nil {
		return authority{}, authority{}, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamp})
	if err != nil {
		return authority{}, authority{}, err
	}
	leafT := &x509.Certificate{
		SerialNumber:    sn,
		Subject:         pkix.Name{Organization: []string{org}, CommonName: org + " timestamping"},
		NotBefore:       now.Add(-72 * time.Hour),
		NotAfter:        now.Add(365 * 24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUse, Critical: true, Value: eku}},
	}
	leafCert, err := createCert(leafT, rootCert, &leafKey.PublicKey, rootKey)
	if err != nil {
		return authority{}, authority{}, err
	}
	return authority{rootCert, rootKey}, authority{leafCert, leafKey}, nil
}

func newInstance(now time.Time, treeID int64) (*instance, error) {
	in := &instance{now: now, treeID: treeID}
	var err error
	if in.fulcioRoot, in.fulcioInter, err = caPair(now, "fulcio.test"); err != nil {
		return nil, err
	}
	if in.otherRoot, in.otherInter, err = caPair(now, "rogue-ca.test"); err != nil {
		return nil, err
	}
	if in.tsaRoot, in.tsaLeaf, err = tsaPair(now, "tsa.test"); err != nil {
		return nil, err
	}
	if in.otherTSARoot, in.otherTSALeaf, err = tsaPair(now, "rogue-tsa.test"); err != nil {
		return nil, err
	}
	for _, k := range []**ecdsa.PrivateKey{&in.ctlog, &in.rekor, &in.otherCT, &in.otherRekor} {
		if *k, err = newECKey(); err != nil {
			return nil, err
		}
	}
	if in.rootJSON, err = in.trustedRootJSON(); err != nil {
		return nil, err
	}
	if in.trusted, err = root.NewTrustedRootFromJSON(in.rootJSON); err != nil {
		return nil, fmt.Errorf("sigstore-go refuses the trusted root made here: %w", err)
	}
	return in, nil
}

// trustedRootJSON: the instance as a dev.sigstore.trustroot.v1.TrustedRoot, in the JSON
// form Sigstore publishes (protojson: camelCase names, base64 bytes, RFC 3339 times).
func (in *instance) trustedRootJSON() ([]byte, error) {
	start := timestamppb.New(in.now.Add(-48 * time.Hour).Truncate(time.Second))
	logInstance := func(baseURL string, k *ecdsa.PrivateKey) *prototrustroot.TransparencyLogInstance {
		return &prototrustroot.TransparencyLogInstance{
			BaseUrl:       baseURL,
			HashAlgorithm: protocommon.HashAlgorithm_SHA2_256,
			PublicKey: &protocommon.PublicKey{
				RawBytes:   spki(&k.PublicKey),
				KeyDetails: protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256,
				ValidFor:   &protocommon.TimeRange{Start: start},
			},
			LogId: &protocommon.LogId{KeyId: logID(k)},
		}
	}
	chain := func(certs ...*x509.Certificate) *protocommon.X509CertificateChain {
		c := &protocommon.X509CertificateChain{}
		for _, cert := range certs {
			c.Certificates = append(c.Certificates, &protocommon.X509Certificate{RawBytes: cert.Raw})
		}
		return c
	}
	tr := &prototrustroot.TrustedRoot{
		MediaType: trustedRootMediaType,
		Tlogs:     []*prototrustroot.TransparencyLogInstance{logInstance(rekorURL, in.rekor)},
		CertificateAuthorities: []*prototrustroot.CertificateAuthority{{
			Subject:   &protocommon.DistinguishedName{Organization: "fulcio.test", CommonName: "fulcio.test"},
			Uri:       fulcioURL,
			CertChain: chain(in.fulcioInter.cert, in.fulcioRoot.cert),
			ValidFor:  &protocommon.TimeRange{Start: start},
		}},
		Ctlogs: []*prototrustroot.TransparencyLogInstance{logInstance(ctlogURL, in.ctlog)},
		TimestampAuthorities: []*prototrustroot.CertificateAuthority{{
			Subject:   &protocommon.DistinguishedName{Organization: "tsa.test", CommonName: "tsa.test timestamping"},
			Uri:       tsaURL,
			CertChain: chain(in.tsaLeaf.cert, in.tsaRoot.cert),
			ValidFor:  &protocommon.TimeRange{Start: start},
		}},
	}
	raw, err := protojson.Marshal(tr)
	if err != nil {
		return nil, err
	}
	// protojson varies its spacing from build to build; settle it.
	var indented bytes.Buffer
	if err := json.Indent(&indented, raw, "", "  "); err != nil {
		return nil, err
	}
	indented.WriteByte('\n')
	return indented.Bytes(), nil
}

// leafSpec: what a Fulcio-like leaf certificate says.
type leafSpec struct {
	notBefore, notAfter time.Time
	uri, email          string
	issuerV1, issuerV2  string // OIDC issuer extensions; empty: left out
	issuerV2Raw         bool   // 1.8 holds issuerV1's bytes undecorated instead
	eku                 []x509.ExtKeyUsage
	ku                  x509.KeyUsage
	isCA                bool
	sct                 string // "ok", "none", "unknown-log", "bad-signature"
	sctTime             time.Time
	otherCA             bool
}

// issueLeaf makes the leaf certificate for pub as Fulcio does: the precertificate's TBS
// (this certificate's TBS without the SCT list) logged in the CT log, the SCT embedded.
func (in *instance) issueLeaf(s leafSpec, pub crypto.PublicKey) (*x509.Certificate, error) {
	issuer := in.fulcioInter
	if s.otherCA {
		issuer = in.otherInter
	}
	sn, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(spki(pub))
	t := &x509.Certificate{
		SerialNumber: sn,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     s.ku,
		ExtKeyUsage:  s.eku,
		SubjectKeyId: ski[:],
	}
	if s.isCA {
		t.BasicConstraintsValid, t.IsCA = true, true
	}
	if s.uri != "" {
		u, err := url.Parse(s.uri)
		if err != nil {
			return nil, err
		}
		t.URIs = []*url.URL{u}
	}
	if s.email != "" {
		t.EmailAddresses = []string{s.email}
	}
	if s.issuerV1 != "" {
		// The deprecated extension holds the issuer's bytes as they are.
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidIssuerV1, Value: []byte(s.issuerV1)})
	}
	if s.issuerV2 != "" {
		v, err := asn1.MarshalWithParams(s.issuerV2, "utf8")
		if err != nil {
			return nil, err
		}
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidIssuerV2, Value: v})
	}
	if s.issuerV2Raw {
		t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidIssuerV2, Value: []byte(s.issuerV1)})
	}
	pre, err := createCert(t, issuer.cert, pub, issuer.key)
	if err != nil {
		return nil, err
	}
	if s.sct == "none" {
		return pre, nil
	}
	logKey := in.ctlog
	if s.sct == "unknown-log" {
		logKey = in.otherCT
	}
	var keyID [32]byte
	copy(keyID[:], logID(logKey))
	sct := ct.SignedCertificateTimestamp{
		SCTVersion: ct.V1,
		LogID:      ct.LogID{KeyID: keyID},
		Timestamp:  uint64(s.sctTime.UnixMilli()),
		Extensions: ct.CTExtensions{},
	}
	// RFC 6962 §3.2: the precertificate entry is the TBS without the SCT extension
	// (ExtraExtensions go last, so the final certificate's TBS less the SCT list is the
	// one made above) and the hash of the issuer's SubjectPublicKeyInfo.
	tbs := pre.RawTBSCertificate
	if s.sct == "bad-signature" {
		// Signed by the log, but over a TBS that is not this certificate's.
		tbs = append(append([]byte{}, tbs...), 0)
	}
	entry := ct.LogEntry{Leaf: ct.MerkleTreeLeaf{
		Version:  ct.V1,
		LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			Timestamp: sct.Timestamp,
			EntryType: ct.PrecertLogEntryType,
			PrecertEntry: &ct.PreCert{
				IssuerKeyHash:  sha256.Sum256(issuer.cert.RawSubjectPublicKeyInfo),
				TBSCertificate: tbs,
			},
		},
	}}
	input, err := ct.SerializeSCTSignatureInput(sct, entry)
	if err != nil {
		return nil, err
	}
	sig, err := signSHA256(logKey, input)
	if err != nil {
		return nil, err
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	sctBytes, err := cttls.Marshal(sct)
	if err != nil {
		return nil, err
	}
	list, err := cttls.Marshal(ctx509.SignedCertificateTimestampList{SCTList: []ctx509.SerializedSCT{{Val: sctBytes}}})
	if err != nil {
		return nil, err
	}
	ext, err := asn1.Marshal(list)
	if err != nil {
		return nil, err
	}
	t.ExtraExtensions = append(t.ExtraExtensions, pkix.Extension{Id: oidSCTList, Value: ext})
	leaf, err := createCert(t, issuer.cert, pub, issuer.key)
	if err != nil {
		return nil, err
	}
	if s.sct == "ok" {
		// The generator's own check: certificate-transparency-go accepts the SCT.
		chain, err := ctx509.ParseCertificates(append(append([]byte{}, leaf.Raw...), issuer.cert.Raw...))
		if err != nil {
			return nil, err
		}
		if err := ctutil.VerifySCT(&logKey.PublicKey, chain, &sct, true); err != nil {
			return nil, fmt.Errorf("generated SCT does not verify: %w", err)
		}
	}
	return leaf, nil
}

// rekorEntry: one Rekor v1 log entry and the log's promises about it.
type rekorEntry struct {
	body           []byte // canonicalized body
	integratedTime int64
	logIndex       int64
	logID          []byte
	set            []byte
	// Inclusion proof (bundles only).
	proofIndex int64
	treeSize   int64
	rootHash   []byte
	hashes     [][]byte
	checkpoint string
}

// canonicalJSON: JSON Canonicalization Scheme (RFC 8785), as Rekor stores bodies and
// signs entry timestamps.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsoncanonicalizer.Transform(raw)
}

// setPayload: what a signed entry timestamp signs.
func setPayload(body []byte, integratedTime, logIndex int64, id []byte) ([]byte, error) {
	return canonicalJSON(map[string]any{
		"body":           base64.StdEncoding.EncodeToString(body),
		"integratedTime": integratedTime,
		"logID":          hex.EncodeToString(id),
		"logIndex":       logIndex,
	})
}

// merkle: RFC 6962 §2.1 over leaf hashes.
func nodeHash(l, r []byte) []byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(l)
	h.Write(r)
	return h.Sum(nil)
}

func leafHash(data []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, data...))
	return h[:]
}

func split(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func treeHash(leaves [][]byte) []byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := split(len(leaves))
	return nodeHash(treeHash(leaves[:k]), treeHash(leaves[k:]))
}

func auditPath(m int, leaves [][]byte) [][]byte {
	if len(leaves) == 1 {
		return nil
	}
	k := split(len(leaves))
	if m < k {
		return append(auditPath(m, leaves[:k]), treeHash(leaves[k:]))
	}
	return append(auditPath(m-k, leaves[k:]), treeHash(leaves[:k]))
}

// checkpointNote: a Rekor v1 signed tree head, a signed note whose origin is
// "<host> - <tree ID>" and whose signature line is "— <host> base64(key hint || sig)",
// the key hint being the first four bytes of SHA-256 of the key's DER SPKI.
func checkpointNote(k *ecdsa.PrivateKey, treeID, size int64, rootHash []byte, signed []byte) (string, error) {
	text := fmt.Sprintf("%s - %d\n%d\n%s\n", rekorTreeHost, treeID, size, base64.StdEncoding.EncodeToString(rootHash))
	if signed == nil {
		signed = []byte(text)
	}
	sig, err := signSHA256(k, signed)
	if err != nil {
		return "", err
	}
	hint := sha256.Sum256(spki(&k.PublicKey))
	var b bytes.Buffer
	b.WriteString(text)
	b.WriteString("\n")
	fmt.Fprintf(&b, "\u2014 %s %s\n", rekorTreeHost, base64.StdEncoding.EncodeToString(append(hint[:4:4], sig...)))
	return b.String(), nil
}

// timestampResponse: a DER TimeStampResp (RFC 3161 §2.4.2) over data, made by the TSA
// as sigstore's timestamp-authority does (SHA-256 imprint, certificate included).
func timestampResponse(tsa authority, data []byte, at time.Time) ([]byte, error) {
	h := sha256.Sum256(data)
	sn, err := randomSerial()
	if err != nil {
		return nil, err
	}
	ts := timestamp.Timestamp{
		HashAlgorithm:     crypto.SHA256,
		HashedMessage:     h[:],
		Time:              at.UTC().Truncate(time.Second),
		SerialNumber:      sn,
		Policy:            oidTSAPolicy,
		AddTSACertificate: true,
	}
	return ts.CreateResponseWithOpts(tsa.cert, tsa.key, crypto.SHA256)
}
