//go:build !linux

package routes

// HasNetAdmin reports false: capabilities exist only on Linux.
func HasNetAdmin() (bool, error) { return false, nil }
