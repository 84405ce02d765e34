#!/usr/bin/env bash
# valgrind_io.sh: the safetensors and config test binaries under valgrind,
# with no leak and no invalid access allowed. Skipped when valgrind is not
# installed and in sanitizer builds (ASan and valgrind cannot share a process).
set -eu
BUILD=${BUILD:-build}
if ! command -v valgrind >/dev/null 2>&1; then
  echo "valgrind_io: valgrind not installed, skipped"
  exit 0
fi
# The binaries re-execute themselves to set OpenMP's wait policy and the
# OpenBLAS core type (model/ops.h); under valgrind that exec would escape
# the tool, so both are settled here and nothing is re-executed.
export OMP_WAIT_POLICY=passive SFT_OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-}"
for name in test_safetensors test_config; do
  bin="$BUILD/tests/$name"
  [ -x "$bin" ] || { echo "valgrind_io: $bin missing (run make test)" >&2; exit 1; }
  if grep -qa __asan_init "$bin"; then
    echo "valgrind_io: $bin is an ASan build, skipped"
    continue
  fi
  valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    --error-exitcode=1 -q "$bin" >/dev/null
  echo "valgrind_io: $name clean"
done
