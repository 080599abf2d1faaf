package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/petrel-mqtt/petrel/internal/client"
	"github.com/petrel-mqtt/petrel/packet"
)

const subUsage = `Usage: petrel sub -t FILTER [-t FILTER ...] [flags]

Subscribes and prints the messages received, like mosquitto_sub.

Subscription and output:
  -t, --topic FILTER        topic filter to subscribe to (repeatable)
  -q, --qos QOS             subscription QoS 0, 1 or 2 (default 0)
  -C COUNT                  exit after COUNT messages
  -W SECONDS                exit after SECONDS with status 27 unless -C ended it first
  -v, --verbose             print "topic payload" ("topic (null)" for an empty payload)
  -N                        do not print a newline after each message
  -F FORMAT                 print each message as FORMAT (overrides -v):
                              %t topic           %p payload
                              %x payload in hex  %X payload in upper-case hex
                              %l payload length  %q QoS
                              %r retain flag (0 or 1)
                              %m packet identifier (0 for QoS 0)
                              %I time received, ISO 8601 (local time)
                              %U time received, Unix seconds.nanoseconds
                              %% a percent sign
                            escapes: \n \t \r \\ \0 \a \e \v
                            (mosquitto's widths, precisions, @ and JSON forms are
                            not supported)
` + clientFlagsUsage + `
Without -v or -F, a message with an empty payload prints nothing.

Exit status: 0 after -C messages or an interrupt, 1 when the connection was
refused or lost or every subscription was refused, 2 for bad flags, 27
when -W elapsed.
`

// subMain runs petrel sub, stopping on SIGINT or SIGTERM.
func subMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return sub(ctx, args, os.Stdin, stdout, stderr)
}

// sub is petrel sub: it parses args, connects, subscribes and prints the
// messages until -C, -W, a lost connection or ctx ends it. stdin is unused.
// It returns the exit code.
func sub(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const cmd = "petrel sub"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	var topics stringList
	var count, timeout int
	var verbose, noEOL bool
	var format string
	fs.Var(&topics, "t", "")
	fs.Var(&topics, "topic", "")
	fs.IntVar(&count, "C", 0, "")
	fs.IntVar(&timeout, "W", 0, "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	fs.BoolVar(&noEOL, "N", false, "")
	fs.StringVar(&format, "F", "", "")
	if code, ok := parseFlags(fs, args, subUsage, stderr); !ok {
		return code
	}
	if len(topics) == 0 {
		return usageError(stderr, cmd, subUsage, "at least one topic filter (-t) is required")
	}
	if count < 0 || timeout < 0 {
		return usageError(stderr, cmd, subUsage, "-C and -W must not be negative")
	}
	if _, err := appendFormat(nil, format, &packet.Publish{}, time.Now()); err != nil {
		return usageError(stderr, cmd, subUsage, "-F: %v", err)
	}
	opts, err := cf.options(fs, "sub", stderr)
	if err != nil {
		return usageError(stderr, cmd, subUsage, "%v", err)
	}
	pr := printer{format: format, verbose: verbose, eol: !noEOL}

	c, err := client.Dial(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	defer c.Close()
	var expired <-chan time.Time
	if timeout > 0 { // as mosquitto, the timeout starts once connected
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		expired = t.C
	}

	subs := make([]packet.Subscription, len(topics))
	for i, f := range topics {
		subs[i] = packet.Subscription{Filter: f, QoS: byte(cf.qos)}
	}
	codes, err := c.Subscribe(ctx, subs...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: subscribe: %v\n", cmd, err)
		return exitFailure
	}
	refused := 0
	for i, rc := range codes {
		if rc.IsError() {
			refused++
			fmt.Fprintf(stderr, "%s: subscription to %q refused: %s (0x%02X)\n", cmd, topics[i], rc.String(), byte(rc))
		}
	}
	if refused == len(codes) {
		return exitFailure
	}

	received := 0
	var buf []byte
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				fmt.Fprintf(stderr, "%s: %v\n", cmd, c.Err())
				return exitFailure
			}
			buf = pr.append(buf[:0], m, time.Now())
			if len(buf) > 0 {
				if _, err := stdout.Write(buf); err != nil {
					fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
					return exitFailure
				}
			}
			received++
			if count > 0 && received >= count {
				return disconnect(c, cmd, stderr, exitOK)
			}
		case <-expired:
			code := disconnect(c, cmd, stderr, exitTimeout)
			fmt.Fprintf(stderr, "%s: timed out after %d seconds (%d messages received)\n", cmd, timeout, received)
			return code
		case <-ctx.Done():
			return disconnect(c, cmd, stderr, exitOK)
		}
	}
}

