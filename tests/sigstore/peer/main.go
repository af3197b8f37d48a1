// sigstore-peer: Sigstore's own Go code (sigstore-go, and cosign's library, the code the
// `cosign verify` command is a thin layer over) driven from the command line, so that
// pullguard's tests can ask it the questions they ask pullguard.
//
//	sigstore-peer differential --seed N --count M --out DIR   # a fake Sigstore instance,
//	                                              # generated signing events and the
//	                                              # reference verdict on each (differential.go)
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: sigstore-peer differential --seed N --count M --out DIR"))
	}
	var err error
	switch os.Args[1] {
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
	fmt.Fprintln(os.Stderr, "sigstore-peer:", err)
	os.Exit(1)
}
