//go:build faults

// Package fault crashes the process at named points, for crash tests.
//
// Only a binary built with -tags faults crashes: PGFERRY_FAULT=point@N
// kills the process with SIGKILL (no deferred code, no flush, like a power
// cut or an OOM kill) the Nth time execution reaches Point(point). In a
// normal build Point is an empty function the compiler removes.
//
// When PGFERRY_FAULT_MARK names a file, the crash first writes "point@N"
// and a newline into it and syncs it. A test can then tell a crash at the
// armed point from a death by any other SIGKILL (its own timeout, the OOM
// killer), so it counts only crashes that really happened there.
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
	mark   string
	hits   atomic.Int64
)

func init() {
	spec := os.Getenv(EnvSpec)
	if spec == "" {
		return
	}
	name, n, ok := strings.Cut(spec, "@")
	v, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || v < 1 {
		fmt.Fprintf(os.Stderr, "fault: %s=%q: want point@N with N >= 1\n", EnvSpec, spec)
		os.Exit(2)
	}
	target, after, mark = name, v, os.Getenv(EnvMark)
}

// Point marks a place where a crash must be harmless.
func Point(name string) {
	if name != target || target == "" {
		return
	}
	if hits.Add(1) == after {
		fmt.Fprintf(os.Stderr, "fault: crashing at %s (hit %d)\n", name, after)
		if mark != "" {
			writeMark(fmt.Sprintf("%s@%d\n", name, after))
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// writeMark records the crash durably. Failing to write it is reported but
// does not stop the crash: the test then sees a SIGKILL without a mark and
// says so.
func writeMark(line string) {
	f, err := os.OpenFile(mark, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		_, err = f.WriteString(line)
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fault: %s=%q: %v\n", EnvMark, mark, err)
	}
}
