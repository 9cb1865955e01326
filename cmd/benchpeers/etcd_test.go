package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEtcdCmdBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--clients", "0"},
		{"--endpoints", ""},
		{"--endpoints", "127.0.0.1"},
		{"--duration", "0s"},
	} {
		cmd := newEtcdCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		jsonPath := filepath.Join(t.TempDir(), "figures.jsonl")
		cmd.SetArgs(append(args, "--json", jsonPath))
		if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "invalid bench configuration") {
			t.Errorf("%v: error %v, want an invalid configuration", args, err)
		}
		if _, err := os.Stat(jsonPath); !os.IsNotExist(err) {
			t.Errorf("%v: a figure was written", args)
		}
	}
}
