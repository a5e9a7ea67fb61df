#!/usr/bin/env bash
# llama.cpp reference tooling for the GGUF fixtures and benchmarks (run by hand, never by CI).
#   scripts/reference/gguf.sh
# Sets up, outside the repository (VENV / LLAMA_CPP_DIR override the paths):
#   /tmp/legibility-gguf-venv     Python venv with the versions pinned in requirements-gguf.txt, the
#                                 llama-cpp-python bindings (without their own llama.cpp build) and the
#                                 gguf-py package vendored in the same sdist;
#   /tmp/legibility-llama-cpp     src/  the llama-cpp-python sdist, unpacked (vendor/llama.cpp is llama.cpp)
#                                 build/ cmake Release build, CPU only, -march=native
#                                 bin -> build/bin: libllama.so, libggml*.so, llama-quantize, llama-bench
#                                 env   the variables to source before using the bindings
# One llama.cpp version everywhere: the tools, the shared library the bindings load and gguf-py all
# come from the sdist's vendor/llama.cpp. Idempotent: finished steps are skipped (delete a folder to
# redo it). Needs gcc/g++ and make, and network access for pip on the first run. Prints the versions.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
reqs=$here/requirements-gguf.txt
venv=${VENV:-/tmp/legibility-gguf-venv}
prefix=${LLAMA_CPP_DIR:-/tmp/legibility-llama-cpp}
jobs=${JOBS:-2}
version=$(sed -n 's/^llama-cpp-python==//p' "$reqs")
[ -n "$version" ] || { echo "no llama-cpp-python pin in $reqs" >&2; exit 1; }
py=$venv/bin/python
sdist=$prefix/src/llama_cpp_python-$version
vendor=$sdist/vendor/llama.cpp
build=$prefix/build
step() { echo "== $*"; }

# 1. the venv with the pinned versions (everything but llama-cpp-python, installed in step 4)
stamp=$venv/.requirements-gguf.sha256
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ ! -x "$py" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "venv $venv"
  [ -x "$py" ] || python3 -m venv "$venv"
  grep -v '^llama-cpp-python==' "$reqs" >"$venv/.requirements-no-bindings.txt"
  "$py" -m pip install -q -r "$venv/.requirements-no-bindings.txt"
  echo "$want" >"$stamp"
fi
cmake=$venv/bin/cmake

# 2. the llama-cpp-python sdist (its vendor/llama.cpp is the llama.cpp we build)
if [ ! -f "$vendor/CMakeLists.txt" ]; then
  step "sdist llama-cpp-python==$version"
  mkdir -p "$prefix/src"
  # --no-binary for this package only: the build backend's own dependencies stay wheels
  "$py" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$prefix/src"
  tar -xzf "$prefix/src/llama_cpp_python-$version.tar.gz" -C "$prefix/src"
fi
# the llama.cpp commit this release vendors, as its CHANGELOG names it (the sdist has no .git)
commit=$(awk -v v="## [$version]" '$0 == v {f = 1; next} f && /^## / {exit}
  f && match($0, /llama\.cpp@[0-9a-f]+/) {print substr($0, RSTART + 10, RLENGTH - 10); exit}' "$sdist/CHANGELOG.md")
commit=${commit:-unknown}

# 3. llama.cpp: shared libraries + llama-quantize + llama-bench, Release, CPU only, -march=native.
# AMX is compiled out (LLAMA_CPP_AMX=1 keeps it): on this project's VM /proc/cpuinfo lists amx_int8
# but AMX instructions trap (SIGILL in libggml-cpu as soon as a quantized matmul has more than one
# row), and the Rust side has no AMX kernels either; AVX-512/VNNI (and the CPU repack) stay on.
targets="llama ggml llama-quantize llama-bench"
noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
[ "${LLAMA_CPP_AMX:-0}" = 1 ] && noamx=""
configure=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DGGML_RPC=OFF
  "-DCMAKE_C_FLAGS=$noamx" "-DCMAKE_CXX_FLAGS=$noamx"
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMIT="$commit")
if [ ! -x "$build/bin/llama-quantize" ] || [ ! -x "$build/bin/llama-bench" ] || [ ! -f "$build/bin/libllama.so" ] \
  || [ "$(cat "$build/.configure-args" 2>/dev/null)" != "${configure[*]}" ]; then
  step "build llama.cpp@$commit in $build (-j$jobs, ~5 min on 2 cores)"
  rm -f "$build/.configure-args"
  "$cmake" -S "$vendor" -B "$build" "${configure[@]}" >"$prefix/cmake-configure.log" 2>&1 \
    || { tail -30 "$prefix/cmake-configure.log"; exit 1; }
  # compiler output (many harmless AVX-512 warnings) goes to the log
  "$cmake" --build "$build" --config Release -j "$jobs" --target $targets >"$prefix/cmake-build.log" 2>&1 \
    || { grep -m20 -B2 -A5 'error' "$prefix/cmake-build.log"; exit 1; }
  echo "${configure[*]}" >"$build/.configure-args"
fi
ln -sfn build/bin "$prefix/bin"
printf 'export LLAMA_CPP_LIB_PATH=%s\nexport PATH=%s:$PATH\n' "$build/bin" "$build/bin" >"$prefix/env"

# 4. the Python bindings, without a second llama.cpp build: they load $LLAMA_CPP_LIB_PATH/libllama.so
if ! "$py" -m pip show -q llama-cpp-python >/dev/null 2>&1 \
  || [ "$("$py" -m pip show llama-cpp-python | sed -n 's/^Version: //p')" != "$version" ]; then
  step "llama-cpp-python==$version (CMAKE_ARGS=-DLLAMA_BUILD=OFF)"
  CMAKE_ARGS="-DLLAMA_BUILD=OFF" "$py" -m pip install -q --no-deps --force-reinstall \
    "$prefix/src/llama_cpp_python-$version.tar.gz"
fi
# 5. gguf-py from the same vendored tree (a plain copy, not editable)
gguf_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$vendor/gguf-py/pyproject.toml")
if [ "$("$py" -m pip show gguf 2>/dev/null | sed -n 's/^Version: //p')" != "$gguf_version" ]; then
  step "gguf-py $gguf_version from $vendor/gguf-py"
  "$py" -m pip install -q --no-deps --force-reinstall "$vendor/gguf-py"
fi
"$py" -m pip check >/dev/null || { "$py" -m pip check; exit 1; }

# versions (and a check that the bindings really load the library built above)
export LLAMA_CPP_LIB_PATH=$build/bin
"$py" - "$commit" <<'EOF'
import ctypes, os, sys
import numpy, safetensors, gguf, importlib.metadata as md
import llama_cpp
lib = os.path.realpath(llama_cpp.llama_cpp._lib._name)
assert lib.startswith(os.path.realpath(os.environ["LLAMA_CPP_LIB_PATH"])), lib
print(f"llama-cpp-python {llama_cpp.__version__} (loads {lib})")
print(f"llama.cpp commit {sys.argv[1]} (vendored in the sdist)")
print(f"gguf-py {md.version('gguf')}, numpy {numpy.__version__}, safetensors {safetensors.__version__}")
print("system:", llama_cpp.llama_print_system_info().decode().strip())
EOF
echo "llama-bench --version: $("$build/bin/llama-bench" --version 2>&1 | head -1)"
echo "tools: $prefix/bin/{llama-quantize,llama-bench}; bindings: source $prefix/env (sets LLAMA_CPP_LIB_PATH)"
