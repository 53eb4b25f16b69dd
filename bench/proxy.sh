#!/usr/bin/env bash
# bench/proxy.sh - compare `canaryctl proxy` with nginx (weighted upstreams, keepalive) and a
# direct connection on loopback with wrk. Stable/canary split 95/5 for both proxies, the same CPU
# pinning for both, alternating order between repetitions. Prints req/s, p99 and the ratio to nginx.
#
#   bench/proxy.sh                       # defaults: MODES=pinned CONNS=64 REPS=4 DURATION=10s
#   MODES="pinned free" CONNS="64 256" REPS=2 bench/proxy.sh
#
# Layouts (MODES):
#   pinned  proxy + both upstreams on PROXY_CPUS (0), wrk on WRK_CPUS (1): the server side has one
#           core, so req/s ranks the proxies by CPU cost per request (nginx: 1 worker, Go: GOMAXPROCS=1)
#   free    nothing pinned (nginx: 2 workers, Go: GOMAXPROCS=2)
# Other knobs: DURATION=10s WARMUP=2s THREADS=2 UPSTREAM_SIZE=64 OUTDIR=bench/results/<stamp>
#   CANARYCTL_GOGC= (GOGC for canaryctl; default: the runtime default) PROXIES="direct nginx canaryctl"
#   CANARYCTL_BIN=path (use a prebuilt canaryctl instead of building ./cmd/canaryctl)
# Needs: wrk, nginx, taskset, curl, go. Everything listens on 127.0.0.1; every wrk run is bounded
# by -d and by `timeout`; every server started is stopped (by its own process group) on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
REPS=${REPS:-4}
MODES=${MODES:-pinned}
PROXIES=${PROXIES:-"direct nginx canaryctl"}
PROXY_CPUS=${PROXY_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}
UPSTREAM_SIZE=${UPSTREAM_SIZE:-64}
CANARYCTL_GOGC=${CANARYCTL_GOGC:-}
OUTDIR=${OUTDIR:-$ROOT/bench/results/$(date -u +%Y%m%d-%H%M%S)}
STABLE_PORT=18181 CANARY_PORT=18182 NGINX_PORT=18190 CANARYCTL_PORT=18191 ADMIN_PORT=18192
declare -A PORT=([direct]=$STABLE_PORT [nginx]=$NGINX_PORT [canaryctl]=$CANARYCTL_PORT)

for tool in wrk nginx taskset curl go setsid; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk nginx curl util-linux)" >&2; exit 1; }
done
mkdir -p "$OUTDIR/raw" "$OUTDIR/run/tmp"
RUN="$OUTDIR/run"
CSV="$OUTDIR/results.csv"
echo "rep,mode,proxy,conns,rps,p50_ms,p99_ms,errors,canary_pct,cpu_us_per_req,load1" >"$CSV"

echo "building canaryctl and the upstream..."
if [[ -n ${CANARYCTL_BIN:-} ]]; then cp "$CANARYCTL_BIN" "$RUN/canaryctl"   # a prebuilt binary
else (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$RUN/canaryctl" ./cmd/canaryctl); fi
(cd "$ROOT" && go build -o "$RUN/upstream" ./bench/upstream)

PIDS=()
start() { # name cpus cmd... -> LAST
    local name=$1 cpus=$2; shift 2
    if [[ -n $cpus ]]; then setsid taskset -c "$cpus" "$@" >>"$OUTDIR/raw/$name.log" 2>&1 &
    else setsid "$@" >>"$OUTDIR/raw/$name.log" 2>&1 & fi
    LAST=$!; PIDS+=("$LAST")
}
stop() { # pid: its process group, nothing else
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local keep=() p; for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]+"${keep[@]}"}")
}
trap 'for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop "$p"; done' EXIT
trap 'exit 130' INT TERM
wait_port() { # port pid
    local i; for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { echo "server for :$1 exited (see $OUTDIR/raw)" >&2; return 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1
    done; echo "port $1 never opened" >&2; return 1
}
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pgcpu PGID: CPU clock ticks (user+system) used so far by the processes of one process group.
# (processes may exit while /proc is read: their lines are just missing)
pgcpu() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v g="$1" '$5 == g { t += $14 + $15 } END { print t + 0 }'; }

