// Command goecho is the ceiling of goloop's network benchmarks: the same echo
// (and minimal HTTP) servers as bench/net/server.py, written in plain Go with
// the standard library's net package, one goroutine per connection. No Python
// is involved, so no Python event loop can be expected to beat it.
//
//	goecho [-kind echo|http] [-port 0]
//
// Prints "READY <port>" on stdout once listening; runs until killed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"syscall"
)

// httpResponse is byte for byte the response of server.py's http kind.
var headerEnd = []byte("\r\n\r\n")

var httpResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")

func main() {
	kind := flag.String("kind", "echo", "echo or http")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port (0: any free one, printed in the READY line)")
	flag.Parse()

	var serve func(net.Conn)
	switch *kind {
	case "echo":
		serve = echo
	case "http":
		serve = httpServe
	default:
		fmt.Fprintf(os.Stderr, "goecho: unknown -kind %q\n", *kind)
		os.Exit(2)
	}
	raiseNoFile()
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	fmt.Printf("READY %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and friends: keep serving the connections we have.
			continue
		}
		go serve(c)
	}
}

// raiseNoFile lifts the descriptor limit as far as root may (Go itself only
// lifts the soft limit to the hard one), for the 10,000-connection RSS row.
func raiseNoFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Max >= 65536 {
		return
	}
	want := lim
	want.Cur, want.Max = 65536, 65536
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// echo writes back whatever arrives. 64 KiB is what one loopback read returns
// at most in practice; the buffer's pages are touched only as far as reads
// fill them, so an idle connection costs its goroutine stack and a page.
func echo(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// httpServe answers every request (everything up to a blank line; bodies are
// not supported, as in server.py) with the fixed response. Requests that
// arrive together (pipelining) are answered with one write.
func httpServe(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	var pending, out []byte // pending: an incomplete request carried to the next read
	for {
		n, err := c.Read(buf)
		if n > 0 {
			data := buf[:n]
			if len(pending) > 0 {
				pending = append(pending, data...)
				data = pending
			}
			out = out[:0]
			for {
				end := bytes.Index(data, headerEnd)
				if end < 0 {
					break
				}
				data = data[end+4:]
				out = append(out, httpResponse...)
			}
			pending = append(pending[:0], data...) // memmove: data may alias pending
			if len(out) > 0 {
				if _, werr := c.Write(out); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
