//go:build !linux

package stack

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }
