// Command podapp is the program the node-agent tests run in their containers.
// One static binary, busybox-style: called as "cat" it prints files; otherwise
// it serves HTTP on $PORT (default 8080):
//
//	/            "hello from <hostname>"
//	/env?name=X  the value of environment variable X
//	/file?path=P the content of file P
//	/healthz     200, or 500 once /tmp/unhealthy exists
//	/ready       200, or 503 once /tmp/unready exists
//
// Flags: -exit N exits with N at once; -alloc BYTES allocates and touches that
// much memory, then serves.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	if filepath.Base(os.Args[0]) == "cat" {
		status := 0
		for _, p := range os.Args[1:] {
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "cat:", err)
				status = 1
				continue
			}
			os.Stdout.Write(b)
		}
		os.Exit(status)
	}
	exit := flag.Int("exit", -1, "exit at once with this code")
	alloc := flag.Int64("alloc", 0, "allocate and touch this many bytes")
	ignoreTerm := flag.Bool("ignore-term", false, "log SIGTERM and keep running (only SIGKILL stops it)")
	flag.Parse()
	if *exit >= 0 {
		fmt.Printf("exiting with %d\n", *exit)
		os.Exit(*exit)
	}
	if *alloc > 0 {
		var hold [][]byte
		for left := *alloc; left > 0; left -= 1 << 20 {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hold = append(hold, b)
		}
		fmt.Printf("allocated %d bytes in %d chunks\n", *alloc, len(hold))
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello from %s\n", host) })
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name"))) })
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("/tmp/unhealthy"); err == nil {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("/tmp/unready"); err == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	port := os.Getenv("PORT")
	if _, err := strconv.Atoi(port); err != nil {
		port = "8080"
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		for range sig {
			if *ignoreTerm {
				fmt.Println("SIGTERM: ignored")
				continue
			}
			fmt.Println("SIGTERM: shutting down")
			os.Exit(0)
		}
	}()
	fmt.Printf("podapp on %s listening on :%s\n", host, port)
	if err := http.ListenAndServe(":"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
