#!/usr/bin/env bash
# `make test-cgocheck2`: the Python suite once against a build with
# GOEXPERIMENT=cgocheck2, which catches Go pointers stored in C memory that
# the default checks miss (design README §7).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
rm -f goloop/_goloop*"$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
GOEXPERIMENT=cgocheck2 make -s build PYTHON="$PYTHON"
status=0
"$PYTHON" -m pytest tests -q -p no:cacheprovider || status=$?
# Leave a normal build behind.
rm -f goloop/_goloop*"$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
make -s build PYTHON="$PYTHON"
exit $status
