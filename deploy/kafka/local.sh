#!/usr/bin/env bash
# Run a single-node Apache Kafka (KRaft) broker on 127.0.0.1 without Docker.
#
# Usage: local.sh start|stop|status|env
#
#   start   fetch the jars once (maven), format storage once, start the broker in
#           the background and wait until it serves requests. Prints
#           TOUCHPATH_KAFKA_BOOTSTRAP=127.0.0.1:PORT on stdout (only that; all
#           progress goes to stderr). When already running, just prints the line.
#   stop    SIGTERM, up to 20 s grace, then SIGKILL. No error when not running.
#   status  prints "running TOUCHPATH_KAFKA_BOOTSTRAP=..." (exit 0), "stopped" (exit 3)
#           or "starting" (exit 4).
#   env     prints "export TOUCHPATH_KAFKA_BOOTSTRAP=..." (exit 1 when not running),
#           e.g. eval "$(deploy/kafka/local.sh env)".
#
# Environment:
#   TOUCHPATH_KAFKA_HOME             jar cache root   (default ~/.cache/touchpath/kafka)
#   TOUCHPATH_KAFKA_DATA             data dir         (default <repo>/.kafka-data)
#   TOUCHPATH_KAFKA_PORT             broker port      (default: free port, then kept in the data dir)
#   TOUCHPATH_KAFKA_CONTROLLER_PORT  controller port  (same)
#   TOUCHPATH_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 60)
#   TOUCHPATH_KAFKA_HEAP_OPTS        JVM heap flags   (default "-Xms256m -Xmx512m")
#
# Data dir layout: server.properties (rendered), kraft/ (log.dirs), server.log,
# kafka.out (console WARN+ and JVM output), kafka.pid, ports, bootstrap.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
readonly SCRIPT_DIR REPO_ROOT
readonly POM="$SCRIPT_DIR/pom.xml"
readonly TEMPLATE="$SCRIPT_DIR/server.properties.template"
readonly LOG4J_CONFIG="$SCRIPT_DIR/log4j2.yaml"

readonly KAFKA_HOME_DIR="${TOUCHPATH_KAFKA_HOME:-$HOME/.cache/touchpath/kafka}"
readonly LIBS_DIR="$KAFKA_HOME_DIR/libs"
readonly LIBS_MARKER="$LIBS_DIR/.pom-sha256"

