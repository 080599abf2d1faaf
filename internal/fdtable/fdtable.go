// Package fdtable sizes the process's descriptor table ahead of need.
//
// Linux grows a process's descriptor table by doubling it (64, 128, ...,
// 16384, ...) when a new descriptor does not fit, and a multi-threaded
// process, which every Go program is, waits for an RCU grace period
// (synchronize_rcu) at each growth before the old table may be freed. That
// wait is milliseconds long (BENCHMARKS.md), and it falls on whichever
// call made the descriptor: for a broker, the accept4 of the 257th,
// 513th, 1025th, ... connection, so a storm of reconnecting clients
// stalls the accept loop six times on its way to 10,000 connections (a
// single-threaded server such as Mosquitto never waits: the kernel skips
// the grace period when no other thread shares the table). Reserve grows
// the table once, at start, to its final size: one wait instead of one per
// doubling, before any client is there to see it.
//
// The table is kernel memory, 8 bytes and a few bits per slot (512 KiB
// for 65,536 descriptors), never given back; an idle process holds it.
// Elsewhere than on Linux Reserve does nothing.
package fdtable

// Reserve sizes the descriptor table for n descriptors, or for the
// open-file limit when that is lower, and returns the count it sized it
// for (0 when it did nothing: n <= 0, or not Linux). It opens no
// descriptor that outlives the call.
func Reserve(n int) (int, error) { return reserve(n) }
