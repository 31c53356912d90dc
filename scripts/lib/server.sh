# Sourced by scripts/bench, scripts/bench-ab and scripts/bench-cores: they start one server at a
# time, its process id in SERVER_PID, and measure it on 127.0.0.1.

SERVER_PID=""

# stop_server: ends the server in SERVER_PID (TERM, KILL after 5 s) and waits for it.
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# wait_listening PORT: waits up to 10 s for the server in SERVER_PID to accept on 127.0.0.1:PORT;
# fails as soon as it exits, or when it has not listened by then.
wait_listening() {
  for _ in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
