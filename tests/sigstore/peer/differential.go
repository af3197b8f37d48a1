package main

// sigstore-peer differential --seed N --count M --out DIR
//
// Makes one fake Sigstore instance (instance.go) and M keyless signing events for
// container images, valid and broken in every field a verifier checks, and records what
// Sigstore's own code says of each, asked the way `cosign verify --certificate-identity
// (-regexp) --certificate-oidc-issuer --trusted-root` asks it:
//
//   - "bundle" layout (a Sigstore bundle v0.3 holding a DSSE envelope of an in-toto
//     statement, as cosign v3 attaches to an image): cosign.VerifyNewBundle, which is
//     sigstore-go's verifier with cosign's options, then cosign's in-toto subject claim
//     check, as `cosign verify` does for an image with bundles;
//   - "classic" layout (a simple-signing payload and the dev.cosignproject.cosign /
//     dev.sigstore.cosign layer annotations): cosign.VerifyImageSignature with the
//     simple-signing claim check, offline.
//
// Case composition and mutations follow the seed; keys, serial numbers and ECDSA
// signatures come from crypto/rand, and times are relative to the time of the run.
//
// DIR/trusted_root.json: the instance, in Sigstore's trusted root format.
// DIR/cases.jsonl: one JSON object per line,
//
//	{"id":"case-0001","layout":"bundle"|"classic","labels":["leaf.no-sct"],
//	 "digest":"sha256:<hex>","tlog":true,"tsa":false,
//	 "identity":{"subject":"...","subject_regex":"","issuer":"..."},
//	 "bundle":"case-0001.bundle.json",            (bundle layout only)
//	 "payload":"case-0001.payload",               (classic: the signed payload; bundle:
//	                                               the DSSE payload, for reference)
//	 "annotations":"case-0001.annotations.json",  (classic layout only)
//	 "peer_ok":false,"peer_error":"..."}
//
// "tlog": the verifier must find the signature in the transparency log (cosign's
// IgnoreTlog is its negation); "tsa": the verifier must verify an RFC 3161 timestamp
// (cosign's UseSignedTimestamps, `--use-signed-timestamps`). peer_error begins with the
// stage that refused: "cosign: " (the verification proper) or "cosign claim: " (the
// payload's claim about the image).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	mrand "math/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v3/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v3/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v3/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/rekor/pkg/generated/models"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	bundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	inTotoType      = "application/vnd.in-toto+json"
	imageRepo       = "registry.test/app"
	githubIssuer    = "https://token.actions.githubusercontent.com"
	googleIssuer    = "https://accounts.google.com"
)

type identityRule struct {
	Subject      string `json:"subject"`
	SubjectRegex string `json:"subject_regex"`
	Issuer       string `json:"issuer"`
}

type caseRecord struct {
	ID          string       `json:"id"`
	Layout      string       `json:"layout"`
	Labels      []string     `json:"labels"`
	Digest      string       `json:"digest"`
	Tlog        bool         `json:"tlog"`
	TSA         bool         `json:"tsa"`
	Identity    identityRule `json:"identity"`
	Bundle      string       `json:"bundle,omitempty"`
	Payload     string       `json:"payload"`
	Annotations string       `json:"annotations,omitempty"`
	PeerOK      bool         `json:"peer_ok"`
	PeerError   string       `json:"peer_error"`
}

// mutation: one way a signing event differs from a valid one. Two mutations go
// together in a case only if their categories are apart, and never one that needs the
// Rekor entry with one that takes it away.
type mutation struct {
	name       string
	cats       []string
	bundleOnly bool
	needsEntry bool
	dropsEntry bool
}

