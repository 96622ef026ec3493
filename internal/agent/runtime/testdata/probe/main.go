// Command probe is the program the runtime tests run in containers. It is
// built statically by the tests and runs its arguments as a list of steps:
//
//	print             args, env, cwd, hostname, uid, gid and groups, one per line
//	echo TEXT         TEXT on stdout
//	stderr TEXT       TEXT on stderr
//	sleep DURATION    e.g. 100ms, 1h
//	exit N            exit with status N
//	oom MIB           allocate and touch MIB MiB, 1 MiB at a time
//	write PATH TEXT   write TEXT to PATH
//	cat PATH          copy PATH to stdout
//	ls DIR            one line per entry: name and mode
//	trap-term N       on SIGTERM, print "got SIGTERM" and exit N
//	ignore-term       ignore SIGTERM
//	spam N SIZE       print N lines of SIZE characters
//	tty               print whether stdin is a terminal
//	ready             print "ready" (after the steps that must precede it)
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	args := os.Args[1:]
	next := func() string {
		if len(args) == 0 {
			fail("missing argument")
		}
		a := args[0]
		args = args[1:]
		return a
	}
	for len(args) > 0 {
		switch step := next(); step {
		case "print":
			printIdentity()
		case "echo":
			fmt.Println(next())
		case "stderr":
			fmt.Fprintln(os.Stderr, next())
		case "sleep":
			d, err := time.ParseDuration(next())
			check(err)
			time.Sleep(d)
		case "exit":
			n, err := strconv.Atoi(next())
			check(err)
			os.Exit(n)
		case "oom":
			n, err := strconv.Atoi(next())
			check(err)
			var keep [][]byte
			for range n {
				b := make([]byte, 1<<20)
				for i := 0; i < len(b); i += 4096 {
					b[i] = 1
				}
				keep = append(keep, b)
			}
			fmt.Println("allocated", len(keep), "MiB")
		case "write":
			path, text := next(), next()
			check(os.WriteFile(path, []byte(text), 0o644))
		case "cat":
			f, err := os.Open(next())
			check(err)
			_, err = io.Copy(os.Stdout, f)
			check(err)
			f.Close()
		case "ls":
			dir := next()
			entries, err := os.ReadDir(dir)
			check(err)
			for _, e := range entries {
				fi, err := os.Lstat(dir + "/" + e.Name())
				check(err)
				fmt.Println(e.Name(), fi.Mode())
			}
		case "trap-term":
			n, err := strconv.Atoi(next())
			check(err)
			c := make(chan os.Signal, 1)
			signal.Notify(c, syscall.SIGTERM)
			go func() {
				<-c
				fmt.Println("got SIGTERM")
				os.Exit(n)
			}()
		case "ignore-term":
			signal.Ignore(syscall.SIGTERM)
		case "spam":
			n, err := strconv.Atoi(next())
			check(err)
			size, err := strconv.Atoi(next())
			check(err)
			for i := range n {
				line := fmt.Sprintf("line %d ", i)
				fmt.Println(line + strings.Repeat("x", max(0, size-len(line))))
			}
		case "tty":
			fmt.Println("tty:", isTerminal(0))
		case "ready":
			fmt.Println("ready")
		default:
			fail("unknown step " + step)
		}
	}
}

func printIdentity() {
	fmt.Printf("args=%q\n", os.Args)
	for _, e := range os.Environ() {
		fmt.Printf("env=%s\n", e)
	}
	cwd, err := os.Getwd()
	check(err)
	fmt.Printf("cwd=%s\n", cwd)
	host, err := os.Hostname()
	check(err)
	fmt.Printf("hostname=%s\n", host)
	groups, err := os.Getgroups()
	check(err)
	fmt.Printf("uid=%d gid=%d groups=%v\n", os.Getuid(), os.Getgid(), groups)
}

func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "probe:", msg)
	os.Exit(99)
}
