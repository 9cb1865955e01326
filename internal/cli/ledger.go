package cli

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/cocoledger/coco/kv"
	"github.com/cocoledger/coco/ledger"
	"github.com/cocoledger/coco/receipt"
)

func newLedgerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Verify and read ledger files (read-only)",
	}
	cmd.AddCommand(newLedgerVerifyCmd(), newLedgerReadCmd())
	return cmd
}

// ledgerDir accepts a ledger directory or a node data dir holding ledger/,
// so operators can point at whatever directory they have at hand.
func ledgerDir(dir string) string {
	if st, err := os.Stat(filepath.Join(dir, "ledger")); err == nil && st.IsDir() {
		return filepath.Join(dir, "ledger")
	}
	return dir
}

func newLedgerVerifyCmd() *cobra.Command {
	var serviceCert string
	cmd := &cobra.Command{
		Use:   "verify DIR [--service-cert FILE]",
		Short: "Check every record, the Merkle tree and every signature of a ledger",
		Long: `Verify a ledger directory (or a node data dir containing ledger/) without
modifying it: record CRCs, entry order, file names, terms, and every signature
transaction against the Merkle root recomputed from the entries before it.
With --service-cert, node certificates must be issued by the service and the
COSE root signatures made by its key. Without it, a signature is only checked
against the certificate it carries.

Prints a summary, or the first bad entry (file, offset, entry) and exits 1.
"last signed seqno" is the last entry covered by a signature; entries after
it are intact but not yet vouched for.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts ledger.VerifyOptions
			if serviceCert != "" {
				pemBytes, err := os.ReadFile(serviceCert)
				if err != nil {
					return fmt.Errorf("service certificate: %w", err)
				}
				if opts.ServiceCert, err = receipt.ParseCertPEM(pemBytes); err != nil {
					return fmt.Errorf("service certificate %s: %w", serviceCert, err)
				}
			}
			dir := ledgerDir(args[0])
			rep, err := ledger.Verify(cmd.Context(), dir, opts)
			var ve *ledger.VerifyError
			if errors.As(err, &ve) {
				fmt.Fprintf(cmd.OutOrStdout(), "BAD: %s offset %d (entry %d): %s\n", filepath.Join(dir, ve.File), ve.Offset, ve.Index, ve.Reason)
				return fmt.Errorf("ledger %s failed verification at entry %d", dir, ve.Index)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d entries, %d signatures, last signed seqno %d, %d files\n",
				rep.Entries, rep.Signatures, rep.LastSignedSeqno, rep.Files)
			return nil
		},
	}
	cmd.Flags().StringVar(&serviceCert, "service-cert", "", "service certificate PEM (service_cert.pem)")
	return cmd
}

// readLine is one entry of `coco ledger read`. Private write sets are
// sealed; only their size is shown, they are never decrypted.
type readLine struct {
	TxID         string            `json:"txid"`
	Kind         string            `json:"kind"`
	Public       json.RawMessage   `json:"public,omitempty"`
	PrivateBytes int               `json:"private_bytes"`
	Signature    *ledger.Signature `json:"signature,omitempty"`
	RaftType     *uint8            `json:"raft_type,omitempty"`
	RaftData     []byte            `json:"raft_data,omitempty"`
}

func newLedgerReadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "read DIR",
		Short: "Print every ledger entry as one JSON line",
		Long: `Print one JSON line per entry of a ledger directory (or a node data dir
containing ledger/):

  {"txid":"v.s","kind":"tx","public":{"map":{"key":"value","gone":null}},"private_bytes":n}

Public values are printed as strings, or base64 when not valid UTF-8; deleted
keys as null. Private data is never decrypted or printed. Signature entries
carry "signature", raft's internal entries "raft_type" and "raft_data".
The ledger is not verified: use "coco ledger verify" for that.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := bufio.NewWriter(cmd.OutOrStdout())
			enc := json.NewEncoder(w)
			err := ledger.ReadDir(cmd.Context(), ledgerDir(args[0]), func(e *ledger.Entry, file string, offset int64) error {
				line, err := describeEntry(e)
				if err != nil {
					return fmt.Errorf("%s offset %d (entry %s): %w", file, offset, e.TxID(), err)
				}
				return enc.Encode(line)
			})
			return errors.Join(err, w.Flush())
		},
	}
}

func describeEntry(e *ledger.Entry) (*readLine, error) {
	line := &readLine{TxID: e.TxID(), Kind: e.Kind.String(), PrivateBytes: len(e.Private)}
	switch e.Kind {
	case ledger.KindTx:
		pub := map[string]map[string]*string{}
		if len(e.Public) > 0 {
			ws, err := kv.UnmarshalWriteSet(e.Public)
			if err != nil {
				return nil, err
			}
			for _, m := range ws.Maps {
				writes := make(map[string]*string, len(m.Writes))
				for _, wr := range m.Writes {
					if wr.Deleted {
						writes[printable([]byte(wr.Key))] = nil
						continue
					}
					v := printable(wr.Value)
					writes[printable([]byte(wr.Key))] = &v
				}
				pub[printable([]byte(m.Name))] = writes
			}
		}
		b, err := json.Marshal(pub)
		if err != nil {
			return nil, err
		}
		line.Public = b
	case ledger.KindSignature:
		s, err := e.Signature()
		if err != nil {
			return nil, err
		}
		line.Signature = s
	case ledger.KindInternal:
		line.RaftType = new(e.RaftType)
		line.RaftData = e.Public
	}
	return line, nil
}

// printable returns b as a string when it is valid UTF-8 (JSON would
// otherwise replace bytes silently), else as standard base64.
func printable(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}
