package main

// notation-peer differential --seed N --count M --out DIR
//
// Makes many certificate chains, trust-store certificates and trusted identities, valid
// and broken in every field Notation's rules look at, and records what the Notary
// Project's own code says of each: notation-core-go's ValidateCodeSigningCertChain,
// notation-go's trust store loader, and notation-go's trust policy validation.
// crates/notation-core/tests/differential.rs asks pullguard about the same inputs and
// fails on any disagreement not listed in docs/notation-differences.md.
//
// DIR/cases.jsonl: one JSON object per line,
//   {"kind":"chain","id":"chain-0001","labels":[...],"store_kind":"ca","store_index":2,
//    "chain_ok":false,"chain_error":"...","store_ok":true,"store_error":""}
//   {"kind":"identity","id":"identity-0001","labels":[...],"identities":[...],"ok":true,"error":""}
// DIR/chain-0001.pem: the chain, leaf first.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand"
	"os"
	"path/filepath"
	"strings"
	"time"

	corex509 "github.com/notaryproject/notation-core-go/x509"
	"github.com/notaryproject/notation-go/dir"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
)

type chainCase struct {
	Kind       string   `json:"kind"`
	ID         string   `json:"id"`
	Labels     []string `json:"labels"`
	StoreKind  string   `json:"store_kind"`
	StoreIndex int      `json:"store_index"`
	ChainOK    bool     `json:"chain_ok"`
	ChainError string   `json:"chain_error"`
	StoreOK    bool     `json:"store_ok"`
	StoreError string   `json:"store_error"`
}

type identityCase struct {
	Kind       string   `json:"kind"`
	ID         string   `json:"id"`
	Labels     []string `json:"labels"`
	Identities []string `json:"identities"`
	OK         bool     `json:"ok"`
	Error      string   `json:"error"`
}

func differential(args []string) error {
	fs := flag.NewFlagSet("differential", flag.ContinueOnError)
	seed := fs.Int64("seed", 1, "random seed")
	count := fs.Int("count", 200, "cases of each kind")
	out := fs.String("out", "", "output directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("differential --out DIR is required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(*out, "cases.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	r := mrand.New(mrand.NewSource(*seed))
	for i := 1; i <= *count; i++ {
		c, err := oneChain(r, *out, fmt.Sprintf("chain-%04d", i))
		if err != nil {
			return err
		}
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	for i := 1; i <= *count; i++ {
		if err := enc.Encode(oneIdentity(r, fmt.Sprintf("identity-%04d", i))); err != nil {
			return err
		}
	}
	return nil
}

// pick: the first option (the one Notation accepts) three times in four, else any, so
// that most cases differ from a valid one in a field or two.
func pick(r *mrand.Rand, labels *[]string, name string, options ...string) string {
	o := options[0]
	if r.Intn(4) == 0 {
		o = options[r.Intn(len(options))]
	}
	*labels = append(*labels, name+"="+o)
	return o
}

// anyOf: every option alike.
func anyOf(r *mrand.Rand, labels *[]string, name string, options ...string) string {
	o := options[r.Intn(len(options))]
	*labels = append(*labels, name+"="+o)
	return o
}

// keyUsageExt encodes a key usage extension by hand, so that its criticality can vary
// (Go's own always marks it critical).
func keyUsageExt(bits []int, critical bool) pkix.Extension {
	var b [2]byte
	length := 0
	for _, bit := range bits {
		b[bit/8] |= 1 << (7 - uint(bit%8))
		if bit+1 > length {
			length = bit + 1
		}
	}
	bs := asn1.BitString{Bytes: b[:(length+7)/8], BitLength: length}
	v, _ := asn1.Marshal(bs)
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: critical, Value: v}
}

const (
	kuDigitalSignature  = 0
	kuContentCommitment = 1
	kuKeyEncipherment   = 2
	kuKeyAgreement      = 4
	kuCertSign          = 5
	kuCRLSign           = 6
)

// keys made once per kind: what is under test is the certificates, and RSA keys are
// slow to make.
var keys = map[string]crypto.Signer{}

func newKeyOf(kind string) (crypto.Signer, error) {
	if k, ok := keys[kind]; ok {
		return k, nil
	}
	k, err := makeKey(kind)
	if err == nil {
		keys[kind] = k
	}
	return k, err
}

func makeKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa2560":
		return rsa.GenerateKey(rand.Reader, 2560)
	case "rsa3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("key kind %q", kind)
}

// caTemplate: a CA certificate varied in basic constraints, path length and key usage.
func caTemplate(r *mrand.Rand, labels *[]string, role, cn string) *x509.Certificate {
	t := &x509.Certificate{
		SerialNumber: big.NewInt(r.Int63()),
		Subject:      pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"pullguard differential"}, CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
	}
	switch pick(r, labels, role+".bc", "ca", "notca", "absent") {
	case "ca":
		t.BasicConstraintsValid, t.IsCA = true, true
	case "notca":
		t.BasicConstraintsValid = true
	}
	// A path length only on a CA (Go refuses to write one elsewhere).
	t.MaxPathLen = -1
	if t.IsCA {
		switch anyOf(r, labels, role+".pathlen", "none", "none", "none", "0", "1") {
		case "0":
			t.MaxPathLen, t.MaxPathLenZero = 0, true
		case "1":
			t.MaxPathLen = 1
		}
	}
	switch pick(r, labels, role+".ku", "certsign-critical", "certsign-noncritical", "digsig-critical", "absent") {
	case "certsign-critical":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuCertSign, kuCRLSign}, true))
	case "certsign-noncritical":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuCertSign, kuCRLSign}, false))
	case "digsig-critical":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature}, true))
	}
	return t
}

