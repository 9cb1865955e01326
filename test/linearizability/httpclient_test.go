package linearizability

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoledger/coco/internal/testproc"
)

// TestHTTPClientOutcomes checks the mapping of coco's answers to register
// outcomes against a fake node that answers each id as told.
func TestHTTPClientOutcomes(t *testing.T) {
	t.Parallel()
	type answer struct {
		status int
		body   string
	}
	answers := map[uint64]answer{
		1:  {200, "true"},
		2:  {200, ""},
		3:  {409, `{"error":{"code":"TransactionConflict","message":"x"}}`},
		4:  {503, `{"error":{"code":"NotPrimary","message":"x"}}`},
		5:  {503, `{"error":{"code":"TransactionInvalidated","message":"x"}}`},
		6:  {503, `{"error":{"code":"ForwardingFailed","message":"x"}}`},
		7:  {503, `{"error":{"code":"RequestCancelled","message":"x"}}`},
		8:  {200, `{"msg":"v"}`},
		9:  {404, `{"error":{"code":"ResourceNotFound","message":"x"}}`},
		10: {503, `{"error":{"code":"ServiceUnavailable","message":"x"}}`},
		11: {200, `{"ms`},
		12: {400, `{"error":{"code":"InvalidInput","message":"x"}}`},
	}
	var localReads atomic.Int32 // written by the server's handlers
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if r.Method == http.MethodPost {
			var b struct{ ID uint64 }
			body, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(body, &b)
			id = strconv.FormatUint(b.ID, 10)
		} else {
			if r.Header.Get("x-coco-read-consistency") == "local" {
				localReads.Add(1)
			}
		}
		n, _ := strconv.ParseUint(id, 10, 64)
		a := answers[n]
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewHTTPClient(strings.TrimPrefix(srv.URL, "https://"), certPEM, tls.Certificate{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	tests := []struct {
		in      Input
		outcome Outcome
		detail  string // prefix
	}{
		{put(1, "a"), OK, ""},
		{put(2, "a"), Indeterminate, APIViolation + `200 "", want true`},
		{put(3, "a"), Failed, "409 TransactionConflict"},
		{put(4, "a"), Failed, "503 NotPrimary"},
		{put(5, "a"), Failed, "503 TransactionInvalidated"},
		{put(6, "a"), Indeterminate, "503 ForwardingFailed"},
		{put(7, "a"), Indeterminate, "503 RequestCancelled"},
		{get(8), Found, ""},
		{get(9), Absent, ""},
		{get(10), Indeterminate, "503 ServiceUnavailable"},
		{get(11), Indeterminate, APIViolation},
	}
	for _, tt := range tests {
		out, err := c.Do(t.Context(), tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if out.Outcome != tt.outcome || !strings.HasPrefix(out.Detail, tt.detail) || (tt.detail == "" && out.Detail != "") {
			t.Errorf("%s: got %+v, want outcome %d, detail %q", tt.in, out, tt.outcome, tt.detail)
		}
		if tt.outcome == Found && out.Value != "v" {
			t.Errorf("%s: value %q, want v", tt.in, out.Value)
		}
	}
	if _, err := c.Do(t.Context(), put(12, "a")); !errors.Is(err, ErrUnexpected) {
		t.Errorf("400: err %v, want ErrUnexpected", err)
	}
	if n := localReads.Load(); n != 0 {
		t.Errorf("%d reads sent as local by default", n)
	}
	c.ReadConsistency = "local"
	if _, err := c.Do(t.Context(), get(8)); err != nil || localReads.Load() != 1 {
		t.Errorf("ReadConsistency local: err %v, %d local reads, want 1", err, localReads.Load())
	}

	// Nothing listening: the request was never sent.
	addr, err := testproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	down, err := NewHTTPClient(addr, certPEM, tls.Certificate{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := down.Do(t.Context(), put(1, "a")); err != nil || out.Outcome != Unsent {
		t.Errorf("refused connection: %+v, %v; want Unsent", out, err)
	}
}