var mutations = []mutation{
	{name: "sig.other-payload", cats: []string{"sig"}},
	{name: "leaf.no-codesigning-eku", cats: []string{"eku"}},
	{name: "leaf.no-eku", cats: []string{"eku"}},
	{name: "leaf.extra-eku-serverauth", cats: []string{"eku"}},
	{name: "leaf.no-digitalsignature-ku", cats: []string{"ku"}},
	{name: "leaf.is-ca", cats: []string{"bc"}},
	{name: "leaf.expired-before-log", cats: []string{"time"}, needsEntry: true},
	{name: "leaf.not-yet-valid", cats: []string{"time"}},
	{name: "leaf.no-sct", cats: []string{"sct"}},
	{name: "leaf.sct-unknown-log", cats: []string{"sct"}},
	{name: "leaf.sct-bad-signature", cats: []string{"sct"}},
	{name: "leaf.other-ca", cats: []string{"ca"}},
	{name: "leaf.issuer-legacy-only", cats: []string{"issuer-ext"}},
	{name: "leaf.issuer-v2-only", cats: []string{"issuer-ext"}},
	{name: "leaf.issuer-conflict", cats: []string{"issuer-ext"}},
	{name: "leaf.issuer-v2-not-der", cats: []string{"issuer-ext"}},
	{name: "leaf.san-email", cats: []string{"san"}},
	{name: "set.bad-signature", cats: []string{"set"}, needsEntry: true},
	{name: "set.time-changed", cats: []string{"set"}, needsEntry: true},
	{name: "set.unknown-log", cats: []string{"set"}, needsEntry: true},
	{name: "set.future-time", cats: []string{"set", "time"}, needsEntry: true},
	{name: "tlog.body-other-signature", cats: []string{"body"}, needsEntry: true},
	{name: "tlog.body-other-digest", cats: []string{"body"}, needsEntry: true},
	{name: "tlog.body-other-cert", cats: []string{"body"}, needsEntry: true},
	{name: "tlog.missing", cats: []string{"presence"}, dropsEntry: true},
	{name: "tlog.not-required-no-tsa", cats: []string{"presence", "tsa"}},
	{name: "proof.bad-root", cats: []string{"proof"}, bundleOnly: true, needsEntry: true},
	{name: "proof.bad-path", cats: []string{"proof"}, bundleOnly: true, needsEntry: true},
	{name: "checkpoint.bad-signature", cats: []string{"proof"}, bundleOnly: true, needsEntry: true},
	{name: "tsa.only", cats: []string{"presence", "tsa"}, dropsEntry: true},
	{name: "tsa.over-other-bytes", cats: []string{"tsa"}},
	{name: "tsa.untrusted", cats: []string{"tsa"}},
	{name: "identity.subject-mismatch", cats: []string{"id-subject"}},
	{name: "identity.issuer-mismatch", cats: []string{"id-issuer"}},
	{name: "identity.regex-unanchored", cats: []string{"id-subject"}},
	{name: "identity.regex-anchored-match", cats: []string{"id-subject"}},
	{name: "identity.regex-anchored-mismatch", cats: []string{"id-subject"}},
	{name: "subject.other-digest", cats: []string{"subject"}},
	{name: "digest.case-upper", cats: []string{"subject"}},
}

func compatible(a, b mutation) bool {
	if a.name == b.name || (a.needsEntry && b.dropsEntry) || (b.needsEntry && a.dropsEntry) {
		return false
	}
	for _, x := range a.cats {
		for _, y := range b.cats {
			if x == y {
				return false
			}
		}
	}
	return true
}

func mutationByName(name string) mutation {
	for _, m := range mutations {
		if m.name == name {
			return m
		}
	}
	panic("no mutation " + name)
}

// deck: every (mutation, layout) pair once, in an order the seed shuffles, dealt again
// when done, so that every mutation meets both layouts in a run of ~100 cases.
type deckItem struct {
	mutation int
	layout   string
}

type deck struct{ items []deckItem }

func (d *deck) next(r *mrand.Rand) deckItem {
	if len(d.items) == 0 {
		for i, m := range mutations {
			d.items = append(d.items, deckItem{i, "bundle"})
			if !m.bundleOnly {
				d.items = append(d.items, deckItem{i, "classic"})
			}
		}
		r.Shuffle(len(d.items), func(i, j int) { d.items[i], d.items[j] = d.items[j], d.items[i] })
	}
	it := d.items[0]
	d.items = d.items[1:]
	return it
}