func leafTemplate(r *mrand.Rand, labels *[]string) *x509.Certificate {
	t := &x509.Certificate{
		SerialNumber: big.NewInt(r.Int63()),
		Subject:      pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"pullguard differential"}, CommonName: "signer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
	}
	switch anyOf(r, labels, "leaf.bc", "absent", "notca", "notca", "notca", "notca", "ca") {
	case "notca":
		t.BasicConstraintsValid = true
	case "ca":
		t.BasicConstraintsValid, t.IsCA = true, true
	}
	switch pick(r, labels, "leaf.ku", "digsig-critical", "digsig-noncritical", "digsig+commitment", "digsig+keyencipherment", "digsig+keyagreement", "digsig+certsign", "keyencipherment-only", "absent") {
	case "digsig-critical":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature}, true))
	case "digsig-noncritical":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature}, false))
	case "digsig+commitment":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature, kuContentCommitment}, true))
	case "digsig+keyencipherment":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature, kuKeyEncipherment}, true))
	case "digsig+keyagreement":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature, kuKeyAgreement}, true))
	case "digsig+certsign":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuDigitalSignature, kuCertSign}, true))
	case "keyencipherment-only":
		t.ExtraExtensions = append(t.ExtraExtensions, keyUsageExt([]int{kuKeyEncipherment}, true))
	}
	switch pick(r, labels, "leaf.eku", "codesigning", "none", "codesigning+serverauth", "codesigning+clientauth", "codesigning+email", "codesigning+timestamping", "codesigning+ocsp", "codesigning+unknown", "any", "serverauth") {
	case "codesigning":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	case "codesigning+serverauth":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageServerAuth}
	case "codesigning+clientauth":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageClientAuth}
	case "codesigning+email":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageEmailProtection}
	case "codesigning+timestamping":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageTimeStamping}
	case "codesigning+ocsp":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageOCSPSigning}
	case "codesigning+unknown":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
		t.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 99999, 1}}
	case "any":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	case "serverauth":
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	return t
}

