package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	committed prometheus.Counter
	conflicts prometheus.Counter
	// forwarded counts writes a backup relayed to the primary;
	// forwardErrors those it could not.
	forwarded, forwardErrors prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coco_http_requests_total", Help: "HTTP requests by endpoint, method and status code.",
		}, []string{"endpoint", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coco_http_request_duration_seconds", Help: "HTTP request latency by endpoint and method (for writes: until committed).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"endpoint", "method"}),
		committed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coco_committed_transactions_total", Help: "Committed transactions (including signatures) applied by this node since it started.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coco_transaction_conflicts_total", Help: "Transactions re-executed because a concurrent commit invalidated their reads.",
		}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coco_forwarded_requests_total", Help: "Requests this backup forwarded to the primary.",
		}),
		forwardErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coco_forwarding_errors_total", Help: "Requests this backup could not forward to the primary.",
		}),
	}
	m.reg.MustRegister(m.requests, m.latency, m.committed, m.conflicts, m.forwarded, m.forwardErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coco_commit_seqno", Help: "Seqno of the latest committed transaction."},
			func() float64 { return float64(n.cons.Status().CommitIndex) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coco_last_seqno", Help: "Seqno of the last entry in this node's ledger."},
			func() float64 { return float64(n.cons.Status().LastIndex) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coco_view", Help: "Current view (raft term)."},
			func() float64 { return float64(n.cons.Status().View) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coco_ledger_bytes", Help: "Bytes in this node's ledger files."},
			func() float64 { return float64(n.led.Bytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "coco_signatures_total", Help: "Signature transactions in this node's ledger."},
			func() float64 { return float64(n.cons.Status().Signatures) }),
	)
	return m
}

func (m *metrics) observe(endpoint, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(endpoint, method).Observe(d.Seconds())
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
