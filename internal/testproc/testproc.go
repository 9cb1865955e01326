// Package testproc runs the real coco binary for tests that exercise whole
// processes (test/e2e, test/linearizability): it builds the binary, starts
// it in a process group of its own with its output in a log file, stops or
// kills it, makes the member and user certificates such tests present, and
// opens a new service through governance. StartOpenNode does the same for a
// node in the test's own process. Only test code imports it.
package testproc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	govclient "github.com/cocoledger/coco/gov/client"
)

// Build compiles cmd/coco into a new temporary directory. cleanup removes it.
func Build(dirPrefix string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "coco")
	build := exec.Command("go", "build", "-o", bin, "github.com/cocoledger/coco/cmd/coco")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build coco: %w", err)
	}
	return bin, cleanup, nil
}

// Proc is a running coco process.
type Proc struct {
	Args    []string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs bin with args, appending its stdout and stderr to logPath. The
// process leads a group of its own, so Stop also reaches whatever it starts
// (a sandbox's nodes) and a Ctrl-C of `go test` is not what ends it.
func Start(bin, logPath string, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start coco %s: %w", strings.Join(args, " "), err)
	}
	p := &Proc{Args: args, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id (and process group id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode waits for the process and returns its exit code (-1 if a signal
// ended it).
func (p *Proc) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Kill sends SIGKILL to the process (not its group), as a crash would, and
// waits for it.
func (p *Proc) Kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM and waits; after timeout it kills the whole group and
// reports forced. Either way no member of the group outlives it. It returns
// the exit code (-1 if a signal ended the process).
func (p *Proc) Stop(timeout time.Duration) (code int, forced bool) {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			forced = true
			_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
			<-p.done
		}
	}
	// The group id is the leader's pid; checking for members first keeps us
	// from signalling anything else.
	if syscall.Kill(-p.PID(), 0) == nil {
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	}
	return p.ExitCode(), forced
}

// Tail returns the last lines of the file at path (or why it cannot).
func Tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// FreeAddr returns 127.0.0.1:port for a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// User is a P-256 key and self-signed client certificate, in PEM files and
// loaded for a TLS client.
type User struct {
	CertPath, KeyPath string
	TLS               tls.Certificate
}

// NewUser writes DIR/NAME_cert.pem and DIR/NAME_privk.pem (0600), a fresh
// identity: a member (`coco node start --member DIR/NAME_cert.pem`) or a
// user that OpenService registers.
func NewUser(dir, name string) (User, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return User{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return User{}, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return User{}, err
	}
	u := User{
		CertPath: filepath.Join(dir, name+"_cert.pem"),
		KeyPath:  filepath.Join(dir, name+"_privk.pem"),
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k},
	}
	if err := os.WriteFile(u.CertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return User{}, err
	}
	if err := os.WriteFile(u.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return User{}, err
	}
	return u, nil
}

// OpenService opens a new service (as `coco node start --member
// member.CertPath` created it) through governance, talking to the node at
// addr that presents a certificate of the service certificate in
// serviceCertPath: the member acknowledges the state digest and, as the
// only member, passes one proposal that registers users and opens the
// service.
func OpenService(ctx context.Context, addr, serviceCertPath string, member User, users ...User) error {
	c, err := govclient.Load(addr, serviceCertPath, member.CertPath, member.KeyPath)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Ack(ctx); err != nil {
		return fmt.Errorf("acknowledge the state digest: %w", err)
	}
	var p govclient.Proposal
	for _, u := range users {
		cert, err := os.ReadFile(u.CertPath)
		if err != nil {
			return err
		}
		p.Actions = append(p.Actions, govclient.Action{Name: "set_user", Args: map[string]any{"cert": string(cert)}})
	}
	p.Actions = append(p.Actions, govclient.Action{Name: "transition_service_to_open"})
	if _, err := govclient.Pass(ctx, c, []*govclient.Client{c}, p); err != nil {
		return fmt.Errorf("open the service: %w", err)
	}
	return nil
}
