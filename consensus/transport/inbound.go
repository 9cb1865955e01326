package transport

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// serveInbound authenticates an accepted connection and delivers the
// messages it carries until it fails, the peer misbehaves or the transport
// closes. Every refusal closes the connection: a peer that sends something
// it must not is buggy or hostile, and either way its stream is not trusted
// beyond that point.
func (t *Transport) serveInbound(raw net.Conn, ip string) {
	defer t.untrack(raw)
	defer raw.Close()
	log := t.log.With("remote", raw.RemoteAddr().String())

	conn := tls.Server(raw, t.serverTLS())
	from, err := t.authenticate(conn, ip)
	if err != nil {
		if t.ctx.Err() == nil {
			log.Warn("refused node-to-node connection", "err", err)
		}
		return
	}
	log = log.With("peer", from)
	stats := t.inStat(from)
	if !t.cfg.IsMember(from) {
		// Before the acknowledgement: the client's dial fails.
		stats.refused.Add(1)
		log.Warn("refused node-to-node connection", "err", fmt.Errorf("%w: node %d is not a member", ErrRefused, from))
		return
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	if err := t.readPreface(r); err != nil {
		stats.refused.Add(1)
		log.Warn("refused node-to-node connection", "err", err)
		return
	}
	if _, err := conn.Write([]byte{prefaceAck}); err != nil {
		log.Debug("acknowledge preface", "err", err)
		return
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return
	}
	if !t.setInbound(from, raw) {
		return
	}
	defer t.clearInbound(from, raw)

	var buf []byte
	for {
		m, b, err := readFrame(r, buf)
		buf = b
		if cap(buf) > 4<<20 {
			buf = nil // do not keep a buffer sized for one rare huge message
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), t.ctx.Err() != nil:
			log.Debug("node-to-node connection closed", "err", err)
			return
		case errors.Is(err, ErrBadFrame), errors.Is(err, ErrFrameTooLarge):
			stats.refused.Add(1)
			log.Warn("closing node-to-node connection", "err", err)
			return
		default:
			log.Info("node-to-node connection failed", "err", err)
			return
		}
		// The certificate names the sender; From must agree, or a node
		// could speak for another (vote twice, ack entries it lacks).
		if m.GetFrom() != from || m.GetTo() != t.cfg.ID {
			stats.refused.Add(1)
			log.Warn("closing node-to-node connection", "err", fmt.Errorf("%w: %s from %d to %d on the connection of node %d to %d",
				ErrRefused, m.GetType(), m.GetFrom(), m.GetTo(), from, t.cfg.ID))
			return
		}
		// Membership can end while the connection is up.
		if !t.cfg.IsMember(from) {
			stats.refused.Add(1)
			log.Warn("closing node-to-node connection", "err", fmt.Errorf("%w: %s from node %d, no longer a member", ErrRefused, m.GetType(), from))
			return
		}
		if err := t.cfg.Deliver(t.ctx, m); err != nil {
			if t.ctx.Err() == nil {
				stats.refused.Add(1)
				log.Warn("closing node-to-node connection: message not accepted", "type", m.GetType().String(), "err", err)
			}
			return
		}
		stats.received.Add(1)
	}
}

// authenticate runs the TLS handshake, holding the handshake slot Run took
// for ip until it is over, and returns the peer's raft id.
func (t *Transport) authenticate(conn *tls.Conn, ip string) (uint64, error) {
	defer t.releaseHandshake(ip)
	if err := conn.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return 0, fmt.Errorf("transport: %w", err)
	}
	if err := conn.HandshakeContext(t.ctx); err != nil {
		return 0, err
	}
	return t.peerID(conn.ConnectionState())
}

// readPreface checks the client's opening: our magic, and our raft id as the
// one it meant to reach.
func (t *Transport) readPreface(r io.Reader) error {
	var pre [prefaceLen]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return fmt.Errorf("%w: reading preface: %w", ErrRefused, err)
	}
	if string(pre[:len(prefaceMagic)]) != prefaceMagic {
		return fmt.Errorf("%w: bad preface %q", ErrRefused, pre[:len(prefaceMagic)])
	}
	if want := binary.BigEndian.Uint64(pre[len(prefaceMagic):]); want != t.cfg.ID {
		return fmt.Errorf("%w: client dialled raft id %d, this is %d (stale address?)", ErrRefused, want, t.cfg.ID)
	}
	return nil
}

// setInbound records conn as peer's current connection, closing the one it
// replaces: a peer that reconnects has given up on its old connection, which
// may linger half-open.
func (t *Transport) setInbound(peer uint64, conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if old, ok := t.inbound[peer]; ok {
		_ = old.Close()
	}
	t.inbound[peer] = conn
	return true
}

func (t *Transport) clearInbound(peer uint64, conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.inbound[peer]; ok && c == conn {
		delete(t.inbound, peer)
	}
}

// inStat returns peer's inbound counters, created on first use.
func (t *Transport) inStat(peer uint64) *inboundStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.inStats[peer]
	if !ok {
		s = &inboundStats{}
		t.inStats[peer] = s
	}
	return s
}
