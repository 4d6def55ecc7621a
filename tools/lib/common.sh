# Shared set-up for tools/run, tools/test and tools/bench-compare: installs missing Debian
# packages (quietly, only what is missing) and configures + builds a build directory.
# Sourced, not executed.

VGG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VGG_DEBS=(cmake g++ ninja-build pkg-config libopenblas-dev libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev
          nlohmann-json3-dev libcli11-dev libopenmpi-dev openmpi-bin libpng-dev zlib1g-dev python3 dataset-fashion-mnist)

vgg_log() { printf '[vggflow] %s\n' "$*" >&2; }

# OpenBLAS picks its kernels from the CPU's model number. On a CPU it does not know (virtual
# machines that report a generic "Intel Xeon Processor") it falls back to its SSE3 "Prescott"
# kernels, 2-3x slower than the AVX2/AVX-512 ones the CPU runs (measured: a vgg_train update 2.3x).
# Unless the caller chose, name the kernels from the CPU's flags for every program started here.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ]; then
  vgg_flags=" $(grep -m1 '^flags' /proc/cpuinfo) "
  if [[ $vgg_flags == *" avx512f "* && $vgg_flags == *" avx512bw "* && $vgg_flags == *" avx512vl "* ]]; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif [[ $vgg_flags == *" avx2 "* && $vgg_flags == *" fma "* ]]; then
    export OPENBLAS_CORETYPE=Haswell
  fi
  unset vgg_flags
fi

# vgg_install_debs [extra packages...]: apt-get install whatever is not installed yet.
vgg_install_debs() {
  local want=("${VGG_DEBS[@]}" "$@") missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { vgg_log "missing packages (${missing[*]}) and no root/sudo to install them"; return 1; }
    sudo=(sudo)
  fi
  vgg_log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# vgg_build DIR [cmake args...]: configure (once) and build DIR.
vgg_build() {
  local dir="$1"; shift
  local jobs="${VGG_JOBS:-$(nproc)}"
  if [ ! -f "$dir/build.ninja" ]; then
    vgg_log "configuring $dir"
    cmake -S "$VGG_ROOT" -B "$dir" -G Ninja "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log" >&2; return 1; }
  fi
  vgg_log "building $dir (-j$jobs)"
  cmake --build "$dir" -j "$jobs"
}
