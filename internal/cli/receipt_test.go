package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReceiptVerifyCommand(t *testing.T) {
	golden := filepath.Join("..", "..", "receipt", "testdata")
	cert := filepath.Join(golden, "service_cert.pem")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut string
		wantErr string
	}{
		{"json", []string{"receipt", "verify", "--service-cert", cert, filepath.Join(golden, "valid.json")}, 0, "OK: transaction 2.7 is committed (json receipt, root ", ""},
		{"cose", []string{"receipt", "verify", "--service-cert", cert, filepath.Join(golden, "valid.cose")}, 0, "OK: transaction 2.7 is committed (cose receipt, root ", ""},
		{"tampered json", []string{"receipt", "verify", "--service-cert", cert, filepath.Join(golden, "tampered_json_signature.json")}, 1, "", "signature does not verify"},
		{"tampered cose", []string{"receipt", "verify", "--service-cert", cert, filepath.Join(golden, "tampered_cose_kid.cose")}, 1, "", "kid"},
		{"no cert flag", []string{"receipt", "verify", filepath.Join(golden, "valid.json")}, 1, "", "--service-cert is required"},
		{"missing file", []string{"receipt", "verify", "--service-cert", cert, filepath.Join(golden, "nope.json")}, 1, "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("stdout %q, want it to contain %q", out.String(), tc.wantOut)
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func TestReceiptVerifyStdin(t *testing.T) {
	golden := filepath.Join("..", "..", "receipt", "testdata")
	data, err := os.ReadFile(filepath.Join(golden, "valid.cose"))
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(bytes.NewReader(data))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"receipt", "verify", "--service-cert", filepath.Join(golden, "service_cert.pem"), "-"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("verify from stdin: %v", err)
	}
	if !strings.Contains(out.String(), "OK: transaction 2.7 is committed (cose receipt") {
		t.Fatalf("stdout %q", out.String())
	}
}