nginx_conf() { # workers -> file
    cat >"$RUN/nginx.conf" <<CONF
worker_processes $1;
daemon off;
master_process on;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $RUN/tmp/body; proxy_temp_path $RUN/tmp/proxy;
    fastcgi_temp_path $RUN/tmp/fcgi; uwsgi_temp_path $RUN/tmp/uwsgi; scgi_temp_path $RUN/tmp/scgi;
    upstream backend {
        server 127.0.0.1:$STABLE_PORT weight=95;
        server 127.0.0.1:$CANARY_PORT weight=5;
        keepalive 512; keepalive_requests 1000000; keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        keepalive_requests 1000000; keepalive_timeout 60s;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
}

ms() { awk -v v="$1" 'BEGIN{n=v+0; if (v~/us$/) n/=1000; else if (v~/ms$/) n=n; else if (v~/s$/) n*=1000; printf "%.3f", n}'; }

one() { # rep mode proxy
    local rep=$1 mode=$2 name=$3 cpus="" wcpus="" workers
    [[ $mode == pinned ]] && { cpus=$PROXY_CPUS; wcpus=$WRK_CPUS; }
    if [[ -n $cpus ]]; then workers=$(taskset -c "$cpus" nproc); else workers=$(nproc); fi
    for p in $STABLE_PORT $CANARY_PORT ${PORT[$name]} $ADMIN_PORT; do
        [[ $name == direct && $p == "$STABLE_PORT" ]] && continue
        if busy "$p"; then echo "port $p busy on 127.0.0.1" >&2; exit 1; fi
    done
    start up-stable "$cpus" "$RUN/upstream" -addr "127.0.0.1:$STABLE_PORT" -name stable -size "$UPSTREAM_SIZE"; local u1=$LAST
    start up-canary "$cpus" "$RUN/upstream" -addr "127.0.0.1:$CANARY_PORT" -name canary -size "$UPSTREAM_SIZE"; local u2=$LAST
    wait_port $STABLE_PORT $u1; wait_port $CANARY_PORT $u2
    local pp=""
    case $name in
    nginx) nginx_conf "$workers"; nginx -t -q -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf"
        start nginx "$cpus" nginx -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf"; pp=$LAST ;;
    canaryctl) start canaryctl "$cpus" env GOMAXPROCS="$workers" ${CANARYCTL_GOGC:+GOGC="$CANARYCTL_GOGC"} CANARYCTL_ADMIN_TOKEN=bench "$RUN/canaryctl" proxy \
            --listen "127.0.0.1:$CANARYCTL_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
            --stable "http://127.0.0.1:$STABLE_PORT" --canary "http://127.0.0.1:$CANARY_PORT" --canary-percent 5; pp=$LAST ;;
    esac
    [[ -n $pp ]] && wait_port "${PORT[$name]}" "$pp"
    local url="http://127.0.0.1:${PORT[$name]}/" w=()
    [[ -n $wcpus ]] && w=(taskset -c "$wcpus")
    timeout 60 "${w[@]}" wrk -t"$THREADS" -c256 -d"$WARMUP" "$url" >/dev/null 2>&1 || true
    local c
    for c in $CONNS; do
        local raw="$OUTDIR/raw/r$rep-$mode-$name-c$c.txt" s1 c1 s2 c2
        s1=$(curl -s "127.0.0.1:$STABLE_PORT/__count"); c1=$(curl -s "127.0.0.1:$CANARY_PORT/__count")
        local cpu1="" cpu2="" load; [[ -n $pp ]] && cpu1=$(pgcpu "$pp")
        load=$(cut -d' ' -f1 /proc/loadavg)
        timeout $(( ${DURATION%s} + 30 )) "${w[@]}" wrk -t"$THREADS" -c"$c" -d"$DURATION" --latency "$url" >"$raw" 2>&1 || true
        [[ -n $pp ]] && cpu2=$(pgcpu "$pp")
        s2=$(curl -s "127.0.0.1:$STABLE_PORT/__count"); c2=$(curl -s "127.0.0.1:$CANARY_PORT/__count")
        local rps p50 p99 errs pct us=""
        rps=$(awk '/^Requests\/sec:/{print $2}' "$raw")
        p50=$(ms "$(awk '$1=="50%"{print $2}' "$raw")"); p99=$(ms "$(awk '$1=="99%"{print $2}' "$raw")")
        errs=$(awk '/Non-2xx/{n+=$NF} /Socket errors/{gsub(",","");n+=$4+$6+$8+$10} END{print n+0}' "$raw")
        pct=$(awk -v a="$s1" -v b="$s2" -v c="$c1" -v d="$c2" 'BEGIN{t=(b-a)+(d-c); if (t>0) printf "%.2f", (d-c)/t*100}')
        # proxy CPU per request: clock ticks of its process group over the requests the upstreams served
        [[ -n $pp ]] && us=$(awk -v t=$((cpu2 - cpu1)) -v hz="$(getconf CLK_TCK)" -v n=$(( (s2 - s1) + (c2 - c1) )) 'BEGIN{if (n>0) printf "%.1f", t/hz*1e6/n}')
        echo "$rep,$mode,$name,$c,${rps:-0},$p50,$p99,$errs,$pct,$us,$load" >>"$CSV"
        printf '  r%s %-6s %-9s c=%-3s %9s req/s  p50 %6s ms  p99 %7s ms  canary %5s%%  errors %s  cpu %6s us/req  load %s\n' "$rep" "$mode" "$name" "$c" "${rps:-?}" "$p50" "$p99" "$pct" "$errs" "${us:--}" "$load"
    done
    [[ -n $pp ]] && stop "$pp"
    stop "$u1"; stop "$u2"
}

