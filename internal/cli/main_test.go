package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/cocoledger/coco/gov/constitution"
)

// asCocoEnv makes the test binary behave as the coco command when commands
// under test re-execute themselves (os.Executable), as `bench ceiling` does.
const asCocoEnv = "COCO_CLI_TEST_AS_COCO"

func TestMain(m *testing.M) {
	constitution.ServeWorker()
	if os.Getenv(asCocoEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Setenv(asCocoEnv, "1") // inherited only by the processes tests start
	os.Exit(m.Run())
}
