//go:build faults

// Package fault crashes the process at named points, for crash tests.
//
// Only a binary built with -tags faults crashes: PGFERRY_FAULT=point@N
// kills the process with SIGKILL (no deferred code, no flush, like a power
// cut or an OOM kill) the Nth time execution reaches Point(point). In a
// normal build Point is an empty function the compiler removes.
package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var (
	target string
	after  int64
	hits   atomic.Int64
)

func init() {
	spec := os.Getenv("PGFERRY_FAULT")
	if spec == "" {
		return
	}
	name, n, ok := strings.Cut(spec, "@")
	v, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || v < 1 {
		fmt.Fprintf(os.Stderr, "fault: PGFERRY_FAULT=%q: want point@N with N >= 1\n", spec)
		os.Exit(2)
	}
	target, after = name, v
}

// Point marks a place where a crash must be harmless.
func Point(name string) {
	if name != target || target == "" {
		return
	}
	if hits.Add(1) == after {
		fmt.Fprintf(os.Stderr, "fault: crashing at %s (hit %d)\n", name, after)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
