#!/bin/bash
# The console's two measurements in BENCHMARKS.md, side by side with another build:
#
#   bash bench/console.sh live    BEFORE_CMQ_HOST   # the live view's cost per push
#   bash bench/console.sh journal BEFORE_CMQ_HOST   # a 100,000-entry journal's pages
#
# "this" is target/release/cmq-host (cargo build --release -p cmq-host); BEFORE is any
# other build, for example one of the commit before, built in a worktree. Needs
# target/guests/ack.wasm (cargo xtask guests), wrk, curl, python3 and taskset: the host
# runs on CPU 0, the load on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?live or journal}
before=${2:?the other build of cmq-host}
this=target/release/cmq-host
export CMQ_HOST_ADMIN_TOKEN=bench-admin-token-0123456789
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
push=127.0.0.1:18090
admin=http://127.0.0.1:18091
tck=$(getconf CLK_TCK)

# Starts $1 with the rest of the arguments; sets PID once the admin listener answers.
start() {
  taskset -c 0 "$1" serve --compile-cache off --listen $push --admin-listen ${admin#http://} \
      "${@:2}" target/guests/ack.wasm 2>"$work/host.log" &
  PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null $admin/healthz && return; sleep 0.1; done
  echo "the host did not start:" >&2; cat "$work/host.log" >&2; exit 1
}

log_in() {
  rm -f "$work/cookie"
  curl -s -o /dev/null -c "$work/cookie" -d "token=$CMQ_HOST_ADMIN_TOKEN" $admin/console/login
}

stop() { kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; }

live() {
  # The documented push, a new message id each time, as `cargo xtask bench` sends it.
  cat > "$work/push.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["User-Agent"] = "Qcloud Notification Service Agent"
wrk.headers["x-cmq-request-id"] = "2394928734"
wrk.headers["x-cmq-message-tag"] = "a, b"
local prefix = tostring(os.time()) .. tostring(math.floor(os.clock() * 1e6))
local sent = 0
request = function()
  sent = sent + 1
  local id = prefix .. "-" .. sent
  wrk.headers["x-cmq-message-id"] = id
  return wrk.format(nil, nil, nil, string.format("{\"TopicOwner\":100015036,\"topicName\":\"MyTopic\",\"subscriptionName\":\"mysubscription\",\"msgId\":\"%s\",\"msgBody\":\"test message\",\"publishTime\":11203432}", id))
end
EOF
  for round in 1 2 3 4; do
    for view in before none one bodies; do
      bin=$this; [ $view = before ] && bin=$before
      start "$bin" --no-state
      watcher=
      if [ $view = one ] || [ $view = bodies ]; then
        log_in
        query=; [ $view = bodies ] && query='?bodies=1'
        taskset -c 1 curl -sN -b "$work/cookie" "$admin/console/live/events$query" >"$work/events" &
        watcher=$!
        sleep 0.3
      fi
      taskset -c 1 wrk -t1 -c16 -d1s -s "$work/push.lua" http://$push/cgi >/dev/null
      cpu_before=$(awk '{print $14+$15}' /proc/$PID/stat)
      out=$(taskset -c 1 wrk -t1 -c16 -d8s --latency -s "$work/push.lua" http://$push/cgi)
      cpu_after=$(awk '{print $14+$15}' /proc/$PID/stat)
      requests=$(echo "$out" | awk '/requests in/{print $1}')
      echo "$view round $round: req/s $(echo "$out" | awk '/Requests\/sec/{print $2}')" \
           "p99 $(echo "$out" | awk '$1=="99%"{print $2}')" \
           "CPU/msg $(python3 -c "print(round(($cpu_after-$cpu_before)/$tck/$requests*1e6, 1))") us"
      if [ -n "$watcher" ]; then
        kill "$watcher"
        echo "  the view received $(grep -c '^data:' "$work/events") decisions"
      fi
      stop
    done
  done
}

journal() {
  # A store the host makes, then 100,000 entries of 1 KiB bodies like the host's.
  start "$this" --state "$work/state.db"
  stop
  python3 - "$work/state.db" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000)
body = b'{"msgBody":"' + b"x" * 1000 + b'"}'
db.executemany(
    "INSERT INTO cmq_dead_letters (message_id, reason, attempts, format, request_id,"
    " message_tag, body, created_ms, route) VALUES (?,?,?,?,?,?,?,?,?)",
    [(f"msg-{i}",
      "dropped: poison pill" if i % 10 == 0 else "retry: tagged retry (attempt 5, the last of 5)",
      5, "json", None, "retry", body, now - (100000 - i) * 1000, "default")
     for i in range(100000)])
db.commit()
EOF
  for round in 1 2; do
    for build in before this; do
      bin=$this; [ $build = before ] && bin=$before
      start "$bin" --state "$work/state.db"
      log_in
      line="$build round $round:"
      for query in "" page=1000 reason=poison reason=nothing-matches; do
        seconds=$(taskset -c 1 curl -s -o /dev/null -w '%{time_total}' -b "$work/cookie" \
            "$admin/console/dead-letters?$query")
        line="$line [${query:-first page}] ${seconds}s"
      done
      echo "$line; peak RSS $(awk '/VmHWM/{print $2}' /proc/$PID/status) KiB"
      stop
    done
  done
}

case $mode in
  live) live ;;
  journal) journal ;;
  *) echo "live or journal" >&2; exit 2 ;;
esac
