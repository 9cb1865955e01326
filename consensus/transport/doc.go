// Package transport carries raft messages between the nodes of one coco
// service: the node-to-node channel, on its own listener, separate from the
// client RPC listener.
//
// It owns the wire format, the mutual TLS authentication of peers and the
// per-peer outbound queues. Every connection is TLS 1.3 in both directions
// between node certificates issued by the service certificate; a node whose
// certificate the service did not endorse can neither send nor receive, and
// neither can an endorsed node that is not a member (Config.IsMember): a
// retired node's certificate stays valid, and raft itself does not refuse a
// non-member's messages. A message is accepted only from the node whose
// certificate authenticated the connection (its From must be that node's raft
// id), only while that node is a member, and only when it is addressed to
// this node.
//
// Each node dials the peers it sends to: one outbound connection per peer,
// fed by a bounded queue and drained by one writer goroutine that flushes
// whenever the queue runs dry, so messages queued together leave in one
// write (batching) and the writer never waits for the peer between messages
// (pipelining). Inbound connections only carry messages towards this node.
// When a peer goes away the writer reconnects with capped exponential
// backoff; messages that do not fit in the queue meanwhile are dropped and
// counted, because raft retransmits whatever matters.
//
// Wire format, after the TLS handshake (ALPN "coco-raft/1"):
//
//	client -> server: preface = "COCORAFT" | u64 BE raft id the client meant to reach
//	server -> client: one byte 0x01 once the preface is accepted
//	client -> server: frames, each u32 BE length | proto.Marshal(raftpb.Message)
//
// The server never writes after the acknowledgement.
//
// Wiring, for the node package: create the Transport before consensus.New
// (which takes it as Config.Transport) with Deliver calling the node's Step
// through a variable set once the node exists; RaftID is the node id
// derivation (KeyID of the certificate's key, then raftIDFromNodeID);
// IsMember is "a voter or learner in the ConfState and Trusted in
// governance", with MembershipChanged called when either changes. Call
// SetPeer for every other node with the node-to-node address it advertises
// (not its RPC address), and Run alongside the consensus loop; Close it
// after the consensus loop has stopped.
package transport
