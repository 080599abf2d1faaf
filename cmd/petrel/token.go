package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/petrel-mqtt/petrel/internal/auth"
)

// tokenMain prints a signed JWT for a tenant and roles.
func tokenMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", "", "tenant (the sub claim); required")
	scope := fs.String("scope", "", "comma-separated role names (the mqttScope claim)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime (the exp claim)")
	key := fs.String("key", "", "signing key file: an HMAC secret, or a PEM private key (RSA, EC, Ed25519); required")
	alg := fs.String("alg", "", "HS256|HS384|HS512|RS256|RS384|RS512|PS256|ES256|ES384|EdDSA (default: from the key)")
	kid := fs.String("kid", "", "key id header")
	iss := fs.String("iss", "", "issuer claim")
	aud := fs.String("aud", "", "audience claim")
	claim := fs.String("scope-claim", "mqttScope", "name of the roles claim")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: petrel token --tenant T --scope ROLE,... --ttl 1h --key FILE [--alg ALG] [--kid ID]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *tenant == "" || *key == "" {
		fs.Usage()
		return 2
	}
	var roles []string
	for _, r := range strings.Split(*scope, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roles = append(roles, r)
		}
	}
	s, err := auth.LoadSigner(*key, *alg, *kid)
	if err != nil {
		fmt.Fprintf(stderr, "petrel token: %v\n", err)
		return 1
	}
	tok, err := s.Issue(auth.Claims{Tenant: *tenant, Roles: roles, TTL: *ttl, Issuer: *iss, Audience: *aud, ScopeClaim: *claim})
	if err != nil {
		fmt.Fprintf(stderr, "petrel token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
