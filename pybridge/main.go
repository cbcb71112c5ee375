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

func main() {}
