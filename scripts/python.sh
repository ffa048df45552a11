# Sourced by quickstart.sh and test.sh: pick an interpreter and make the project's .venv with it.

# The first of $PYTHON, python3.14 … python3.11, python3 that is Python 3.11 or newer.
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.14 python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Moorage needs Python 3.11 or newer; install it, or set PYTHON=/path/to/python3.x." >&2
  return 1
}

# The real interpreter behind a command (shims and symlinks resolved), to compare two of them.
interpreter_of() {
  "$1" -c 'import os, sys; print(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))' 2>/dev/null
}

make_venv() {
  ensure_venv && .venv/bin/python -m pip install -q --upgrade pip
}

# .venv made by the chosen interpreter (created, or recreated when another one made it).
ensure_venv() {
  local python
  python="$(find_python)"
  # A .venv made by another interpreter (PATH or PYTHON changed since) is recreated: running venv over
  # it would leave that interpreter's packages beside this one's.
  if [ -e .venv ] && [ "$(interpreter_of .venv/bin/python)" != "$(interpreter_of "$python")" ]; then
    echo "Recreating .venv with $python (it was made with another Python)." >&2
    rm -rf .venv
  fi
  if ! "$python" -m venv .venv; then
    echo "Could not create .venv with $python. On Debian or Ubuntu, install the python3-venv package" \
      "for that Python (e.g. apt install python3.11-venv) and run this again." >&2
    return 1
  fi
}
