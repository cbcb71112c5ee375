#!/usr/bin/env bash
# `make test`: the Go core's tests (vet, plain, -race), then the Python suite
# on every CPython 3.11-3.15 this machine has, each against its own build of
# the extension and each twice (normal and PYTHONASYNCIODEBUG=1):
#   - 3.11, 3.12, 3.13 from pyenv (or python3.X on PATH);
#   - 3.14, 3.15 inside the Debian sid root made by
#     ../shared/tools/sid-pythons.sh setup, when it exists, with warnings
#     as errors (the policy system is deprecated there and goloop must not
#     touch it).
# Each interpreter gets a venv in .venvs/<version> with pytest and psutil.
# Last, the suite once more against a GOEXPERIMENT=cgocheck2 build.
# It ends with a summary naming what passed, failed and was skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

SID=${SID_PYTHONS:-$(cd .. && pwd)/shared/tools/sid-pythons.sh}
export ROOT=${ROOT:-/tmp/sidroot}
PYTEST="-m pytest tests -q -p no:cacheprovider"
summary=()
status=0

step() {
    local name=$1
    shift
    echo "=== $name"
    if "$@"; then
        summary+=("pass  $name")
    else
        summary+=("FAIL  $name")
        status=1
    fi
}

find_python() {
    local v=$1 p found=
    for p in "$(pyenv root 2>/dev/null)"/versions/"$v".*/bin/python"$v"; do
        [ -x "$p" ] && found=$p
    done
    [ -n "$found" ] || found=$(command -v "python$v" || true)
    echo "$found"
}

venv_for() {
    local py=$1 venv=$2
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check pytest psutil
}

host_suite() {
    local py=$1 v=$2 venv=.venvs/$2
    venv_for "$py" "$venv" || return 1
    make -s build PYTHON="$venv/bin/python" || return 1
    "$venv/bin/python" $PYTEST &&
        PYTHONASYNCIODEBUG=1 "$venv/bin/python" $PYTEST
}

sid_suite() {
    local v=$1 modcache
    modcache=$(go env GOMODCACHE)
    go mod download || return 1
    # The host's CA bundle goes in too: pip inside the root must trust the
    # same (possibly intercepting) proxy the host does.
    "$SID" run -b "$PWD:/src" -b "$modcache:/gomodcache" -b /etc/ssl/certs:/hostcerts \
        -e CI -e PIP_CERT=/hostcerts/ca-certificates.crt -w /src -- bash -c "
        set -e
        export PATH=/usr/local/go/bin:\$PATH GOMODCACHE=/gomodcache GOFLAGS='-mod=mod -buildvcs=false' GOPROXY=off
        venv=.venvs/$v
        [ -x \$venv/bin/python ] || python$v -m venv \$venv
        \$venv/bin/python -m pip install -q --disable-pip-version-check pytest psutil
        make -s build PYTHON=\$venv/bin/python
        \$venv/bin/python $PYTEST -W error
        PYTHONASYNCIODEBUG=1 \$venv/bin/python $PYTEST -W error"
}

# pybridge's C includes Python.h: vet it against the first interpreter found.
for v in 3.11 3.12 3.13 3; do
    py=$(find_python "$v")
    [ -n "$py" ] && break
done
export CGO_CFLAGS="-O2 -I$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
step "go vet" go vet ./...
step "go test" go test -count=1 ./...
step "go test -race" go test -race -count=1 ./...

for v in 3.11 3.12 3.13; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
        summary+=("skip  python $v (not installed)")
        continue
    fi
    step "python $v ($py)" host_suite "$py" "$v"
done

for v in 3.14 3.15; do
    if [ -x "$SID" ] && [ -x "$ROOT/usr/bin/python$v" ]; then
        step "python $v (sid root $ROOT)" sid_suite "$v"
    else
        summary+=("skip  python $v (no sid root at $ROOT: run $SID setup)")
    fi
done

# Once, on the first host interpreter: the cgocheck2 build (design README §7).
for v in 3.11 3.12 3.13; do
    if [ -x ".venvs/$v/bin/python" ]; then
        step "python $v, GOEXPERIMENT=cgocheck2 build" env PYTHON=".venvs/$v/bin/python" scripts/test-cgocheck2.sh
        break
    fi
done

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status
