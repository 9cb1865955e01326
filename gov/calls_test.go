package gov

import (
	"context"
	"errors"
	"testing"
	"time"
)

// At most maxConcurrentCalls constitution calls run at once; the next one
// waits, and gives up with its request's context.
func TestConcurrentCallsBounded(t *testing.T) {
	g := New(Config{})
	release := make(chan struct{})
	started := make(chan struct{}, maxConcurrentCalls)
	done := make(chan error, maxConcurrentCalls)
	for range maxConcurrentCalls {
		go func() {
			done <- g.js(t.Context(), func() error { started <- struct{}{}; <-release; return nil })
		}()
	}
	for range maxConcurrentCalls {
		<-started
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	ran := false
	if err := g.js(ctx, func() error { ran = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("a call beyond the bound: ran %v, err %v", ran, err)
	}
	close(release)
	for range maxConcurrentCalls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := g.js(t.Context(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("after the others finished: ran %v, err %v", ran, err)
	}
}
