#!/usr/bin/env bash
# One-folder offline build of CXR Lens: dist/cxr-viewer/ (run from anywhere; see packaging/README.md).
#
#   bash packaging/build.sh               install the packaging extra, build, print time and size
#   bash packaging/build.sh --self-test   ... then run the frozen app's self-test
#
# CXR_SKIP_INSTALL=1 skips the `pip install` step (the environment is already set up).
set -euo pipefail
cd "$(dirname "$0")/.."

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

start=$(date +%s)
python -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/cxr_viewer.spec
end=$(date +%s)
echo "built dist/cxr-viewer in $((end - start)) s, size $(du -sh dist/cxr-viewer | cut -f1)"

if [[ "${1:-}" == "--self-test" ]]; then
    dist/cxr-viewer/cxr-viewer --self-test --report dist/selftest.json
fi
