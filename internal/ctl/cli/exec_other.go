//go:build !linux

package cli

import (
	"errors"
	"os"
)

// isTerminal reports false: ctl knows terminals only on Linux, and exec -t
// then runs without one, as kubectl does for a stdin that is no terminal.
func isTerminal(*os.File) bool { return false }

func makeRaw(*os.File) (func(), error) {
	return nil, errors.New("raw terminals are supported on Linux only")
}
