//go:build !faults

// Package fault crashes the process at named points, for crash tests; see
// the faults build of this package. In this build every point is a no-op.
package fault

// Point marks a place where a crash must be harmless. No-op in this build.
func Point(string) {}
