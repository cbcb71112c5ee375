// Command pybridge is built with -buildmode=c-shared into goloop's one
// extension module, goloop/_goloop<EXT_SUFFIX>. It is the only code that
// sees Python: C files (module.c, loop.c, handle.c) define the Python types,
// and the Go files here convert, call the core (package goloop/core) and
// convert back.
//
// Every //export entry point is called with the GIL held and recovers from
// a panic by raising RuntimeError (guard), so no Go panic crosses into the
// interpreter (design README §9).
package main

import "time"

func main() {}

// The Go runtime opens an epoll fd and an eventfd of its own the first time
// any Go timer is armed (runtime.netpollGenericInit), which would otherwise
// happen at an arbitrary point in a program's life (the scavenger, a
// back-off timer). Arming one at load time makes that pair part of the
// import, so the process's descriptor count does not change mid-run.
func init() {
	time.AfterFunc(time.Hour, func() {}).Stop()
}
