// Command ctl is Rafter's kubectl-shaped command line.
package main

import (
	"os"

	"github.com/rafter-dev/rafter/internal/ctl/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
