package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/petrel-mqtt/petrel/internal/client"
)

const pubUsage = `Usage: petrel pub -t TOPIC (-m MSG | -f FILE | -l | -n | -s) [flags]

Publishes one message, or one per line of stdin with -l, like mosquitto_pub.

Message:
  -t, --topic TOPIC         topic to publish to
  -m, --message MSG         the message
  -f, --file FILE           the contents of FILE as the message
  -l, --stdin-line          one message per line of stdin (without the newline)
  -n, --null-message        an empty message (with -r: clear the retained message)
  -s, --stdin-file          all of stdin as one message
  -q, --qos QOS             0, 1 or 2 (default 0)
  -r, --retain              retain the message
` + clientFlagsUsage + `
Exit status: 0 when every message was published, 1 when the connection was
refused or failed, 2 for bad flags.
`

// pubMain runs petrel pub with the process's stdin, stopping on SIGINT or
// SIGTERM.
func pubMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return pub(ctx, args, os.Stdin, stdout, stderr)
}

// pub is petrel pub: it parses args, connects and publishes. It returns
// the exit code.
func pub(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const cmd = "petrel pub"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var topic, message, file string
	var lines, null, whole, retain bool
	fs.StringVar(&topic, "t", "", "")
	fs.StringVar(&topic, "topic", "", "")
	fs.StringVar(&message, "m", "", "")
	fs.StringVar(&message, "message", "", "")
	fs.StringVar(&file, "f", "", "")
	fs.StringVar(&file, "file", "", "")
	fs.BoolVar(&lines, "l", false, "")
	fs.BoolVar(&lines, "stdin-line", false, "")
	fs.BoolVar(&null, "n", false, "")
	fs.BoolVar(&null, "null-message", false, "")
	fs.BoolVar(&whole, "s", false, "")
	fs.BoolVar(&whole, "stdin-file", false, "")
	fs.BoolVar(&retain, "r", false, "")
	fs.BoolVar(&retain, "retain", false, "")
	if code, ok := parseFlags(fs, args, pubUsage, stderr); !ok {
		return code
	}
	if topic == "" {
		return usageError(stderr, cmd, pubUsage, "a topic (-t) is required")
	}
	sources := 0
	for _, set := range []bool{isSet(fs, "m", "message"), file != "", lines, null, whole} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return usageError(stderr, cmd, pubUsage, "give exactly one of -m, -f, -l, -n and -s")
	}
	opts, err := cf.options(fs, "pub", stderr)
	if err != nil {
		return usageError(stderr, cmd, pubUsage, "%v", err)
	}

	var payload []byte
	switch {
	case isSet(fs, "m", "message"):
		payload = []byte(message)
	case file != "":
		if payload, err = os.ReadFile(file); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
			return exitFailure
		}
	case whole:
		if payload, err = io.ReadAll(stdin); err != nil {
			fmt.Fprintf(stderr, "%s: reading stdin: %v\n", cmd, err)
			return exitFailure
		}
	}

	c, err := client.Dial(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	qos := byte(cf.qos)
	if lines {
		err = publishLines(ctx, c, topic, qos, retain, stdin)
	} else {
		err = c.Publish(ctx, topic, payload, qos, retain)
	}
	if err != nil {
		c.Close()
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	if err := c.Disconnect(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	return exitOK
}

// publishLines publishes each line of r (without its "\n") until r ends or
// ctx is done. Lines are read on their own goroutine so that a signal can
// end a wait on a terminal; it ends when r does.
func publishLines(ctx context.Context, c *client.Client, topic string, qos byte, retain bool, r io.Reader) error {
	type line struct {
		b   []byte
		err error
	}
	next := make(chan line)
	done := make(chan struct{})
	defer close(done)
	go func() {
		br := bufio.NewReader(r)
		for {
			b, err := br.ReadBytes('\n')
			if len(b) > 0 && b[len(b)-1] == '\n' {
				b = b[:len(b)-1]
			} else if len(b) == 0 && err != nil {
				b = nil // nothing after the last newline: no message
			}
			select {
			case next <- line{b, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var l line
		select {
		case l = <-next:
		case <-ctx.Done():
			return nil // interrupted: the lines so far are published
		}
		if l.b != nil {
			if err := c.Publish(ctx, topic, l.b, qos, retain); err != nil {
				return err
			}
		}
		if errors.Is(l.err, io.EOF) {
			return nil
		}
		if l.err != nil {
			return fmt.Errorf("reading stdin: %w", l.err)
		}
	}
}