func differential(args []string) error {
	fs := flag.NewFlagSet("differential", flag.ContinueOnError)
	seed := fs.Int64("seed", 1, "random seed")
	count := fs.Int("count", 200, "cases")
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
	// cosign logs warnings about timestamps it could not verify; the verdict says it.
	log.SetOutput(io.Discard)

	r := mrand.New(mrand.NewSource(*seed))
	in, err := newInstance(time.Now(), 1_000_000_000_000_000_000+r.Int63n(1_000_000_000_000_000_000))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "trusted_root.json"), in.rootJSON, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(*out, "cases.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetEscapeHTML(false)

	var d deck
	accepted, validRefused := 0, 0
	for i := 1; i <= *count; i++ {
		layout, labels := compose(r, &d)
		c, err := oneCase(r, in, *out, fmt.Sprintf("case-%04d", i), layout, labels)
		if err != nil {
			return fmt.Errorf("case-%04d %v: %w", i, labels, err)
		}
		if c.PeerOK {
			accepted++
		} else if labels[0] == "valid" {
			validRefused++
		}
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "sigstore-peer: %d cases, %d accepted, %d refused (%d labelled valid refused)\n",
		*count, accepted, *count-accepted, validRefused)
	return nil
}

// compose: three cases in ten valid, the rest one mutation from the deck and, one time
// in five, a second one compatible with it.
func compose(r *mrand.Rand, d *deck) (string, []string) {
	if r.Intn(10) < 3 {
		return []string{"bundle", "classic"}[r.Intn(2)], []string{"valid"}
	}
	it := d.next(r)
	first := mutations[it.mutation]
	labels := []string{first.name}
	if r.Intn(5) == 0 {
		var cands []mutation
		for _, m := range mutations {
			if compatible(first, m) && (!m.bundleOnly || it.layout == "bundle") {
				cands = append(cands, m)
			}
		}
		if len(cands) > 0 {
			labels = append(labels, cands[r.Intn(len(cands))].name)
		}
	}
	return it.layout, labels
}

func randomHex(r *mrand.Rand) string {
	b := make([]byte, 32)
	r.Read(b)
	return hex.EncodeToString(b)
}

// pae: DSSE's pre-authentication encoding.
func pae(payloadType string, body []byte) []byte {
	return []byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(body), body))
}

type statementSubject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

type statement struct {
	Type          string             `json:"_type"`
	Subject       []statementSubject `json:"subject"`
	PredicateType string             `json:"predicateType"`
	Predicate     map[string]any     `json:"predicate"`
}

// imagePayload: what is signed, naming the image by the digest written as given
// ("sha256:<hex>").
func imagePayload(layout, digest string) ([]byte, error) {
	if layout == "bundle" {
		return json.Marshal(statement{
			Type:          "https://in-toto.io/Statement/v1",
			Subject:       []statementSubject{{Name: imageRepo, Digest: map[string]string{"sha256": strings.TrimPrefix(digest, "sha256:")}}},
			PredicateType: "https://sigstore.dev/cosign/sign/v1",
			Predicate:     map[string]any{},
		})
	}
	var p payload.SimpleContainerImage
	p.Critical.Identity.DockerReference = imageRepo
	p.Critical.Image.DockerManifestDigest = digest
	p.Critical.Type = payload.CosignSignatureType
	return json.Marshal(p)
}

// signedBytes: what the signature of a layout covers.
func signedBytes(layout string, p []byte) []byte {
	if layout == "bundle" {
		return pae(inTotoType, p)
	}
	return p
}

