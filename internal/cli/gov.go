package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	cococrypto "github.com/cocoledger/coco/crypto"
	"github.com/cocoledger/coco/gov"
	govclient "github.com/cocoledger/coco/gov/client"
	govcose "github.com/cocoledger/coco/gov/cose"
	"github.com/cocoledger/coco/sandbox"
)

// maxGovInput bounds a proposal, ballot or payload read from a file or stdin.
const maxGovInput = 16 << 20

func newGovCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gov",
		Short: "Govern a service as a member: propose, vote, acknowledge, sign",
		Long: `Governance commands, each signed with a member's key (COSE_Sign1, CCF's
governance API 2024-07-01). The member and the node to talk to come from a
sandbox's sandbox.json (--sandbox, --member) or from explicit flags
(--address, --service-cert, --cert, --key), which override the sandbox's
values. Any node of the service will do: backups forward writes to the
primary. A refused request prints the service's error code and message and
exits with status 1.`,
	}
	cmd.AddCommand(newGovProposeCmd(), newGovVoteCmd(), newGovWithdrawCmd(), newGovListCmd(),
		newGovShowCmd(), newGovAckCmd(), newGovSignCmd())
	return cmd
}

// govFlags say which member signs and which node is asked.
type govFlags struct {
	sandbox, member                 string
	address, serviceCert, cert, key string
}

func (g *govFlags) register(cmd *cobra.Command, withNode bool) {
	f := cmd.Flags()
	f.StringVar(&g.sandbox, "sandbox", filepath.Join("workspace", "sandbox"), "sandbox directory (or its sandbox.json) to take the member and node from")
	f.StringVar(&g.member, "member", "member0", "sandbox member (name or id) who signs")
	if withNode {
		f.StringVar(&g.address, "address", "", "host:port of a node (default: the first sandbox node that accepts connections)")
		f.StringVar(&g.serviceCert, "service-cert", "", "service certificate the node must present (default: the sandbox's)")
	}
	f.StringVar(&g.cert, "cert", "", "member certificate PEM file (default: the sandbox member's)")
	f.StringVar(&g.key, "key", "", "member private key PEM file (default: the sandbox member's)")
}

// govTarget is the resolved node and member.
type govTarget struct {
	address, serviceCert, cert, key string
}

// resolve fills what the explicit flags leave out from sandbox.json. The
// sandbox is read only when something is missing; needNode and needKey say
// what the command needs.
func (g *govFlags) resolve(needNode, needKey bool) (govTarget, error) {
	t := govTarget{address: g.address, serviceCert: g.serviceCert, cert: g.cert, key: g.key}
	if (t.cert == "") != (t.key == "") {
		return govTarget{}, errors.New("give both --cert and --key, or neither to take the --member's from the sandbox")
	}
	var missing []string
	if needNode && t.address == "" {
		missing = append(missing, "--address")
	}
	if needNode && t.serviceCert == "" {
		missing = append(missing, "--service-cert")
	}
	if needKey && t.cert == "" {
		missing = append(missing, "--cert", "--key")
	}
	if len(missing) == 0 {
		return t, nil
	}
	path := benchSandboxFile(g.sandbox)
	info, err := sandbox.Load(path)
	if err != nil {
		return govTarget{}, fmt.Errorf("%w (give --sandbox, or %s)", err, strings.Join(missing, ", "))
	}
	if needNode && t.serviceCert == "" {
		t.serviceCert = info.ServiceCert
	}
	if needNode && t.address == "" {
		t.address = reachableNode(info)
	}
	if needKey && t.cert == "" {
		i := slices.IndexFunc(info.Members, func(m sandbox.MemberInfo) bool { return m.Name == g.member || m.ID == g.member })
		if i < 0 {
			return govTarget{}, fmt.Errorf("%s has no member %q", path, g.member)
		}
		t.cert, t.key = info.Members[i].Cert, info.Members[i].Key
	}
	return t, nil
}

// reachableNode is the first sandbox node that accepts a TCP connection
// (node0 may have been killed; any node serves governance), or node0.
func reachableNode(info *sandbox.Info) string {
	for _, n := range info.Nodes {
		if c, err := net.DialTimeout("tcp", n.RPCAddress, 500*time.Millisecond); err == nil {
			c.Close()
			return n.RPCAddress
		}
	}
	return info.Nodes[0].RPCAddress
}

// client returns the governance client of the resolved node and member;
// one for a command that only reads (the /gov reads need no member) has
// no member key.
func (g *govFlags) client(needKey bool) (*govclient.Client, error) {
	t, err := g.resolve(true, needKey)
	if err != nil {
		return nil, err
	}
	if !needKey {
		t.cert, t.key = "", ""
	}
	return govclient.Load(t.address, t.serviceCert, t.cert, t.key)
}

