package etcdload

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd starts a single etcd member (fsync on, as in the comparison)
// on a temporary data dir and returns its client endpoint once healthy.
func startEtcd(t *testing.T, bin string) string {
	t.Helper()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--name", "m0", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m0="+peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("etcd output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(3 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("etcd exited")
		default:
		}
		if healthy(client) {
			return client
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not healthy after 3s", client)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func healthy(endpoint string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(endpoint + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`)
}

// TestRunAgainstEtcd runs a second of load against a real single-member
// etcd. It needs the etcd binary (Debian package etcd-server); the default
// suite on a machine without it skips it.
func TestRunAgainstEtcd(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not on PATH (apt-get install etcd-server to run this test)")
	}
	endpoint := startEtcd(t, bin)
	res, err := Run(t.Context(), Config{
		Endpoints: []string{endpoint},
		Clients:   4,
		ValueSize: 100,
		Duration:  time.Second,
		Warmup:    200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Writes == 0 || res.ErrorCount() != 0 {
		t.Fatalf("writes %d errors %v (%s), want writes and no errors", res.Writes, res.Errors, res.LastTransportError)
	}
	if res.Connections != 4 {
		t.Errorf("connections = %d, want one per client", res.Connections)
	}
}