func oneCase(r *mrand.Rand, in *instance, out, id, layout string, labels []string) (*caseRecord, error) {
	has := map[string]bool{}
	for _, l := range labels {
		has[l] = true
	}
	c := &caseRecord{ID: id, Layout: layout, Labels: labels}
	digestHex := randomHex(r)
	c.Digest = "sha256:" + digestHex

	// What the verifier is asked to require, and what the event has.
	tsaRoll, missingTSA := r.Intn(10) < 3, r.Intn(2) == 0
	c.TSA = tsaRoll
	switch {
	case has["tsa.only"], has["tsa.over-other-bytes"], has["tsa.untrusted"]:
		c.TSA = true
	case has["tlog.not-required-no-tsa"]:
		c.TSA = false
	case has["tlog.missing"]:
		c.TSA = missingTSA
	}
	c.Tlog = !has["tsa.only"] && !has["tlog.not-required-no-tsa"]
	hasEntry := !has["tlog.missing"] && !has["tsa.only"]

	// Times: signed an hour to a day ago, with a ten-minute certificate.
	now := in.now
	signTime := now.Add(-time.Duration(60+r.Intn(1200))*time.Minute - time.Duration(r.Intn(60))*time.Second).Truncate(time.Second)
	if has["set.future-time"] {
		signTime = now.Add(-2 * time.Minute).Truncate(time.Second)
	}
	notBefore, notAfter := signTime, signTime.Add(10*time.Minute)
	if has["leaf.not-yet-valid"] {
		notBefore = signTime.Add(5 * time.Minute)
		notAfter = notBefore.Add(10 * time.Minute)
	}
	integrated := signTime.Add(time.Duration(20+r.Intn(40)) * time.Second)
	if has["leaf.expired-before-log"] {
		integrated = notAfter.Add(time.Duration(60+r.Intn(600)) * time.Second)
	}
	if has["set.future-time"] {
		integrated = now.Add(5 * time.Minute).Truncate(time.Second)
	}
	tsaTime := signTime.Add(time.Duration(10+r.Intn(10)) * time.Second)

	// The signer's identity.
	owner := []string{"acme", "globex", "initech"}[r.Intn(3)]
	repo := []string{"app", "api", "web"}[r.Intn(3)]
	workflow := []string{"release.yml", "build.yml"}[r.Intn(2)]
	ref := []string{"refs/heads/main", "refs/tags/v1.2.3"}[r.Intn(2)]
	user := []string{"alice", "bob", "carol"}[r.Intn(3)]
	spec := leafSpec{
		notBefore: notBefore,
		notAfter:  notAfter,
		eku:       []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ku:        x509.KeyUsageDigitalSignature,
		sct:       "ok",
		sctTime:   signTime.Add(time.Duration(r.Intn(1000)) * time.Millisecond),
		isCA:      has["leaf.is-ca"],
		otherCA:   has["leaf.other-ca"],
	}
	var san, oidcIssuer string
	if has["leaf.san-email"] {
		spec.email = user + "@example.com"
		san, oidcIssuer = spec.email, googleIssuer
	} else {
		spec.uri = fmt.Sprintf("https://github.com/%s/%s/.github/workflows/%s@%s", owner, repo, workflow, ref)
		san, oidcIssuer = spec.uri, githubIssuer
	}
	spec.issuerV1, spec.issuerV2 = oidcIssuer, oidcIssuer
	switch {
	case has["leaf.issuer-legacy-only"]:
		spec.issuerV2 = ""
	case has["leaf.issuer-v2-only"]:
		spec.issuerV1 = ""
	case has["leaf.issuer-conflict"]:
		// The two extensions disagree: the deprecated one (first) names another issuer.
		spec.issuerV1 = "https://issuer.evil.test"
	case has["leaf.issuer-v2-not-der"]:
		// The 1.8 extension holds the bare string, as the deprecated 1.1 does.
		spec.issuerV2, spec.issuerV2Raw = "", true
	}
	switch {
	case has["leaf.no-codesigning-eku"]:
		spec.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	case has["leaf.no-eku"]:
		spec.eku = nil
	case has["leaf.extra-eku-serverauth"]:
		spec.eku = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning, x509.ExtKeyUsageServerAuth}
	}
	if has["leaf.no-digitalsignature-ku"] {
		spec.ku = x509.KeyUsageContentCommitment
	}
	switch {
	case has["leaf.no-sct"]:
		spec.sct = "none"
	case has["leaf.sct-unknown-log"]:
		spec.sct = "unknown-log"
	case has["leaf.sct-bad-signature"]:
		spec.sct = "bad-signature"
	}
	key, err := newECKey()
	if err != nil {
		return nil, err
	}
	leaf, err := in.issueLeaf(spec, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	chain := append(in.fulcioInter.pem(), in.fulcioRoot.pem()...)
	if spec.otherCA {
		chain = append(in.otherInter.pem(), in.otherRoot.pem()...)
	}

	// The rule.
	c.Identity = identityRule{Subject: san, Issuer: oidcIssuer}
	switch {
	case has["identity.subject-mismatch"]:
		if spec.email != "" {
			c.Identity.Subject = []string{"mallory@example.com", strings.ToUpper(san[:1]) + san[1:], san + ".evil"}[r.Intn(3)]
		} else {
			c.Identity.Subject = []string{
				fmt.Sprintf("https://github.com/%s/other/.github/workflows/%s@%s", owner, workflow, ref),
				fmt.Sprintf("https://github.com/%s/%s/.github/workflows/%s", owner, repo, workflow),
				san + "x",
			}[r.Intn(3)]
		}
	case has["identity.regex-unanchored"]:
		c.Identity.Subject = ""
		if spec.email != "" {
			c.Identity.SubjectRegex = `example\.com`
		} else {
			c.Identity.SubjectRegex = owner + "/" + repo
		}
	case has["identity.regex-anchored-match"]:
		c.Identity.Subject = ""
		if spec.email != "" {
			c.Identity.SubjectRegex = `^[a-z]+@example\.com$`
		} else {
			c.Identity.SubjectRegex = `^https://github\.com/` + owner + "/" + repo + `/\.github/workflows/[^/@]+@refs/(heads|tags)/.+$`
		}
	case has["identity.regex-anchored-mismatch"]:
		c.Identity.Subject = ""
		if spec.email != "" {
			c.Identity.SubjectRegex = `^example\.com$`
		} else {
			c.Identity.SubjectRegex = `^https://github\.com/` + owner + "/" + repo + `$`
		}
	}
	if has["identity.issuer-mismatch"] {
		other := googleIssuer
		if oidcIssuer == googleIssuer {
			other = githubIssuer
		}
		c.Identity.Issuer = []string{other, oidcIssuer + "/", "http://" + strings.TrimPrefix(oidcIssuer, "https://")}[r.Intn(3)]
	}
	if c.Identity.SubjectRegex != "" {
		if _, err := regexp.Compile(c.Identity.SubjectRegex); err != nil {
			return nil, err
		}
	}

	// The payload and its signature.
	claimed := c.Digest
	switch {
	case has["subject.other-digest"]:
		claimed = "sha256:" + randomHex(r)
	case has["digest.case-upper"]:
		claimed = "sha256:" + strings.ToUpper(digestHex)
	}
	pl, err := imagePayload(layout, claimed)
	if err != nil {
		return nil, err
	}
	signed := signedBytes(layout, pl)
	otherPayload, err := imagePayload(layout, "sha256:"+randomHex(r))
	if err != nil {
		return nil, err
	}
	otherSigned := signedBytes(layout, otherPayload)
	sigInput := signed
	if has["sig.other-payload"] {
		sigInput = otherSigned
	}
	sig, err := signSHA256(key, sigInput)
	if err != nil {
		return nil, err
	}
	c.Payload = id + ".payload"
	if err := os.WriteFile(filepath.Join(out, c.Payload), pl, 0o644); err != nil {
		return nil, err
	}

	// The Rekor entry.
	var entry *rekorEntry
	if hasEntry {
		entry, err = makeEntry(r, in, has, event{layout: layout, payload: pl, sigInput: sigInput, sig: sig, key: key,
			otherSigned: otherSigned, spec: spec, leaf: leaf, integrated: integrated})
		if err != nil {
			return nil, err
		}
	}

	// The timestamp.
	var tsr []byte
	if c.TSA {
		tsa := in.tsaLeaf
		if has["tsa.untrusted"] {
			tsa = in.otherTSALeaf
		}
		over := sig
		if has["tsa.over-other-bytes"] {
			over = otherSigned
		}
		if tsr, err = timestampResponse(tsa, over, tsaTime); err != nil {
			return nil, err
		}
	}

	h, err := v1.NewHash(c.Digest)
	if err != nil {
		return nil, err
	}
	co := &cosign.CheckOpts{
		TrustedMaterial: in.trusted,
		Identities: []cosign.Identity{{
			Issuer: c.Identity.Issuer, Subject: c.Identity.Subject, SubjectRegExp: c.Identity.SubjectRegex,
		}},
		IgnoreTlog:          !c.Tlog,
		UseSignedTimestamps: c.TSA,
		Offline:             true,
	}
	var verr error
	if layout == "bundle" {
		c.Bundle = id + ".bundle.json"
		raw, err := bundleJSON(pl, sig, leaf, entry, tsr)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, c.Bundle), raw, 0o644); err != nil {
			return nil, err
		}
		if verr, err = judgeBundle(raw, h, digestHex, co); err != nil {
			return nil, err
		}
	} else {
		c.Annotations = id + ".annotations.json"
		raw, err := annotationsJSON(pl, sig, leaf, chain, entry, tsr)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, c.Annotations), raw, 0o644); err != nil {
			return nil, err
		}
		if verr, err = judgeClassic(raw, pl, h, co); err != nil {
			return nil, err
		}
	}
	if verr != nil {
		c.PeerError = verr.Error()
	} else {
		c.PeerOK = true
	}
	return c, nil
}