{
    echo "# $(date -u +%FT%TZ) $(nproc) cpus $(uname -r); $(wrk -v 2>&1 | head -1); $(nginx -v 2>&1); $(go version)"
    echo "# DURATION=$DURATION THREADS=$THREADS CONNS='$CONNS' REPS=$REPS MODES='$MODES' PROXY_CPUS=$PROXY_CPUS WRK_CPUS=$WRK_CPUS GOGC=$CANARYCTL_GOGC"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUTDIR/meta.txt"

read -r -a plist <<<"$PROXIES"
for rep in $(seq "$REPS"); do
    order=("${plist[@]}")
    if ((rep % 2 == 0)); then order=(); for ((k = ${#plist[@]} - 1; k >= 0; k--)); do order+=("${plist[k]}"); done; fi
    for mode in $MODES; do
        echo "== rep $rep $mode: ${order[*]}"
        for name in "${order[@]}"; do one "$rep" "$mode" "$name"; done
    done
done

# Summary: mean req/s and p99 per proxy, and the ratios to nginx paired within each rep, in rep order.
awk -F, 'NR>1 { k=$2 FS $4; rps[k FS $3]+=$5; p99[k FS $3]+=$7; cpu[k FS $3]+=$10; n[k FS $3]++; keys[k]=1
                 r[$1 FS k FS $3]=$5; q[$1 FS k FS $3]=$7; if ($1+0 > maxrep) maxrep=$1+0 }
END {
  printf "\n| mode | conns | proxy | req/s (mean) | p99 ms (mean) | req/s x nginx (per rep) | p99 x nginx (per rep) | CPU us/req (mean) |\n|---|---|---|---|---|---|---|---|\n"
  for (k in keys) for (pi=1; pi<=3; pi++) {
    split("direct nginx canaryctl", P, " "); p=P[pi]; if (!n[k FS p]) continue
    rr=""; qq=""
    for (rep=1; rep<=maxrep; rep++) if ((rep FS k FS p) in r && (rep FS k FS "nginx") in r && r[rep FS k FS "nginx"]>0) {
      rr=rr sprintf("%.2f ", r[rep FS k FS p]/r[rep FS k FS "nginx"]); qq=qq sprintf("%.2f ", q[rep FS k FS p]/q[rep FS k FS "nginx"]) }
    split(k, kk, FS)
    printf "| %s | %s | %s | %.0f | %.2f | %s| %s| %s |\n", kk[1], kk[2], p, rps[k FS p]/n[k FS p], p99[k FS p]/n[k FS p], rr, qq, (p=="direct" ? "-" : sprintf("%.1f", cpu[k FS p]/n[k FS p]))
  }
}' "$CSV" | tee "$OUTDIR/summary.md"
echo "results: $OUTDIR"
