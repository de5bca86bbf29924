//go:build !linux

package logstore

import "os"

// lockDir does not lock on this platform.
func lockDir(string) (*os.File, error) { return nil, nil }

func fdatasync(f *os.File) error { return f.Sync() }

func preallocate(*os.File, int64) error { return nil }

func zeroRange(f *os.File, off, n int64) error { return writeZeros(f, off, n) }
