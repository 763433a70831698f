#!/usr/bin/env bash
# One-folder offline build of CXR Lens: dist/cxr-viewer/ (run from anywhere; see packaging/README.md).
#
#   bash packaging/build.sh               install the packaging extra, build, print time and size
#   bash packaging/build.sh --self-test   ... then run the frozen app's self-test
#   bash packaging/build.sh --archive     ... and pack dist/cxr-viewer-<os>-<arch>.tar.gz (the download)
#
# CXR_SKIP_INSTALL=1 skips the `pip install` step (the environment is already set up).
# CXR_TF_CPU=0 keeps the environment's `tensorflow` wheel in a Linux build without CUDA wheels
# (by default that build uses the CPU-only `tensorflow-cpu` wheel of the same version; see
# packaging/README.md, "Installer diet").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=python
self_test=0
archive=0
for arg in "$@"; do
    case "$arg" in
        --self-test) self_test=1 ;;
        --archive) archive=1 ;;
        *) echo "unknown option: $arg (use --self-test and/or --archive)" >&2; exit 2 ;;
    esac
done

if [[ "${CXR_SKIP_INSTALL:-0}" != 1 ]]; then
    python -m pip install -q -e ".[packaging]"
fi
# the compressed DICOM samples the self-test opens (committed; regenerated only when missing)
for f in phantom_j2k.dcm phantom_jpegls.dcm phantom_selftest.png; do
    if [[ ! -f "resources/samples/$f" ]]; then
        python -m trainer.sample_studies
        break
    fi
done
if [[ ! -f resources/demo_bundle/metadata.json ]]; then
    echo "warning: resources/demo_bundle/ is missing: the app will start without a model," \
        "and the self-test needs --model BUNDLE" >&2
fi

# A Linux build without TensorFlow's CUDA wheels (the nvidia-* packages) is CPU-only: build it
# against `tensorflow-cpu` (same version, same requirements, no GPU kernels inside
# libtensorflow_cc.so.2), installed in a build venv layered on this environment.
if [[ "$(uname -s)" == Linux && "${CXR_TF_CPU:-1}" == 1 ]] \
    && python -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('nvidia') is None else 1)" \
    && tf_version=$(python -c "import importlib.metadata as m; print(m.version('tensorflow'))" 2>/dev/null); then
    venv=build/venv-tf-cpu
    if [[ ! -x "$venv/bin/python" ]]; then
        python -m venv --system-site-packages "$venv"
    fi
    if [[ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('tensorflow-cpu'))" 2>/dev/null)" != "$tf_version" ]]; then
        "$venv/bin/python" -m pip install -q --no-deps "tensorflow-cpu==$tf_version"
    fi
    PYTHON="$venv/bin/python"
    echo "CPU build: tensorflow-cpu $tf_version (from $venv)"
fi

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/cxr_viewer.spec
end=$(date +%s)
echo "built dist/cxr-viewer in $((end - start)) s, size $(du -sh dist/cxr-viewer | cut -f1)"

if [[ "$self_test" == 1 ]]; then
    dist/cxr-viewer/cxr-viewer --self-test --report dist/selftest.json
fi
if [[ "$archive" == 1 ]]; then
    name="cxr-viewer-$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m).tar.gz"
    tar -czf "dist/$name" -C dist cxr-viewer
    echo "archived dist/$name, $(du -b "dist/$name" | cut -f1) bytes" \
        "(the folder: $(du -sb dist/cxr-viewer | cut -f1) bytes)"
fi