// event: what makeEntry logs.
type event struct {
	layout      string
	payload     []byte
	sigInput    []byte // what sig signs
	sig         []byte
	key         *ecdsa.PrivateKey
	otherSigned []byte // other bytes the signer could have signed
	spec        leafSpec
	leaf        *x509.Certificate
	integrated  time.Time
}

// makeEntry: the Rekor v1 entry of the event (hashedrekord for classic, dsse for
// bundles), its signed entry timestamp and, for bundles, an inclusion proof in a small
// tree and the checkpoint over it.
func makeEntry(r *mrand.Rand, in *instance, has map[string]bool, ev event) (*rekorEntry, error) {
	bodySig := ev.sig
	if has["tlog.body-other-signature"] {
		// Another signature by the same key over the same bytes (ECDSA signatures are
		// randomized): valid, but not the one being verified.
		s, err := signSHA256(ev.key, ev.sigInput)
		if err != nil {
			return nil, err
		}
		bodySig = s
	}
	digest := sha256.Sum256(ev.payload)
	if has["tlog.body-other-digest"] {
		digest = sha256.Sum256(ev.otherSigned)
	}
	bodyCert := certPEM(ev.leaf)
	if has["tlog.body-other-cert"] {
		// A certificate for the same identity, of another key.
		k, err := newECKey()
		if err != nil {
			return nil, err
		}
		other, err := in.issueLeaf(ev.spec, &k.PublicKey)
		if err != nil {
			return nil, err
		}
		bodyCert = certPEM(other)
	}
	sha := "sha256"
	version := "0.0.1"
	var model any
	if ev.layout == "bundle" {
		env, err := json.Marshal(map[string]any{
			"payload": base64.StdEncoding.EncodeToString(ev.payload), "payloadType": inTotoType,
			"signatures": []map[string]string{{"sig": base64.StdEncoding.EncodeToString(ev.sig)}},
		})
		if err != nil {
			return nil, err
		}
		envHash := sha256.Sum256(env)
		b64sig := base64.StdEncoding.EncodeToString(bodySig)
		verifier := strfmt.Base64(bodyCert)
		model = &models.DSSE{APIVersion: &version, Spec: &models.DSSEV001Schema{
			EnvelopeHash: &models.DSSEV001SchemaEnvelopeHash{Algorithm: &sha, Value: ptr(hex.EncodeToString(envHash[:]))},
			PayloadHash:  &models.DSSEV001SchemaPayloadHash{Algorithm: &sha, Value: ptr(hex.EncodeToString(digest[:]))},
			Signatures:   []*models.DSSEV001SchemaSignaturesItems0{{Signature: &b64sig, Verifier: &verifier}},
		}}
	} else {
		model = &models.Hashedrekord{APIVersion: &version, Spec: &models.HashedrekordV001Schema{
			Data: &models.HashedrekordV001SchemaData{Hash: &models.HashedrekordV001SchemaDataHash{
				Algorithm: &sha, Value: ptr(hex.EncodeToString(digest[:])),
			}},
			Signature: &models.HashedrekordV001SchemaSignature{
				Content:   strfmt.Base64(bodySig),
				PublicKey: &models.HashedrekordV001SchemaSignaturePublicKey{Content: strfmt.Base64(bodyCert)},
			},
		}}
	}
	body, err := canonicalJSON(model)
	if err != nil {
		return nil, err
	}
	logKey := in.rekor
	if has["set.unknown-log"] {
		logKey = in.otherRekor
	}
	e := &rekorEntry{
		body:           body,
		integratedTime: ev.integrated.Unix(),
		logIndex:       100_000_000 + r.Int63n(10_000_000),
		logID:          logID(logKey),
	}
	signedIndex := e.logIndex
	if has["set.bad-signature"] {
		signedIndex++ // the log's signature, over another entry
	}
	msg, err := setPayload(e.body, e.integratedTime, signedIndex, e.logID)
	if err != nil {
		return nil, err
	}
	if e.set, err = signSHA256(logKey, msg); err != nil {
		return nil, err
	}
	if has["set.time-changed"] {
		e.integratedTime += int64(1 + r.Intn(30))
	}
	if ev.layout != "bundle" {
		return e, nil
	}
	size := 1 + r.Intn(12)
	if has["proof.bad-path"] && size < 2 {
		size = 2 + r.Intn(11)
	}
	index := r.Intn(size)
	leaves := make([][]byte, size)
	for i := range leaves {
		leaves[i] = leafHash([]byte(fmt.Sprintf("entry %d of another signer %s", i, randomHex(r))))
	}
	leaves[index] = leafHash(e.body)
	e.proofIndex, e.treeSize = int64(index), int64(size)
	e.rootHash = treeHash(leaves)
	e.hashes = auditPath(index, leaves)
	if has["proof.bad-root"] {
		e.rootHash = append([]byte{}, e.rootHash...)
		e.rootHash[0] ^= 0x01
	}
	if has["proof.bad-path"] {
		e.hashes[0] = append([]byte{}, e.hashes[0]...)
		e.hashes[0][0] ^= 0x01
	}
	var signedNote []byte
	if has["checkpoint.bad-signature"] {
		signedNote = []byte(fmt.Sprintf("%s - %d\n%d\n%s\n", rekorTreeHost, in.treeID, size+1, base64.StdEncoding.EncodeToString(e.rootHash)))
	}
	if e.checkpoint, err = checkpointNote(logKey, in.treeID, int64(size), e.rootHash, signedNote); err != nil {
		return nil, err
	}
	return e, nil
}

