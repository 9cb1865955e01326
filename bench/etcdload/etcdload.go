// Package etcdload is the load client of the etcd baseline in coco's
// comparisons: closed-loop clients that Put unique keys into an etcd
// cluster, measured as bench.RunLog measures coco's logging app.
//
// A Put that etcd acknowledges is committed on a majority of the members
// and fsynced to their write-ahead logs (unless the cluster runs with
// --unsafe-no-fsync), which is what a 200 from coco's logging app means, so
// the two figures compare durable writes with durable writes.
package etcdload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoledger/coco/bench"
)

// Defaults applied by Run to zero Config fields.
const (
	DefaultValueSize = 100
	DefaultKeyPrefix = "coco-bench/"
	// DefaultSystem names the etcd side of a comparison: a 3-member cluster.
	DefaultSystem = "etcd-3"
)

// requestTimeout bounds one Put, so that a cluster without a leader shows
// up as errors in the window instead of clients that stall silently.
const requestTimeout = 5 * time.Second

// errorBackoff is how long a client pauses after a failed Put, so that a
// dead cluster is not hammered in a tight loop.
const errorBackoff = 10 * time.Millisecond

// dialTimeout bounds one TCP connection attempt.
const dialTimeout = 5 * time.Second

// Config describes an etcd write workload.
type Config struct {
	// Endpoints are the members' client addresses, "host:port" or
	// "http://host:port"; client i talks to Endpoints[i % len(Endpoints)].
	Endpoints []string
	// Clients is the number of concurrent closed-loop clients, each with a
	// client (one gRPC connection) of its own.
	Clients int
	// ValueSize is the length of each value in bytes; 0 means
	// DefaultValueSize.
	ValueSize int
	// Duration is the measured window; Warmup precedes it and is not
	// counted.
	Duration time.Duration
	Warmup   time.Duration
	// KeyPrefix starts every key; "" means DefaultKeyPrefix. Keys are
	// KeyPrefix + client index + "/" + sequence number, unique in a run.
	KeyPrefix string
}

func (c *Config) normalise() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("no endpoints"))
	}
	for _, e := range c.Endpoints {
		if err := checkEndpoint(e); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Clients <= 0 {
		errs = append(errs, fmt.Errorf("clients must be positive, got %d", c.Clients))
	}
	if c.ValueSize < 0 {
		errs = append(errs, fmt.Errorf("value size must not be negative, got %d", c.ValueSize))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be positive, got %s", c.Duration))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warmup must not be negative, got %s", c.Warmup))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", bench.ErrInvalidConfig, err)
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	return nil
}

// checkEndpoint accepts what clientv3 accepts over TCP: host:port, with or
// without an http:// or https:// scheme.
func checkEndpoint(e string) error {
	hostPort := e
	if strings.Contains(e, "://") {
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("endpoint %q: %w", e, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("endpoint %q: scheme must be http or https", e)
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", e, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("endpoint %q: want host:port", e)
	}
	return nil
}

// Workload names the write workload of a value size as both sides of a
// comparison name it: "writes-100B".
func Workload(valueSize int) string { return fmt.Sprintf("writes-%dB", valueSize) }

// Result summarises one Run. Only the measured window counts: Puts started
// during the warmup or finishing after the window are left out.
type Result struct {
	// Result holds the figures in the shape of coco's own runs: Writes are
	// acknowledged Puts, Errors counts failed Puts by cause (see
	// errorCause) and LastTransportError is the last error seen.
	// Connections counts the TCP connections dialed (Clients when every
	// connection lasted the whole run).
	bench.Result
	ValueSize int
}

// Figure is r as a row of a comparison.
func (r *Result) Figure(system string) bench.Figure {
	return r.Result.Figure(Workload(r.ValueSize), system)
}

// putter writes one key. Each client owns one; Close releases it.
type putter interface {
	Put(ctx context.Context, key, value string) error
	Close() error
}

// dialFunc makes the putter of one client, talking to endpoint. dials, if
// not nil, counts the connections it opens.
type dialFunc func(endpoint string, dials *atomic.Int64) (putter, error)

// Run runs cfg.Clients closed-loop clients that Put unique keys with
// cfg.ValueSize-byte values, for cfg.Warmup then cfg.Duration, and reports
// the acknowledged Puts and their latency during cfg.Duration. Failed Puts
// are counted in the result, not returned as errors: a benchmark under
// overload must still report. Cancelling ctx stops the run early with ctx's
// error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	return run(ctx, cfg, dialEtcd)
}

