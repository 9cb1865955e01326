package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.etcd.io/raft/v3"
)

// raftLogger adapts slog to raft's Logger interface.
type raftLogger struct{ l *slog.Logger }

var _ raft.Logger = raftLogger{}

func (r raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Info(v ...any)                  { r.l.Info(fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...any) {
	// With asynchronous storage writes a follower often acknowledges an
	// append after a later one made it stable; raft notes each at Info,
	// thousands a second under load, though nothing is wrong.
	if strings.HasPrefix(format, "entry at index %d missing from unstable log") {
		r.l.Debug(fmt.Sprintf(format, v...))
		return
	}
	r.l.Info(fmt.Sprintf(format, v...))
}
func (r raftLogger) Warning(v ...any) { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }

// Fatal and Panic are raft's reaction to broken invariants (for example a
// corrupted log); there is no safe way to continue, so they end the process
// after logging, as etcd does.
func (r raftLogger) Fatal(v ...any) { r.fatal(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(format string, v ...any) {
	r.fatal(fmt.Sprintf(format, v...))
}
func (r raftLogger) Panic(v ...any) { r.panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(format string, v ...any) {
	r.panic(fmt.Sprintf(format, v...))
}

func (r raftLogger) fatal(msg string) {
	r.l.Log(context.Background(), slog.LevelError+4, "raft fatal: "+msg)
	os.Exit(1)
}

func (r raftLogger) panic(msg string) {
	r.l.Log(context.Background(), slog.LevelError+4, "raft panic: "+msg)
	panic(msg)
}