func oneChain(r *mrand.Rand, out, id string) (*chainCase, error) {
	var labels []string
	shape := anyOf(r, &labels, "shape", "root-leaf", "root-inter-leaf", "root-inter-leaf", "root-inter-inter-leaf", "self-signed-leaf", "no-root", "extra-root")
	if shape == "self-signed-leaf" {
		key, err := newKeyOf(anyOf(r, &labels, "leaf.key", "p256", "p384", "rsa2048"))
		if err != nil {
			return nil, err
		}
		t := leafTemplate(r, &labels)
		der, err := x509.CreateCertificate(rand.Reader, t, t, key.Public(), key)
		if err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		return judge(r, out, id, labels, []*x509.Certificate{c})
	}
	rootKey, err := newKeyOf(anyOf(r, &labels, "root.key", "p256", "p256", "p384", "rsa2048", "ed25519"))
	if err != nil {
		return nil, err
	}
	rootT := caTemplate(r, &labels, "root", "root")
	rootDER, err := x509.CreateCertificate(rand.Reader, rootT, rootT, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(rootDER)
	issuer, issuerKey := root, rootKey
	inters := 0
	switch shape {
	case "root-inter-leaf", "no-root", "extra-root":
		inters = 1
	case "root-inter-inter-leaf":
		inters = 2
	}
	var cas []*x509.Certificate
	for n := 0; n < inters; n++ {
		k, err := newKeyOf(anyOf(r, &labels, fmt.Sprintf("inter%d.key", n+1), "p256", "p384", "rsa2048"))
		if err != nil {
			return nil, err
		}
		t := caTemplate(r, &labels, fmt.Sprintf("inter%d", n+1), fmt.Sprintf("intermediate %d", n+1))
		der, err := x509.CreateCertificate(rand.Reader, t, issuer, k.Public(), issuerKey)
		if err != nil {
			return nil, err
		}
		c, _ := x509.ParseCertificate(der)
		cas = append([]*x509.Certificate{c}, cas...)
		issuer, issuerKey = c, k
	}
	leafKey, err := newKeyOf(anyOf(r, &labels, "leaf.key", "p256", "p256", "p384", "p521", "rsa2048", "rsa3072", "rsa2560", "ed25519"))
	if err != nil {
		return nil, err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate(r, &labels), issuer, leafKey.Public(), issuerKey)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	chain := append([]*x509.Certificate{leaf}, cas...)
	switch shape {
	case "no-root":
	case "extra-root":
		chain = append(chain, root, root)
	default:
		chain = append(chain, root)
	}
	return judge(r, out, id, labels, chain)
}

// judge writes the chain and records notation-core-go's verdict on it, and notation-go's
// on a trust store holding one of its certificates.
func judge(r *mrand.Rand, out, id string, labels []string, chain []*x509.Certificate) (*chainCase, error) {
	var pemBytes []byte
	for _, c := range chain {
		pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(filepath.Join(out, id+".pem"), pemBytes, 0o644); err != nil {
		return nil, err
	}
	c := &chainCase{Kind: "chain", ID: id, Labels: labels}
	if err := corex509.ValidateCodeSigningCertChain(chain, nil); err != nil {
		c.ChainError = err.Error()
	} else {
		c.ChainOK = true
	}
	c.StoreIndex = r.Intn(len(chain))
	c.StoreKind = []string{"ca", "tsa"}[r.Intn(2)]
	root := filepath.Join(out, "stores", id)
	storeDir := filepath.Join(root, dir.X509TrustStoreDir(c.StoreKind, "s"))
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, err
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[c.StoreIndex].Raw})
	if err := os.WriteFile(filepath.Join(storeDir, "cert.pem"), cert, 0o644); err != nil {
		return nil, err
	}
	store := truststore.NewX509TrustStore(dir.NewSysFS(root))
	if _, err := store.GetCertificates(context.Background(), truststore.Type(c.StoreKind), "s"); err != nil {
		c.StoreError = err.Error()
	} else {
		c.StoreOK = true
	}
	return c, nil
}

// oneIdentity: one or two x509.subject identities of one trust policy statement, made of
// attributes Notation requires, repeats, multi-valued RDNs, escapes and junk.
func oneIdentity(r *mrand.Rand, id string) *identityCase {
	var labels []string
	dn := func(n int) string {
		parts := []string{}
		if pick(r, &labels, fmt.Sprintf("dn%d.c", n), "yes", "no") == "yes" {
			parts = append(parts, "C=US")
		}
		switch pick(r, &labels, fmt.Sprintf("dn%d.st", n), "ST", "S", "no") {
		case "ST":
			parts = append(parts, "ST=WA")
		case "S":
			parts = append(parts, "S=WA")
		}
		switch pick(r, &labels, fmt.Sprintf("dn%d.o", n), "plain", "escaped-comma", "hex-comma", "multi", "empty", "no") {
		case "plain":
			parts = append(parts, "O=Acme")
		case "escaped-comma":
			parts = append(parts, `O=Acme\, Inc.`)
		case "hex-comma":
			parts = append(parts, `O=Acme\2C Inc.`)
		case "multi":
			parts = append(parts, "O=Acme+OU=Dev")
		case "empty":
			parts = append(parts, "O=")
		}
		switch pick(r, &labels, fmt.Sprintf("dn%d.cn", n), "one", "two", "none", "hash", "lower-type", "oid-type") {
		case "one":
			parts = append(parts, fmt.Sprintf("CN=signer%d", r.Intn(3)))
		case "two":
			parts = append(parts, "CN=acme", "CN=evil")
		case "hash":
			parts = append(parts, "CN=#0403616263")
		case "lower-type":
			parts = append(parts, "cn=signer")
		case "oid-type":
			parts = append(parts, "2.5.4.3=signer")
		}
		if anyOf(r, &labels, fmt.Sprintf("dn%d.order", n), "as-is", "reversed") == "reversed" {
			for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
				parts[i], parts[j] = parts[j], parts[i]
			}
		}
		sep := anyOf(r, &labels, fmt.Sprintf("dn%d.sep", n), ", ", ",", "; ")
		return strings.Join(parts, sep)
	}
	ids := []string{"x509.subject: " + dn(1)}
	if anyOf(r, &labels, "identities", "one", "one", "two") == "two" {
		ids = append(ids, "x509.subject: "+dn(2))
	}
	doc := trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  "p",
			RegistryScopes:        []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: "strict"},
			TrustStores:           []string{"ca:s"},
			TrustedIdentities:     ids,
		}},
	}
	c := &identityCase{Kind: "identity", ID: id, Labels: labels, Identities: ids}
	if err := doc.Validate(); err != nil {
		c.Error = err.Error()
	} else {
		c.OK = true
	}
	return c
}