func run(ctx context.Context, cfg Config, dial dialFunc) (*Result, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	var dials atomic.Int64
	clients := make([]*client, cfg.Clients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.put.Close()
			}
		}
	}()
	for i := range clients {
		p, err := dial(cfg.Endpoints[i%len(cfg.Endpoints)], &dials)
		if err != nil {
			return nil, fmt.Errorf("etcdload: client %d: %w", i, err)
		}
		clients[i] = &client{
			put:    p,
			prefix: cfg.KeyPrefix + strconv.Itoa(i) + "/",
			errors: map[string]int{},
		}
	}
	value := strings.Repeat("x", cfg.ValueSize)
	err := bench.RunWindowed(ctx, cfg.Warmup, cfg.Duration, cfg.Clients, func(ctx context.Context, i int, window, end time.Time) {
		clients[i].run(ctx, value, window, end)
	})
	if err != nil {
		return nil, fmt.Errorf("etcdload: %w", err)
	}

	var h bench.Histogram
	for _, c := range clients {
		h.Merge(&c.hist)
	}
	res := &Result{Result: *h.Result(strings.Join(cfg.Endpoints, ","), cfg.Clients, cfg.Duration), ValueSize: cfg.ValueSize}
	for _, c := range clients {
		for k, v := range c.errors {
			res.Errors[k] += v
		}
		if c.lastErr != nil {
			res.LastTransportError = c.lastErr.Error()
		}
	}
	res.Connections = dials.Load()
	return res, nil
}

// client is one closed-loop client. It is owned by its goroutine until run
// returns, so its counters need no locking.
type client struct {
	put    putter
	prefix string
	seq    uint64

	hist    bench.Histogram
	errors  map[string]int
	lastErr error
}

func (c *client) run(ctx context.Context, value string, window, end time.Time) {
	key := make([]byte, 0, len(c.prefix)+20)
	for ctx.Err() == nil {
		sent := time.Now()
		if !sent.Before(end) {
			return
		}
		key = strconv.AppendUint(append(key[:0], c.prefix...), c.seq, 10)
		c.seq++
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := c.put.Put(pctx, string(key), value)
		cancel()
		done := time.Now()
		if sent.Before(window) || done.After(end) {
			// Outside the window: warmup, or straddling its end.
			if err != nil {
				bench.SleepCtx(ctx, errorBackoff)
			}
			continue
		}
		if err != nil {
			c.errors[errorCause(err)]++
			c.lastErr = err
			bench.SleepCtx(ctx, errorBackoff)
			continue
		}
		c.hist.Record(done.Sub(sent))
	}
}

// errorCause names the cause of a failed Put: etcd's own description for
// the errors its server answers ("no-leader", "request-timed-out"), else
// the gRPC status code ("Unavailable" when the member cannot be reached,
// "DeadlineExceeded" when the Put took longer than 5 s).
func errorCause(err error) string {
	var ee rpctypes.EtcdError
	switch {
	case errors.As(err, &ee):
		return strings.ReplaceAll(strings.TrimPrefix(ee.Error(), "etcdserver: "), " ", "-")
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded.String()
	case errors.Is(err, context.Canceled):
		return codes.Canceled.String()
	}
	return status.Code(err).String()
}

// etcdPutter is a clientv3 client of one endpoint: one gRPC connection,
// opened lazily at the first Put.
type etcdPutter struct{ c *clientv3.Client }

var _ putter = etcdPutter{}

func dialEtcd(endpoint string, dials *atomic.Int64) (putter, error) {
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	c, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint},
		Logger:    zap.NewNop(),
		// Options given here come after clientv3's own, so this dialer,
		// which counts connections, replaces its (equivalent) TCP dialer.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			if dials != nil {
				dials.Add(1)
			}
			return dialer.DialContext(ctx, "tcp", addr)
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client of %s: %w", endpoint, err)
	}
	return etcdPutter{c}, nil
}

func (p etcdPutter) Put(ctx context.Context, key, value string) error {
	_, err := p.c.Put(ctx, key, value)
	return err
}

func (p etcdPutter) Close() error { return p.c.Close() }
