//go:build !unix

package procs

import "time"

// processCPU reports that CPU time cannot be read here (Windows, the
// browser); the Scaler is then not used.
func processCPU() (func() time.Duration, bool) { return nil, false }