DATA_DIR="${TOUCHPATH_KAFKA_DATA:-$REPO_ROOT/.kafka-data}"
# Callers may pass a relative path; pin it to the caller's cwd before anything else.
[[ "$DATA_DIR" == /* ]] || DATA_DIR="$PWD/$DATA_DIR"
readonly DATA_DIR
readonly LOG_DIRS="$DATA_DIR/kraft"
readonly PROPS="$DATA_DIR/server.properties"
readonly PID_FILE="$DATA_DIR/kafka.pid"
readonly PORTS_FILE="$DATA_DIR/ports"
readonly BOOTSTRAP_FILE="$DATA_DIR/bootstrap"
readonly SERVER_LOG="$DATA_DIR/server.log"
readonly OUT_LOG="$DATA_DIR/kafka.out"

readonly START_TIMEOUT="${TOUCHPATH_KAFKA_START_TIMEOUT:-60}"
readonly STOP_GRACE=20
readonly HEAP_OPTS="${TOUCHPATH_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  readonly JAVA="$JAVA_HOME/bin/java"
else
  readonly JAVA=java
fi

log() { printf 'touchpath-kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# Serialise concurrent invocations on one lock file; no-op where flock is missing.
# The lock fd must not leak into the broker (see start_broker), or it would be held forever.
take_lock() {
  local fd="$1" file="$2"
  command -v flock >/dev/null 2>&1 || return 0
  eval "exec $fd>\"\$file\""
  flock "$fd"
}

libs_complete() {
  [[ -f "$LIBS_MARKER" && "$(<"$LIBS_MARKER")" == "$(sha256_of "$POM")" ]]
}

fetch_libs() {
  libs_complete && return 0
  command -v mvn >/dev/null 2>&1 || die "maven (mvn) is needed once to fetch the Kafka jars"
  mkdir -p "$KAFKA_HOME_DIR"
  take_lock 8 "$KAFKA_HOME_DIR/.fetch.lock"
  if ! libs_complete; then
    log "fetching Kafka jars with maven into $LIBS_DIR (only when pom.xml changes)"
    local tmp="$KAFKA_HOME_DIR/libs.tmp.$$"
    local mvn_log="$KAFKA_HOME_DIR/mvn.log"
    rm -rf "$tmp"
    if ! mvn -q -B -Dstyle.color=never -f "$POM" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$mvn_log" 2>&1; then
      tail -n 40 "$mvn_log" >&2 || true
      rm -rf "$tmp"
      die "maven failed (full log: $mvn_log)"
    fi
    sha256_of "$POM" >"$tmp/.pom-sha256"
    # Swap in the finished folder so a half-copied libs/ never carries a valid marker.
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
  fi
  exec 8>&-
}

# True while pid is a live JVM serving our properties file. Checked via the command
# line because pids get reused, and because an unreaped zombie still passes kill -0.
is_our_broker() {
  [[ "$(ps -ww -p "$1" -o args= 2>/dev/null || true)" == *"kafka.Kafka $PROPS"* ]]
}

running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && is_our_broker "$pid" || return 1
  printf '%s\n' "$pid"
}

bootstrap_line() {
  printf 'TOUCHPATH_KAFKA_BOOTSTRAP=%s\n' "$(<"$BOOTSTRAP_FILE")"
}

# Sets BROKER_PORT / CONTROLLER_PORT: env wins, then the ports this data dir used
# last time (so the bootstrap address survives restarts), then fresh free ports.
choose_ports() {
  local saved_broker="" saved_controller="" free
  if [[ -f "$PORTS_FILE" ]]; then
    read -r saved_broker saved_controller <"$PORTS_FILE" || true
  fi
  BROKER_PORT="${TOUCHPATH_KAFKA_PORT:-$saved_broker}"
  CONTROLLER_PORT="${TOUCHPATH_KAFKA_CONTROLLER_PORT:-$saved_controller}"
  if [[ -z "$BROKER_PORT" || -z "$CONTROLLER_PORT" ]]; then
    # Both sockets stay bound until both numbers are known, so they cannot coincide.
    free="$(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')"
    BROKER_PORT="${BROKER_PORT:-${free% *}}"
    CONTROLLER_PORT="${CONTROLLER_PORT:-${free#* }}"
  fi
  [[ "$BROKER_PORT" != "$CONTROLLER_PORT" ]] || die "broker and controller port are both $BROKER_PORT"
  local port
  for port in "$BROKER_PORT" "$CONTROLLER_PORT"; do
    port_free "$port" || die "127.0.0.1:$port is already in use"
  done
  printf '%s %s\n' "$BROKER_PORT" "$CONTROLLER_PORT" >"$PORTS_FILE"
}

# Fails fast with a clear message instead of a JVM bind stack trace seconds later.
# SO_REUSEADDR as the JVM sets it, so TIME_WAIT leftovers of a previous run don't count.
port_free() {
  python3 -c '
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
' "$1" 2>/dev/null
}

render_properties() {
  local text
  text="$(<"$TEMPLATE")"
  # Quoted replacements: bash 5.2 would otherwise expand '&' in them.
  text="${text//@BROKER_PORT@/"$BROKER_PORT"}"
  text="${text//@CONTROLLER_PORT@/"$CONTROLLER_PORT"}"
  text="${text//@LOG_DIR@/"$LOG_DIRS"}"
  printf '%s\n' "$text" >"$PROPS"
}

java_tool_opts=()
init_java_opts() {
  java_tool_opts=(
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG"
    "-Dkafka.logs.dir=$DATA_DIR"
    -Djava.awt.headless=true
    -cp "$LIBS_DIR/*"
  )
}

format_storage() {
  [[ -f "$LOG_DIRS/meta.properties" ]] && return 0
  local cluster_id
  log "formatting storage in $LOG_DIRS"
  cluster_id="$("$JAVA" "${java_tool_opts[@]}" kafka.tools.StorageTool random-uuid 2>>"$OUT_LOG" | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "StorageTool random-uuid printed nothing (see $OUT_LOG)"
  if ! "$JAVA" "${java_tool_opts[@]}" kafka.tools.StorageTool format --standalone \
      -t "$cluster_id" -c "$PROPS" >>"$OUT_LOG" 2>&1; then
    tail -n 40 "$OUT_LOG" >&2 || true
    die "storage format failed"
  fi
}

# Answers true once kafka-python's admin client gets a DescribeCluster reply.
probe_broker() {
  python3 - "$1" <<'PY' >/dev/null 2>&1
import sys
from kafka.admin import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
try:
    admin.describe_cluster()
finally:
    admin.close()
PY
}

have_kafka_python() {
  python3 -c 'import kafka' >/dev/null 2>&1
}

fail_start() {
  local pid="$1" reason="$2"
  if is_our_broker "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  {
    echo "---- last 40 lines of $SERVER_LOG ----"
    tail -n 40 "$SERVER_LOG" 2>/dev/null || echo "(no server.log)"
    if [[ -s "$OUT_LOG" ]]; then
      echo "---- last 40 lines of $OUT_LOG ----"
      tail -n 40 "$OUT_LOG"
    fi
  } >&2
  die "$reason"
}

start_broker() {
  local pid
  mkdir -p "$DATA_DIR"
  take_lock 9 "$DATA_DIR/.start.lock"
  if pid="$(running_pid)"; then
    log "already running (pid $pid)"
    bootstrap_line
    return 0
  fi
  rm -f "$PID_FILE" "$BOOTSTRAP_FILE"

  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Java 17+ needed)"
  command -v python3 >/dev/null 2>&1 || die "python3 not found"
  fetch_libs
  choose_ports
  render_properties
  init_java_opts
  format_storage

  # Readiness is judged only on log output written by this start, not an earlier run.
  local log_offset=0
  [[ -f "$SERVER_LOG" ]] && log_offset="$(wc -c <"$SERVER_LOG")"
  printf -- '---- start %s ----\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" >>"$OUT_LOG"

  log "starting broker on 127.0.0.1:$BROKER_PORT (controller :$CONTROLLER_PORT, data $DATA_DIR)"
  local started=$SECONDS
  # shellcheck disable=SC2086  # HEAP_OPTS is a list of flags
  nohup "$JAVA" $HEAP_OPTS "${java_tool_opts[@]}" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT_LOG" 2>&1 8>&- 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"

  local probe=false
  have_kafka_python && probe=true
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    is_our_broker "$pid" || fail_start "$pid" "broker exited during startup"
    # server.log rolled over since we measured it: everything in it is new.
    if [[ -f "$SERVER_LOG" ]] && (($(wc -c <"$SERVER_LOG") < log_offset)); then
      log_offset=0
    fi
    if tail -c +"$((log_offset + 1))" "$SERVER_LOG" 2>/dev/null | grep -q 'Kafka Server started'; then
      if ! $probe || probe_broker "127.0.0.1:$BROKER_PORT"; then
        break
      fi
    fi
    ((SECONDS < deadline)) || fail_start "$pid" "broker not ready after ${START_TIMEOUT}s"
    sleep 0.25
  done

  printf '127.0.0.1:%s\n' "$BROKER_PORT" >"$BOOTSTRAP_FILE"
  log "ready after $((SECONDS - started))s (pid $pid)"
  bootstrap_line
}

stop_broker() {
  local pid waited=0
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  while is_our_broker "$pid" && ((waited < STOP_GRACE * 4)); do
    sleep 0.25
    waited=$((waited + 1))
  done
  if is_our_broker "$pid"; then
    log "still alive after ${STOP_GRACE}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE" "$BOOTSTRAP_FILE"
  log "stopped"
}

status_broker() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "stopped"
    return 3
  fi
  if [[ ! -f "$BOOTSTRAP_FILE" ]]; then
    printf 'starting pid=%s data=%s\n' "$pid" "$DATA_DIR"
    return 4
  fi
  printf 'running %s pid=%s data=%s\n' "$(bootstrap_line)" "$pid" "$DATA_DIR"
}

env_broker() {
  running_pid >/dev/null && [[ -f "$BOOTSTRAP_FILE" ]] || die "broker is not running (data dir $DATA_DIR)"
  printf 'export %s\n' "$(bootstrap_line)"
}

case "${1:-}" in
  start) start_broker ;;
  stop) stop_broker ;;
  status) status_broker ;;
  env) env_broker ;;
  *)
    echo "usage: $0 start|stop|status|env" >&2
    exit 2
    ;;
esac