func newGovProposeCmd() *cobra.Command {
	var (
		g           govFlags
		actionsFile string
		action      string
		args        []string
		vote        bool
	)
	cmd := &cobra.Command{
		Use:   "propose (--actions FILE | --action NAME [--arg KEY=VALUE]...) [--vote]",
		Short: "Create a proposal",
		Long: `Create a proposal and print its state (proposalId, proposalState, ...).

--actions FILE takes a whole proposal, {"actions":[{"name":...,"args":{...}}]}
("-" reads stdin). --action NAME proposes one action whose arguments are
given by --arg KEY=VALUE: VALUE is taken as JSON if it is valid JSON (so
2, true, {"a":1} and "quoted" keep their types), else as a string;
KEY=@FILE takes the contents of FILE as a string. For example:

  coco gov propose --action set_user --arg cert=@user_cert.pem --vote
  coco gov propose --action transition_node_to_trusted --arg node_id=ID --vote
  coco gov propose --action transition_service_to_open

--vote also submits the proposer's yes ballot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			proposal, err := buildProposal(cmd.InOrStdin(), actionsFile, action, args)
			if err != nil {
				return err
			}
			c, err := g.client(true)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.ProposeRaw(cmd.Context(), proposal)
			if err != nil {
				return err
			}
			if vote && v.ProposalState == gov.ProposalOpen {
				voted, err := c.Vote(cmd.Context(), v.ProposalID, govclient.BallotYes)
				if err != nil {
					return fmt.Errorf("proposal %s was created, but the vote failed: %w", v.ProposalID, err)
				}
				v = voted
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
	g.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&actionsFile, "actions", "", `proposal JSON file, {"actions":[...]} ("-": stdin)`)
	f.StringVar(&action, "action", "", "name of the single action to propose")
	f.StringArrayVar(&args, "arg", nil, "KEY=VALUE argument of --action: VALUE as JSON if valid, else a string; KEY=@FILE: the file's contents (repeatable)")
	f.BoolVar(&vote, "vote", false, "also vote yes as the proposer")
	cmd.MarkFlagsMutuallyExclusive("actions", "action")
	cmd.MarkFlagsOneRequired("actions", "action")
	return cmd
}

// buildProposal is the body of a proposal: actionsFile's contents, or one
// action with its --arg arguments.
func buildProposal(stdin io.Reader, actionsFile, action string, args []string) ([]byte, error) {
	if actionsFile != "" {
		if len(args) > 0 {
			return nil, errors.New("--arg goes with --action, not --actions")
		}
		b, err := readInput(stdin, actionsFile)
		if err != nil {
			return nil, fmt.Errorf("--actions: %w", err)
		}
		var p struct {
			Actions []json.RawMessage `json:"actions"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("--actions %s: not a JSON proposal: %w", actionsFile, err)
		}
		if len(p.Actions) == 0 {
			return nil, fmt.Errorf(`--actions %s: the proposal has no "actions"`, actionsFile)
		}
		return b, nil
	}
	if action == "" {
		return nil, errors.New("--action NAME or --actions FILE is required")
	}
	a, err := parseArgs(args)
	if err != nil {
		return nil, err
	}
	return json.Marshal(govclient.Proposal{Actions: []govclient.Action{{Name: action, Args: a}}})
}

// parseArgs turns --arg KEY=VALUE flags into an action's args object.
func parseArgs(args []string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for _, kv := range args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--arg %q: want KEY=VALUE", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--arg %s given twice", k)
		}
		var val json.RawMessage
		switch {
		case strings.HasPrefix(v, "@"):
			b, err := os.ReadFile(v[1:])
			if err != nil {
				return nil, fmt.Errorf("--arg %s: %w", k, err)
			}
			if val, err = json.Marshal(string(b)); err != nil {
				return nil, err
			}
		case json.Valid([]byte(v)):
			var buf bytes.Buffer
			if err := json.Compact(&buf, []byte(v)); err != nil {
				return nil, err
			}
			val = buf.Bytes()
		default:
			var err error
			if val, err = json.Marshal(v); err != nil {
				return nil, err
			}
		}
		out[k] = val
	}
	return out, nil
}