// disconnect ends the session with DISCONNECT and returns code, or
// exitFailure when the DISCONNECT could not be sent.
func disconnect(c *client.Client, cmd string, stderr io.Writer, code int) int {
	if err := c.Disconnect(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return exitFailure
	}
	return code
}

// printer renders received messages as mosquitto_sub does.
type printer struct {
	format  string // -F; empty for the default output
	verbose bool   // -v
	eol     bool   // newline after each message (no -N)
}

// append appends the output for m to dst.
func (p *printer) append(dst []byte, m *packet.Publish, now time.Time) []byte {
	switch {
	case p.format != "":
		// The format was checked at start, so it cannot fail here.
		dst, _ = appendFormat(dst, p.format, m, now)
	case len(m.Payload) == 0 && p.verbose:
		dst = append(append(dst, m.Topic...), " (null)"...)
	case len(m.Payload) == 0:
		return dst // mosquitto_sub prints nothing for an empty payload
	case p.verbose:
		dst = append(append(append(dst, m.Topic...), ' '), m.Payload...)
	default:
		dst = append(dst, m.Payload...)
	}
	if p.eol {
		dst = append(dst, '\n')
	}
	return dst
}

// appendFormat renders m by the -F format into dst. It fails on an unknown
// or unsupported directive or escape.
func appendFormat(dst []byte, format string, m *packet.Publish, now time.Time) ([]byte, error) {
	for i := 0; i < len(format); i++ {
		ch := format[i]
		if ch != '%' && ch != '\\' {
			dst = append(dst, ch)
			continue
		}
		if i+1 == len(format) {
			return dst, fmt.Errorf("%q at the end of the format", ch)
		}
		i++
		d := format[i]
		if ch == '\\' {
			e, ok := escape(d)
			if !ok {
				return dst, fmt.Errorf("unknown escape \\%c", d)
			}
			dst = append(dst, e)
			continue
		}
		switch d {
		case '%':
			dst = append(dst, '%')
		case 't':
			dst = append(dst, m.Topic...)
		case 'p':
			dst = append(dst, m.Payload...)
		case 'x':
			dst = hex.AppendEncode(dst, m.Payload)
		case 'X':
			start := len(dst)
			dst = hex.AppendEncode(dst, m.Payload)
			for j := start; j < len(dst); j++ {
				if dst[j] >= 'a' {
					dst[j] -= 'a' - 'A'
				}
			}
		case 'l':
			dst = strconv.AppendInt(dst, int64(len(m.Payload)), 10)
		case 'q':
			dst = strconv.AppendUint(dst, uint64(m.QoS), 10)
		case 'r':
			if m.Retain {
				dst = append(dst, '1')
			} else {
				dst = append(dst, '0')
			}
		case 'm':
			dst = strconv.AppendUint(dst, uint64(m.PacketID), 10)
		case 'I':
			dst = now.AppendFormat(dst, "2006-01-02T15:04:05-0700")
		case 'U':
			dst = fmt.Appendf(dst, "%d.%09d", now.Unix(), now.Nanosecond())
		default:
			return dst, fmt.Errorf("unsupported directive %%%c", d)
		}
	}
	return dst, nil
}

// escape returns the byte the -F escape \d stands for.
func escape(d byte) (byte, bool) {
	switch d {
	case '\\':
		return '\\', true
	case '0':
		return 0, true
	case 'a':
		return '\a', true
	case 'e':
		return 0x1b, true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'v':
		return '\v', true
	}
	return 0, false
}
