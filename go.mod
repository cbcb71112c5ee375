module goloop

go 1.26.8

require golang.org/x/sys v0.49.0

require github.com/google/go-cmp v0.7.0
