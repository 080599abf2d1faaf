package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes r as a human-readable table.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	over := ""
	if r.Transport != "" && r.Transport != "tcp" {
		over = " over " + r.Transport
	}
	row("scenario", "%s against %s (MQTT %s%s)", r.Scenario, r.Broker, r.Version, over)
	switch r.Scenario {
	case "conns":
		row("connections", "%d in %.2f s", r.Connections, r.Duration)
		row("connection rate", "%s/s", si(r.ConnRate))
	default:
		row("clients", "publishers %d, subscribers %d", r.Publishers, r.Subscribers)
		rate := "unpaced"
		if r.Rate > 0 {
			rate = si(r.Rate) + " msg/s"
		}
		writes := "up to 16 KiB per write"
		if r.WriteEach {
			writes = "a write per PUBLISH"
		}
		row("load", "QoS %d, %d B payload, window %d, %s, %s", r.QoS, r.Size, r.Window, rate, writes)
		row("sent", "%d in %.2f s (%s msg/s), %d acknowledged", r.Sent, r.Duration, si(r.SentRate), r.Acked)
		row("delivered", "%d of %d owed in %.2f s (%s msg/s)", r.Received, r.Expected, r.Elapsed, si(r.DeliveredRate))
		row("lost", "%d: %d in gaps, %d at the tail (undelivered when the drain ended)", r.Lost, r.LostGaps, r.LostTail)
		row("duplicates", "%d (out of order %d, foreign %d)", r.Duplicates, r.OutOfOrder, r.Foreign)
		if r.Scenario == "retained" {
			row("time to all", "%.3f s from SUBSCRIBE", r.TimeToAll)
		} else {
			l := r.Latency
			row("latency", "p50 %s  p99 %s  p99.9 %s  max %s  mean %s", us(l.P50), us(l.P99), us(l.P999), us(l.Max), us(l.Mean))
		}
	}
	if r.RSSAfter > 0 {
		cpu := fmt.Sprintf("%.2f s", r.BrokerCPU)
		if r.CPUPerMillion > 0 {
			cpu += fmt.Sprintf(" (%.2f s per million delivered)", r.CPUPerMillion)
		}
		row("broker cpu", "%s", cpu)
		mem := fmt.Sprintf("%s -> %s", byteSize(float64(r.RSSBefore)), byteSize(float64(r.RSSAfter)))
		if r.RSSPerConn != 0 {
			mem += fmt.Sprintf(" (%s per connection)", byteSize(r.RSSPerConn))
		}
		row("broker rss", "%s", mem)
	}
	row("bench cpu", "%.2f s", r.ClientCPU)
	for _, e := range r.Errors {
		row("error", "%s", e)
	}
	return tw.Flush()
}

// si formats a rate with a k or M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func us(v float64) string {
	if v >= 10_000 {
		return fmt.Sprintf("%.1f ms", v/1000)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0f", v), ".0") + " us"
}

func byteSize(v float64) string {
	switch {
	case v >= 1<<30 || v <= -(1<<30):
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20 || v <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10 || v <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
