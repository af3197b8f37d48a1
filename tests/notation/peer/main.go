// notation-peer: the Notary Project's own Go library (notation-go, the code the
// `notation` CLI is a thin layer over) driven from the command line, because the CLI
// module itself is not served by the Go module proxy here. pullguard's tests use it to
// make test certificates, sign images in a registry (JWS or COSE envelopes, tag-schema
// referrers) and ask notation-go's verifier for its verdict on each image.
//
//	notation-peer gen-ca DIR NAME                 # DIR/NAME.key, DIR/NAME.crt (a root CA)
//	notation-peer gen-leaf CA_DIR CA OUT CN [--not-after RFC3339] [--key-usage encipher]   # OUT.key, OUT.crt (leaf, then CA)
//	notation-peer sign --key K --cert C --envelope jws|cose [--expiry 2s] [--tsa URL --tsa-root CERT] REF
//	notation-peer verify --config DIR REF         # DIR/trustpolicy.json, DIR/truststore/x509/...
//	notation-peer forge-jws --key K --cert C REF  # a JWS built here, not by notation-go (which
//	                                              # refuses to sign with some certificates)
//	notation-peer differential --seed N --count M --out DIR   # generated chains, stores and
//	                                              # identities with notation's verdicts (differential.go)
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/dir"
	"github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/notaryproject/tspclient-go"
	"oras.land/oras-go/v2/registry/remote"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: notation-peer gen-ca|gen-leaf|sign|verify ..."))
	}
	var err error
	switch os.Args[1] {
	case "gen-ca":
		err = genCA(os.Args[2:])
	case "gen-leaf":
		err = genLeaf(os.Args[2:])
	case "sign":
		err = sign(os.Args[2:])
	case "verify":
		err = verify(os.Args[2:])
	case "forge-jws":
		err = forgeJWS(os.Args[2:])
	case "differential":
		err = differential(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "notation-peer:", err)
	os.Exit(1)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func newKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return key, writePEM(path, "PRIVATE KEY", der)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return n
}

func genCA(args []string) error {
	if len(args) != 2 {
		return errors.New("gen-ca DIR NAME")
	}
	base := filepath.Join(args[0], args[1])
	key, err := newKey(base + ".key")
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"pullguard tests"}, CommonName: args[1]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * 365 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	return writePEM(base+".crt", "CERTIFICATE", der)
}

func readCA(caDir, name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	crtPEM, err := os.ReadFile(filepath.Join(caDir, name+".crt"))
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(caDir, name+".key"))
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(crtPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("CA files are not PEM")
	}
	crt, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("CA key is not ECDSA")
	}
	return crt, key, nil
}

