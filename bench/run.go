package bench

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// runWindowed runs n closed-loop clients, client(ctx, i, window, end) each
// on its own goroutine: they start at once, count only what they send at or
// after window and finish by end (window is warmup from now, end duration
// after it), and are cancelled stopGrace after end if they hang. It waits
// for all of them and returns ctx's error if ctx ended first.
func runWindowed(ctx context.Context, warmup, duration time.Duration, n int, client func(ctx context.Context, i int, window, end time.Time)) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := time.Now().Add(warmup)
	end := window.Add(duration)
	stopTimer := time.AfterFunc(time.Until(end.Add(stopGrace)), cancel)
	defer stopTimer.Stop()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { client(runCtx, i, window, end) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bench interrupted: %w", err)
	}
	return nil
}

// checkRun checks what every closed-loop run against coco needs: host:port
// targets, the service certificate, and a sane window (checkWindow).
func checkRun(targets []string, serviceCert *x509.Certificate, duration, warmup time.Duration) []error {
	var errs []error
	if len(targets) == 0 {
		errs = append(errs, errors.New("no targets"))
	}
	for _, t := range targets {
		if _, _, err := net.SplitHostPort(t); err != nil {
			errs = append(errs, fmt.Errorf("target %q: %w", t, err))
		}
	}
	if serviceCert == nil {
		errs = append(errs, errors.New("no service certificate"))
	}
	return append(errs, checkWindow(duration, warmup)...)
}

// checkWindow checks a run's window: a positive duration and a warmup that
// is not negative.
func checkWindow(duration, warmup time.Duration) []error {
	var errs []error
	if duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be positive, got %s", duration))
	}
	if warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup must not be negative, got %s", warmup))
	}
	return errs
}

// latencyStats are the rate and latency figures of a measured window.
type latencyStats struct {
	Throughput float64 // per second
	P50        time.Duration
	P90        time.Duration
	P99        time.Duration
	Max        time.Duration
}

// stats summarises h, recorded over a window of length d.
func (h *histogram) stats(d time.Duration) latencyStats {
	return latencyStats{
		Throughput: float64(h.n) / d.Seconds(),
		P50:        h.quantile(0.50),
		P90:        h.quantile(0.90),
		P99:        h.quantile(0.99),
		Max:        h.max,
	}
}

// newPost is a POST of body to u, sent straight to a transport (no
// redirects or cookies).
//
// Each request gets its own body reader although reusing one looks
// cheaper: the HTTP/1 transport's write loop reads the body once more after
// sending ContentLength bytes (to detect an over-long body), and that read
// may happen after the response has arrived, racing with the next request's
// body. GetBody lets the transport resend the request when a kept-alive
// connection was closed before any byte of it was written.
func newPost(ctx context.Context, u *url.URL, header http.Header, body []byte) *http.Request {
	return (&http.Request{
		Method:        http.MethodPost,
		URL:           u,
		Host:          u.Host,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
	}).WithContext(ctx)
}
