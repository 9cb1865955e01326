// Command coco runs and manages a coco confidential consortium ledger.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cocoledger/coco/gov/constitution"
	"github.com/cocoledger/coco/internal/cli"
)

func main() {
	// A node runs each constitution and ballot call in a process of its
	// own: this binary, started again as a worker.
	constitution.ServeWorker()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
