#!/usr/bin/env bash
# Set up counterguard on a Debian machine (run as root): Debian packages, then a virtualenv in .venv
# with the gateway and its test tools. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need_apt+=(mosquitto)
# Tests drive the centre dashboard and branch console in a real headless browser, and the centre's
# PostgreSQL store against a real server started by the test harness.
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# The clustered centre (docs/cluster.md): one Go binary, so CI runs the three-node tests cheaply.
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null || need_apt+=(nats-server)
# The fault-injection tests turn a gateway's wall clock back with libfaketime.
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need_apt+=(libfaketime)
# The shift report's PDF prints its Chinese labels with a CJK font (1.6 MB; Noto CJK does as well).
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || compgen -G '/usr/share/fonts/opentype/noto/NotoSansCJK-*' >/dev/null \
    || need_apt+=(fonts-wqy-microhei)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts no broker by itself here; counterguard starts its own private one where it needs it.
# nats-server's package enables a system service; the cluster launcher runs its own nodes instead.
if command -v systemctl >/dev/null && systemctl is-enabled nats-server >/dev/null 2>&1; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.counterguard-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing counterguard and its dependencies into .venv"
    # train: TensorFlow, so the test suite retrains the fraud model end to end and it cannot rot;
    # study: the ceiling study's reference learner, tested the same way.
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,firmware,centre,train,study]'
    touch "$stamp"
fi
echo "setup: ready (.venv/bin/counterguard)"
