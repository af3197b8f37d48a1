// Command olareg-peer serves olareg (github.com/olareg/olareg), a registry that
// implements the OCI 1.1 referrers API and pages its answers with `Link: <…>; rel=next`
// once they pass a size, in memory, on 127.0.0.1, for pullguard's tests: the paging
// Debian's docker-registry (no referrers API) cannot show. olareg's own command does not
// expose the page size; this one does.
//
// Usage: olareg-peer --port-file FILE [--referrers-limit BYTES]
// It writes the port it listens on to FILE once it accepts connections.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/olareg/olareg"
	"github.com/olareg/olareg/config"
)

func main() {
	portFile := flag.String("port-file", "", "where to write the port listened on")
	limit := flag.Int64("referrers-limit", 0, "bytes per referrers answer before it pages (0: olareg's 4 MiB)")
	flag.Parse()
	if *portFile == "" {
		log.Fatal("--port-file is required")
	}
	s := olareg.New(config.Config{
		Storage: config.ConfigStorage{StoreType: config.StoreMem},
		API:     config.ConfigAPI{Referrer: config.ConfigAPIReferrer{Limit: *limit}},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := os.WriteFile(*portFile, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(os.Stderr, "olareg-peer: listening on 127.0.0.1:%d\n", port)
	log.Fatal(srv.Serve(ln))
}
