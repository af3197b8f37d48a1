module pullguard.test/olareg-peer

go 1.25.0

require github.com/olareg/olareg v0.2.2

require (
	github.com/goccy/go-yaml v1.19.2 // indirect
	github.com/sudo-bmitch/oci-digest v0.1.2 // indirect
	golang.org/x/crypto v0.53.0 // indirect
)
