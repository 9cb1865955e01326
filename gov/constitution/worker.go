package constitution

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime/metrics"
	"time"
)

// Calls can run in a worker process (Limits.Worker) instead of on a
// goroutine of the caller. goja has no allocation limit and cannot
// interrupt a built-in mid-step, so in-process a script such as
// new Array(3e7).fill(0) runs on after its timeout and may allocate
// gigabytes in the node. In a worker the same script meets a hard bound:
// the worker watches its own heap and exits past Limits.MaxMemoryBytes,
// and the caller kills it at Limits.HardTimeout. Each call gets a fresh
// process, so nothing survives between calls there either.
//
// The worker is the calling binary itself, started with WorkerEnv set;
// its main must call ServeWorker first thing (cmd/coco does). The caller
// sends one call; the worker runs it with the in-process code and a KV
// whose reads and writes come back to the caller over the pipes, where
// the caller's kvView enforces the same map policy and write limit and
// buffers apply's writes until the worker reports success.

// WorkerEnv, set in a process's environment, makes ServeWorker serve one
// call on stdin and stdout.
const WorkerEnv = "COCO_CONSTITUTION_WORKER"

// Worker exit codes that the caller reports as such.
const (
	exitMemory = 3 // the heap passed Limits.MaxMemoryBytes
	exitFailed = 4 // the worker could not read its call or write its answer
)

// workerStartAllowance is added to a worker's HardTimeout for starting the
// process, which the worker's own Timeout does not count.
const workerStartAllowance = 2 * time.Second

// maxFrame bounds one message from the worker to the caller: a key, or a
// value within the write limit. What the caller sends the worker (the call,
// a map it iterates) is bounded by the worker's heap cap instead.
const maxFrame = 64 << 20

// workerCall is the one message the caller sends. Text that is not
// necessarily UTF-8 travels as []byte (base64 in JSON), so that it reaches
// the worker byte for byte.
type workerCall struct {
	Op         string `json:"op"` // validate, resolve, apply or ballot
	Source     []byte `json:"source"`
	Limits     Limits `json:"limits"`
	Proposal   []byte `json:"proposal"`
	ProposerID []byte `json:"proposer_id,omitempty"`
	ProposalID []byte `json:"proposal_id,omitempty"`
	Votes      []Vote `json:"votes,omitempty"`
}

// workerMsg is what the worker sends: a kv request or the result.
type workerMsg struct {
	KV    string  `json:"kv,omitempty"` // get, put or range
	Map   []byte  `json:"map,omitempty"`
	Key   []byte  `json:"key,omitempty"`
	Value *[]byte `json:"value,omitempty"` // put; nil deletes

	Done   bool     `json:"done,omitempty"`
	Valid  bool     `json:"valid,omitempty"`
	Desc   string   `json:"desc,omitempty"`
	State  string   `json:"state,omitempty"`
	Vote   bool     `json:"vote,omitempty"`
	ErrCls []string `json:"err_class,omitempty"`
	ErrMsg string   `json:"err,omitempty"`
}

// kvReply answers a workerMsg kv request.
type kvReply struct {
	Value   []byte      `json:"value,omitempty"`
	Found   bool        `json:"found,omitempty"`
	Entries [][2][]byte `json:"entries,omitempty"`
	Err     string      `json:"err,omitempty"`
}

// errClasses names the package's errors for the trip through the pipe.
var errClasses = map[string]error{
	"timeout": ErrTimeout, "syntax": ErrSyntax, "export": ErrMissingExport, "script": ErrScript,
	"result": ErrBadResult, "large": ErrTooLarge, "internal": ErrInternal, "memory": ErrMemory,
	"canceled": context.Canceled, "deadline": context.DeadlineExceeded,
}

// errClass names every error of errClasses that err matches.
func errClass(err error) []string {
	var names []string
	for name, sentinel := range errClasses {
		if errors.Is(err, sentinel) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		names = []string{"internal"}
	}
	return names
}

// workerError rebuilds the worker's error: its message is the in-process
// one, and errors.Is matches the same sentinels.
type workerError struct {
	msg       string
	sentinels []error
}

func (e *workerError) Error() string   { return e.msg }
func (e *workerError) Unwrap() []error { return e.sentinels }

// err is the call's error, nil if it succeeded.
func (m workerMsg) err() error {
	if len(m.ErrCls) == 0 {
		return nil
	}
	e := &workerError{msg: m.ErrMsg}
	for _, c := range m.ErrCls {
		if s, ok := errClasses[c]; ok {
			e.sentinels = append(e.sentinels, s)
		}
	}
	return e
}

