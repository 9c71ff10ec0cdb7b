#!/usr/bin/env bash
# `pingress check` on N generated Ingresses (default 10,000; a third with an annotation that
# differs, Services and EndpointSlices for all): wall time and peak RSS (goal: under 5 s and
# 300 MiB at 10k). Needs python3 and GNU time (/usr/bin/time).
# Usage: benches/check.sh   (env: N=10000 PINGRESS_BIN=...)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-10000}
BIN=${PINGRESS_BIN:-$ROOT/target/release/pingress}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked --bin pingress)
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$N" > "$dir/all.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx}")
for i in range(n):
    ns = f"ns{i % 100}"
    ann = "{nginx.ingress.kubernetes.io/enable-opentelemetry: 'true'}" if i % 3 == 0 else "{nginx.ingress.kubernetes.io/rewrite-target: /}"
    print(f"""---
apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: {ns}}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc{i}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: svc{i}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: ing{i}, namespace: {ns}, annotations: {ann}}}
spec:
  ingressClassName: nginx
  rules: [{{host: h{i}.example.com, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}]}}}}]""")
PY
set +e
/usr/bin/time -f '%e %M' -o "$dir/time" "$BIN" check -f "$dir/all.yaml" --ingress-class nginx \
  --controller-class k8s.io/ingress-nginx > "$dir/out.txt"
code=$?
set -e
read -r secs kib < <(tail -1 "$dir/time")
echo "pingress check on $N Ingresses ($(du -h "$dir/all.yaml" | cut -f1) of YAML): exit $code, $(head -1 "$dir/out.txt")"
echo "wall ${secs} s (goal < 5), peak RSS $((kib / 1024)) MiB (goal < 300)"
