package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/petrel-mqtt/petrel/internal/auth"
)

// passwdMain reads a password (prompting twice on a terminal, else the
// first line of stdin) and prints its hash for the users file.
func passwdMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("petrel passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scram := fs.Bool("scram", false, "print SCRAM-SHA-256 credentials (the users file's scram_sha256) instead of a password hash")
	argon := fs.Bool("argon2id", false, "hash with argon2id instead of bcrypt")
	cost := fs.Int("cost", auth.DefaultBcryptCost, "bcrypt cost (4..31)")
	iter := fs.Int("iterations", auth.DefaultSCRAMIterations, "SCRAM PBKDF2 iterations (at least 4096)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: petrel passwd [--scram] [--argon2id] [--cost N] < password")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "petrel passwd: %v\n", err)
		return 1
	}
	var out string
	switch {
	case *scram:
		var c auth.SCRAMCredentials
		c, err = auth.NewSCRAMCredentials(pw, *iter)
		out = c.String()
	case *argon:
		out = auth.HashArgon2id(pw)
	default:
		out, err = auth.HashBcrypt(pw, *cost)
	}
	if err != nil {
		fmt.Fprintf(stderr, "petrel passwd: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, out)
	return 0
}

func readPassword(stdin io.Reader, stderr io.Writer) ([]byte, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(a, b) {
			return nil, errors.New("the passwords differ")
		}
		if len(a) == 0 {
			return nil, errors.New("empty password")
		}
		return a, nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		return nil, errors.New("empty password on stdin")
	}
	return line, nil
}