func writeFrame(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return w.Flush()
}

func readFrame(r io.Reader, v any, limit uint32) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > limit {
		return fmt.Errorf("message of %d bytes, the limit is %d", size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// runInWorker runs call in a fresh worker process, serving its kv requests
// from view, and returns the worker's result message, with the call's own
// error (the script's, rebuilt) if it failed.
func runInWorker(ctx context.Context, l Limits, call workerCall, view *kvView) (workerMsg, error) {
	what := call.Op
	if err := ctx.Err(); err != nil {
		return workerMsg{}, fmt.Errorf("constitution: %s: %w", what, err)
	}
	cmd := exec.Command(l.Worker)
	// Named for ps: the path may be /proc/self/exe, which says nothing.
	cmd.Args = []string{"coco-constitution-worker"}
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return workerMsg{}, fmt.Errorf("%w: %s: worker: %w", ErrInternal, what, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return workerMsg{}, fmt.Errorf("%w: %s: worker: %w", ErrInternal, what, err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	if err := cmd.Start(); err != nil {
		return workerMsg{}, fmt.Errorf("%w: %s: start worker %s: %w", ErrInternal, what, l.Worker, err)
	}
	// The hard timeout and ctx kill the worker; the loop below then reads
	// EOF, and why is told by which of them fired.
	killed := make(chan error, 1)
	kill := func(why error) {
		select {
		case killed <- why:
			_ = cmd.Process.Kill()
		default:
		}
	}
	limit := l.HardTimeout() + workerStartAllowance
	hard := time.AfterFunc(limit, func() {
		kill(fmt.Errorf("%w: %s did not stop within %v (worker killed)", ErrTimeout, what, limit))
	})
	defer hard.Stop()
	stop := context.AfterFunc(ctx, func() { kill(fmt.Errorf("constitution: %s: %w", what, ctx.Err())) })
	defer stop()

	res, serveErr := serveWorker(bufio.NewWriter(stdin), bufio.NewReader(stdout), call, view)
	_ = stdin.Close()
	if serveErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	select {
	case why := <-killed:
		if serveErr != nil || len(res.ErrCls) > 0 {
			return workerMsg{}, why
		}
	default:
	}
	if serveErr == nil {
		return res, res.err()
	}
	var ee *exec.ExitError
	switch {
	case errors.As(waitErr, &ee) && ee.ExitCode() == exitMemory:
		return workerMsg{}, fmt.Errorf("%w: %s: more than %d MiB of heap", ErrMemory, what, l.MaxMemoryBytes>>20)
	case bytes.Contains(stderr.Bytes(), []byte("out of memory")):
		// One allocation too big to map at all: the Go runtime's fatal
		// error, before the heap watch could see the heap grow.
		return workerMsg{}, fmt.Errorf("%w: %s: the worker ran out of memory", ErrMemory, what)
	}
	detail := bytes.TrimSpace(stderr.Bytes())
	if i := bytes.IndexByte(detail, '\n'); i >= 0 {
		detail = detail[:i]
	}
	return workerMsg{}, fmt.Errorf("%w: %s: worker failed: %v (%v) %s", ErrInternal, what, serveErr, waitErr, detail)
}

// serveWorker sends call and serves kv requests until the result arrives.
func serveWorker(w *bufio.Writer, r *bufio.Reader, call workerCall, view *kvView) (workerMsg, error) {
	if err := writeFrame(w, call); err != nil {
		return workerMsg{}, err
	}
	for {
		var m workerMsg
		if err := readFrame(r, &m, maxFrame); err != nil {
			return workerMsg{}, err
		}
		if m.Done {
			return m, nil
		}
		var reply kvReply
		switch m.KV {
		case "get":
			v, ok, err := view.get(string(m.Map), string(m.Key))
			reply = kvReply{Value: []byte(v), Found: ok, Err: errString(err)}
		case "put":
			var v *string
			if m.Value != nil {
				s := string(*m.Value)
				v = &s
			}
			reply.Err = errString(view.put(string(m.Map), string(m.Key), v))
		case "range":
			es, err := view.entries(string(m.Map))
			reply.Err = errString(err)
			for _, e := range es {
				reply.Entries = append(reply.Entries, [2][]byte{[]byte(e[0]), []byte(e[1])})
			}
		default:
			return workerMsg{}, fmt.Errorf("unknown request %q", m.KV)
		}
		if err := writeFrame(w, reply); err != nil {
			return workerMsg{}, err
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ServeWorker serves one call if WorkerEnv is set, then exits the process;
// otherwise it returns at once. A binary that sets Limits.Worker to itself
// calls it at the start of main.
func ServeWorker() {
	if os.Getenv(WorkerEnv) == "" {
		return
	}
	os.Exit(serveOneCall(os.Stdin, os.Stdout))
}

// serveOneCall reads one call from in, runs it in this process, and
// writes the result to out; it returns the process's exit code.
func serveOneCall(in io.Reader, out io.Writer) int {
	r, w := bufio.NewReader(in), bufio.NewWriter(out)
	var call workerCall
	if err := readFrame(r, &call, math.MaxUint32); err != nil {
		fmt.Fprintf(os.Stderr, "constitution worker: read call: %v\n", err)
		return exitFailed
	}
	l := call.Limits.withDefaults()
	l.Worker = "" // run here
	watchHeap(l.MaxMemoryBytes)

	kv := &remoteKV{r: r, w: w}
	ctx := context.Background()
	res := workerMsg{Done: true}
	var err error
	switch call.Op {
	case "validate", "resolve", "apply":
		var c *Constitution
		if c, err = Parse(string(call.Source)); err == nil {
			c = c.WithLimits(l)
			switch call.Op {
			case "validate":
				res.Valid, res.Desc, err = c.Validate(ctx, string(call.Proposal))
			case "resolve":
				res.State, err = c.Resolve(ctx, string(call.Proposal), string(call.ProposerID), call.Votes, kv)
			default:
				err = c.Apply(ctx, string(call.Proposal), string(call.ProposalID), kv)
			}
		}
	case "ballot":
		res.Vote, err = EvalBallot(ctx, string(call.Source), string(call.Proposal), string(call.ProposerID), l)
	default:
		err = fmt.Errorf("%w: unknown call %q", ErrInternal, call.Op)
	}
	if kv.err != nil {
		fmt.Fprintf(os.Stderr, "constitution worker: kv: %v\n", kv.err)
		return exitFailed
	}
	if err != nil {
		res.ErrCls, res.ErrMsg = errClass(err), err.Error()
	}
	if err := writeFrame(w, res); err != nil {
		fmt.Fprintf(os.Stderr, "constitution worker: write result: %v\n", err)
		return exitFailed
	}
	return 0
}

// watchHeap makes the process exit with exitMemory once its heap holds
// more than limit bytes (garbage not yet collected included, so a script
// trips it at a live heap of limit/2 and up). It runs beside the script,
// so a built-in that goja cannot interrupt is stopped too.
func watchHeap(limit int64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		for {
			metrics.Read(sample)
			if v := sample[0].Value; v.Kind() == metrics.KindUint64 && int64(v.Uint64()) > limit {
				fmt.Fprintf(os.Stderr, "constitution worker: heap above %d bytes\n", limit)
				os.Exit(exitMemory)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
}

// remoteKV is the caller's kv, seen from the worker: every access is a
// round trip. A failed round trip is sticky and ends the call.
type remoteKV struct {
	r   *bufio.Reader
	w   *bufio.Writer
	err error
}

func (k *remoteKV) call(m workerMsg) (kvReply, error) {
	var reply kvReply
	if k.err != nil {
		return reply, k.err
	}
	if k.err = writeFrame(k.w, m); k.err != nil {
		return reply, k.err
	}
	if k.err = readFrame(k.r, &reply, math.MaxUint32); k.err != nil {
		return reply, k.err
	}
	if reply.Err != "" {
		return reply, errors.New(reply.Err)
	}
	return reply, nil
}

// Get, Put, Delete and Range are called by the worker's kvView, which has
// already checked the map policy; the caller's view checks it again.
func (k *remoteKV) Get(mapName, key string) ([]byte, bool) {
	reply, err := k.call(workerMsg{KV: "get", Map: []byte(mapName), Key: []byte(key)})
	if err != nil {
		return nil, false
	}
	return reply.Value, reply.Found
}

func (k *remoteKV) Put(mapName, key string, value []byte) error {
	_, err := k.call(workerMsg{KV: "put", Map: []byte(mapName), Key: []byte(key), Value: &value})
	return err
}

func (k *remoteKV) Delete(mapName, key string) error {
	_, err := k.call(workerMsg{KV: "put", Map: []byte(mapName), Key: []byte(key)})
	return err
}

func (k *remoteKV) Range(mapName string, fn func(key string, value []byte) bool) {
	reply, err := k.call(workerMsg{KV: "range", Map: []byte(mapName)})
	if err != nil {
		return
	}
	for _, e := range reply.Entries {
		if !fn(string(e[0]), e[1]) {
			return
		}
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
