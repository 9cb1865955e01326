// Package govclient is a member's client for a coco service's governance
// API (CCF's API version 2024-07-01): it signs each write as a COSE_Sign1
// with the member's key and reads the governance state. The CLI's
// `coco gov` commands and the sandbox use it.
package govclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	govcose "github.com/cocoledger/coco/gov/cose"
)

// Ballots for the common cases.
const (
	BallotYes = "export function vote (proposal, proposerId) { return true }"
	BallotNo  = "export function vote (proposal, proposerId) { return false }"
)

// Action is one action of a proposal.
type Action struct {
	Name string `json:"name"`
	Args any    `json:"args,omitempty"`
}

// Proposal is the body of a proposal.
type Proposal struct {
	Actions []Action `json:"actions"`
}

// Error is an error answer of the service.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Client talks to one node as one member. Writes sent to a backup are
// forwarded to the primary by the node.
type Client struct {
	base   string
	http   *http.Client
	cert   *x509.Certificate
	key    crypto.Signer
	id     string
	now    func() time.Time
	closer func()
}

// New returns a client of the node at addr (host:port), which must present
// a certificate issued by serviceCert, for the member with memberCert and
// key. key may be nil for a client that only reads.
func New(addr string, serviceCert, memberCert *x509.Certificate, key crypto.Signer) *Client {
	pool := x509.NewCertPool()
	pool.AddCert(serviceCert)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
	}
	c := &Client{
		base:   "https://" + addr,
		http:   &http.Client{Transport: tr, Timeout: 30 * time.Second},
		cert:   memberCert,
		key:    key,
		now:    time.Now,
		closer: tr.CloseIdleConnections,
	}
	if memberCert != nil {
		c.id = cococrypto.CertID(memberCert)
	}
	return c
}

// Load is New with PEM files; certFile and keyFile may be empty for a
// client that only reads.
func Load(addr, serviceCertFile, certFile, keyFile string) (*Client, error) {
	svc, err := cococrypto.ReadCertFile(serviceCertFile)
	if err != nil {
		return nil, fmt.Errorf("service certificate: %w", err)
	}
	var cert *x509.Certificate
	var key crypto.Signer
	if certFile != "" || keyFile != "" {
		if cert, err = cococrypto.ReadCertFile(certFile); err != nil {
			return nil, fmt.Errorf("member certificate: %w", err)
		}
		if key, err = cococrypto.ReadKeyFile(keyFile); err != nil {
			return nil, fmt.Errorf("member key: %w", err)
		}
	}
	return New(addr, svc, cert, key), nil
}

// Close releases idle connections.
func (c *Client) Close() { c.closer() }

// MemberID is the member's id (hex SHA-256 of its DER certificate).
func (c *Client) MemberID() string { return c.id }

// Sign signs a governance message as the member, created now.
func (c *Client) Sign(t govcose.MsgType, proposalID string, payload []byte) ([]byte, error) {
	if c.key == nil || c.cert == nil {
		return nil, errors.New("govclient: no member key to sign with")
	}
	return govcose.Sign(c.key, c.cert, t, c.now().Unix(), proposalID, payload)
}

// Post sends a signed message to path and decodes the answer into out
// (nil to discard it).
func (c *Client) Post(ctx context.Context, path string, t govcose.MsgType, proposalID string, payload []byte, out any) error {
	body, err := c.Sign(t, proposalID, payload)
	if err != nil {
		return err
	}
	return c.PostSigned(ctx, path, body, out)
}

// PostSigned sends an already signed message to path.
func (c *Client) PostSigned(ctx context.Context, path string, signed []byte, out any) error {
	return c.do(ctx, http.MethodPost, path, signed, out)
}

// Get reads path (for example /gov/service/members) into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	u := c.base + path + "?api-version=" + url.QueryEscape(gov.APIVersion)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/cose")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: string(b)}
		}
		return &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if p, ok := out.(*[]byte); ok {
		*p = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("govclient: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Propose creates a proposal.
func (c *Client) Propose(ctx context.Context, p Proposal) (*gov.ProposalView, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return c.ProposeRaw(ctx, b)
}

// ProposeRaw creates a proposal from its JSON body.
func (c *Client) ProposeRaw(ctx context.Context, proposal []byte) (*gov.ProposalView, error) {
	var v gov.ProposalView
	if err := c.Post(ctx, "/gov/members/proposals:create", govcose.MsgProposal, "", proposal, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Vote submits the member's ballot (JavaScript exporting vote) on a
// proposal.
func (c *Client) Vote(ctx context.Context, proposalID, ballot string) (*gov.ProposalView, error) {
	b, err := json.Marshal(map[string]string{"ballot": ballot})
	if err != nil {
		return nil, err
	}
	var v gov.ProposalView
	path := "/gov/members/proposals/" + url.PathEscape(proposalID) + "/ballots/" + c.id + ":submit"
	if err := c.Post(ctx, path, govcose.MsgBallot, proposalID, b, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Withdraw withdraws the member's open proposal.
func (c *Client) Withdraw(ctx context.Context, proposalID string) (*gov.ProposalView, error) {
	var v gov.ProposalView
	if err := c.Post(ctx, "/gov/members/proposals/"+url.PathEscape(proposalID)+":withdraw", govcose.MsgWithdrawal, proposalID, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Proposal reads one proposal's state.
func (c *Client) Proposal(ctx context.Context, proposalID string) (*gov.ProposalView, error) {
	var v gov.ProposalView
	if err := c.Get(ctx, "/gov/members/proposals/"+url.PathEscape(proposalID), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Proposals lists every proposal.
func (c *Client) Proposals(ctx context.Context) ([]gov.ProposalView, error) {
	var v struct {
		Value []gov.ProposalView `json:"value"`
	}
	if err := c.Get(ctx, "/gov/members/proposals", &v); err != nil {
		return nil, err
	}
	return v.Value, nil
}

// Ack makes the member Active: it asks for the current state digest and
// acknowledges it (a no-op for an Active member).
func (c *Client) Ack(ctx context.Context) error {
	var d struct {
		StateDigest string `json:"stateDigest"`
	}
	if err := c.Post(ctx, "/gov/members/state-digests/"+c.id+":update", govcose.MsgStateDigest, "", nil, &d); err != nil {
		return err
	}
	b, err := json.Marshal(map[string]string{"stateDigest": d.StateDigest})
	if err != nil {
		return err
	}
	return c.Post(ctx, "/gov/members/state-digests/"+c.id+":ack", govcose.MsgAck, "", b, nil)
}

// Pass proposes p and has every member of voters (the proposer may be one
// of them) vote yes, until the proposal is no longer Open. It returns the
// proposal's final view; a proposal that ends other than Accepted is an
// error.
func Pass(ctx context.Context, proposer *Client, voters []*Client, p Proposal) (*gov.ProposalView, error) {
	v, err := proposer.Propose(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, m := range voters {
		if v.ProposalState != gov.ProposalOpen {
			break
		}
		if v, err = m.Vote(ctx, v.ProposalID, BallotYes); err != nil {
			return nil, err
		}
	}
	if v.ProposalState != gov.ProposalAccepted {
		reason := ""
		if v.Failure != nil {
			reason = ": " + v.Failure.Reason
		}
		return v, fmt.Errorf("govclient: proposal %s is %s%s", v.ProposalID, v.ProposalState, reason)
	}
	return v, nil
}