func ptr[T any](v T) *T { return &v }

// bundleJSON: a Sigstore bundle v0.3 as cosign v3 attaches to an image.
func bundleJSON(pl, sig []byte, leaf *x509.Certificate, e *rekorEntry, tsr []byte) ([]byte, error) {
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: leaf.Raw}},
	}
	if e != nil {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{{
			LogIndex:         e.logIndex,
			LogId:            &protocommon.LogId{KeyId: e.logID},
			KindVersion:      &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"},
			IntegratedTime:   e.integratedTime,
			InclusionPromise: &protorekor.InclusionPromise{SignedEntryTimestamp: e.set},
			InclusionProof: &protorekor.InclusionProof{
				LogIndex:   e.proofIndex,
				RootHash:   e.rootHash,
				TreeSize:   e.treeSize,
				Hashes:     e.hashes,
				Checkpoint: &protorekor.Checkpoint{Envelope: e.checkpoint},
			},
			CanonicalizedBody: e.body,
		}}
	}
	if tsr != nil {
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: tsr}},
		}
	}
	b := &protobundle.Bundle{
		MediaType:            bundleMediaType,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     pl,
			PayloadType: inTotoType,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	raw, err := protojson.Marshal(b)
	if err != nil {
		return nil, err
	}
	// protojson varies its spacing from build to build; settle it.
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// annotationsJSON: the signature layer's annotations as cosign writes them (its own
// static.Signature makes them).
func annotationsJSON(pl, sig []byte, leaf *x509.Certificate, chain []byte, e *rekorEntry, tsr []byte) ([]byte, error) {
	opts := []static.Option{static.WithCertChain(certPEM(leaf), chain)}
	if e != nil {
		opts = append(opts, static.WithBundle(&cbundle.RekorBundle{
			SignedEntryTimestamp: e.set,
			Payload: cbundle.RekorPayload{
				Body:           base64.StdEncoding.EncodeToString(e.body),
				IntegratedTime: e.integratedTime,
				LogIndex:       e.logIndex,
				LogID:          hex.EncodeToString(e.logID),
			},
		}))
	}
	if tsr != nil {
		opts = append(opts, static.WithRFC3161Timestamp(&cbundle.RFC3161Timestamp{SignedRFC3161Timestamp: tsr}))
	}
	s, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(sig), opts...)
	if err != nil {
		return nil, err
	}
	ann, err := s.Annotations()
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(ann, "", "  ")
}