func newGovVoteCmd() *cobra.Command {
	var (
		g          govFlags
		id, ballot string
		reject     bool
	)
	cmd := &cobra.Command{
		Use:   "vote --proposal ID [--ballot FILE | --reject]",
		Short: "Vote on an open proposal (default: yes)",
		Long: `Submit the member's ballot on a proposal and print the proposal's state.
The ballot is yes unless --reject (no) or --ballot FILE ("-": stdin) is given:
FILE holds JavaScript exporting vote(proposal, proposerId), or CCF's ballot
JSON {"ballot": "<that JavaScript>"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src := govclient.BallotYes
			switch {
			case reject:
				src = govclient.BallotNo
			case ballot != "":
				b, err := readInput(cmd.InOrStdin(), ballot)
				if err != nil {
					return fmt.Errorf("--ballot: %w", err)
				}
				src = ballotSource(b)
			}
			c, err := g.client(true)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Vote(cmd.Context(), id, src)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
	g.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&id, "proposal", "", "proposal id (required)")
	f.StringVar(&ballot, "ballot", "", `ballot file: JavaScript, or {"ballot": "..."} ("-": stdin)`)
	f.BoolVar(&reject, "reject", false, "vote no")
	_ = cmd.MarkFlagRequired("proposal")
	cmd.MarkFlagsMutuallyExclusive("ballot", "reject")
	return cmd
}

// ballotSource is the JavaScript of a ballot file, which holds either the
// JavaScript itself or CCF's {"ballot": "..."}.
func ballotSource(b []byte) string {
	var body struct {
		Ballot *string `json:"ballot"`
	}
	if json.Unmarshal(b, &body) == nil && body.Ballot != nil {
		return *body.Ballot
	}
	return string(b)
}

func newGovWithdrawCmd() *cobra.Command {
	var (
		g  govFlags
		id string
	)
	cmd := &cobra.Command{
		Use:   "withdraw --proposal ID",
		Short: "Withdraw an open proposal (the proposer only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(true)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Withdraw(cmd.Context(), id)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
	g.register(cmd, true)
	cmd.Flags().StringVar(&id, "proposal", "", "proposal id (required)")
	_ = cmd.MarkFlagRequired("proposal")
	return cmd
}

func newGovListCmd() *cobra.Command {
	var g govFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Print every proposal's state as a JSON array",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(false)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Proposals(cmd.Context())
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), v)
		},
	}
	g.register(cmd, true)
	return cmd
}

func newGovShowCmd() *cobra.Command {
	var g govFlags
	cmd := &cobra.Command{
		Use:   "show PROPOSAL-ID",
		Short: `Print a proposal's state and actions: {"proposal": ..., "actions": ...}`,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client(false)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Proposal(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			var actions []byte
			if err := c.Get(cmd.Context(), "/gov/members/proposals/"+url.PathEscape(args[0])+"/actions", &actions); err != nil {
				return err
			}
			if !json.Valid(actions) {
				return fmt.Errorf("the actions of proposal %s are not JSON", args[0])
			}
			return printJSON(cmd.OutOrStdout(), struct {
				Proposal *gov.ProposalView `json:"proposal"`
				Actions  json.RawMessage   `json:"actions"`
			}{v, actions})
		},
	}
	g.register(cmd, true)
	return cmd
}

func newGovAckCmd() *cobra.Command {
	var g govFlags
	cmd := &cobra.Command{
		Use:   "ack",
		Short: "Acknowledge the state digest: an Accepted member becomes Active",
		Long: `Ask the service for the current state digest and acknowledge it, which
makes an Accepted member Active (only Active members propose and vote). An
Active member may run it again, a second or more later (signed requests carry
their time in seconds, and the same request twice is refused as a replay);
nothing changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client(true)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Ack(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "member %s is Active\n", c.MemberID())
			return nil
		},
	}
	g.register(cmd, true)
	return cmd
}

func newGovSignCmd() *cobra.Command {
	var (
		g                     govFlags
		typ, id, payload, out string
	)
	cmd := &cobra.Command{
		Use:   "sign --type proposal|ballot|withdrawal|ack|state_digest [--proposal ID] [--payload FILE|-] [--out FILE]",
		Short: "Sign a governance request (COSE_Sign1) for curl or another client",
		Long: `Sign a governance request as the member, created now, and write the
COSE_Sign1 to stdout (or --out). --payload is the request body: a proposal
JSON for proposal, {"ballot": "..."} for ballot, {"stateDigest": "..."} for
ack; none for withdrawal and state_digest. Ballots and withdrawals name their
--proposal. Post it with Content-Type application/cose, for example:

  coco gov sign --type proposal --payload proposal.json --out req.cose
  curl --cacert service_cert.pem -H 'Content-Type: application/cose' \
    --data-binary @req.cose \
    'https://ADDR/gov/members/proposals:create?api-version=2024-07-01'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t := govcose.MsgType(typ)
			if !t.Known() || t == govcose.MsgRecoveryShare {
				return fmt.Errorf("--type must be proposal, ballot, withdrawal, ack or state_digest, not %q", typ)
			}
			var body []byte
			if payload != "" {
				b, err := readInput(cmd.InOrStdin(), payload)
				if err != nil {
					return fmt.Errorf("--payload: %w", err)
				}
				body = b
			}
			tg, err := g.resolve(false, true)
			if err != nil {
				return err
			}
			cert, err := cococrypto.ReadCertFile(tg.cert)
			if err != nil {
				return fmt.Errorf("member certificate: %w", err)
			}
			key, err := cococrypto.ReadKeyFile(tg.key)
			if err != nil {
				return fmt.Errorf("member key: %w", err)
			}
			signed, err := govcose.Sign(key, cert, t, time.Now().Unix(), id, body)
			if err != nil {
				return err
			}
			if out != "" {
				return os.WriteFile(out, signed, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(signed)
			return err
		},
	}
	g.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "message type: proposal, ballot, withdrawal, ack or state_digest (required)")
	f.StringVar(&id, "proposal", "", "proposal id (ballot and withdrawal)")
	f.StringVar(&payload, "payload", "", `request body file ("-": stdin)`)
	f.StringVar(&out, "out", "", "write the COSE_Sign1 here instead of stdout")
	_ = cmd.MarkFlagRequired("type")
	return cmd
}

// readInput reads the file at path, or stdin for "-".
func readInput(stdin io.Reader, path string) ([]byte, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxGovInput+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxGovInput {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxGovInput)
	}
	return b, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
