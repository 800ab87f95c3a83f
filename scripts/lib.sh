# Shared by scripts/test and scripts/demo: idempotent machine set-up.
# Sourced, not run.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanfleet-target}"
SCANFLEET_VENV="${SCANFLEET_VENV:-$HOME/.cache/scanfleet-venv}"
# One feature set for the demo and every test step, so the workspace compiles
# once: burn, CubeCL and their dependents are rebuilt from scratch whenever
# the set changes, and on 2 cores a second set pushed CI past its 90 minutes.
# `cuda` builds without a toolkit and falls back to the CPU, saying why, when
# no driver answers; `wgpu` is what the equivalence tests run on lavapipe.
SCANFLEET_FEATURES="scanfleet-worker/cuda,scanfleet-vision/cuda,scanfleet-vision/wgpu"
# cudarc binds to the CUDA version it is built for; with no nvcc here it would
# take the newest it knows. 13.0 is what the 580 driver on the GPU hosts we
# checked runs (scripts/gpu-check); set it to build for another.
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"

# The one build the scripts share. --workspace and --tests make cargo resolve
# features as the test run does (dev-dependencies included); `cargo build
# --bins` alone resolves them differently and compiles burn again.
build_workspace() { cargo build --workspace --bins --tests --features "$SCANFLEET_FEATURES" "$@"; }

# The demo's build: only the two binaries it runs, without the tests and the
# Wgpu stack they need, and with CUDA only where a driver is there to use it
# (no GPU: the GPU-queue worker runs on the CPU and says "built without
# cuda"). On a fresh 2-core machine this is what gets `scripts/demo` to its
# first result quickly. scripts/test's build is a different feature set, so
# running the tests after the demo compiles burn once more (CI runs only the
# tests, so CI is unaffected).
demo_features() {
  if [ -e /proc/driver/nvidia/version ] || ldconfig -p 2>/dev/null | grep -q 'libcuda\.so'; then
    echo "scanfleet-worker/cuda"
  fi
}
build_demo() {
  local features; features=$(demo_features)
  cargo build -p scanfleet-dispatcher -p scanfleet-worker --bins ${features:+--features "$features"} "$@"
}

# chromium and chromium-driver: the operator console's browser tests (tests/console.rs).
APT_PACKAGES=(libopencv-dev clang libclang-dev opencv-doc mesa-vulkan-drivers pkg-config chromium chromium-driver)
PYTHON_REQUIREMENTS="scripts/requirements-test.txt"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_system_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_python_tools() {
  if [ ! -x "$SCANFLEET_VENV/bin/python" ]; then
    log "creating Python venv $SCANFLEET_VENV"
    python3 -m venv "$SCANFLEET_VENV"
  fi
  # Reinstall only when the pinned list changed since the last install.
  local stamp="$SCANFLEET_VENV/.requirements.sha256"
  local want; want=$(sha256sum "$PYTHON_REQUIREMENTS" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python tools from $PYTHON_REQUIREMENTS"
    "$SCANFLEET_VENV/bin/pip" install -q --disable-pip-version-check -r "$PYTHON_REQUIREMENTS"
    echo "$want" >"$stamp"
  fi
  export PATH="$SCANFLEET_VENV/bin:$PATH"
}

ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
}

rabbit_api_up() { curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null; }

ensure_rabbitmq() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached
    for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
  fi
  # The management API gives per-test vhosts and unacked counts (KEDA uses it too).
  if ! rabbit_api_up; then
    log "enabling the RabbitMQ management plugin"
    as_root rabbitmq-plugins enable rabbitmq_management >/dev/null
    for _ in $(seq 120); do rabbit_api_up && break; sleep 1; done
  fi
  rabbit_api_up || { echo "RabbitMQ management API is not reachable on 127.0.0.1:15672" >&2; exit 1; }
}

# Databases and vhosts of earlier test runs that did not clean up (a test
# that fails skips its cleanup).
sweep_test_leftovers() {
  local db vhost
  for db in $(psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'sf\_test\_%'"); do
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  done
  for vhost in $(curl -sf -u guest:guest http://127.0.0.1:15672/api/vhosts | python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(sys.stdin) if v["name"].startswith("sf_test_")))'); do
    curl -sf -u guest:guest -X DELETE "http://127.0.0.1:15672/api/vhosts/$vhost" >/dev/null || true
  done
}
