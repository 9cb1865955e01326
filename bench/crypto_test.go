package bench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// The rates are never asserted: they depend on the machine and its load.

func TestRunCrypto(t *testing.T) {
	rates, err := RunCrypto(t.Context(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rates) != 2 || rates[0].Workload != "ecrecover" || rates[1].Workload != "p256-verify" {
		t.Fatalf("rates %+v, want ecrecover then p256-verify", rates)
	}
	for _, r := range rates {
		t.Log(r.Markdown())
		if r.Ops == 0 || r.Elapsed <= 0 || r.PerSec <= 0 {
			t.Errorf("%s: ops %d in %s = %f/s, want positive", r.Workload, r.Ops, r.Elapsed, r.PerSec)
		}
		f := r.Figure()
		if f.System != "1core" || f.Clients != 1 || f.PerSec != r.PerSec || f.Workload != r.Workload || f.Note == "" {
			t.Errorf("figure %+v", f)
		}
		if strings.Count(r.Markdown(), "|") != strings.Count(strings.SplitN(CryptoMarkdownHeader, "\n", 2)[0], "|") {
			t.Errorf("row %q does not match the header", r.Markdown())
		}
	}
}

func TestRunCryptoConfig(t *testing.T) {
	if _, err := RunCrypto(t.Context(), 0); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("RunCrypto(0) = %v, want ErrInvalidConfig", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := RunCrypto(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("RunCrypto(cancelled) = %v, want context.Canceled", err)
	}
}

// The sets check real signatures: every good one passes, and a signature
// that was tampered with, or checked against another signer, fails and
// stops the measurement.
func TestCryptoSetsDetectBadSignatures(t *testing.T) {
	rec, err := newEcrecoverSet(3)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := newP256Set(3)
	if err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string]func(int) error{"ecrecover": rec.check, "p256": p256.check} {
		for i := range 3 {
			if err := set(i); err != nil {
				t.Errorf("%s: good signature %d: %v", name, i, err)
			}
		}
	}

	rec.sigs[1][10] ^= 1 // another r: recovers another key, or none
	rec.senders[2] = rec.senders[0]
	p256.sigs[1][len(p256.sigs[1])-1] ^= 1
	p256.digests[2][0] ^= 1
	for name, set := range map[string]func(int) error{"ecrecover": rec.check, "p256": p256.check} {
		for _, i := range []int{1, 2} {
			if err := set(i); err == nil {
				t.Errorf("%s: bad signature %d checked", name, i)
			}
		}
		_, _, err := measureOneCore(t.Context(), time.Hour, 3, set)
		if err == nil || !strings.Contains(err.Error(), "signature 1") {
			t.Errorf("%s: measureOneCore = %v, want an error naming signature 1", name, err)
		}
	}
}
