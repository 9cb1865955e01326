package testproc

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoledger/coco/app"
	"github.com/cocoledger/coco/node"
)

// StartOpenNode starts a one-node service in this process, hosting apps,
// with fresh member0 and user0 identities written to dir, and opens it
// through governance with user0 registered. The node is closed when the
// test ends.
func StartOpenNode(t testing.TB, dir string, apps ...app.Application) (n *node.Node, member, user User) {
	t.Helper()
	member, err := NewUser(dir, "member0")
	if err != nil {
		t.Fatal(err)
	}
	user, err = NewUser(dir, "user0")
	if err != nil {
		t.Fatal(err)
	}
	n, err = node.Start(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "node"), RPCAddress: "127.0.0.1:0", NodeAddress: "127.0.0.1:0",
		Members: []node.MemberConfig{{CertFile: member.CertPath}},
		Apps:    apps, TickInterval: 5 * time.Millisecond, SigInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := OpenService(ctx, n.Addr(), n.ServiceCertPath(), member, user); err != nil {
		t.Fatal(err)
	}
	return n, member, user
}
