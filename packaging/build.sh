#!/usr/bin/env bash
# One-folder offline build of CXR Lens: dist/cxr-viewer/ (run from anywhere).
# Then check it: dist/cxr-viewer/cxr-viewer --self-test --report selftest.json
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[packaging]"
start=$(date +%s)
python -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller packaging/cxr_viewer.spec
end=$(date +%s)
echo "built dist/cxr-viewer in $((end - start)) s, size $(du -sh dist/cxr-viewer | cut -f1)"
