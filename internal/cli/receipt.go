package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/cocoledger/coco/receipt"
	"github.com/spf13/cobra"
)

// maxReceiptSize bounds what we read from a file or stdin: a receipt is a
// few kilobytes, so anything much larger is a mistake, not a receipt.
const maxReceiptSize = 16 << 20

func newReceiptCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "receipt",
		Short: "Work with transaction receipts",
	}
	cmd.AddCommand(newReceiptVerifyCmd())
	return cmd
}

func newReceiptVerifyCmd() *cobra.Command {
	var serviceCertPath string
	cmd := &cobra.Command{
		Use:   "verify --service-cert FILE RECEIPT_FILE",
		Short: "Verify a JSON or COSE receipt offline against the service certificate",
		Long: `Verify a transaction receipt (JSON, or COSE as served by
/app/receipt/cose) using only the service certificate. RECEIPT_FILE "-"
reads the receipt from standard input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if serviceCertPath == "" {
				return fmt.Errorf("receipt verify: --service-cert is required")
			}
			certPEM, err := os.ReadFile(serviceCertPath)
			if err != nil {
				return fmt.Errorf("receipt verify: read service certificate: %w", err)
			}
			serviceCert, err := receipt.ParseCertPEM(certPEM)
			if err != nil {
				return fmt.Errorf("receipt verify: service certificate %s: %w", serviceCertPath, err)
			}
			data, err := readReceipt(cmd.InOrStdin(), args[0])
			if err != nil {
				return fmt.Errorf("receipt verify: %w", err)
			}
			v, err := receipt.Verify(data, serviceCert)
			if err != nil {
				return fmt.Errorf("receipt verify: %s: %w", args[0], err)
			}
			signed := ""
			if v.SignedTxID != "" {
				signed = ", signed at " + v.SignedTxID
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: transaction %s is committed (%s receipt, root %x%s)\n", v.TxID, v.Kind, v.Root, signed)
			return nil
		},
	}
	cmd.Flags().StringVar(&serviceCertPath, "service-cert", "", "service certificate (PEM), e.g. service_cert.pem")
	return cmd
}

func readReceipt(stdin io.Reader, path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open receipt: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxReceiptSize+1))
	if err != nil {
		return nil, fmt.Errorf("read receipt %s: %w", path, err)
	}
	if len(data) > maxReceiptSize {
		return nil, fmt.Errorf("receipt %s is larger than %d bytes", path, maxReceiptSize)
	}
	return data, nil
}
