// Package cluster links Petrel nodes into a cluster on an embedded NATS
// server (routes plus JetStream) and implements broker.Fabric on it.
//
// Each node embeds one nats-server. The broker talks to it through
// in-process connections only, and nodes talk to each other over NATS
// routes (optionally mutual TLS). nats-server starts its routes only
// after its client listener, so a clustered node opens one on 127.0.0.1
// (ephemeral port) that requires a random per-start token; a single
// node opens none. What travels between nodes:
//
//   - live messages, over core NATS (at most once): one NATS subscription
//     per distinct (filter, share group) this node watches, so a message
//     crosses to a node only when that node has interest. Topics map onto
//     subjects with the reversible codec in subject.go, and each message
//     carries a small binary envelope (envelope.go) with its QoS, retain
//     flag, 5.0 properties, remaining expiry and origin;
//   - retained messages, in the JetStream stream PETREL_RETAINED (one
//     message per topic, replicated): each node follows it with an
//     ordered consumer and applies other nodes' changes to its local
//     retained index, so SUBSCRIBE stays local; a clear is a tombstone,
//     which the node that wrote it purges after Config.TombstoneTTL
//     (purge.go);
//   - QoS 1 and 2 messages, in the message log PETREL_MSGS (log*.go):
//     the publishing node writes each before its publisher is
//     acknowledged (Log), every node follows the log with one
//     consumer at a time and hands each message to its broker in order
//     (LogHost), and a session resumed elsewhere reads what it missed by sequence
//     (ReadLog, direct gets, no consumer);
//   - session ownership, in the JetStream KV bucket PETREL_OWNERS: a
//     CONNECT claims its session key with a compare-and-set and asks the
//     previous owner node to close its connection (request
//     petrel.node.<node>.kick);
//   - persistent sessions, in the JetStream stream PETREL_SESSIONS: a
//     Journal (Node.Journal, journal*.go) is the cluster's broker.Store,
//     one subject per session key, one message per commit and session,
//     fenced by the writer's claim, compacted by snapshots; a node adopts
//     a session with Journal.LoadSession when its client connects, the
//     deliveries' messages coming from the message log PETREL_MSGS.
//
// What other nodes can make a node hold is bounded: the inboxes between
// NATS and the broker in messages and bytes (inbox.go, Config.InboxBytes),
// retained changes and log writes waiting for JetStream in bytes, count
// and time, ReadLog's batch, the tombstones waiting for their purge, the
// per-origin dedup windows.
//
// docs/clustering.md describes the topology, the configuration, the
// bounds and the failure model.
package cluster