func genLeaf(args []string) error {
	fs := flag.NewFlagSet("gen-leaf", flag.ContinueOnError)
	notAfter := fs.String("not-after", "", "RFC 3339 end of validity")
	keyUsage := fs.String("key-usage", "sign", "sign (digitalSignature) or encipher (keyEncipherment only)")
	if len(args) < 4 {
		return errors.New("gen-leaf CA_DIR CA OUT CN [--not-after T]")
	}
	if err := fs.Parse(args[4:]); err != nil {
		return err
	}
	ca, caKey, err := readCA(args[0], args[1])
	if err != nil {
		return err
	}
	key, err := newKey(args[2] + ".key")
	if err != nil {
		return err
	}
	end := time.Now().Add(24 * 30 * time.Hour)
	if *notAfter != "" {
		if end, err = time.Parse(time.RFC3339, *notAfter); err != nil {
			return err
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"pullguard tests"}, CommonName: args[3]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     end,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	if *keyUsage == "encipher" {
		tmpl.KeyUsage = x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	return os.WriteFile(args[2]+".crt", chain, 0o600)
}

// repository: plain HTTP (the tests' registry is on 127.0.0.1), referrers through the
// tag schema (docker-registry 2.8 has no referrers API).
func repository(ref string) (registry.Repository, error) {
	r, err := remote.NewRepository(ref)
	if err != nil {
		return nil, err
	}
	r.PlainHTTP = true
	if err := r.SetReferrersCapability(false); err != nil {
		return nil, err
	}
	return registry.NewRepository(r), nil
}

func sign(args []string) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	keyPath := fs.String("key", "", "signing key (PEM)")
	certPath := fs.String("cert", "", "certificate chain (PEM, leaf first)")
	envelope := fs.String("envelope", "jws", "jws or cose")
	expiry := fs.Duration("expiry", 0, "signature expiry")
	tsaURL := fs.String("tsa", "", "RFC 3161 timestamp authority URL")
	tsaRoot := fs.String("tsa-root", "", "the timestamp authority's root certificate (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("sign ... REF")
	}
	media := map[string]string{"jws": jws.MediaTypeEnvelope, "cose": cose.MediaTypeEnvelope}[*envelope]
	if media == "" {
		return fmt.Errorf("envelope %q is not jws or cose", *envelope)
	}
	s, err := signer.NewFromFiles(*keyPath, *certPath)
	if err != nil {
		return err
	}
	ref := fs.Arg(0)
	repo, err := repository(ref)
	if err != nil {
		return err
	}
	opts := notation.SignerSignOptions{SignatureMediaType: media, ExpiryDuration: *expiry}
	if *tsaURL != "" {
		if opts.Timestamper, err = tspclient.NewHTTPTimestamper(nil, *tsaURL); err != nil {
			return err
		}
		raw, err := os.ReadFile(*tsaRoot)
		if err != nil {
			return err
		}
		opts.TSARootCAs = x509.NewCertPool()
		if !opts.TSARootCAs.AppendCertsFromPEM(raw) {
			return errors.New("--tsa-root holds no PEM certificate")
		}
	}
	desc, err := notation.Sign(context.Background(), s, repo, notation.SignOptions{
		SignerSignOptions: opts,
		ArtifactReference: ref,
	})
	if err != nil {
		return err
	}
	fmt.Println(desc.Digest)
	return nil
}

func verify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	config := fs.String("config", "", "directory with trustpolicy.json and truststore/")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("verify --config DIR REF")
	}
	raw, err := os.ReadFile(filepath.Join(*config, "trustpolicy.json"))
	if err != nil {
		return err
	}
	var doc trustpolicy.Document
	if err := json.Unmarshal(raw, &doc); err != nil {
		return err
	}
	store := truststore.NewX509TrustStore(dir.NewSysFS(*config))
	v, err := verifier.New(&doc, store, nil)
	if err != nil {
		return err
	}
	ref := fs.Arg(0)
	repo, err := repository(ref)
	if err != nil {
		return err
	}
	desc, outcomes, err := notation.Verify(context.Background(), v, repo, notation.VerifyOptions{ArtifactReference: ref, MaxSignatureAttempts: 50})
	if err != nil {
		// Say which check failed, for the tests' messages.
		for _, o := range outcomes {
			if o.Error != nil {
				fmt.Fprintln(os.Stderr, "notation-peer: outcome:", o.Error)
			}
			for _, r := range o.VerificationResults {
				if r.Error != nil {
					fmt.Fprintf(os.Stderr, "notation-peer: %s: %v\n", r.Type, r.Error)
				}
			}
		}
		return err
	}
	fmt.Println("verified", desc.Digest)
	return nil
}

// forgeJWS writes a JWS envelope the way the specification lays it out, signed ES256 with
// KEY, with CHAIN as x5c, and attaches it to REF like notation-go does; notation-go's own
// signer refuses certificates its verifier must also refuse, so tests make those here.
func forgeJWS(args []string) error {
	fs := flag.NewFlagSet("forge-jws", flag.ContinueOnError)
	keyPath := fs.String("key", "", "signing key (PEM, PKCS#8 ECDSA P-256)")
	certPath := fs.String("cert", "", "certificate chain (PEM, leaf first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("forge-jws ... REF")
	}
	keyPEM, err := os.ReadFile(*keyPath)
	if err != nil {
		return err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return errors.New("key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("key is not ECDSA")
	}
	chainPEM, err := os.ReadFile(*certPath)
	if err != nil {
		return err
	}
	var x5c []string
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		x5c = append(x5c, base64.StdEncoding.EncodeToString(b.Bytes))
	}
	ref := fs.Arg(0)
	repo, err := repository(ref)
	if err != nil {
		return err
	}
	ctx := context.Background()
	subject, err := repo.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(map[string]any{"targetArtifact": map[string]any{
		"mediaType": subject.MediaType, "digest": subject.Digest, "size": subject.Size}})
	protected, _ := json.Marshal(map[string]any{
		"alg": "ES256", "crit": []string{"io.cncf.notary.signingScheme"},
		"cty":                          "application/vnd.cncf.notary.payload.v1+json",
		"io.cncf.notary.signingScheme": "notary.x509",
		"io.cncf.notary.signingTime":   time.Now().UTC().Format(time.RFC3339),
	})
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString(protected) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	env, _ := json.Marshal(map[string]any{
		"payload": b64.EncodeToString(payload), "protected": b64.EncodeToString(protected),
		"header": map[string]any{"x5c": x5c}, "signature": b64.EncodeToString(sig)})
	_, desc, err := repo.PushSignature(ctx, jws.MediaTypeEnvelope, env, subject, nil)
	if err != nil {
		return err
	}
	fmt.Println(desc.Digest)
	return nil
}
