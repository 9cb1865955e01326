package receipt

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cocoledger/coco/merkle"
)

func addGoldenSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseJSON(f *testing.F) {
	addGoldenSeeds(f, "*.json")
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"proof":[{"left":"00","right":"00"}]}`))
	cert := loadServiceCert(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseJSON(b)
		if err != nil {
			if r != nil {
				t.Fatal("ParseJSON returned a receipt and an error")
			}
			return
		}
		v, err := r.Verify(cert)
		if (v == nil) == (err == nil) {
			t.Fatalf("Verify returned %v, %v", v, err)
		}
		_, _ = Verify(b, cert)
	})
}

func FuzzVerifyCOSE(f *testing.F) {
	addGoldenSeeds(f, "*.cose")
	cert := loadServiceCert(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := VerifyCOSE(b, cert)
		if (v == nil) == (err == nil) {
			t.Fatalf("VerifyCOSE returned %v, %v", v, err)
		}
		_ = VerifySignedRoot(b, merkle.Hash{}, cert)
		_, _ = AttachProof(b, LeafComponents{}, []merkle.ProofStep{{Left: true}})
	})
}
