package main

import (
	"math"
	"testing"
)

// TestSummarize checks the pause figures computed from a survivor's
// CONNECTs (seconds after the signal).
func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		attempts               []attempt
		pause, from, first     float64
		slowest                float64
		accepted, attemptsWant int
	}{
		{
			name: "refused until a leader is elected",
			attempts: []attempt{
				{sent: 0.02, done: 2.02}, {sent: 0.04, done: 2.04}, {sent: 3.9, done: 4.0},
				{sent: 4.0, done: 4.05, ok: true}, {sent: 4.02, done: 4.03, ok: true},
			},
			pause: 4.03, from: 0, first: 4.03, slowest: 0.05, accepted: 2, attemptsWant: 5,
		},
		{
			// The CONNECTs of 1.0 and 1.1 wait 0.5 s, but the one of 1.2 is
			// answered at 1.21: writes were possible again from then.
			name: "a gap during a handover",
			attempts: []attempt{
				{sent: 0.01, done: 0.02, ok: true}, {sent: 1.0, done: 1.5, ok: true},
				{sent: 1.1, done: 1.6, ok: true}, {sent: 1.2, done: 1.21, ok: true},
			},
			pause: 0.21, from: 1.0, first: 0.02, slowest: 0.5, accepted: 4, attemptsWant: 4,
		},
		{
			name: "out of order: a later CONNECT answered first",
			attempts: []attempt{
				{sent: 0.5, done: 3.0, ok: true}, {sent: 0.6, done: 0.7, ok: true},
			},
			pause: 0.7, from: 0, first: 0.7, slowest: 2.5, accepted: 2, attemptsWant: 2,
		},
		{
			name:     "none accepted",
			attempts: []attempt{{sent: 0.1, done: 2.1}, {sent: 0.2, done: 2.2}},
			pause:    -1, from: 0, first: -1, accepted: 0, attemptsWant: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sv := &survivor{PauseS: -1, FirstS: -1, attempts: tc.attempts}
			sv.summarize()
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(sv.PauseS, tc.pause) || !near(sv.PauseFromS, tc.from) || !near(sv.FirstS, tc.first) || !near(sv.SlowestS, tc.slowest) {
				t.Errorf("pause %v from %v, first %v, slowest %v; want %v from %v, first %v, slowest %v",
					sv.PauseS, sv.PauseFromS, sv.FirstS, sv.SlowestS, tc.pause, tc.from, tc.first, tc.slowest)
			}
			if sv.Accepted != tc.accepted || sv.Attempts != tc.attemptsWant {
				t.Errorf("accepted %d of %d, want %d of %d", sv.Accepted, sv.Attempts, tc.accepted, tc.attemptsWant)
			}
		})
	}
}
