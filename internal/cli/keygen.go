package cli

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	cococrypto "github.com/cocoledger/coco/crypto"
)

// keygenValidity is how long a keygen certificate lasts, as CCF's keygenerator.sh.
const keygenValidity = 365 * 24 * time.Hour

func newKeygenCmd() *cobra.Command {
	var (
		name, out, curve string
		enc, eth         bool
	)
	cmd := &cobra.Command{
		Use:   "keygen --name NAME",
		Short: "Generate a member or user identity (key, self-signed certificate)",
		Long: `Generate an identity for a member or user in --out:

  NAME_privk.pem      ECDSA private key, PKCS#8 (mode 0600)
  NAME_cert.pem       self-signed certificate, CN=NAME, valid one year
  NAME_enc_privk.pem  with --enc: RSA-2048 encryption key for recovery shares (0600)
  NAME_enc_pubk.pem   with --enc: its public key
  NAME_eth_key        with --eth: Ethereum secp256k1 key, 0x hex (0600)

It prints the identity's id (SHA-256 of the DER certificate) and refuses to
overwrite existing files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKeygen(cmd, keygenOptions{name: name, out: out, curve: curve, enc: enc, eth: eth})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "identity name, used for the file names and CN (required)")
	f.StringVar(&out, "out", ".", "directory to write the files to")
	f.StringVar(&curve, "curve", "p256", "signing key curve: p256 or p384")
	f.BoolVar(&enc, "enc", false, "also generate an RSA-2048 encryption key (members)")
	f.BoolVar(&eth, "eth", false, "also generate an Ethereum key (users)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

type keygenOptions struct {
	name, out, curve string
	enc, eth         bool
}

// keygenFile is one file to write: its contents and mode.
type keygenFile struct {
	path string
	data []byte
	perm os.FileMode
}

func runKeygen(cmd *cobra.Command, o keygenOptions) error {
	if err := checkKeygenName(o.name); err != nil {
		return err
	}
	var c elliptic.Curve
	switch strings.ToLower(o.curve) {
	case "p256", "p-256", "secp256r1":
		c = elliptic.P256()
	case "p384", "p-384", "secp384r1":
		c = elliptic.P384()
	default:
		return fmt.Errorf("keygen: unknown --curve %q (want p256 or p384)", o.curve)
	}
	p := func(suffix string) string { return filepath.Join(o.out, o.name+suffix) }

	// Generate everything before writing anything, so a failure leaves no
	// partial identity behind.
	key, err := cococrypto.GenerateKeyCurve(c)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	cert, err := cococrypto.SelfSignedCert(key, o.name, keygenValidity, false)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	keyPEM, err := cococrypto.EncodePrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	files := []keygenFile{
		{p("_privk.pem"), keyPEM, 0o600},
		{p("_cert.pem"), cococrypto.EncodeCertPEM(cert), 0o644},
	}
	if o.enc {
		ek, err := cococrypto.GenerateEncryptionKey()
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		priv, err := cococrypto.EncodePrivateKeyPEM(ek)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		pub, err := cococrypto.EncodePublicKeyPEM(ek.Public())
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		files = append(files,
			keygenFile{p("_enc_privk.pem"), priv, 0o600},
			keygenFile{p("_enc_pubk.pem"), pub, 0o644})
	}
	var ethAddress string
	if o.eth {
		hexKey, addr, err := cococrypto.GenerateEthKey()
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		ethAddress = addr
		files = append(files, keygenFile{p("_eth_key"), []byte(hexKey + "\n"), 0o600})
	}

	// Refuse before writing any file: overwriting a key could destroy the
	// only copy of a member's identity.
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return fmt.Errorf("keygen: refusing to overwrite existing %s", f.path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	for i, f := range files {
		if err := cococrypto.WriteFileAtomic(f.path, f.data, f.perm); err != nil {
			for _, w := range files[:i] {
				_ = os.Remove(w.path)
			}
			return fmt.Errorf("keygen: %w", err)
		}
	}

	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "id: %s\n", cococrypto.CertID(cert))
	if o.eth {
		fmt.Fprintf(w, "eth_address: %s\n", ethAddress)
	}
	for _, f := range files {
		fmt.Fprintf(w, "wrote: %s\n", f.path)
	}
	return nil
}

// checkKeygenName keeps NAME a plain file name prefix, so --name cannot write
// outside --out.
func checkKeygenName(name string) error {
	switch {
	case name == "":
		return errors.New("keygen: --name is empty")
	case name == "." || name == "..", strings.ContainsAny(name, `/\`), strings.ContainsRune(name, os.PathSeparator):
		return fmt.Errorf("keygen: --name %q must be a plain name, not a path (use --out for the directory)", name)
	}
	return nil
}