// judgeBundle: `cosign verify` on an image with a bundle attached, from the bytes
// written: sigstore-go's verifier with cosign's options, then the in-toto subject claim.
// The first error is the reference's verdict, the second the peer's own failure.
func judgeBundle(raw []byte, h v1.Hash, digestHex string, co *cosign.CheckOpts) (error, error) {
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("cosign: loading bundle: %w", err), nil
	}
	digest, err := hex.DecodeString(digestHex)
	if err != nil {
		return nil, err
	}
	if _, err := cosign.VerifyNewBundle(context.Background(), co, verify.WithArtifactDigest("sha256", digest), &b); err != nil {
		return fmt.Errorf("cosign: %w", err), nil
	}
	env, err := json.Marshal(b.GetDsseEnvelope())
	if err != nil {
		return nil, err
	}
	att, err := static.NewAttestation(env)
	if err != nil {
		return nil, err
	}
	if err := cosign.IntotoSubjectClaimVerifier(att, h, nil); err != nil {
		return fmt.Errorf("cosign claim: %w", err), nil
	}
	return nil, nil
}

// judgeClassic: `cosign verify` on an image with a classic signature layer, built from
// the annotations written as cosign builds it from a registry's manifest (the claim
// check on the payload is part of cosign.VerifyImageSignature).
func judgeClassic(raw, pl []byte, h v1.Hash, co *cosign.CheckOpts) (error, error) {
	var ann map[string]string
	if err := json.Unmarshal(raw, &ann); err != nil {
		return nil, err
	}
	opts := []static.Option{static.WithCertChain([]byte(ann[static.CertificateAnnotationKey]), []byte(ann[static.ChainAnnotationKey]))}
	if v, ok := ann[static.BundleAnnotationKey]; ok {
		var rb cbundle.RekorBundle
		if err := json.Unmarshal([]byte(v), &rb); err != nil {
			return nil, err
		}
		opts = append(opts, static.WithBundle(&rb))
	}
	if v, ok := ann[static.RFC3161TimestampAnnotationKey]; ok {
		var ts cbundle.RFC3161Timestamp
		if err := json.Unmarshal([]byte(v), &ts); err != nil {
			return nil, err
		}
		opts = append(opts, static.WithRFC3161Timestamp(&ts))
	}
	sig, err := static.NewSignature(pl, ann[static.SignatureAnnotationKey], opts...)
	if err != nil {
		return nil, err
	}
	co.ClaimVerifier = cosign.SimpleClaimVerifier
	if _, err := cosign.VerifyImageSignature(context.Background(), sig, h, co); err != nil {
		return fmt.Errorf("cosign: %w", err), nil
	}
	return nil, nil
}
