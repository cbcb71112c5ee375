"""Builds goloop's one extension module with the Go toolchain.

setuptools has no notion of Go, so build_ext is replaced by a command that
runs `go build -buildmode=c-shared` for the running interpreter (its
headers, its EXT_SUFFIX) and puts the result where setuptools expects the
extension. Needs Go >= 1.26 and a C compiler.
"""

import os
import shutil
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class build_go_ext(build_ext):
    def build_extension(self, ext):
        out = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        go = shutil.which("go") or "/usr/local/go/bin/go"
        env = dict(os.environ)
        env["CGO_ENABLED"] = "1"
        # Python's headers only: the interpreter provides the symbols at
        # load time, so libpython is not linked (design README §4).
        env["CGO_CFLAGS"] = "-O2 -I" + sysconfig.get_paths()["include"]
        subprocess.check_call(
            [go, "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./pybridge"],
            cwd=HERE,
            env=env,
        )
        header = os.path.splitext(out)[0] + ".h"
        if os.path.exists(header):
            os.remove(header)


setup(
    ext_modules=[Extension("goloop._goloop", sources=[])],
    cmdclass={"build_ext": build_go_ext},
)
