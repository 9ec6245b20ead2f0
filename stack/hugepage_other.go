//go:build !linux

package stack

func adviseHuge([]uint32) {}
