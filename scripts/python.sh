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

make_venv() {
  local python
  python="$(find_python)"
  if ! "$python" -m venv .venv; then
    echo "Could not create .venv with $python. On Debian or Ubuntu, install the python3-venv package" \
      "for that Python (e.g. apt install python3.11-venv) and run this again." >&2
    return 1
  fi
  .venv/bin/python -m pip install -q --upgrade pip
}
